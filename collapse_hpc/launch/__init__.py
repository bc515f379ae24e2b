"""The launch layer: runs a planned run's jobs in-process (debug), as local subprocesses
(local) or as Slurm jobs (slurm). Experiments never know which."""
from __future__ import annotations

from collapse_hpc.errors import UserError

BACKENDS = ("local", "slurm", "debug")


def execute(store, run, chains, executor: str, **options):
    """Run (or, for slurm, submit) the jobs of `chains`; returns a back-end specific summary."""
    if executor == "debug":
        from collapse_hpc.launch.debug import execute as run_debug

        return run_debug(store, run, chains, **options)
    if executor == "local":
        from collapse_hpc.launch.local import execute as run_local

        return run_local(store, run, chains, **options)
    if executor == "slurm":
        from collapse_hpc.launch.slurm import submit

        return submit(store, run, chains, **options)
    raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(BACKENDS)}")
