"""Slurm's USR2 arriving where Python cannot raise (a finalizer, as in numba's first compile): a real
signal to a real process."""
import subprocess
import sys

from tests.conftest import REPO

UNIT = """
import os, signal, sys, time
from collapse_hpc.launch import requeue

def submitits(signum, frame):  # as submitit's checkpoint_and_try_requeue: checkpoint, requeue, sys.exit(-1)
    print("requeued", flush=True)
    sys.exit(-1)

signal.signal(signal.SIGUSR2, submitits)
if sys.argv[1] == "wrapped":
    requeue.exit_where_python_can()

class Compiled:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(10000):  # the handler runs here, inside the finalizer
            pass

Compiled()
for _ in range(50):
    time.sleep(0.01)
print("ran on", flush=True)
"""


def _unit(how):
    return subprocess.run([sys.executable, "-c", UNIT, how], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_requeue_inside_a_finalizer_exits_after_it_without_a_traceback():
    before = _unit("submitit's alone")  # what the job log showed: the traceback, and the unit ran on
    assert "Exception ignored" in before.stderr and "SystemExit" in before.stderr, before.stderr
    assert before.returncode == 0 and "ran on" in before.stdout
    p = _unit("wrapped")
    assert p.returncode == 255 and p.stdout.split() == ["requeued"], p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr


def test_a_requeue_in_plain_code_exits_at_once():
    p = subprocess.run([sys.executable, "-c", UNIT.replace("Compiled()\n", "os.kill(os.getpid(), signal.SIGUSR2)\n"),
                        "wrapped"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 255 and p.stdout.split() == ["requeued"] and not p.stderr, p.stdout + p.stderr


NOT_REQUEUED = """
import logging, os, signal, sys
from collapse_hpc.launch import requeue

class UncompletedJobError(RuntimeError):
    pass

def submitits(signum, frame):  # as submitit's checkpoint_and_try_requeue with no requeue left
    raise UncompletedJobError("Job not requeued because: timed-out too many times.")

signal.signal(signal.SIGUSR2, submitits)
if sys.argv[1] == "wrapped":
    requeue.exit_where_python_can()

class Stream:  # a log line's write, where the signal lands: logging swallows what its write raises
    def write(self, text):
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(10000):
            pass
    def flush(self):
        pass

logging.basicConfig(stream=Stream())
logging.warning("step done")
print("ran on", flush=True)
"""


def test_a_time_limit_with_no_requeue_left_ends_the_job_where_a_log_write_catches_errors():
    """A job out of requeues at its USR2: submitit's handler raised its error inside a log line's write, logging
    printed '--- Logging error ---', and the unit ran on until Slurm killed it at its time limit (TIMEOUT, not
    FAILED with the hint to raise the limit)."""
    before = subprocess.run([sys.executable, "-c", NOT_REQUEUED, "submitit's alone"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert "Logging error" in before.stderr and before.returncode == 0 and "ran on" in before.stdout
    p = subprocess.run([sys.executable, "-c", NOT_REQUEUED, "wrapped"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "ran on" not in p.stdout, p.stdout + p.stderr
    assert "UncompletedJobError: Job not requeued because: timed-out too many times." in p.stderr, p.stderr
