"""Perplexity of token blocks under a causal LM: batched, no grad, fp32 (bf16 autocast on GPU if asked).

Scores are fp32 by default also on GPU, where training runs under bf16: bf16 rounding of the
logits would add its own error to perplexities compared across generations. `bf16=True` (config
`eval_precision: bf16`) autocasts the forward pass on GPU instead (CPU always scores in fp32).

No KV cache is built, and the logits are computed a chunk of tokens at a time (loss.token_losses):
the batch (config eval_batch_size) can be large without its whole vocabulary logits in memory.

Each block is scored on its own: every token after the first is predicted from the ones before
it (the loss HF computes with labels = input_ids). Corpus perplexity is exp of the token-weighted
mean loss over all blocks; a block's perplexity is exp of its own mean loss.

Sharding: with world_size > 1 (and torch.distributed initialised), rank r scores the contiguous
rows [r*N//W, (r+1)*N//W) and the per-block sums are all-gathered, so EVERY rank returns the full,
identical result in the blocks' order. Nothing is written here; perplexity_table() makes the
Parquet table a caller writes (rank 0 only): the chain's test_ppl.parquet and sequence_ppl.parquet,
the reference CLI's --saveperplexities.

Token classes: score(..., classes=array) also sums the loss of the predicted tokens by the class
of the TARGET token (classes[target id]: metrics.RARE, MIDDLE, FREQUENT), in the same pass; a
target beyond the array (an id never seen in real data) counts as class 0, rare.

API:
- score(model, blocks, batch_size=64, device=None, rank=0, world_size=1, bf16=False, classes=None)
      -> Scores: .corpus_ppl, .per_sequence (np.ndarray float64, one per block), .class_ppl(k)
- perplexity(model, blocks, batch_size=64, device=None, rank=0, world_size=1, bf16=False)
      -> (corpus_ppl: float, per_sequence_ppl: np.ndarray float64, one per block)
- mean_loss(model, blocks, batch_size=64, device=None, rank=0, world_size=1, bf16=False) -> float
- perplexity_table(blocks, per_sequence_ppl) -> pa.Table (block_id int64, ppl float64)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _loss_sums(model, ids: np.ndarray, batch_size: int, device, bf16: bool = False, classes=None) -> np.ndarray:
    """Per block: (sum of token losses, number of predicted tokens), then with `classes` (K of
    them) the same for the targets of each class: float64 (n, 2 + 2K)."""
    import torch

    from collapse_hpc.experiments.lm.loss import token_losses
    from collapse_hpc.experiments.lm.metrics import CLASSES

    k = 0 if classes is None else len(CLASSES)
    if classes is not None:
        classes = torch.as_tensor(np.asarray(classes), dtype=torch.long, device=device)
    out = np.zeros((len(ids), 2 + 2 * k), np.float64)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            batch = torch.from_numpy(ids[start:start + batch_size]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
                losses = token_losses(model, batch)  # the batch's vocabulary logits a chunk at a time
            rows = slice(start, start + len(batch))
            out[rows, 0] = losses.sum(1).double().cpu().numpy()
            out[rows, 1] = losses.shape[1]
            if k:
                target = batch[:, 1:]
                known = target < len(classes)
                cls = torch.where(known, classes[target.clamp(max=len(classes) - 1)], 0)
                for c in range(k):
                    hit = cls == c
                    out[rows, 2 + 2 * c] = (losses * hit).sum(1).double().cpu().numpy()
                    out[rows, 3 + 2 * c] = hit.sum(1).cpu().numpy()
    model.train(was_training)
    return out


def _sums(model, blocks, batch_size, device, rank, world_size, bf16=False, classes=None) -> np.ndarray:
    import torch

    from collapse_hpc.experiments.lm.data import block_array
    from collapse_hpc.experiments.lm.model import check_ids

    ids = blocks if isinstance(blocks, np.ndarray) else block_array(blocks)
    check_ids(model, ids)
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    if world_size <= 1:
        return _loss_sums(model, ids, batch_size, device, bf16, classes)
    import torch.distributed as dist

    n = len(ids)
    bounds = [r * n // world_size for r in range(world_size + 1)]
    mine = _loss_sums(model, ids[bounds[rank]:bounds[rank + 1]], batch_size, device, bf16, classes)
    width = max(bounds[r + 1] - bounds[r] for r in range(world_size))
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.zeros((width, mine.shape[1]), dtype=torch.float64, device=comm)
    padded[: len(mine)] = torch.from_numpy(mine)
    parts = [torch.zeros_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return np.concatenate([parts[r][: bounds[r + 1] - bounds[r]].cpu().numpy() for r in range(world_size)])


@dataclass
class Scores:
    """Loss sums per block (_loss_sums' columns) and what follows from them."""

    sums: np.ndarray

    @property
    def corpus_ppl(self) -> float:
        return _ppl(self.sums[:, 0].sum(), self.sums[:, 1].sum())

    @property
    def per_sequence(self) -> np.ndarray:
        return np.exp(self.sums[:, 0] / self.sums[:, 1]) if len(self.sums) else np.zeros(0)

    def class_ppl(self, k: int) -> float:
        """Perplexity over the predicted tokens whose target is of class k (NaN: none is)."""
        return _ppl(self.sums[:, 2 + 2 * k].sum(), self.sums[:, 3 + 2 * k].sum())


def _ppl(loss_sum: float, tokens: float) -> float:
    return math.exp(loss_sum / tokens) if tokens else float("nan")


def score(model, blocks, batch_size: int = 64, device=None, rank: int = 0, world_size: int = 1,
          bf16: bool = False, classes=None) -> Scores:
    return Scores(_sums(model, blocks, batch_size, device, rank, world_size, bf16, classes))


def perplexity(model, blocks, batch_size: int = 64, device=None, rank: int = 0, world_size: int = 1,
               bf16: bool = False):
    s = score(model, blocks, batch_size, device, rank, world_size, bf16)
    return s.corpus_ppl, s.per_sequence


def mean_loss(model, blocks, batch_size: int = 64, device=None, rank: int = 0, world_size: int = 1,
              bf16: bool = False) -> float:
    sums = _sums(model, blocks, batch_size, device, rank, world_size, bf16)
    return float(sums[:, 0].sum() / sums[:, 1].sum()) if len(sums) else float("nan")


def perplexity_table(blocks, per_sequence_ppl):
    """One row per block, in the blocks' order: its block_id and its perplexity `ppl`."""
    import pyarrow as pa

    if len(per_sequence_ppl) != blocks.num_rows:
        raise ValueError(f"{len(per_sequence_ppl)} perplexities for {blocks.num_rows} blocks")
    return pa.table({"block_id": blocks.column("block_id").cast(pa.int64()),
                     "ppl": pa.array(np.asarray(per_sequence_ppl, np.float64))})
