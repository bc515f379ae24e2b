"""Splitting a variant's replicates into array tasks ("parts"), for array experiments (gmm, gaussian).

Accumulate regimes keep every generation's points in memory, so their parts are made small
enough that one part's pools fit in `pool_memory_gib`.
"""
from __future__ import annotations

import math

from collapse_hpc.experiments.base import Experiment


def chunk_size(replicates: int, chunk: int, pool_bytes_per_replicate: float, memory_gib: float) -> int:
    if pool_bytes_per_replicate > 0:
        chunk = min(chunk, max(1, int(memory_gib * 2**30 // pool_bytes_per_replicate)))
    return max(1, min(chunk, replicates))


def count(replicates: int, size: int) -> int:
    return math.ceil(replicates / size)


def replicate_range(replicates: int, size: int, part: int) -> range:
    """The replicate ids of one part (ids are global within the variant)."""
    return range(part * size, min(replicates, (part + 1) * size))


def memory(size: int, generations: int, metrics: int, points: int, pool_points: int) -> int:
    """Bytes one part holds: its metrics table (generations x replicates x metrics, float64), the
    current points of each replicate and the pool an accumulate regime keeps."""
    return 8 * size * (generations * metrics + points + pool_points)


class ArrayExperiment(Experiment):
    """An experiment whose units are parts: each a chunk of a variant's replicates through every
    generation, in memory. Its section has `replicates` and `chunk_replicates` (and
    `pool_memory_gib` where pool_bytes is not 0); it implements run_part."""

    shape = "array"
    job = "cpu"

    def pool_bytes(self, run, variant) -> float:
        """Memory per replicate that the variant's accumulated pools take (0: none kept)."""
        return 0.0

    def part_size(self, run, variant) -> int:
        cfg = variant.section(run)
        pool = self.pool_bytes(run, variant)
        return chunk_size(cfg.replicates, cfg.chunk_replicates, pool, cfg.pool_memory_gib if pool else 0.0)

    def units(self, run, variant) -> int:
        return count(variant.section(run).replicates, self.part_size(run, variant))

    def run_unit(self, ctx) -> None:
        self.run_part(ctx, self.part_size(ctx.run, ctx.variant))

    def run_part(self, ctx, size: int) -> None:
        """Replicates replicate_range(replicates, size, ctx.index) through every generation."""
        raise NotImplementedError
