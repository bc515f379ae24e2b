"""status's view of a failed or cancelled job's log."""
from collapse_hpc.launch.status import error_lines


def test_cancelled_job_with_progress_bars_shows_slurms_reason_and_readable_lines(tmp_path):
    # a job cancelled mid-epoch logs on through Slurm's kill wait; tqdm redraws with \r
    bar = "".join(f"\repoch {{e}}/40: {i * 6:3d}%|{'#' * i:<16}| {i}/16 [00:00<00:02, 6.5it/s, loss=4.4]"
                  for i in range(17))
    text = "08:06:06 collapse_hpc.lm: gen 0: 512 training blocks\n"
    text += "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***\n"
    text += "".join(bar.format(e=e) + f"\r{' ' * 70}\r08:06:{e:02d} collapse_hpc.lm: epoch {e}/40: train loss 4.4\n"
                    for e in range(1, 60))
    text += ("\repoch 60/40:   0%|          | 0/16 [00:00<?, ?it/s]"
             "\repoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed\n")
    log = tmp_path / "45_0_log.err"
    log.write_text(text)
    assert log.stat().st_size > 16384
    lines = error_lines(str(log))
    assert lines[0] == "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***"
    assert lines[-1] == "epoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed"
    assert lines[-2].endswith("collapse_hpc.lm: epoch 59/40: train loss 4.4") and len(lines) == 5
    assert not any("\r" in ln for ln in lines)


def test_last_lines_of_a_plain_traceback(tmp_path):
    log = tmp_path / "9_0_log.err"
    log.write_text("start\nTraceback (most recent call last):\n  File x\nValueError: boom\n\n")
    assert error_lines(str(log), n=2) == ["  File x", "ValueError: boom"]


def _toy_and_tail(tmp_path):
    """A run of config toy + tail, launched with --only toy (recorded as the local back-end does), both toy
    generations COMPLETED as jobs."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug, records
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local",
                                        "toy": {}, "tail": {"replicates": 2, "chunk_replicates": 2}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run, only=["toy"])
    debug.execute(store, run, chains)
    book = {"executor": "local", "units": {}}
    for job in chains[0].jobs:
        records.record(book, job.label, job_id=str(100 + job.index), log=None, state="COMPLETED", elapsed=1.0)
    records.save(store, book)
    return store


def test_status_explains_a_completed_job_whose_unit_is_not_done(tmp_path, capsys):
    import json

    from collapse_hpc.launch.status import show

    store = _toy_and_tail(tmp_path)
    gen1 = store.root / "toy" / "replace-p0-s0" / "gen_001"
    (gen1 / "metrics.parquet").unlink()  # e.g. weights lost on a scratch file system
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "toy/replace-p0-s0  generation 0 reached (1/2 done)" in out
    assert "gen_001  COMPLETED" in out
    assert "not done: toy/replace-p0-s0/gen_001/metrics.parquet" in out and "missing" in out
    assert f"redo: collapse-hpc run {store.root / 'config.yaml'} --run {store.root} --only toy" in out
    # left out with --only: said so, not "not run"
    assert "tail/replace-p0-s0  not in this run" in out and "NOT_RUN" not in out and "not run" not in out

    (gen1 / "manifest.json").unlink()
    assert show(store.root, as_json=True) == 0
    state = json.loads(capsys.readouterr().out)
    toy, tail = [c for c in state["chains"] if c["experiment"] == "toy"][0], \
        [c for c in state["chains"] if c["experiment"] == "tail"][0]
    assert toy["reached"] == 0 and toy["done"] == 1
    unit = toy["units"][1]
    assert unit["state"] == "COMPLETED" and "manifest.json is missing" in unit["why_not_done"]
    assert unit["redo"].startswith("collapse-hpc run ") and tail["not_in_this_run"] is True


def test_status_json_from_the_command_line(tmp_path):
    import json

    from tests.launch.helpers import collapse

    store = _toy_and_tail(tmp_path)
    rc, out, _ = collapse("status", store.root, "--json")
    assert rc == 0
    state = json.loads(out)
    assert [c["done"] for c in state["chains"] if c["experiment"] == "toy"] == [2]


def test_slurms_times_read_in_one_form():
    # squeue printed 0:16, sacct 00:00:49, a local run's record 0:00:20: one status, three forms
    from collapse_hpc.launch.status import _clock, slurm_seconds

    assert [_clock(slurm_seconds(t)) for t in ("0:16", "00:00:49", "1:02:03", "2-03:04:05")] == \
        ["0:00:16", "0:00:49", "1:02:03", "2 days, 3:04:05"]
    assert slurm_seconds("INVALID") is None and slurm_seconds("") is None and _clock(None) == ""


def test_a_unit_redone_by_hand_is_not_shown_as_its_earlier_job(tmp_path, capsys):
    """verify's redo (`collapse-hpc toy CFG --run RUN --variant V --unit 1`) rewrites a unit without a job:
    status named the local job that had made it before, whose results are gone."""
    import time

    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug, records
    from collapse_hpc.launch.status import show
    from collapse_hpc.store import RunStore, read_manifest
    from tests.launch.helpers import collapse

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    started = time.time()
    debug.execute(store, run, chains)  # as the local launcher's jobs 100 and 101 would
    book = {"executor": "local", "units": {}}
    for job in chains[0].jobs:
        records.record(book, job.label, job_id=str(100 + job.index), log=None, state="COMPLETED", started=started,
                       elapsed=time.time() - started)
    records.save(store, book)
    gen1 = store.root / "toy" / "replace-p0-s0" / "gen_001"
    (gen1 / "metrics.parquet").write_bytes(b"damaged")
    time.sleep(0.01)
    rc, _, err = collapse("toy", store.config_path, "--run", store.root, "--variant", "replace-p0-s0", "--unit", "1")
    assert rc == 0, err
    assert show(store.root) == 0
    out = capsys.readouterr().out
    host = read_manifest(gen1)["host"]
    assert "gen_000  done          job 100" in out
    assert f"gen_001  done          by hand on {host}" in out and "job 101" not in out


def test_a_run_in_process_reads_as_run_not_as_not_launched(tmp_path, capsys):
    # `collapse-hpc run CONFIG --executor debug` records no jobs: status read "(not launched yet)" over its
    # finished units, and an experiment left out with --only as if it were still to come
    from collapse_hpc import cli, engine, experiments
    from collapse_hpc.launch import debug
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "debug",
                                        "toy": {}, "tail": {"replicates": 2, "chunk_replicates": 2}})
    store = RunStore(tmp_path / "run")
    assert cli.main(["status", str(store.root)]) == 2  # no run folder yet
    engine.open_run(store, run, only=["toy"])
    capsys.readouterr()
    assert cli.main(["status", str(store.root)]) == 0
    assert "(not launched yet)" in capsys.readouterr().out  # opened, nothing run
    debug.execute(store, run, engine.plan(run, only=["toy"]))
    assert cli.main(["status", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"run {store.root} (run in-process: --executor debug or by hand)"
    assert "toy/replace-p0-s0  generation 1 reached (2/2 done)" in out
    assert "tail/replace-p0-s0  not in this run (left out with --only)" in out
