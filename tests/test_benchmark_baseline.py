"""benchmarks/bookkeeping.py's baseline: the package of an earlier revision must read the run folder it
is timed on, however many config keys were added since (it refused the keys it did not know)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bookkeeping  # noqa: E402

TINY = """name: tiny
profile: {profile}
generations: 2
seeds: [0]
regimes: [{{name: replace, keep_fraction: 0.0}}]
gmm: {{enabled: false}}
lm: {{enabled: false, collective_timeout_s: 600}}
vae: {{enabled: false}}
gaussian: {{generations: 3, samples: [100], replicates: 4, chunk_replicates: 250, regimes: [replace]}}
"""


def test_the_baseline_package_reads_the_run_folder_it_is_timed_on(tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{bookkeeping.BEFORE}^{{commit}}"],
                      capture_output=True).returncode:
        pytest.skip(f"{bookkeeping.BEFORE} is not in this clone (a shallow one)")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(profile=REPO / "slurm" / "example-cluster.yaml"))
    old = bookkeeping.baseline_package(bookkeeping.BEFORE, tmp_path)
    units, env, read = bookkeeping.made_by(old, tmp_path / "made", config)
    assert units == {"paper": 1, "small": 1}
    # lm.collective_timeout_s came after the revision: left out of what it reads and of what it saved
    root = tmp_path / "made" / "paper" / "run"
    assert "collective_timeout_s" not in read.read_text() + (root / "config.yaml").read_text()
    for what in ("status", "submit --dry-run"):
        _, out, calls = bookkeeping.timed(old, bookkeeping.commands(root, read, [])[what], env)
        assert "gaussian" in out and calls >= 1, what
