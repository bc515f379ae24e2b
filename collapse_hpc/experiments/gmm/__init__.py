"""Gaussian-mixture recursion (the paper's notebook "Normals_GMM_experiments", section 2).

Array-shaped: each task is a chunk of replicates that runs every generation in memory,
vectorised over its replicates (em.py), and writes
- metrics.parquet: one row per generation and replicate (see metrics.py for the columns);
- snapshots.parquet: replicate, generation, x, y: the training points of a few generations
  (snapshot_generations) of the first few replicates, for the report's scatter plots.
"""
from __future__ import annotations

from collapse_hpc.experiments.base import default_variants
from collapse_hpc.experiments.gmm import parts

NAME = "gmm"


def part_size(run, variant) -> int:
    cfg = variant.section(run)
    pool = 0.0
    if variant.regime.name != "replace":  # every generation's points stay in memory
        pool = cfg.samples * 2 * 8 * run.generations_of(NAME)
    return parts.chunk_size(cfg.replicates, cfg.chunk_replicates, pool, cfg.pool_memory_gib)


class GMMExperiment:
    name = NAME
    shape = "array"
    job = "cpu"
    resumable = ()
    scratch = ()

    def variants(self, run):
        return default_variants(NAME, run)

    def units(self, run, variant) -> int:
        return parts.count(variant.section(run).replicates, part_size(run, variant))

    def run_unit(self, ctx):
        from collapse_hpc.experiments.gmm.run import run_part

        run_part(ctx, part_size(ctx.run, ctx.variant))


EXPERIMENT = GMMExperiment()
