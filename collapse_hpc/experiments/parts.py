"""Splitting a variant's replicates into array tasks ("parts"), for array experiments (gmm, gaussian).

A regime's pool keeps the real points and the generated ones it can still draw from (every
generation's under the accumulating regimes), and a fit over it holds several times that, so a part
is made small enough that its whole estimate (part_memory) fits in `pool_memory_gib`. The budget
bounds what a regime keeps, not the part the config asks for: a part of chunk_replicates whose
estimate under replace alone passes it stays that size (engine.check refuses it where no machine
holds it), as a larger chunk is the config's own choice.
"""
from __future__ import annotations

import dataclasses
import math

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import Experiment
from collapse_hpc.regimes import Regime, kept


def chunk_size(replicates: int, chunk: int, pool_bytes_per_replicate: float, memory_gib: float) -> int:
    if pool_bytes_per_replicate > 0:
        fit = memory_gib * 2**30 / pool_bytes_per_replicate  # inf for a budget of 1e300 GiB: no bound
        if fit < chunk:
            chunk = max(1, int(fit))
    return max(1, min(chunk, replicates))


def largest_fitting(asked: int, holds, budget: float) -> int:
    """The largest size in 1..asked whose holds(size) is within `budget` (1 where none is): holds grows
    with the size, so a bisection (a task of 10^7 replicates takes 24 estimates, not 10^7)."""
    low, high = 1, asked
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if holds(mid) <= budget else (low, mid - 1)
    return low


def count(replicates: int, size: int) -> int:
    return math.ceil(replicates / size)


def least_points(regime: Regime) -> int:
    """The fewest points of which replace's keep_fraction keeps some real ones and some generated ones."""
    share = min(regime.keep_fraction, 1 - regime.keep_fraction)
    points = max(1, math.floor(0.5 / share))
    while kept(regime, points) in (0, points):  # round() ties to even: a step or two past 0.5 / share
        points += 1
    return points


def replicate_range(replicates: int, size: int, part: int) -> range:
    """The replicate ids of one part (ids are global within the variant)."""
    return range(part * size, min(replicates, (part + 1) * size))


def metrics_table(values: dict, ids: range, **settings: int):
    """A part's metrics.parquet rows, generation-major: int32 generation and replicate (ids), each
    setting as an int32 column, and each metric's (generations, replicates) array as a float64 column."""
    import numpy as np
    import pyarrow as pa

    G, R = len(next(iter(values.values()))), len(ids)
    columns = {"generation": pa.array(np.repeat(np.arange(G, dtype=np.int32), R)),
               "replicate": pa.array(np.tile(np.array(ids, dtype=np.int32), G))}
    columns.update({k: pa.array(np.full(G * R, v, dtype=np.int32)) for k, v in settings.items()})
    columns.update({k: pa.array(np.asarray(v, np.float64).reshape(-1)) for k, v in values.items()})
    return pa.table(columns)


# bytes a float64 value of a metrics table takes on disk at most: store.atomic.write_parquet splits and
# compresses them to 5.8 (a gaussian part of paper.yaml's, 1000 generations of 250 replicates) to 7.1 (gmm's, and a
# gaussian part of 200 generations); the key columns repeat and compress away
FLOAT_BYTES = 8


def metrics_bytes(generations: int, replicates: int, metrics: int) -> int:
    """Bytes of a part's metrics.parquet: a float64 a metric, generation and replicate."""
    return FLOAT_BYTES * generations * replicates * metrics


def memory(size: int, generations: int, metrics: int, points: int, pool_points: int) -> int:
    """Bytes one part holds: its metrics table (generations x replicates x metrics, float64), the
    current points of each replicate and its pool (the real points and the generated ones kept)."""
    return 8 * size * (generations * metrics + points + pool_points)


