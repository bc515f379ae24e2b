"""A font cache shared with another matplotlib install may lack the bundled fonts: the report
falls back quietly instead of printing a findfont line per font family and figure."""
import subprocess
import sys

SCRIPT = r"""
import io, os, sys
from matplotlib import font_manager
# a font cache as another install of the same matplotlib version leaves it: no STIX, no cm* fonts
fm = font_manager.FontManager()
fm.ttflist = [f for f in fm.ttflist if not f.name.startswith(("STIX", "cm"))]
font_manager.json_dump(fm, os.path.join(sys.argv[1], f"fontlist-v{font_manager.FontManager.__version__}.json"))
"""

DRAW = r"""
import io
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from collapse_hpc.report.drawing import figure_style
with figure_style():
    fig, ax = plt.subplots()
    ax.set_title(r"$\sigma^2_n \to 0$")
    fig.savefig(io.BytesIO(), format="png")
print("drawn")
"""


def test_fonts_missing_from_a_shared_font_cache_fall_back_quietly(tmp_path):
    env = {"MPLCONFIGDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], check=True, env=env)
    done = subprocess.run([sys.executable, "-c", DRAW], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drawn"
    assert "findfont" not in done.stderr, done.stderr
