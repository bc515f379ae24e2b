"""How each generation's training data is assembled from real and generated data.

- replace: the previous generation's samples only, except that a fraction `keep_fraction`
  of the real data is kept (the paper's generate_percentage: p = 0 and p = 0.1);
- accumulate: real data plus the samples of every earlier generation (Gerstgrasser et al. 2024);
- accumulate-subsample: the same pool as accumulate, subsampled to the size of the real data
  (Kazdan/Schaeffer et al., "Collapse or Thrive");
- detector-resample: the same pool, resampled (with replacement) to the size of the real data with
  importance weights from a machine-text detector (Drayson & Lampos 2025);
- verifier-filter: the previous generation's samples that pass a verifier (score at most the
  `verifier_quantile` quantile of that generation's scores, lower is better), refilled to the
  size of the real data by drawing passing items again (Feng et al. 2024).
The last two need per-item scores only the experiment can give (SCORED): an experiment that
supports them lists them in its `scored_regimes` and hands mix() the scores.

Experiments mix pools of their own items (points, token blocks, images); this module only
decides which items of which pool, so every experiment mixes the same way.

A regime may also carry overrides of an experiment's config keys, e.g.
`{name: replace, keep_fraction: 0.1, lm: {epochs: 10}}` (the paper trains p = 0.1 for 10 epochs):
only that experiment's variants of this regime see them (config.RunConfig.section_for); other
experiments ignore them. config.py checks them against the experiment's section.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

KINDS = ("replace", "accumulate", "accumulate-subsample", "detector-resample", "verifier-filter")
SCORED = ("detector-resample", "verifier-filter")  # need the experiment's scores of the pools' items


@dataclass(frozen=True)
class Regime:
    name: str = "replace"  # replace | accumulate | accumulate-subsample
    keep_fraction: float = 0.0  # replace only: fraction of the real data kept each generation
    verifier_quantile: float = 0.5  # verifier-filter only: pass = score <= this quantile of the scores
    # experiment -> {key: value}: that experiment's config keys under this regime (typed by config.py)
    overrides: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.name not in KINDS:
            raise ValueError(f"regime must be one of {', '.join(KINDS)}, got {self.name!r}")
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1], got {self.keep_fraction}")
        if self.keep_fraction and self.name != "replace":
            raise ValueError("keep_fraction applies to the replace regime only")
        if not 0.0 < self.verifier_quantile <= 1.0:
            raise ValueError(f"verifier_quantile must be in (0, 1], got {self.verifier_quantile}")
        if self.verifier_quantile != 0.5 and self.name != "verifier-filter":
            raise ValueError("verifier_quantile applies to the verifier-filter regime only")

    @property
    def label(self) -> str:
        """Folder-safe name, e.g. replace-p0, replace-p0.1, accumulate."""
        if self.name == "replace":
            return f"replace-p{self.keep_fraction:g}"
        if self.name == "verifier-filter":
            return f"verifier-filter-q{self.verifier_quantile:g}"
        return self.name

    def scoped(self, experiment: str) -> Regime:
        """This regime as `experiment` sees it: other experiments' overrides dropped."""
        mine = self.overrides.get(experiment)
        return replace(self, overrides={experiment: dict(mine)} if mine else {})

    def overrides_of(self, experiment: str) -> dict:
        return dict(self.overrides.get(experiment) or {})


NEWEST_ONLY = ("replace", "verifier-filter")  # draw from the newest generated pool alone


def pooled(regime: Regime, index: int) -> list[int]:
    """The earlier generations whose items generation `index` draws from (mix's pools): the newest
    under replace and verifier-filter, every one under the pooling regimes."""
    if index <= 0:
        return []
    return [index - 1] if regime.name in NEWEST_ONLY else list(range(index))


def mix(regime: Regime, n_real: int, generated: list[int], rng: np.random.Generator,
        size: int | None = None, scores: dict[int, np.ndarray] | None = None) -> list[tuple[int, np.ndarray]]:
    """Choose the training items of the next generation.

    n_real: items in the real pool; generated[g]: items produced by generation g (oldest first,
    the last one is the newest); size: items wanted for every regime but accumulate (default
    n_real); scores (SCORED regimes): source -> one number per item of that pool: importance
    weights of every pool (detector-resample) or verifier scores of the newest (verifier-filter).
    Returns (source, indices) pairs, source -1 for real data and g for the pool of generation g,
    indices sorted (repeated where an item is drawn again). Generation 0 (no generated pools)
    trains on real data.
    """
    size = n_real if size is None else size
    if not generated:
        return [(-1, np.arange(n_real))]
    if regime.name in SCORED and scores is None:
        raise ValueError(f"the {regime.name} regime needs the experiment's scores of its pools' items")
    scores = scores or {}  # read by the SCORED regimes alone
    if regime.name == "verifier-filter":
        return [_filtered(regime, len(generated) - 1, np.asarray(scores[len(generated) - 1]), size, rng)]
    if regime.name == "replace":
        n_keep = int(round(regime.keep_fraction * size))
        newest = len(generated) - 1
        n_new = size - n_keep
        if n_keep > n_real or n_new > generated[newest]:
            raise ValueError(f"cannot draw {n_keep} real + {n_new} generated items "
                             f"from pools of {n_real} and {generated[newest]}")
        keep = np.sort(rng.choice(n_real, n_keep, replace=False)) if n_keep else np.empty(0, np.int64)
        if n_real == size == generated[newest]:
            # slot-wise, as the reference: slot i holds real item i or the item generated from it
            slots = np.ones(size, dtype=bool)
            slots[keep] = False
            new = np.flatnonzero(slots)
        else:
            new = np.sort(rng.choice(generated[newest], n_new, replace=False))
        return [(-1, keep), (newest, new)]
    pools = [(-1, n_real)] + list(enumerate(generated))
    if regime.name == "accumulate":
        return [(src, np.arange(n)) for src, n in pools]
    total = sum(n for _, n in pools)
    if regime.name == "detector-resample":  # importance resampling of the whole pool
        w = np.concatenate([np.asarray(scores[src], dtype=float) for src, _ in pools])
        if len(w) != total or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("detector-resample: expected one finite weight >= 0 per pooled item, not all 0")
        pick = np.sort(rng.choice(total, size, replace=True, p=w / w.sum()))
    else:  # accumulate-subsample: uniform over the whole pool
        pick = np.sort(rng.choice(total, min(size, total), replace=False))
    out, start = [], 0
    for src, n in pools:
        sel = pick[(pick >= start) & (pick < start + n)] - start
        out.append((src, sel))
        start += n
    return out


def _filtered(regime: Regime, source: int, score: np.ndarray, size: int, rng) -> tuple[int, np.ndarray]:
    """The items of `source` whose score passes (<= the quantile), each once, then passing items
    drawn again at random until there are `size` (or the best `size` if more pass)."""
    passed = np.flatnonzero(score <= np.quantile(score, regime.verifier_quantile))
    if len(passed) >= size:
        keep = passed[np.argsort(score[passed], kind="stable")[:size]]
    else:
        keep = np.concatenate([passed, rng.choice(passed, size - len(passed), replace=True)])
    return source, np.sort(keep)
