"""The scores the SCORED regimes pick by, as mix reads them; the experiment computes them.

detector-resample (Drayson & Lampos 2025): a machine-text detector's probability that an item is
real, p, for every item of every pool (source REAL and each generation), becomes the importance
weight p / (1 - p): the density ratio that makes a weighted draw from the pool a draw from the
real data. verifier-filter (Feng et al. 2024): a verifier's score of each item of the newest pool,
lower is better; an item passes at most the `verifier_quantile` quantile of those scores.
An experiment that offers them lists them in Experiment.scored_regimes and calls curated().
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from collapse_hpc.regimes.regime import Regime

CLIP = 1e-3  # detector probabilities kept in [CLIP, 1 - CLIP]: weights stay within 1e-3 .. 1e3

Scores = dict[int, np.ndarray]  # source -> one number per item of that pool


def importance_weights(p_real: np.ndarray) -> np.ndarray:
    """A detector's probabilities that items are real -> their importance weights p / (1 - p)."""
    p = np.clip(p_real, CLIP, 1 - CLIP)
    return p / (1 - p)


def threshold(regime: Regime, score: np.ndarray) -> float:
    """verifier-filter: the score an item of the newest pool may have at most to pass."""
    return float(np.quantile(score, regime.verifier_quantile))


def curated(regime: Regime, made: int, detector: Callable[[], tuple[Scores, dict]],
            verifier: Callable[[int], tuple[np.ndarray, dict]]) -> tuple[Scores | None, dict]:
    """What mix needs for `regime` after `made` generations (None: nothing, an unscored regime or
    generation 0), and the experiment's figures about it (its metrics). detector(): importance
    weights of every pool's items; verifier(source): scores of the newest pool's items."""
    if not made or regime.name not in ("detector-resample", "verifier-filter"):
        return None, {}
    if regime.name == "detector-resample":
        return detector()
    score, info = verifier(made - 1)
    return {made - 1: score}, info
