"""What a submitit job runs: one unit of the engine on every rank.

Both back-ends (local subprocesses, Slurm) submit this importable callable; submitit
carries the reference and the arguments (strings and an int), never data or results.
A run's final job (the report) is handed to the Slurm back-end by its caller (submit's `finish`).
"""
from __future__ import annotations

import logging
import signal
import threading

from submitit.helpers import Checkpointable, DelayedSubmission

from collapse_hpc import logs
from collapse_hpc.launch.distributed import export_env


def _interruptible() -> None:
    """A local launcher stops its units by SIGINT (Ctrl-C, cancel). Started from a script in the
    background (`nohup … &`), the unit inherits SIGINT ignored and would run on unattended."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class UnitJob(Checkpointable):
    """engine.run_unit(run_dir, experiment, variant, index), preemption-safe.

    On USR2 (preemption or time limit) submitit calls checkpoint() on rank 0: we resubmit the
    same call. The requeued job's run_unit finds the unit unfinished, keeps its resumable
    sub-folders (checkpoints, finished shards) and the experiment continues from them, so
    nothing finished is done twice and nothing is lost.
    """

    def __call__(self, run_dir: str, experiment: str, variant: str, index: int) -> str:
        from collapse_hpc import engine

        logs.for_job()
        export_env()
        _interruptible()
        return engine.run_unit(run_dir, experiment, variant, index)

    def checkpoint(self, run_dir: str, experiment: str, variant: str, index: int) -> DelayedSubmission:
        logging.getLogger("collapse_hpc").warning("%s/%s unit %d: interrupted, requeueing to resume",
                                                  experiment, variant, index)
        return DelayedSubmission(UnitJob(), run_dir, experiment, variant, index)

