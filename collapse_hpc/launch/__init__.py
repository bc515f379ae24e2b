"""The launch layer: runs a planned run's jobs in-process (debug), as local subprocesses
(local) or as Slurm jobs (slurm). Experiments never know which."""
from __future__ import annotations

import shlex

from collapse_hpc.config import EXECUTORS
from collapse_hpc.errors import UserError
from collapse_hpc.logs import first_few


def choose(executor: str | None, profile: str | None) -> str | None:
    """The back-end: --executor when given, else the --profile's (a cluster profile submits
    unless its `executor` says otherwise), else None: the config's own `executor` (local)."""
    if executor or not profile:
        return executor
    from collapse_hpc.launch.profile import load

    return load(profile).executor


def execute(store, run, chains, executor: str, **options):
    """Run (or, for slurm, submit) the jobs of `chains`; returns a back-end specific summary.
    Options: slurm's `pending` (the units to start, slurm.pending_units), `finish` (the run's final job)
    and `config` (the cluster's, slurm.show_config, as the checks before read it)."""
    if executor == "debug":
        from collapse_hpc.launch.debug import execute as run_debug

        return run_debug(store, run, chains, **options)
    if executor == "local":
        from collapse_hpc.launch.local import execute as run_local

        return run_local(store, run, chains, **options)
    if executor == "slurm":
        from collapse_hpc.launch.slurm import submit

        return submit(store, run, chains, **options)
    raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")


def refuse_if_submitted(store) -> None:
    """One owner per run: a run here (local, debug, by hand) is refused while jobs.json names Slurm
    jobs of the run that are still queued or running. They would run the same units side by side,
    and the local job ids would replace theirs in jobs.json, so a later submit could not see them
    and would queue a second chain. Off a Slurm host (no squeue) no such job can be live here."""
    import shutil

    from collapse_hpc.launch import records

    book = records.load(store)
    if book.get("executor") != "slurm" or not records.job_ids(book) or shutil.which("squeue") is None:
        return
    from collapse_hpc.launch.slurm import live as live_jobs

    live = live_jobs(book)
    if live:
        raise UserError(f"{store.root}: Slurm jobs of this run are queued or running ({first_few(live, 5, ', ')}); "
                        f"wait for them (collapse-hpc status {shlex.quote(str(store.root))}) or cancel them "
                        f"(scancel) before running it here")
