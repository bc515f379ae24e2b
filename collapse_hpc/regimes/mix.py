"""Which items of which pool a generation trains on (mix), and the replace regime's slot order."""
from __future__ import annotations

import numpy as np

from collapse_hpc.regimes.regime import SCORED, Regime
from collapse_hpc.regimes.scores import threshold

REAL = -1  # the source id of the real pool; generated pools are numbered by their generation


def mix(regime: Regime, n_real: int, generated: list[int], rng: np.random.Generator,
        size: int | None = None, scores: dict[int, np.ndarray] | None = None) -> list[tuple[int, np.ndarray]]:
    """Choose the training items of the next generation.

    n_real: items in the real pool; generated[g]: items produced by generation g (oldest first,
    the last one is the newest); size: items wanted for every regime but accumulate (default
    n_real); scores (SCORED regimes): source -> one number per item of that pool: importance
    weights of every pool (detector-resample) or verifier scores of the newest (verifier-filter).
    Returns (source, indices) pairs, source REAL for real data and g for the pool of generation g,
    indices sorted (repeated where an item is drawn again). Generation 0 (no generated pools)
    trains on real data.
    """
    size = n_real if size is None else size
    if not generated:
        return [(REAL, np.arange(n_real))]
    if regime.name in SCORED and scores is None:
        raise ValueError(f"the {regime.name} regime needs the experiment's scores of its pools' items")
    scores = scores or {}  # read by the SCORED regimes alone
    if regime.name == "verifier-filter":
        return [_filtered(regime, len(generated) - 1, np.asarray(scores[len(generated) - 1]), size, rng)]
    if regime.name == "replace":
        return _replaced(regime, n_real, generated, rng, size)
    pools = [(REAL, n_real)] + list(enumerate(generated))
    if regime.name == "accumulate":
        return [(src, np.arange(n)) for src, n in pools]
    pick = drawn(regime, n_real, generated, rng, size, scores)
    # pick is sorted: cut it at the pools' boundaries (a mask per pool cost pools x size, minutes
    # per chain once a paper-scale accumulate-subsample run holds 2000 pools)
    sizes = np.array([n_real, *generated])
    ends = np.cumsum(sizes)
    local = pick - (ends - sizes)[np.searchsorted(ends, pick, side="right")]
    cuts = [0] + np.searchsorted(pick, ends).tolist()
    return [(src, local[a:b]) for (src, _), a, b in zip(pools, cuts, cuts[1:])]


def drawn(regime: Regime, n_real: int, generated: list[int], rng: np.random.Generator,
          size: int | None = None, scores: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The draw of accumulate-subsample or detector-resample from every pool: sorted indices into
    the pools laid end to end (the real one, then generation 0, 1, ...; mix cuts it into pools).
    Arguments as mix's; generated must not be empty."""
    size = n_real if size is None else size
    total = n_real + sum(generated)
    if regime.name == "detector-resample":  # importance resampling of the whole pool
        if scores is None:
            raise ValueError("the detector-resample regime needs the experiment's scores of its pools' items")
        w = np.concatenate([np.asarray(scores[src], dtype=float) for src in [REAL, *range(len(generated))]])
        if len(w) != total or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("detector-resample: expected one finite weight >= 0 per pooled item, not all 0")
        return np.sort(rng.choice(total, size, replace=True, p=w / w.sum()))
    if regime.name != "accumulate-subsample":
        raise ValueError(f"the {regime.name} regime draws no subsample of its pools")
    return np.sort(rng.choice(total, min(size, total), replace=False))


def kept(regime: Regime, size: int) -> int:
    """Real items replace keeps of a generation's `size`: keep_fraction of them, rounded (0 for other regimes)."""
    return int(round(regime.keep_fraction * size)) if regime.name == "replace" else 0


def _replaced(regime: Regime, n_real: int, generated: list[int], rng, size: int) -> list[tuple[int, np.ndarray]]:
    """replace: `keep_fraction` of `size` from the real pool, the rest from the newest one. Where
    all three sizes agree the draw is slot-wise, as the reference: slot i holds real item i or the
    item generated from it (slot_order puts the items back in their slots)."""
    n_keep = kept(regime, size)
    newest = len(generated) - 1
    n_new = size - n_keep
    if n_keep > n_real or n_new > generated[newest]:
        raise ValueError(f"cannot draw {n_keep} real + {n_new} generated items "
                         f"from pools of {n_real} and {generated[newest]}")
    keep = np.sort(rng.choice(n_real, n_keep, replace=False)) if n_keep else np.empty(0, np.int64)
    if n_real == size == generated[newest]:
        slots = np.ones(size, dtype=bool)
        slots[keep] = False
        new = np.flatnonzero(slots)
    else:
        new = np.sort(rng.choice(generated[newest], n_new, replace=False))
    return [(REAL, keep), (newest, new)]


def slot_order(regime: Regime, picks: list[tuple[int, np.ndarray]]) -> np.ndarray | None:
    """The order that puts mix's picks (concatenated in its order) back into their slots where the
    replace regime drew slot-wise (slot i: real item i or its successor); None where it did not."""
    if regime.name != "replace":
        return None
    slots = np.concatenate([idx for _, idx in picks])
    order = np.argsort(slots, kind="stable")
    return order if np.array_equal(slots[order], np.arange(len(slots))) else None


def _filtered(regime: Regime, source: int, score: np.ndarray, size: int, rng) -> tuple[int, np.ndarray]:
    """The items of `source` whose score passes (<= the quantile), each once, then passing items
    drawn again at random until there are `size` (or the best `size` if more pass)."""
    passed = np.flatnonzero(score <= threshold(regime, score))
    if len(passed) >= size:
        keep = passed[np.argsort(score[passed], kind="stable")[:size]]
    else:
        keep = np.concatenate([passed, rng.choice(passed, size - len(passed), replace=True)])
    return source, np.sort(keep)
