"""What a submitit job runs: one unit of the engine on every rank, or the final aggregation.

Both back-ends (local subprocesses, Slurm) submit these importable callables; submitit
carries the reference and the arguments (strings and an int), never data or results.
"""
from __future__ import annotations

import logging

from submitit.helpers import Checkpointable, DelayedSubmission

from collapse_hpc import logs
from collapse_hpc.launch.distributed import export_env


def _log_to_stderr() -> None:
    if not logging.getLogger("collapse_hpc").handlers:  # a job process: its stderr is the job's log
        logs.setup()


class UnitJob(Checkpointable):
    """engine.run_unit(run_dir, experiment, variant, index), preemption-safe.

    On USR2 (preemption or time limit) submitit calls checkpoint() on rank 0: we resubmit the
    same call. The requeued job's run_unit finds the unit unfinished, keeps its resumable
    sub-folders (checkpoints, finished shards) and the experiment continues from them, so
    nothing finished is done twice and nothing is lost.
    """

    def __call__(self, run_dir: str, experiment: str, variant: str, index: int) -> str:
        from collapse_hpc import engine

        _log_to_stderr()
        export_env()
        return engine.run_unit(run_dir, experiment, variant, index)

    def checkpoint(self, run_dir: str, experiment: str, variant: str, index: int) -> DelayedSubmission:
        logging.getLogger("collapse_hpc").warning("%s/%s unit %d: interrupted, requeueing to resume",
                                                  experiment, variant, index)
        return DelayedSubmission(UnitJob(), run_dir, experiment, variant, index)


def aggregate(run_dir: str) -> int:
    """The final job of a Slurm run: tables, figures and the results page."""
    _log_to_stderr()
    try:
        from collapse_hpc.report import aggregate as report
    except ModuleNotFoundError as e:
        if e.name != "collapse_hpc.report.aggregate":
            raise
        logging.getLogger("collapse_hpc").warning("collapse_hpc.report.aggregate is not installed; no report")
        return 0
    status = report.main([run_dir], None)
    if status:
        raise RuntimeError(f"aggregate {run_dir} exited with status {status}")
    return status
