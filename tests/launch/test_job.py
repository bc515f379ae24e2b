"""What a unit's job does on Slurm's SIGTERM, against a fake scontrol on PATH (the real cluster's
cancel is in tests/slurm/)."""
import signal

import pytest

from collapse_hpc.launch import job


@pytest.fixture
def slurm_job(tmp_path, monkeypatch):
    """A unit's process as a Slurm job's: scontrol answers the job's state from state.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/bash\necho "JobId=7 JobName=x JobState=$(cat {tmp_path}/state.txt) Reason=None"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    bypassed = []
    before = signal.signal(signal.SIGTERM, lambda *_: bypassed.append("SIGTERM"))  # submitit's bypass
    yield tmp_path / "state.txt", bypassed
    signal.signal(signal.SIGTERM, before)
    job._requeueing.clear()


@pytest.mark.parametrize("ending", ["COMPLETING", "PENDING"])
def test_sigterm_of_a_cancelled_job_stops_the_unit(slurm_job, ending):
    """COMPLETING: scancel, what scontrol says while the job's processes are signalled. PENDING: Slurm
    requeued the job before signalling this attempt (its node set DOWN); it ran on to its end."""
    state, bypassed = slurm_job
    state.write_text(ending)
    job._stop_when_ending(job.STOPS)
    with pytest.raises(job.Ending, match="job 7 is ending"):
        signal.raise_signal(signal.SIGTERM)
    assert not bypassed


@pytest.mark.parametrize("state", ["RUNNING", ""])
def test_sigterm_of_a_running_job_goes_to_submitit(slurm_job, state):
    """A preemption's grace time: SIGTERM while the job runs, then USR2 (checkpoint and requeue); a
    state scontrol does not tell is no reason to stop either."""
    path, bypassed = slurm_job
    path.write_text(state)
    job._stop_when_ending(job.STOPS)
    signal.raise_signal(signal.SIGTERM)
    assert bypassed == ["SIGTERM"]


def test_sigterm_after_our_own_requeue_goes_to_submitit(slurm_job):
    path, bypassed = slurm_job
    path.write_text("COMPLETING")
    job._stop_when_ending(job.STOPS)
    job.UnitJob().checkpoint("run", "lm", "v", 0)  # USR2: submitit requeues, Slurm then sends SIGTERM
    signal.raise_signal(signal.SIGTERM)
    assert bypassed == ["SIGTERM"]


@pytest.mark.parametrize("env, where", [
    ({"SLURM_JOB_ID": "7"}, "job 7 on {host}"),
    ({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "8", "SLURM_ARRAY_TASK_ID": "1", "SLURM_RESTART_COUNT": "2"},
     "job 8_1 on {host}, after 2 requeues"),  # the id status shows, not Slurm's own 9
    ({}, "on {host}"),  # the local launcher's
])
def test_a_jobs_log_opens_with_its_unit_and_job(monkeypatch, caplog, env, where):
    """Logs are named by job id (logs/submitit/7_0_log.err) and began with the experiment's own first line,
    which named neither experiment nor generation (the vae's none until its training ended)."""
    import logging
    import socket

    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.INFO, logger="collapse_hpc"):
        job.announce("vae", "replace-p0-s0", 3)
        job.announce("gmm", "replace-p0-s0", 1, rank=1, world=2)
    where = where.format(host=socket.gethostname())
    assert caplog.messages[0] == f"vae/replace-p0-s0/gen_003: starts, {where}"
    host = socket.gethostname()
    assert caplog.messages[1] == f"gmm/replace-p0-s0/part_001: starts, {where.replace(host, host + ', rank 1 of 2')}"


def test_the_report_job_stops_on_the_sigterm_of_its_cancel_and_leaves_report_as_it_was(slurm_job, tmp_path, caplog,
                                                                                           monkeypatch):
    """The report's job (submit's `finish`) took submitit's bypass of SIGTERM: cancelled as stale by a
    resubmit, it ran on to KillWait and wrote report/ over what a newer one may have written."""
    from collapse_hpc.report import aggregate, collect
    from tests.report.test_aggregate import make_run

    state, bypassed = slurm_job
    root = make_run(tmp_path / "run", {"toy": {"rows": 3}}, generations=2)
    aggregate.build([str(root)])
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (root / "report").rglob("*") if p.is_file()}
    tidy = collect.tidy

    def cancelled_while_reading(*args):  # scancel's SIGTERM, before anything is written
        state.write_text("COMPLETING")
        signal.raise_signal(signal.SIGTERM)
        return tidy(*args)

    monkeypatch.setattr(collect, "tidy", cancelled_while_reading)
    with pytest.raises(SystemExit) as ended:
        aggregate.job(str(root))
    assert ended.value.code == 143 and not bypassed
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (root / "report").rglob("*") if p.is_file()}
    assert after == before
    assert "report: job 7 is ending (Slurm: COMPLETING): the report stops here" in caplog.text


def test_a_local_unit_whose_run_folder_is_removed_as_it_ends_is_not_taken_for_orphaned(monkeypatch):
    """The launcher's watch saw the run folder removed, then judged again which stopped the unit: the unit, ending
    meanwhile, no longer worked in it, so it read as one whose launcher is gone ("its launcher is gone")."""
    import threading
    import time

    from collapse_hpc.store import live, lock

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv(job.LAUNCHER, "1")
    monkeypatch.setattr(job, "_removed", threading.Event())
    monkeypatch.setattr(job, "_orphaned", threading.Event())
    monkeypatch.setattr(lock, "pid_alive", lambda pid: True)
    judged = iter([True])  # removed, then no longer at work: not removed
    monkeypatch.setattr(live, "removed", lambda root: next(judged, False))
    with pytest.raises(KeyboardInterrupt):
        job._stop_without_launcher("/nowhere/run")
        time.sleep(10)
    assert job._removed.is_set() and not job._orphaned.is_set()
