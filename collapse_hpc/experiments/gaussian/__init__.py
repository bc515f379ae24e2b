"""Single-Gaussian recursion (the paper's notebook, section 3).

Estimate mu and sigma from n points, draw n new points from N(mu_hat, sigma_hat^2), repeat.
One variant per sample size n (setting `samples`); array-shaped like gmm: each task is a
chunk of replicates through every generation, writing metrics.parquet with columns
generation, replicate, samples, mu_hat, sigma_hat, var_hat, mu_error (|mu - mu_hat|),
sigma_error (|sigma - sigma_hat|), sample_variance (of the points drawn, ddof 0).
Theory (MLE): E[sigma_hat^2 at generation g] = sigma^2 ((n-1)/n)^(g+1) under replace.
"""
from __future__ import annotations

from collapse_hpc.experiments.base import default_variants
from collapse_hpc.experiments.gmm import parts

NAME = "gaussian"


def part_size(run, variant) -> int:
    cfg = variant.section(run)
    pool = 0.0
    if variant.regime.name == "accumulate-subsample":  # draws from every earlier pool
        pool = variant.settings["samples"] * 8 * run.generations_of(NAME)
    return parts.chunk_size(cfg.replicates, cfg.chunk_replicates, pool, cfg.pool_memory_gib)


class GaussianExperiment:
    name = NAME
    shape = "array"
    job = "cpu"
    resumable = ()
    scratch = ()

    def variants(self, run):
        return default_variants(NAME, run, extra=lambda cfg: [{"samples": n} for n in cfg.samples])

    def units(self, run, variant) -> int:
        return parts.count(variant.section(run).replicates, part_size(run, variant))

    def run_unit(self, ctx):
        from collapse_hpc.experiments.gaussian.run import run_part

        run_part(ctx, part_size(ctx.run, ctx.variant))


EXPERIMENT = GaussianExperiment()
