"""The straightforward pool, as a reference for regimes.Pool: every generation's items kept as
they came, mix's choice taken pool by pool and concatenated (what Pool did before it stacked the
pooling regimes' items). Pool must hand out the same arrays, bit for bit and in the same layout."""
from __future__ import annotations

import numpy as np

from collapse_hpc.regimes import REAL, mix, pooled


class Concatenated:
    def __init__(self, regime, real, axis=0, summarize=None, merge=None, reserve=0):
        self.regime, self.real, self.axis, self.summarize, self.merge = regime, real, axis, summarize, merge
        self.sizes, self.pools = [], {}
        self.running = summarize(real) if summarize is not None and regime.name == "accumulate" else None

    def add(self, items):
        if self.running is not None:
            self.running = self.merge(self.running, self.summarize(items))
        else:
            self.pools[len(self.sizes)] = items
        self.sizes.append(items.shape[self.axis])
        self.pools = {g: self.pools[g] for g in pooled(self.regime, len(self.sizes)) if g in self.pools}

    def training(self, rng, size=None, scores=None):
        n_real = self.real.shape[self.axis]
        picks = mix(self.regime, n_real, self.sizes, rng, size=n_real if size is None else size, scores=scores)
        parts = [self._take(src, idx) for src, idx in picks if len(idx)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, self.axis)

    def summary(self, rng):
        if self.running is not None:
            return self.running
        return self.summarize(self.training(rng) if self.sizes else self.real)

    def _take(self, source, idx):
        items = self.real if source == REAL else self.pools[source]
        if self.axis == 0:
            whole = len(idx) == len(items) and np.array_equal(idx, np.arange(len(items)))
            return items if whole else items[idx]
        return items[(slice(None),) * self.axis + (idx,)]
