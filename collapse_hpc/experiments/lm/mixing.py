"""A generation's training set: real blocks and earlier generations' blocks, mixed per regime.

The choice of items is regimes.mix's (shared by every experiment); this module turns it into
`train_set.parquet` with each block's lineage: block_id (its row), source_generation (-1 for real
data) and source_block_id (its block_id in that pool). A generated block's prompt_block_id names its
prompt's row in the generating generation's train_set, so any block traces back to real data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REAL = -1


def _pool_table(pool, source: int, idx: np.ndarray):
    import pyarrow as pa

    part = pool.select(["block_id", "input_ids"]).take(pa.array(idx, pa.int64()))
    return pa.table({
        "source_generation": pa.array(np.full(len(idx), source), pa.int32()),
        "source_block_id": part.column("block_id").cast(pa.int64()),
        "input_ids": part.column("input_ids").cast(pa.list_(pa.int32())),
        "_slot": pa.array(idx, pa.int64()),
    })


def training_set(regime, real, generated: list, rng: np.random.Generator, scores: dict | None = None):
    """real: blocks table; generated[g]: generation g's generated blocks (oldest first); scores: the
    curated regimes' per-block scores by source (curation.scores)."""
    import pyarrow as pa

    from collapse_hpc.regimes import mix

    picks = mix(regime, real.num_rows, [t.num_rows for t in generated], rng, scores=scores)
    parts = [_pool_table(real if src == REAL else generated[src], src, idx) for src, idx in picks]
    table = pa.concat_tables(parts)
    slots = table.column("_slot").to_numpy()
    if regime.name == "replace" and np.array_equal(np.sort(slots), np.arange(len(slots))):
        table = table.take(pa.array(np.argsort(slots, kind="stable")))  # slot i: real i or its successor
    table = table.drop_columns(["_slot"])
    return table.add_column(0, "block_id", pa.array(np.arange(table.num_rows), pa.int64()))


def prompts(train_set, n_real: int, rng: np.random.Generator):
    """The blocks a generation continues: its whole training set, or (accumulate, where the set
    grows) a random n_real of it, so every generation produces as much data as the real split."""
    import pyarrow as pa

    if train_set.num_rows <= n_real:
        return train_set.select(["block_id", "input_ids"])
    idx = np.sort(rng.choice(train_set.num_rows, n_real, replace=False))
    return train_set.select(["block_id", "input_ids"]).take(pa.array(idx))


def counts_by_source(train_set) -> dict[int, int]:
    src, n = np.unique(train_set.column("source_generation").to_numpy(), return_counts=True)
    return {int(s): int(c) for s, c in zip(src, n)}


def trace(block_id: int, generation: int, unit_dirs: list[Path]) -> list[tuple[int, int]]:
    """Lineage of generated block `block_id` of `generation`: [(generation, block_id), ...] back
    to (-1, real block_id). unit_dirs[g] is generation g's folder."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from collapse_hpc.experiments.lm.sample import read_shards

    path = [(generation, block_id)]
    g, b = generation, block_id
    while g != REAL:
        shard = read_shards(Path(unit_dirs[g]) / "shards")
        prompt = shard.filter(pc.equal(shard.column("block_id"), b)).column("prompt_block_id")[0].as_py()
        ts = pq.read_table(Path(unit_dirs[g]) / "train_set.parquet")
        row = ts.filter(pc.equal(ts.column("block_id"), prompt))
        g, b = row.column("source_generation")[0].as_py(), row.column("source_block_id")[0].as_py()
        path.append((g, b))
    return path
