"""The Gaussian-mixture recursion for a chunk of replicates, all generations in memory.

Generation g of a replicate fits a mixture to its training data (generation 0: the real data),
then draws `samples` points from the fit. The next generation's training data is chosen by the
regime from the replicate's real data and generated pools (its collapse_hpc.regimes.Pool). The chunk's
replicates go through the generations together: one em.fit call per generation fits all of them.

Random draws: every replicate has a generator of its own, seeded by (seed, replicate id), and
draws from it in a fixed order: its real data, then generation after generation the k-means++
seeding of the fit, the points sampled from it and the choice of the next training data.
Results therefore do not depend on how replicates are chunked into array tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from collapse_hpc.experiments.gmm import em
from collapse_hpc.experiments.gmm.kmeans import kmeans_draws
from collapse_hpc.experiments.gmm.mixture import Mixtures, sample
from collapse_hpc.regimes import Pool, Regime, items_held


REAL_PANEL = -1  # the real data's generation in snapshots.parquet (snapshot_points: drawn)


@dataclass(frozen=True)
class FitSettings:
    components: int = 2
    covariance: str = "full"
    tol: float = 1e-5
    max_iter: int = 2000
    reg_covar: float = 1e-6


@dataclass
class Generation:
    """What one generation of the chunk hands the recorder."""

    index: int
    data: np.ndarray  # (R, n, d) the training data of this generation
    fit: em.Fit
    samples: np.ndarray  # (R, samples, d) drawn from the fits: the next generation's material
    reference: Mixtures  # generation 0's fits


def draws(seed: int, replicate: int) -> np.random.Generator:
    """The generator of one replicate (replicate: its id within the variant)."""
    return np.random.default_rng([seed, replicate])


def real_modes(kind: str, separation: float = 4.0) -> np.ndarray:
    """Centres (M, 2) of the real distribution's modes, each a unit-covariance normal taken equally
    often: the blob's one at the origin, or two-mode's two at (-/+ separation / 2, 0) (as real_data draws)."""
    if kind == "blob":
        return np.zeros((1, 2))
    if kind == "two-mode":
        return np.array([[-separation / 2, 0.0], [separation / 2, 0.0]])
    raise ValueError(f"init_data must be blob or two-mode, got {kind!r}")


def real_data(kind: str, n: int, rng: np.random.Generator, separation: float = 4.0) -> np.ndarray:
    """The notebook's 2-D standard normal blob, or two unit-variance modes `separation` apart on x."""
    x = rng.standard_normal((n, 2))
    if kind == "two-mode":
        x[:, 0] += (rng.integers(2, size=n) * 2 - 1) * separation / 2
    elif kind != "blob":
        raise ValueError(f"init_data must be blob or two-mode, got {kind!r}")
    return x


def recurse(real: Sequence[np.ndarray], generations: int, regime: Regime, fit: FitSettings, samples: int,
            rngs: Sequence[np.random.Generator], record: Callable[[Generation], None], progress=None) -> None:
    """Run every generation of the chunk's replicates (real[r] and rngs[r]: the real data and the
    generator of replicate r, see draws); `record` sees each generation (and must copy what it keeps)."""
    R, d = len(real), real[0].shape[1]
    data = np.stack(real)
    # every pool holds `samples` points per generation; room for the most it holds is made at once
    reserve = items_held(regime, len(real[0]), samples, generations - 1)
    pools = [Pool(regime, x, reserve=reserve) for x in real]
    reference = None
    for g in range(generations):
        result = em.fit(data, fit.components, fit.covariance, fit.tol, fit.max_iter, fit.reg_covar,
                        seeding=kmeans_draws(rngs, fit.components))
        if reference is None:
            reference = result.mixtures
        uniforms = np.stack([rng.random(samples) for rng in rngs])
        normals = np.stack([rng.standard_normal((samples, d)) for rng in rngs])
        drawn = sample(result.mixtures, uniforms, normals)
        record(Generation(g, data, result, drawn, reference))
        if progress is not None:
            progress.update(R)
        if g + 1 == generations:
            return
        for pool, items in zip(pools, drawn):
            pool.add(items)
        data = np.stack([pool.training(rng) for pool, rng in zip(pools, rngs)])
