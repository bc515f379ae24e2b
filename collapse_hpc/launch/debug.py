"""In-process back-end: every job runs in this Python process, in order (for stepping through)."""
from __future__ import annotations

import contextlib
import os
import sys

from tqdm import tqdm

from collapse_hpc import engine
from collapse_hpc.launch import records
from collapse_hpc.launch.job import run_on_this_rank
from collapse_hpc.logs import count
from collapse_hpc.machine import machine_cores


def execute(store, run, chains, deep: bool = False, **_):
    """The chains' pending jobs (engine.pending: the launchers' shared check, finished units through their
    manifests). deep: every job instead, each finished one hashed in full by run_unit before it is skipped, the
    run's files it used too: units a user names by hand (verify's redo command names one whose files, or the
    run's files it used, such as the VAE's classifier, no longer match)."""
    records.launched_here(store, chains)
    jobs = [j for c in chains for j in (c.jobs if deep else engine.pending(store, run, c))]
    engine.refuse_unwritable(store, jobs)
    counts = {"done": 0, "skipped": sum(len(c.jobs) for c in chains) - len(jobs)}
    if counts["skipped"]:
        print(f"{count(counts['skipped'], 'unit')} already finished (skipped)", file=sys.stderr)
    with tqdm(jobs, desc="units", unit="unit", dynamic_ncols=True) as bar, local_threads(store, run, chains):
        for job in bar:
            bar.set_postfix_str(job.label)
            counts[run_on_this_rank(str(store.root), job.experiment, job.variant, job.index, inputs=deep)] += 1
    return counts


@contextlib.contextmanager
def local_threads(store, run, chains):
    """The threads the local back-end gives each rank (local.unit_threads), where neither the user
    (COLLAPSE_THREADS) nor Slurm says: a unit redone by hand (verify's redo command) computes as it did
    in the run, not on every core (CPU results depend on the thread count)."""
    from collapse_hpc.launch.local import unit_threads

    if os.environ.get("COLLAPSE_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK"):
        yield
        return
    os.environ["COLLAPSE_THREADS"] = str(unit_threads(store, run, chains, machine_cores()))
    try:
        yield
    finally:
        os.environ.pop("COLLAPSE_THREADS", None)
