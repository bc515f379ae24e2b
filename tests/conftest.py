"""Shared test setup: offline hub, small thread counts, a cached torch-extensions folder, the
tests' experiments registered."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "collapse-hpc" / "torch_extensions"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
# The tests' experiments (toy, tail, ltchain, ltarray) register as a third party's do: through
# entry points (tests/entry_points/*.dist-info/entry_points.txt), found on the path; job
# subprocesses inherit PYTHONPATH, so they see them too.
ENTRY_POINTS = REPO / "tests" / "entry_points"
for _folder in (str(REPO), str(ENTRY_POINTS)):
    if _folder not in sys.path:
        sys.path.append(_folder)
os.environ["PYTHONPATH"] = os.pathsep.join(
    dict.fromkeys(filter(None, [str(REPO), str(ENTRY_POINTS), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])))
