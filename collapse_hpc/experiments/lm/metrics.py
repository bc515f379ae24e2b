"""Diversity and tail measures of a generation's generated text (later LM-collapse studies).

- distinct_n: unique n-grams / all n-grams of token ids, over the whole generated set (n = 1..4)
- unigram_entropy: entropy in bits of the token distribution of the generated set
- type_token_ratio: unique / all words of the decoded text (lower-cased, split at white space)
- rare_token_share: share of generated tokens that are among the rarest `fraction` of the original
  vocabulary (the token types seen in the real train split, ordered by their train frequency)
- ppl_p5 ... ppl_p95, ppl_mean: percentiles of the generated sequences' perplexities under the
  generation-0 model (the paper's histogram, summarised)
"""
from __future__ import annotations

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)


def distinct_n(ids: np.ndarray, n: int) -> float:
    """ids: (sequences, length) token ids; n-grams do not cross sequence boundaries."""
    ids = np.asarray(ids, np.int64)
    if ids.ndim != 2 or ids.shape[1] < n or not len(ids):
        return float("nan")
    grams = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1).reshape(-1, n)
    return len(np.unique(grams, axis=0)) / len(grams)


def unigram_entropy(ids: np.ndarray) -> float:
    _, counts = np.unique(np.asarray(ids).ravel(), return_counts=True)
    if not counts.sum():
        return float("nan")
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def type_token_ratio(texts: list[str]) -> float:
    words = [w for t in texts for w in t.lower().split()]
    return len(set(words)) / len(words) if words else float("nan")


def rare_vocabulary(real_ids: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """The rarest `fraction` of the token types seen in real data (ties broken by token id)."""
    types, counts = np.unique(np.asarray(real_ids).ravel(), return_counts=True)
    order = np.lexsort((types, counts))  # by count, then id: deterministic
    k = max(1, int(round(fraction * len(types))))
    return np.sort(types[order[:k]])


def rare_token_share(ids: np.ndarray, rare: np.ndarray) -> float:
    flat = np.asarray(ids).ravel()
    return float(np.isin(flat, rare).mean()) if flat.size else float("nan")


def ppl_percentiles(ppl: np.ndarray) -> dict[str, float]:
    ppl = np.asarray(ppl, np.float64)
    out = {f"ppl_p{q}": float(np.percentile(ppl, q)) if ppl.size else float("nan") for q in PERCENTILES}
    out["ppl_mean"] = float(ppl.mean()) if ppl.size else float("nan")
    return out


def diversity(ids: np.ndarray, texts: list[str], rare: np.ndarray) -> dict[str, float]:
    out = {f"distinct_{n}": distinct_n(ids, n) for n in (1, 2, 3, 4)}
    out["unigram_entropy"] = unigram_entropy(ids)
    out["type_token_ratio"] = type_token_ratio(texts)
    out["rare_token_share"] = rare_token_share(ids, rare)
    return out


def metrics_table(generation: int, values: dict[str, float]):
    """The wide one-row metrics.parquet: int `generation`, then one float64 column per metric."""
    import pyarrow as pa

    cols = {"generation": pa.array([generation], pa.int64())}
    for k, v in values.items():
        cols[k] = pa.array([float(v)], pa.float64())
    return pa.table(cols)
