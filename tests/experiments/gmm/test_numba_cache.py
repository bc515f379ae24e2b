"""Where numba cannot cache the EM kernels (a read-only install, a read-only HOME: a cluster user
running a shared checkout), every command still works, and a local run says what it costs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import collapse_hpc

REPO = Path(collapse_hpc.__file__).parent.parent

CHECK = """
import logging, sys
from collapse_hpc import experiments
from collapse_hpc.experiments.gmm import EXPERIMENT
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
EXPERIMENT.check(experiments.config_from_dict({"name": "t", "executor": "local", "gmm": {"generations": 3}}))
"""


def _uncacheable(tmp_path):
    """A copy of the package whose gmm/__pycache__ is a file, and a HOME below a file: no cache
    folder can be made there, not even by root (tests run as root, which writes anywhere else)."""
    copy = tmp_path / "install"
    shutil.copytree(REPO / "collapse_hpc", copy / "collapse_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "collapse_hpc" / "experiments" / "gmm" / "__pycache__").write_text("not a folder")
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(HOME=str(tmp_path / "file" / "home"), XDG_CACHE_HOME=str(tmp_path / "file" / "cache"),
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy))
    return copy, env


def test_commands_work_where_numba_has_no_cache_folder(tmp_path):
    copy, env = _uncacheable(tmp_path)
    config = tmp_path / "gmm.yaml"  # the gmm's own: config checks the data sets that run reads, and a fresh
    config.write_text("name: t\nexecutor: local\ngmm:\n  generations: 3\n")  # clone has none prepared
    out = subprocess.run([sys.executable, "-m", "collapse_hpc", "config", str(config)],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "gmm:" in out.stdout


def test_a_local_run_is_told_every_unit_compiles_again(tmp_path):
    copy, env = _uncacheable(tmp_path)
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=copy, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "WARNING gmm: numba has nowhere to cache the EM kernels" in out.stdout
    assert "NUMBA_CACHE_DIR to a folder of yours" in out.stdout
