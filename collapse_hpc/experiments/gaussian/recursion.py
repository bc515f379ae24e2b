"""The single-Gaussian recursion for a chunk of replicates, vectorised with numpy.

Under accumulate the estimate uses every point so far; it is kept as running (count, mean,
centred sum of squares) per replicate and merged with each new pool (Chan et al.), which is
exact and needs no memory for the pools. accumulate-subsample and replace assemble the data
with collapse_hpc.regimes.mix like every other experiment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from collapse_hpc.regimes import Regime, mix


@dataclass
class Generation:
    index: int
    mu_hat: np.ndarray  # (R,)
    sigma_hat: np.ndarray  # (R,)
    drawn: np.ndarray  # (R, n) sampled from N(mu_hat, sigma_hat^2)


class Moments:
    """Running count, mean and centred sum of squares per replicate."""

    def __init__(self, x: np.ndarray):
        self.n = x.shape[1]
        self.mean = x.mean(1)
        self.m2 = ((x - self.mean[:, None]) ** 2).sum(1)

    def merge(self, other: "Moments") -> None:
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.n / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.n * other.n / n
        self.n = n

    def estimate(self, ddof: int) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, np.sqrt(self.m2 / (self.n - ddof))


def recurse(real: np.ndarray, generations: int, regime: Regime, ddof: int, rng: np.random.Generator,
            record: Callable[[Generation], None], progress=None) -> None:
    R, n = real.shape
    pools: dict[int, np.ndarray] = {}
    running = Moments(real)
    for g in range(generations):
        if g == 0 or regime.name == "accumulate":
            mu_hat, sigma_hat = running.estimate(ddof)
        else:
            plan = mix(regime, n, [n] * g, rng, size=n)
            data = np.concatenate([(real if src < 0 else pools[src])[:, idx] for src, idx in plan if len(idx)], 1)
            mu_hat, sigma_hat = Moments(data).estimate(ddof)
        drawn = mu_hat[:, None] + sigma_hat[:, None] * rng.standard_normal((R, n))
        record(Generation(g, mu_hat, sigma_hat, drawn))
        if regime.name == "accumulate":
            running.merge(Moments(drawn))
        else:
            if regime.name == "replace":
                pools.clear()
            pools[g] = drawn
        if progress is not None:
            progress.update(1)
