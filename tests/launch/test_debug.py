"""The in-process back-end (`--executor debug`, and `collapse-hpc EXPERIMENT` by hand)."""
import pytest

from tests.launch.helpers import collapse, write_config


@pytest.mark.parametrize("argv", [("run", "--executor", "debug"), ("ltchain",)])
def test_a_unit_run_in_process_leaves_the_process_group_it_joined(tmp_path, argv):
    """The lm's pipeline joins a process group (a lone rank: gloo on CPUs, nccl on a GPU) and leaves it to
    whoever ran the unit. A job's rank leaves it when its unit is done (launch/job.py); a unit run in this
    process kept it to the interpreter's exit, where gloo's threads may abort the process after every unit
    was saved ("terminate called without an active exception"), and NCCL warns it was never destroyed."""
    dist = pytest.importorskip("torch.distributed")
    cfg = write_config(tmp_path, generations=2, ltchain={"keeps_group": True})
    try:
        rc, _, err = collapse(argv[0], cfg, "--run", tmp_path / "run", *argv[1:])
        assert rc == 0, err
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_an_experiment_a_run_in_process_has_not_reached_yet_is_the_runs_not_left_out(tmp_path):
    """A debug run that stopped before it reached an experiment (a failure, Ctrl-C) booked nothing: status,
    verify and the report took the experiment for one left out with --only (none of its units has a folder),
    where a local launch books the experiments it runs (records.launching) and they read not run."""
    from tests.launch.helpers import jobs

    cfg = tmp_path / "t.yaml"
    cfg.write_text("name: t\ngenerations: 2\nseeds: [0]\nexecutor: debug\nltchain: {rows: 4, fail_at: 1}\n"
                   "tail: {replicates: 2, chunk_replicates: 1, samples: 20, categories: 30}\n")
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="ltchain failure at generation 1"):  # in-process: raised, for a debugger
        collapse("run", cfg, "--run", run)
    assert not (run / "tail").exists()  # ltchain's generation 1 failed before tail was reached
    rc, out, _ = collapse("status", run)
    assert rc == 0 and out.splitlines()[0] == f"run {run} (run in-process: --executor debug or by hand)"
    assert "not in this run" not in out and "tail/replace-p0-s0  array: 0/2 parts done" in out, out
    assert "  gen_001  unfinished" in out, out  # begun, as the report says it
    rc, out, _ = collapse("verify", run)
    assert rc == 0 and "1 unit verified, 0 with mismatches, 3 unfinished" in out, out  # gen_001, tail's 2 parts
    rc, _, err = collapse("aggregate", run)
    md = (run / "report" / "results.md").read_text()
    assert rc == 0 and "not in this run" not in md, err
    assert "- tail/replace-p0-s0: 0 of 2 parts finished; part_000: not started" in md
    assert "- ltchain/replace-p0-s0: 1 of 2 generations finished; gen_001: unfinished (no manifest yet)" in md
    assert jobs(run)["experiments"] == ["ltchain", "tail"]  # what records it, as for a local launch
    with pytest.raises(RuntimeError):  # a later launch of ltchain alone keeps tail the run's
        collapse("run", cfg, "--run", run, "--only", "ltchain")
    assert jobs(run)["experiments"] == ["ltchain", "tail"]
