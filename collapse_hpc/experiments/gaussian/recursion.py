"""The single-Gaussian recursion for a chunk of replicates, vectorised with numpy.

Under accumulate the estimate uses every point so far; the pool (collapse_hpc.regimes.Pool) keeps
it as running (count, mean, centred sum of squares) per replicate, merged with each new
generation's points (Chan et al.), which is exact and needs no memory for the pools. The other
regimes assemble the data with the pool's mix like every other experiment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from collapse_hpc.regimes import Pool, Regime, items_held


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

    def merge(self, other: "Moments") -> "Moments":
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.n / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.n * other.n / n
        self.n = n
        return self

    def estimate(self, ddof: int) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, np.sqrt(self.m2 / (self.n - ddof))


def recurse(real: np.ndarray, generations: int, regime: Regime, ddof: int, rng: np.random.Generator,
            record: Callable[[Generation], None], progress=None) -> None:
    R, n = real.shape
    pool = Pool(regime, real, axis=1, summarize=Moments, merge=Moments.merge,
                reserve=items_held(regime, n, n, generations, summarized=True))
    for g in range(generations):
        mu_hat, sigma_hat = pool.summary(rng).estimate(ddof)
        drawn = mu_hat[:, None] + sigma_hat[:, None] * rng.standard_normal((R, n))
        record(Generation(g, mu_hat, sigma_hat, drawn))
        pool.add(drawn)
        if progress is not None:
            progress.update(1)
