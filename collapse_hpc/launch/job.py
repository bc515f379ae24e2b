"""What a submitit job runs: one unit of the engine on every rank.

Both back-ends (local subprocesses, Slurm) submit this importable callable; submitit
carries the reference and the arguments (strings and an int), never data or results.
A run's final job (the report) is handed to the Slurm back-end by its caller (submit's `finish`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator

from submitit.helpers import Checkpointable, DelayedSubmission

from collapse_hpc import logs
from collapse_hpc.errors import UserError, one_line
from collapse_hpc.launch import requeue
from collapse_hpc.launch.distributed import export_env
from collapse_hpc.launch.peers import watching
from collapse_hpc.store.live import RunRemoved, at_work
from collapse_hpc.machine import interruptible, leave_process_group, main_thread_woken


LAUNCHER = "COLLAPSE_LAUNCHER_PID"  # set by the local launcher for its units
LAUNCHER_POLL_S = 1.0
_orphaned = threading.Event()
_removed = threading.Event()


def _stop_without_launcher(run_dir: str) -> None:
    """A local unit stops as on Ctrl-C once its launcher is gone, or its run folder (rm -rf RUN). A launcher
    killed outright (SIGKILL, the OOM killer) cannot cancel its units: they ran on unattended to their end, and
    held the run against the next launcher meanwhile."""
    pid = os.environ.get(LAUNCHER, "")
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or not pid.isdigit() or \
            threading.current_thread() is not threading.main_thread():
        return
    from collapse_hpc.store.live import removed
    from collapse_hpc.store.lock import pid_alive

    def watch() -> None:
        while pid_alive(int(pid)) and not (gone := removed(run_dir)):
            time.sleep(LAUNCHER_POLL_S)
        (_removed if gone else _orphaned).set()  # as judged once: a unit ending meanwhile is no longer at work
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # it stops where Ctrl-C would stop it

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


class Ending(KeyboardInterrupt):
    """Slurm ends the job (scancel, collapse-hpc cancel, a requeue, the time limit): the unit stops as on
    Ctrl-C, its manifest unwritten and its finished resumable steps kept. A KeyboardInterrupt, so no
    `except Exception` of an experiment swallows it."""


# Slurm's state of a job whose end has begun (a running job's is RUNNING, also while a preemption's
# grace time runs: its SIGTERM comes first, then USR2, which checkpoints and requeues). PENDING: Slurm
# has already requeued the job (its node set DOWN, a node failure): this attempt is over, and one left
# running makes the next attempt's launch fail ("Duplicate jobid"), which holds the job and drains the node
ENDING = {"COMPLETING", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "DEADLINE", "FAILED", "COMPLETED",
          "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "OUT_OF_MEMORY", "BOOT_FAIL", "PENDING"}
STOPS = "the unit stops here (what it finished stays for a resume)"
_requeueing = threading.Event()  # set by checkpoint(): the SIGTERM that follows our own requeue is submitit's


def _stop_when_ending(stop: str) -> None:
    """scancel sends SIGTERM, then SIGKILL after Slurm's KillWait (30 s by default). submitit ignores
    SIGTERM (on some clusters a preemption's SIGTERM comes before its USR2), so a cancelled job ran on
    and could finish and write its results after the cancel. A SIGTERM of a job whose end Slurm has
    begun stops it now (Ending, saying `stop`); one of a job still running (a preemption's notice) goes
    to submitit."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not job or \
            threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if not _requeueing.is_set() and (state := slurm_state(job)) in ENDING:
            raise Ending(f"job {job} is ending (Slurm: {state}): {stop}")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


@contextlib.contextmanager
def stops_when_ending(who: str, stop: str) -> Iterator[None]:
    """The block, stopped where it is once Slurm ends its job (_stop_when_ending): `who` and `stop` (what
    it leaves) are said in the job's log, and the job exits 143 (128 + SIGTERM) without a traceback.
    Every job of a run: a unit's, and the report's (report.aggregate.job), which ran on to KillWait and
    wrote report/ after a resubmit had cancelled it as stale."""
    _stop_when_ending(stop)
    try:
        with main_thread_woken():  # a SIGTERM given to another thread while the block waits in flock, say
            yield
    except Ending as e:
        logging.getLogger("collapse_hpc").warning("%s: %s", who, e)
        raise SystemExit(143) from None


def slurm_state(job: str) -> str | None:
    """Slurm's state of `job` (None: unknown). scontrol is bound into a container too (for requeues)."""
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\bJobState=(\S+)", out.stdout)
    return found[1] if found else None


def run_on_this_rank(run_dir: str, experiment: str, variant: str, index: int, inputs: bool = False) -> str:
    """engine.run_unit, then this rank leaves the process group its unit joined (the lm's): a job's rank
    and a unit run in-process (launch/debug.py) alike. Left to the interpreter's exit, gloo's threads may
    abort the process after the unit was saved (machine.leave_process_group). Not after a failure."""
    from collapse_hpc import engine

    done = engine.run_unit(run_dir, experiment, variant, index, inputs)
    leave_process_group()
    return done


def announce(experiment: str, variant: str, index: int, rank: int = 0, world: int = 1) -> None:
    """The log's first line names its unit and job: logs are named by job id alone
    (logs/submitit/JOBID_0_log.err), and a requeued job appends to the same file."""
    from collapse_hpc import experiments
    from collapse_hpc.store.layout import unit_name

    env = os.environ
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_TASK_ID")
           else env.get("SLURM_JOB_ID"))
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    where = (f"job {job} " if job else "") + f"on {socket.gethostname()}" \
        + (f", rank {rank} of {world}" if world > 1 else "") \
        + (f", after {logs.count(restarts, 'requeue')}" if restarts else "")
    logging.getLogger("collapse_hpc").info("%s/%s/%s: starts, %s", experiment, variant,
                                           unit_name(experiments.get(experiment).shape, index), where)


def refused_on_this_rank(e: UserError, rank: int, world: int) -> SystemExit:
    """A rank's bad input (UserError) ends its job as the CLI ends on it: `error: <message>` in one line in the
    rank's log (`rank N:` first where the unit has several) and the error's exit status (2). Left to submitit, it
    re-raised the error and the rank's log held the whole traceback. The launcher reads the error from the result
    written here, as submitit writes a failed job's (the traceback, whose last line is the message). Any other
    exception, a bug, keeps its traceback. Call it in the `except` that caught `e`."""
    print(f"error: {f'rank {rank}: ' if world > 1 else ''}{one_line(e)}", file=sys.stderr, flush=True)
    from submitit.core import utils
    from submitit.helpers import JobEnvironment

    with contextlib.suppress(OSError):  # a full disk: the launcher says the result went unwritten (local.unwritten)
        with utils.temporary_save_path(JobEnvironment().paths.result_pickle) as tmp:
            utils.cloudpickle_dump(("error", traceback.format_exc()), tmp)
    return SystemExit(e.exit_code)


class UnitJob(Checkpointable):
    """engine.run_unit(run_dir, experiment, variant, index), preemption-safe.

    On USR2 (preemption or time limit) submitit calls checkpoint() on rank 0: we resubmit the
    same call. The requeued job's run_unit finds the unit unfinished, keeps its resumable
    sub-folders (checkpoints, finished shards) and the experiment continues from them, so
    nothing finished is done twice and nothing is lost.
    """

    def __call__(self, run_dir: str, experiment: str, variant: str, index: int) -> str:
        logs.for_job()
        env = export_env()
        rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
        announce(experiment, variant, index, rank, world)
        interruptible()  # a local launcher stops its units by SIGINT (Ctrl-C, cancel)
        with stops_when_ending(f"{experiment}/{variant} unit {index}", STOPS):
            requeue.exit_where_python_can()  # submitit's USR2 handler is installed by now
            _stop_without_launcher(run_dir)
            try:
                with at_work(Path(run_dir)), watching(run_dir, rank, world):
                    # the group is left watched still: a peer lost meanwhile ends this rank, not a timeout
                    return run_on_this_rank(run_dir, experiment, variant, index)
            except UserError as e:  # recorded failed by now (watching): its peers end on it
                raise refused_on_this_rank(e, rank, world) from None
            except KeyboardInterrupt:  # Ending too: a Slurm job is never orphaned, so it goes on up
                if _removed.is_set():
                    raise refused_on_this_rank(RunRemoved(Path(run_dir).absolute()), rank, world) from None
                if not _orphaned.is_set():
                    raise
                logging.getLogger("collapse_hpc").warning("%s/%s unit %d: its launcher is gone: %s",
                                                          experiment, variant, index, STOPS)
                raise SystemExit(130) from None

    def checkpoint(self, run_dir: str, experiment: str, variant: str, index: int) -> DelayedSubmission:
        _requeueing.set()
        logging.getLogger("collapse_hpc").warning("%s/%s unit %d: interrupted, requeueing to resume",
                                                  experiment, variant, index)
        return DelayedSubmission(UnitJob(), run_dir, experiment, variant, index)

