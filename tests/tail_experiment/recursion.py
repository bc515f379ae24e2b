"""One array task of the tail experiment: a chunk of replicates through every generation."""
from __future__ import annotations

import numpy as np

from collapse_hpc.experiments import parts
from collapse_hpc.experiments.schema import INT32, MetricsSchema
from collapse_hpc.plotting.metrics import Metric, specs
from collapse_hpc.regimes import Pool

SCHEMA = MetricsSchema(per_replicate=True, generation=INT32, metrics=specs(
    Metric("support", "categories with any probability", worse="lower"),
    Metric("tail_mass", "probability beyond the head", worse="lower"),
    Metric("tv", "total variation to the real", worse="higher"),
    Metric("entropy", "entropy of the fit", "nats", worse="lower")))
METRICS = tuple(SCHEMA.metrics)


def zipf(categories: int, exponent: float) -> np.ndarray:
    p = np.arange(1, categories + 1, dtype=float) ** -exponent
    return p / p.sum()


def counts(points: np.ndarray, categories: int) -> np.ndarray:
    """(R, n) category ids -> (R, categories) counts, one bincount for all replicates."""
    R = len(points)
    flat = (points + categories * np.arange(R)[:, None]).ravel()
    return np.bincount(flat, minlength=R * categories).reshape(R, categories)


def run_part(ctx, size: int) -> None:
    cfg, regime, G = ctx.config, ctx.variant.regime, ctx.run.generations_of("tail")
    K, n = cfg.categories, cfg.samples
    ids = parts.replicate_range(cfg.replicates, size, ctx.index)
    R = len(ids)
    rng = np.random.default_rng(ctx.seed())
    p = zipf(K, cfg.exponent)
    real = rng.choice(K, size=(R, n), p=p)
    pool = Pool(regime, real, axis=1, summarize=lambda x: counts(x, K), merge=np.add)  # accumulate: counts
    table = {m: np.empty((G, R)) for m in METRICS}
    for g in range(G):
        c = pool.summary(rng)
        q = c / c.sum(1, keepdims=True)
        table["support"][g] = (q > 0).sum(1)
        table["tail_mass"][g] = q[:, cfg.head:].sum(1)
        table["tv"][g] = 0.5 * np.abs(q - p).sum(1)
        table["entropy"][g] = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0).sum(1)
        pool.add(np.stack([rng.choice(K, size=n, p=q[r]) for r in range(R)]))
    ctx.write_metrics(parts.metrics_table(table, ids))
