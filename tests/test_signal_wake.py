"""A signal Linux gives to another thread of the process still ends the main thread's native wait at
once (machine.main_thread_woken). A report's job waiting for report/'s flock heard scancel's SIGTERM
only when the lock came free (15 s later in CI, past the cancel test's bound): the kernel had given the
signal to an idle worker thread, and Python runs handlers in the main thread, between bytecodes. Here
the signal is sent to an idle thread's own id, which makes Linux give the process's signal to it."""
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import fcntl, logging, os, sys, threading, time
from collapse_hpc.launch.job import STOPS, stops_when_ending
from collapse_hpc.machine import heeding_signals, term_as_interrupt

guard, wait, lock = sys.argv[1:4]
idle = threading.Event()
ids = []

def worker():
    ids.append(threading.get_native_id())
    idle.wait()

threading.Thread(target=worker, daemon=True).start()
logging.basicConfig(level=logging.INFO)
with (term_as_interrupt() if guard == "term" else stops_when_ending("report", STOPS)):
    try:
        if wait == "flock":
            fd = os.open(lock, os.O_RDONLY)
            print(ids[0], flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:  # the waiting thread is the one the signal reaches: the worker heeding_signals starts
            def sleeper():
                print(threading.get_native_id(), flush=True)
                time.sleep(60)
            heeding_signals(sleeper)
    except KeyboardInterrupt:  # Ending is one too: stops_when_ending says it and exits 143
        if guard != "term":
            raise
        print("interrupted", flush=True)
        raise SystemExit(130)
print("waited to the end", flush=True)
"""


def _waiting(args, env, lock: Path):
    """The script's process, once its main thread waits; the id of the thread a signal is to reach."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *args, str(lock)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    thread = int(proc.stdout.readline())
    time.sleep(0.5)  # into the wait
    return proc, thread


@pytest.fixture
def held(tmp_path):
    """A lock file held for the whole test, as another report writing report/ holds its folder's."""
    lock = tmp_path / "lock"
    lock.touch()
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield lock
    os.close(fd)


def _ended(proc) -> tuple[float, int, str, str]:
    t0 = time.time()
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return float("inf"), proc.returncode, out, err
    return time.time() - t0, proc.returncode, out, err


@pytest.mark.parametrize("wait", ["flock", "heeding"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_command_waiting_in_a_native_call_takes_a_signal_another_thread_got(held, wait, sig):
    proc, thread = _waiting(["term", wait], dict(os.environ), held)
    os.kill(thread, sig)
    took, rc, out, err = _ended(proc)
    assert took < 3 and rc == 130 and "interrupted" in out, (took, rc, out, err)


def test_a_cancelled_jobs_wait_for_a_lock_stops_at_once_saying_so(held, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\necho "JobId=7 JobName=x JobState=CANCELLED Reason=None"\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="7")
    proc, thread = _waiting(["job", "flock"], env, held)
    os.kill(thread, signal.SIGCONT)  # scancel's order: SIGCONT, then SIGTERM
    os.kill(thread, signal.SIGTERM)
    took, rc, out, err = _ended(proc)
    assert took < 3 and rc == 143, (took, rc, out, err)
    assert "report: job 7 is ending (Slurm: CANCELLED): the unit stops here" in err, err


def test_the_wake_is_undone_after_its_block():
    """In-process commands (tests, a notebook) keep their own wakeup fd and SIGURG's handler."""
    from collapse_hpc.machine import WAKE, main_thread_woken

    before = signal.getsignal(WAKE)
    with main_thread_woken():
        assert signal.getsignal(WAKE) is not before
        assert "signal-wake" in {t.name for t in threading.enumerate()}
    assert signal.getsignal(WAKE) is before
    assert signal.set_wakeup_fd(-1) == -1
    assert "signal-wake" not in {t.name for t in threading.enumerate()}


def test_the_wake_ends_at_once_though_a_forked_child_keeps_its_pipe_open():
    from collapse_hpc.machine import main_thread_woken

    with main_thread_woken():
        child = os.fork()
        if child == 0:  # a fork without exec (a data loader's worker, say) holds the pipe's ends
            time.sleep(30)
            os._exit(0)
        t0 = time.time()
    took = time.time() - t0
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert took < 1 and "signal-wake" not in {t.name for t in threading.enumerate()}, took
