"""In-process back-end: every job runs in this Python process, in order (for stepping through)."""
from __future__ import annotations

from tqdm import tqdm

from collapse_hpc import engine


def execute(store, run, chains, **_):
    jobs = [j for c in chains for j in c.jobs]
    counts = {"done": 0, "skipped": 0}
    with tqdm(jobs, desc="units", unit="unit", dynamic_ncols=True) as bar:
        for job in bar:
            bar.set_postfix_str(job.label)
            counts[engine.run_unit(store.root, job.experiment, job.variant, job.index)] += 1
    return counts