class ArrayExperiment(Experiment):
    """An experiment whose units are parts: each a chunk of a variant's replicates through every
    generation, in memory. Its section has the int keys `replicates` and `chunk_replicates` (and the
    float `pool_memory_gib` where it implements pool_bytes); it implements run_part (not run_unit), and
    memory() or part_memory()."""

    shape = "array"
    job = "cpu"
    memory_keys = ("replicates", "chunk_replicates", "samples", "generations")

    def unmet(self, config: type) -> list[str]:
        """Also run_part, and the section's typed replicate keys."""
        out = Experiment.unmet(self, config)
        if type(self).run_part is ArrayExperiment.run_part:
            out.append("run_part()")
        if type(self).memory is ArrayExperiment.memory and type(self).part_memory is ArrayExperiment.part_memory:
            out.append("memory() or part_memory()")
        keys = {"replicates": int, "chunk_replicates": int}
        if type(self).pool_bytes is not ArrayExperiment.pool_bytes:
            keys["pool_memory_gib"] = float
        types = {f.name: f.type for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
        out += [f"config key {k}: {t.__name__}" for k, t in keys.items() if types.get(k) not in (t, t.__name__)]
        return out

    def training_points(self, run, variant) -> tuple[int, str] | None:
        """The points a generation of the variant trains on, and the config key that sets them (None: not known)."""
        return None

    def check(self, run) -> None:
        """A replace regime keeping real data keeps some of it, not none or all: round(keep_fraction x points)
        of 0 (replace:0.1 of n = 2) ran replace's own chain under the label "keep 10%"."""
        for variant in self.variants(run):
            regime, sized = variant.regime, self.training_points(run, variant)
            if regime.name != "replace" or not 0 < regime.keep_fraction < 1 or sized is None:
                continue
            (points, key), share = sized, regime.keep_fraction
            if kept(regime, points) in (0, points):
                edge = kept(regime, points) // points  # the keep_fraction its chain is the same as
                raise UserError(f"{self.name} {variant.name}: keep_fraction {share:g} of {points} points keeps "
                                f"round({share:g} x {points}) = {kept(regime, points)} real points, the same chain as "
                                f"keep_fraction {edge}, not a {share:.0%} share; give {key} of at least "
                                f"{least_points(regime)}, or leave this regime out ({self.name}.regimes)")

    def pool_bytes(self, run, variant) -> float:
        """Bytes per replicate that the variant's pool holds at its fullest (0: none kept): with a
        regimes.Pool, regimes.items_held of its items."""
        return 0.0

    def part_memory(self, run, variant, size: int, regime=None) -> int | None:
        """Bytes a part of `size` replicates holds, its pools those of `regime` (None: the variant's). With
        it, memory() is part 0's and part_size fits it to pool_memory_gib; None: parts sized by pool_bytes."""
        return None

    def memory(self, run, variant) -> int | None:
        return self.part_memory(run, variant, self.part_size(run, variant))

    def part_size(self, run, variant) -> int:
        """chunk_replicates, made smaller while a part's estimate passes pool_memory_gib, or (a larger
        chunk asked for) what the asked part holds under replace."""
        cfg = variant.section(run)
        pool = self.pool_bytes(run, variant)
        asked = max(1, min(cfg.chunk_replicates, cfg.replicates))
        if not pool or self.part_memory(run, variant, asked) is None:
            return chunk_size(cfg.replicates, cfg.chunk_replicates, pool, cfg.pool_memory_gib if pool else 0.0)
        budget = max(cfg.pool_memory_gib * 2**30, self.part_memory(run, variant, asked, Regime()))
        return largest_fitting(asked, lambda size: self.part_memory(run, variant, size), budget)

    def units(self, run, variant) -> int:
        return count(variant.section(run).replicates, self.part_size(run, variant))

    def disk(self, run, variant, index: int) -> int | None:
        """Part `index`'s metrics.parquet: every generation of its replicates, a float64 a metric."""
        section = variant.section(run)
        ids = replicate_range(section.replicates, self.part_size(run, variant), index)
        return metrics_bytes(self.generations(run), len(ids), len(self.metrics_schema(section).metrics))

    def run_unit(self, ctx) -> None:
        self.run_part(ctx, self.part_size(ctx.run, ctx.variant))

    def run_part(self, ctx, size: int) -> None:
        """Replicates replicate_range(replicates, size, ctx.index) through every generation."""
        raise NotImplementedError
