"""The launch layer: runs a planned run's jobs in-process (debug), as local subprocesses
(local) or as Slurm jobs (slurm). Experiments never know which."""
from __future__ import annotations

from collapse_hpc.errors import UserError

BACKENDS = ("local", "slurm", "debug")


def choose(executor: str | None, profile: str | None) -> str | None:
    """The back-end: --executor when given, else the --profile's (a cluster profile submits
    unless its `executor` says otherwise), else None: the config's own `executor` (local)."""
    if executor or not profile:
        return executor
    from collapse_hpc.launch.profile import load

    return load(profile).executor


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
