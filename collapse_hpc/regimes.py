"""How each generation's training data is assembled from real and generated data.

- replace: the previous generation's samples only, except that a fraction `keep_fraction`
  of the real data is kept (the paper's generate_percentage: p = 0 and p = 0.1);
- accumulate: real data plus the samples of every earlier generation (Gerstgrasser et al. 2024);
- accumulate-subsample: the same pool as accumulate, subsampled to the size of the real data
  (Kazdan/Schaeffer et al., "Collapse or Thrive").

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

KINDS = ("replace", "accumulate", "accumulate-subsample")


@dataclass(frozen=True)
class Regime:
    name: str = "replace"  # replace | accumulate | accumulate-subsample
    keep_fraction: float = 0.0  # replace only: fraction of the real data kept each generation
    # experiment -> {key: value}: that experiment's config keys under this regime (typed by config.py)
    overrides: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.name not in KINDS:
            raise ValueError(f"regime must be one of {', '.join(KINDS)}, got {self.name!r}")
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1], got {self.keep_fraction}")
        if self.keep_fraction and self.name != "replace":
            raise ValueError("keep_fraction applies to the replace regime only")

    @property
    def label(self) -> str:
        """Folder-safe name, e.g. replace-p0, replace-p0.1, accumulate."""
        if self.name == "replace":
            return f"replace-p{self.keep_fraction:g}"
        return self.name

    def scoped(self, experiment: str) -> Regime:
        """This regime as `experiment` sees it: other experiments' overrides dropped."""
        mine = self.overrides.get(experiment)
        return replace(self, overrides={experiment: dict(mine)} if mine else {})

    def overrides_of(self, experiment: str) -> dict:
        return dict(self.overrides.get(experiment) or {})


def mix(regime: Regime, n_real: int, generated: list[int], rng: np.random.Generator,
        size: int | None = None) -> list[tuple[int, np.ndarray]]:
    """Choose the training items of the next generation.

    n_real: items in the real pool; generated[g]: items produced by generation g (oldest first,
    the last one is the newest); size: items wanted for replace and accumulate-subsample
    (default n_real). Returns (source, indices) pairs, source -1 for real data and g for the
    pool of generation g, indices sorted. Generation 0 (no generated pools) trains on real data.
    """
    size = n_real if size is None else size
    if not generated:
        return [(-1, np.arange(n_real))]
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
    total = sum(n for _, n in pools)  # accumulate-subsample: uniform over the whole pool
    pick = np.sort(rng.choice(total, min(size, total), replace=False))
    out, start = [], 0
    for src, n in pools:
        sel = pick[(pick >= start) & (pick < start + n)] - start
        out.append((src, sel))
        start += n
    return out
