"""A plan estimated over LARGE_GPU_HOURS needs --force, as one over LARGE_UNITS units does; the line
prints the estimate (the paper's config: 7.5 GPU-hours; 500 epochs per p = 0 generation: ~118)."""
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch import estimate
from tests.launch.helpers import REPO, collapse

PAPER = REPO / "configs" / "paper.yaml"
PROFILE = REPO / "slurm" / "example-cluster.yaml"


def _paper(*sets):
    run = experiments.load_config(str(PAPER), list(sets), None)
    return run, engine.plan(run)


def test_the_limit_in_gpu_hours_both_sides():
    estimate.check(*_paper(), "paper.yaml")  # 7.5 GPU-hours
    assert estimate.estimate(*_paper("lm.epochs=500")).gpu_hours > estimate.LARGE_GPU_HOURS
    with pytest.raises(UserError, match=r"^paper.yaml: the plan is estimated at 11\d GPU-hours \(wall time "
                                        r"\d+\.\d h, the longest chain\), more than 100 .*or pass --force to run it$"):
        estimate.check(*_paper("lm.epochs=500"), "paper.yaml")
    estimate.check(*_paper("lm.epochs=500"), "paper.yaml", force=True)


def test_run_over_the_limit_is_one_line_and_writes_nothing(tmp_path):
    rc, _, err = collapse("run", PAPER, "--set", "lm.epochs=500", "--run", tmp_path / "run")
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {PAPER}: the plan is estimated at 11") and "--force" in lines[0]
    assert not (tmp_path / "run").exists()


def test_dry_run_lists_the_limit_and_force_lifts_it(tmp_path):
    over = ("submit", PAPER, "--set", "lm.epochs=500", "--dry-run", "--profile", PROFILE, "--run", tmp_path / "r")
    for extra, listed in (((), True), (("--force",), False)):
        rc, out, _ = collapse(*over, *extra)
        failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
        assert any("GPU-hours" in f and "more than 100" in f for f in failed) == listed
        assert rc == 2 and not (tmp_path / "r").exists()  # other checks fail here (no image, no cluster)


def test_the_papers_report_fits_its_aggregation_job_for_121_replicates():
    """paper.yaml's report of every replicate: 728,885,400 long rows. At ~460 bytes a row (the table's
    strings, melted copies, the sort's) it needed 313 GiB, and the example profile's 16G aggregation job
    reported the first 16 replicates; the compact table (report.longform) needs 60 bytes a row."""
    run, chains = _paper()
    rows = estimate.report_rows(run, chains)
    assert rows == 728_885_400  # the vae's real_classes: one row a generation
    assert round(estimate.report_bytes(rows) / 2**30) == 42  # the README's figure
    assert estimate.report_replicates(run, chains, 0.8 * 16 * 2**30) == 121  # 16G, a fifth spare (slurm.py)
