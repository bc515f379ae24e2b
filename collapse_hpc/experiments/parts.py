"""Splitting a variant's replicates into array tasks ("parts"), for array experiments (gmm, gaussian).

Accumulate regimes keep every generation's points in memory, so their parts are made small
enough that one part's pools fit in `pool_memory_gib`.
"""
from __future__ import annotations

import math


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
