"""The Gaussian-mixture recursion for a chunk of replicates, all generations in memory.

Generation g fits a mixture to its training data (generation 0: the real data), then draws
`samples` points from the fit. The next generation's training data is chosen by the regime
(collapse_hpc.regimes.mix) from the real data and the generated pools. Every replicate of the
chunk shares the regime's index plan, which is harmless: the items of a pool are exchangeable,
so which slots are kept does not change any replicate's distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from collapse_hpc.experiments.gmm import em
from collapse_hpc.experiments.gmm.mixture import Mixtures, sample
from collapse_hpc.regimes import Regime, mix


@dataclass(frozen=True)
class FitSettings:
    components: int = 2
    covariance: str = "full"
    tol: float = 1e-5
    max_iter: int = 2000
    reg_covar: float = 1e-6


@dataclass
class Generation:
    """What one generation hands the recorder."""

    index: int
    data: torch.Tensor  # (R, n, d) the training data of this generation
    fit: em.Fit
    samples: torch.Tensor  # (R, samples, d) drawn from the fit: the next generation's material
    reference: Mixtures  # generation 0's fit


def real_data(kind: str, replicates: int, n: int, generator: torch.Generator,
              separation: float = 4.0) -> torch.Tensor:
    """The notebook's 2-D standard normal blob, or two unit-variance modes `separation` apart on x."""
    x = torch.randn(replicates, n, 2, generator=generator, dtype=torch.float64)
    if kind == "blob":
        return x
    if kind == "two-mode":
        side = torch.randint(2, (replicates, n), generator=generator).to(torch.float64) * 2 - 1
        x[..., 0] += side * separation / 2
        return x
    raise ValueError(f"init_data must be blob or two-mode, got {kind!r}")


def training_data(regime: Regime, real: torch.Tensor, pools: dict[int, torch.Tensor], made: int,
                  samples: int, rng: np.random.Generator) -> torch.Tensor:
    """The next generation's data from the real data and the pools of generations 0..made-1.

    Every pool holds `samples` points; `pools` holds only those the regime can draw from.
    """
    plan = mix(regime, real.shape[1], [samples] * made, rng, size=real.shape[1])
    parts = [(real if src < 0 else pools[src])[:, torch.from_numpy(idx)] for src, idx in plan if len(idx)]
    return torch.cat(parts, 1)


def recurse(real: torch.Tensor, generations: int, regime: Regime, fit: FitSettings, samples: int,
            generator: torch.Generator, rng: np.random.Generator,
            record: Callable[[Generation], None], progress=None) -> None:
    """Run every generation for the chunk; `record` sees each one (and must copy what it keeps)."""
    keep_all = regime.name != "replace"  # accumulate regimes draw from every earlier pool
    pools: dict[int, torch.Tensor] = {}
    reference = None
    for g in range(generations):
        data = real if g == 0 else training_data(regime, real, pools, g, samples, rng)
        result = em.fit(data, fit.components, fit.covariance, fit.tol, fit.max_iter, fit.reg_covar,
                        generator=generator)
        if reference is None:
            reference = result.mixtures
        drawn = sample(result.mixtures, samples, generator)
        record(Generation(g, data, result, drawn, reference))
        if not keep_all:
            pools.clear()
        pools[g] = drawn
        if progress is not None:
            progress.update(1)
