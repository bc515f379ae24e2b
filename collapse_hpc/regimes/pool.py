"""The pool of a recursion held in memory: the real items and the generated pools its regime can
still draw from, generation after generation (the array experiments: gaussian, gmm, tail).

Items lie along `axis` of numpy arrays (e.g. (replicates, n) points with axis 1: every replicate
gets the same choice of items; (n, d) points with axis 0: one replicate). add() hands in each
generation's items; training() assembles the next generation's data with mix. A pool under
replace or verifier-filter keeps only the newest generated pool. items_held() counts what a pool
holds after a number of generations, from the regime's values, for an experiment's memory
estimate (Pool.nbytes: the bytes it does hold).

The accumulate shortcut: an experiment whose estimate is a summary that merges (running moments,
counts) passes `summarize` and `merge`; under accumulate the pool then keeps that summary of
every item so far instead of the items (exact, and no memory for the pools), and summary() gives
it; under the other regimes summary() summarizes training().
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from collapse_hpc.regimes.mix import REAL, mix
from collapse_hpc.regimes.regime import NEWEST_ONLY, Regime


def pooled(regime: Regime, index: int) -> list[int]:
    """The earlier generations whose items generation `index` draws from (mix's pools): the newest
    under replace and verifier-filter, every one under the pooling regimes."""
    if index <= 0:
        return []
    return [index - 1] if regime.name in NEWEST_ONLY else list(range(index))


def held(regime: Regime, added: int, summarized: bool = False) -> list[int]:
    """The generations whose items a Pool keeps once `added` generations were added: those the
    next one draws from, none under accumulate with a summary (the summary stands for them)."""
    return [] if summarized and regime.name == "accumulate" else pooled(regime, added)


def items_held(regime: Regime, real: int, made: int, added: int, summarized: bool = False) -> int:
    """Items a Pool holds once `added` generations of `made` items each were added to `real` real
    items: the memory estimate of an in-memory recursion (Pool.nbytes is what it holds)."""
    return real + made * len(held(regime, added, summarized))


class Pool:
    def __init__(self, regime: Regime, real: np.ndarray, axis: int = 0,
                 summarize: Callable[[np.ndarray], Any] | None = None,
                 merge: Callable[[Any, Any], Any] | None = None):
        if (summarize is None) != (merge is None):
            raise ValueError("summarize and merge come together")
        self.regime, self.real, self.axis = regime, real, axis
        self.summarize, self.merge = summarize, merge
        self.sizes: list[int] = []  # items made by each generation so far (pools dropped included)
        self.pools: dict[int, np.ndarray] = {}  # generation -> its items, those the regime can draw from
        self.running = summarize(real) if summarize is not None and regime.name == "accumulate" else None

    @property
    def made(self) -> int:
        """Generations whose items were added."""
        return len(self.sizes)

    def add(self, items: np.ndarray) -> None:
        """The items the next generation made (generation `made`)."""
        if self.running is not None and self.summarize is not None and self.merge is not None:
            self.running = self.merge(self.running, self.summarize(items))
        else:
            self.pools[self.made] = items
        self.sizes.append(items.shape[self.axis])
        self.pools = {g: self.pools[g] for g in held(self.regime, self.made, self.running is not None)
                      if g in self.pools}

    @property
    def nbytes(self) -> int:
        """Bytes of the items held: the real ones and the generated pools kept (a running summary,
        a few numbers per replicate, is not counted)."""
        return self.real.nbytes + sum(items.nbytes for items in self.pools.values())

    def training(self, rng: np.random.Generator, size: int | None = None,
                 scores: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """The next generation's training items: the regime's mix of the real items and the pools
        (all real items before any generation was added)."""
        if self.running is not None:
            raise ValueError("an accumulate pool with a summary keeps no items: use summary()")
        n_real = self.real.shape[self.axis]
        picks = mix(self.regime, n_real, self.sizes, rng, size=n_real if size is None else size, scores=scores)
        parts = [self._take(src, idx) for src, idx in picks if len(idx)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, self.axis)

    def summary(self, rng: np.random.Generator):
        """summarize() of the next generation's training items (the running one under accumulate)."""
        if self.running is not None:
            return self.running
        if self.summarize is None:
            raise ValueError("a pool without summarize has no summary")
        if not self.sizes:
            return self.summarize(self.real)
        return self.summarize(self.training(rng))

    def _take(self, source: int, idx: np.ndarray) -> np.ndarray:
        items = self.real if source == REAL else self.pools[source]
        if self.axis == 0:
            whole = len(idx) == len(items) and np.array_equal(idx, np.arange(len(items)))
            return items if whole else items[idx]  # the whole pool: no copy
        # along a later axis the copy comes out column-major, which numpy sums in another order than
        # the row-major pool: always copy there, so every generation's data has the same layout
        return items[(slice(None),) * self.axis + (idx,)]

