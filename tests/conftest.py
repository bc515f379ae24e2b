"""Shared test setup: offline hub, small thread counts, a cached torch-extensions folder."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "collapse-hpc" / "torch_extensions"))
os.environ.setdefault("MPLBACKEND", "Agg")

# Test-only experiments, one line each: the registry's extension point outside the package
# (collapse_hpc/experiments/__init__.py reads the variable; job subprocesses inherit it).
TEST_EXPERIMENTS = [
    "toy=tests.toy_experiment",
    "tail=tests.tail_experiment",
]
os.environ.setdefault("COLLAPSE_EXTRA_EXPERIMENTS", ",".join(TEST_EXPERIMENTS))

REPO = Path(__file__).resolve().parents[1]
