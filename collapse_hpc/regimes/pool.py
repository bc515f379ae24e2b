"""The pool of a recursion held in memory: the real items and the generated pools its regime can
still draw from, generation after generation (the array experiments: gaussian, gmm, tail).

Items lie along `axis` of numpy arrays (e.g. (replicates, n) points with axis 1: every replicate
gets the same choice of items; (n, d) points with axis 0: one replicate). add() hands in each
generation's items; training() assembles the next generation's data with mix. A pool under
replace or verifier-filter keeps only the newest generated pool. items_held() counts what a pool
holds after a number of generations, from the regime's values, for an experiment's memory
estimate (Pool.nbytes: the bytes it does hold).

The pooling regimes (accumulate, accumulate-subsample, detector-resample) keep every pool: their
items lie end to end in one array (Stacked), so that a draw from thousands of generations is one
gather, not one per generation (which made a paper-scale chain's regime cost grow with the square
of its generations). The training data are the same items, in the same order and memory layout.

The accumulate shortcut: an experiment whose estimate is a summary that merges (running moments,
counts) passes `summarize` and `merge`; under accumulate the pool then keeps that summary of
every item so far instead of the items (exact, and no memory for the pools), and summary() gives
it; under the other regimes summary() summarizes training().
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from collapse_hpc.regimes.mix import REAL, drawn, mix
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


class Stacked:
    """Items laid end to end along `axis`, held with that axis first (row-major), so that any
    choice of them is one gather of whole rows. take() hands them back with the axis where it was
    and the layout numpy gives a fancy index along it (a[:, idx]: column-major), as the pools'
    concatenation did. Room for `reserve` items is made at once (pages not yet written hold no memory:
    the pool fills them as the old one grew); past it the array doubles."""

    def __init__(self, first: np.ndarray, axis: int, reserve: int = 0):
        self.axis, self.end = axis, 0
        rows = np.moveaxis(first, axis, 0)
        self.items = np.empty((max(reserve, len(rows)), *rows.shape[1:]), first.dtype)
        self.append(first)

    def append(self, items: np.ndarray) -> None:
        rows = items if self.axis == 0 else np.moveaxis(items, self.axis, 0)
        if rows.shape[1:] != self.items.shape[1:]:
            raise ValueError(f"items of shape {items.shape} do not stack with the pool's along axis {self.axis}")
        dtype = np.result_type(self.items, rows)  # as np.concatenate would promote them
        end = self.end + len(rows)
        if end > len(self.items) or dtype != self.items.dtype:
            room = len(self.items) if end <= len(self.items) else max(end, 2 * len(self.items))
            grown = np.empty((room, *rows.shape[1:]), dtype)
            grown[:self.end] = self.items[:self.end]
            self.items = grown
        self.items[self.end:end] = rows
        self.end = end

    def take(self, idx: np.ndarray) -> np.ndarray:
        # np.take copies the same rows into the same row-major layout as items[idx], at a third of its
        # time on a pool larger than the caches (paper.yaml's accumulate-subsample: 2M points a replicate)
        rows = np.take(self.items, idx, axis=0)
        return rows if self.axis == 0 else np.moveaxis(rows, 0, self.axis)


class Pool:
    def __init__(self, regime: Regime, real: np.ndarray, axis: int = 0,
                 summarize: Callable[[np.ndarray], Any] | None = None,
                 merge: Callable[[Any, Any], Any] | None = None, reserve: int = 0):
        """reserve: the items (real ones included) it will hold at most, items_held(): room for
        them is made at once under the pooling regimes (else their array grows as it fills)."""
        if (summarize is None) != (merge is None):
            raise ValueError("summarize and merge come together")
        self.regime, self.real, self.axis = regime, real, axis
        self.summarize, self.merge = summarize, merge
        self.sizes: list[int] = []  # items made by each generation so far (pools dropped included)
        self.newest: dict[int, np.ndarray] = {}  # replace, verifier-filter: generation -> its items
        self.running = summarize(real) if summarize is not None and regime.name == "accumulate" else None
        pooling = self.running is None and regime.name not in NEWEST_ONLY
        self.stacked = Stacked(real, axis, reserve) if pooling else None  # the real items, then every pool

    @property
    def made(self) -> int:
        """Generations whose items were added."""
        return len(self.sizes)

    @property
    def pools(self) -> dict[int, np.ndarray]:
        """Generation -> its items, for the generations the regime can draw from."""
        if self.stacked is None:
            return self.newest
        ends = np.cumsum([self.real.shape[self.axis], *self.sizes]).tolist()
        return {g: np.moveaxis(self.stacked.items[a:b], 0, self.axis) for g, (a, b) in enumerate(zip(ends, ends[1:]))}

    def add(self, items: np.ndarray) -> None:
        """The items the next generation made (generation `made`)."""
        if self.running is not None and self.summarize is not None and self.merge is not None:
            self.running = self.merge(self.running, self.summarize(items))
        elif self.stacked is not None:
            self.stacked.append(items)
        else:
            self.newest = {self.made: items}
        self.sizes.append(items.shape[self.axis])

    @property
    def nbytes(self) -> int:
        """Bytes of the items held: the real ones and the generated pools kept (a running summary,
        a few numbers per replicate, is not counted)."""
        if self.stacked is not None:
            return self.stacked.end * self.stacked.items[0].nbytes
        return self.real.nbytes + sum(items.nbytes for items in self.newest.values())

    def training(self, rng: np.random.Generator, size: int | None = None,
                 scores: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """The next generation's training items: the regime's mix of the real items and the pools
        (all real items before any generation was added)."""
        if self.running is not None:
            raise ValueError("an accumulate pool with a summary keeps no items: use summary()")
        n_real = self.real.shape[self.axis]
        size = n_real if size is None else size
        if self.stacked is not None and self.sizes:  # one gather of mix's choice, uncut
            every = self.regime.name == "accumulate"
            pick = np.arange(self.stacked.end) if every else drawn(self.regime, n_real, self.sizes, rng, size, scores)
            return self._laid_out(self.stacked.take(pick), pick)
        picks = mix(self.regime, n_real, self.sizes, rng, size=size, scores=scores)
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

    def _laid_out(self, items: np.ndarray, pick: np.ndarray) -> np.ndarray:
        """Stacked items in the layout of the pools' parts concatenated, as numpy lays them out: along
        a later axis, one pool's part as a fancy index gives it (column-major), several parts the
        same unless every part is one item (or another axis has one entry), then row-major."""
        if self.axis == 0 or not len(pick):
            return items
        source = np.searchsorted(np.cumsum([self.real.shape[self.axis], *self.sizes]), pick, side="right")
        one_pool = source[0] == source[-1]
        several_items = bool((source[1:] == source[:-1]).any()) and min(np.delete(items.shape, self.axis)) > 1
        return items if one_pool or several_items else np.ascontiguousarray(items)

    def _take(self, source: int, idx: np.ndarray) -> np.ndarray:
        items = self.real if source == REAL else self.newest[source]
        if self.axis == 0:
            whole = len(idx) == len(items) and np.array_equal(idx, np.arange(len(items)))
            return items if whole else np.take(items, idx, axis=0)  # the whole pool: no copy
        # along a later axis the copy comes out column-major, which numpy sums in another order than
        # the row-major pool: always copy there, so every generation's data has the same layout
        return items[(slice(None),) * self.axis + (idx,)]
