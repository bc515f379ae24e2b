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
    job._stop_when_ending()
    with pytest.raises(job.Ending, match="job 7 is ending"):
        signal.raise_signal(signal.SIGTERM)
    assert not bypassed


@pytest.mark.parametrize("state", ["RUNNING", ""])
def test_sigterm_of_a_running_job_goes_to_submitit(slurm_job, state):
    """A preemption's grace time: SIGTERM while the job runs, then USR2 (checkpoint and requeue); a
    state scontrol does not tell is no reason to stop either."""
    path, bypassed = slurm_job
    path.write_text(state)
    job._stop_when_ending()
    signal.raise_signal(signal.SIGTERM)
    assert bypassed == ["SIGTERM"]


def test_sigterm_after_our_own_requeue_goes_to_submitit(slurm_job):
    path, bypassed = slurm_job
    path.write_text("COMPLETING")
    job._stop_when_ending()
    job.UnitJob().checkpoint("run", "lm", "v", 0)  # USR2: submitit requeues, Slurm then sends SIGTERM
    signal.raise_signal(signal.SIGTERM)
    assert bypassed == ["SIGTERM"]
