"""A generation's training set: real blocks and earlier generations' blocks, mixed per regime.

The choice of items is regimes.mix's (shared by every experiment); this module turns it into
`train_set.parquet` with each block's lineage: block_id (its row), source_generation (-1 for real
data) and source_block_id (its block_id in that pool). A generated block's prompt_block_id names its
prompt: a real training block (its shard's prompt_source "real", the paper: every generation
continues the real blocks) or a row of the generating generation's train_set (prompt_source
"train_set"), so any block traces back to real data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from collapse_hpc.regimes import REAL, mix, slot_order


def _pool_table(pool, source: int, idx: np.ndarray):
    import pyarrow as pa

    part = pool.select(["block_id", "input_ids"]).take(pa.array(idx, pa.int64()))
    return pa.table({
        "source_generation": pa.array(np.full(len(idx), source), pa.int32()),
        "source_block_id": part.column("block_id").cast(pa.int64()),
        "input_ids": part.column("input_ids").cast(pa.list_(pa.int32())),
    })


def training_set(regime, real, generated: list, rng: np.random.Generator, scores: dict | None = None):
    """real: blocks table; generated[g]: generation g's generated blocks (oldest first); scores: the
    curated regimes' per-block scores by source (curation.scores)."""
    import pyarrow as pa

    picks = mix(regime, real.num_rows, [t.num_rows for t in generated], rng, scores=scores)
    table = pa.concat_tables([_pool_table(real if src == REAL else generated[src], src, idx) for src, idx in picks])
    order = slot_order(regime, picks)
    if order is not None:
        table = table.take(pa.array(order))  # slot i: real i or its successor
    return table.add_column(0, "block_id", pa.array(np.arange(table.num_rows), pa.int64()))


def prompts(source: str, train_set, real, rng: np.random.Generator):
    """The blocks a generation continues. real (the paper): every real training block, in every
    generation. train_set: its own training set, or (accumulate, where the set grows) a random
    len(real) of it; either way every generation produces as much data as the real split."""
    import pyarrow as pa

    if source == "real":
        return real.select(["block_id", "input_ids"])
    n_real = real.num_rows
    if train_set.num_rows <= n_real:
        return train_set.select(["block_id", "input_ids"])
    idx = np.sort(rng.choice(train_set.num_rows, n_real, replace=False))
    return train_set.select(["block_id", "input_ids"]).take(pa.array(idx))


def examples(prompts, shards, tokenizer, n: int, source: str):
    """The continuations of n prompts evenly spaced over the prompts (the same real blocks in every
    generation under prompts: real), as text: prompt_block_id, prompt_source, prompt, continuation."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = np.unique(np.linspace(0, prompts.num_rows - 1, min(n, prompts.num_rows)).astype(np.int64))
    picked = prompts.take(pa.array(rows))
    ids = picked.column("block_id")
    out = shards.filter(pc.is_in(shards.column("prompt_block_id"), value_set=ids))
    text = dict(zip(out.column("prompt_block_id").to_pylist(), out.column("text").to_pylist()))
    prompt = tokenizer.batch_decode(picked.column("input_ids").to_pylist(), skip_special_tokens=True)
    return pa.table({"prompt_block_id": ids.cast(pa.int64()),
                     "prompt_source": pa.array([source] * len(rows), pa.string()),
                     "prompt": pa.array(prompt, pa.string()),
                     "continuation": pa.array([text.get(i) for i in ids.to_pylist()], pa.string())})


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
        row = shard.filter(pc.equal(shard.column("block_id"), b))
        prompt = row.column("prompt_block_id")[0].as_py()
        if "prompt_source" in row.column_names and row.column("prompt_source")[0].as_py() == "real":
            path.append((REAL, prompt))  # the continuation of a real block
            break
        ts = pq.read_table(Path(unit_dirs[g]) / "train_set.parquet")
        row = ts.filter(pc.equal(ts.column("block_id"), prompt))
        g, b = row.column("source_generation")[0].as_py(), row.column("source_block_id")[0].as_py()
        path.append((g, b))
    return path
