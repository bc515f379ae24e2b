"""Gaussian-mixture recursion (the paper's notebook "Normals_GMM_experiments", section 2).

Array-shaped: each task is a chunk of replicates that runs every generation in memory,
vectorised over its replicates (em.py), and writes
- metrics.parquet: one row per generation and replicate (see metrics.py for the columns);
- snapshots.parquet: replicate, generation, x, y: the training points of a few generations
  (snapshot_generations) of the first few replicates, for the report's scatter plots.
"""
from __future__ import annotations

import re

from collapse_hpc.experiments import parts
from collapse_hpc.experiments.base import Experiment

NAME = "gmm"


def part_size(run, variant) -> int:
    cfg = variant.section(run)
    pool = 0.0
    if variant.regime.name != "replace":  # every generation's points stay in memory
        pool = cfg.samples * 2 * 8 * run.generations_of(NAME)
    return parts.chunk_size(cfg.replicates, cfg.chunk_replicates, pool, cfg.pool_memory_gib)


class GMMExperiment(Experiment):
    name = NAME
    shape = "array"
    job = "cpu"
    title = "Gaussian mixture"
    order = 20
    metrics = ("l2: exact L2 distance between each generation's fitted mixture and generation 0's; "
               "total_variance: trace of the fitted mixture's covariance; per component cK_: weight, mean, "
               "covariance and tail positions (see gmm/metrics.py).")

    def units(self, run, variant) -> int:
        return parts.count(variant.section(run).replicates, part_size(run, variant))

    def memory(self, run, variant) -> int:
        from collapse_hpc.experiments.gmm.metrics import names

        cfg, G = variant.section(run), run.generations_of(NAME)
        pool = 2 * cfg.samples * G if variant.regime.name != "replace" else 0
        return parts.memory(part_size(run, variant), G, len(names(cfg.components)), 2 * cfg.samples, pool)

    def run_unit(self, ctx):
        from collapse_hpc.experiments.gmm.run import run_part

        run_part(ctx, part_size(ctx.run, ctx.variant))

    def figures(self):
        from collapse_hpc.experiments.gmm.figures import FIGURES

        return FIGURES

    def derive(self, df):
        """Runs that recorded per-component variances only: their sum is the total variance."""
        if "total_variance" not in df:
            comps = [c for c in df.columns if re.fullmatch(r"(trace|var|variance)_?(c|comp|component)?_?\d+", c)]
            if comps:
                df = df.assign(total_variance=df[comps].sum(axis=1))
        return df


EXPERIMENT = GMMExperiment()
