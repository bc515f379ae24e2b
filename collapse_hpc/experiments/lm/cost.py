"""What an LM generation costs on a GPU, for the plan's estimate (launch/estimate.py).

The rate, measured on one H200 for an OPT-125M-shaped generation of 8192 training blocks of 64
tokens: ~15 s start-up, then per 8192 blocks 3.5 s per epoch of training, 20.5 s of sampling (the
paper's beam search) and 9 s of evaluation.
"""
from __future__ import annotations

STARTUP_S = 15.0
PER_8192_BLOCKS_S = {"epoch": 3.5, "sample": 20.5, "evaluate": 9.0}
MEASURED_BLOCK = 64  # tokens per block of the measurement
MEASURED_MODELS = ("facebook/opt-125m",)  # the rates are this model's
# real training blocks of 64 tokens of the data sets known without preparing them (WikiText-2's train split:
# ~2.4M OPT tokens)
TRAIN_BLOCKS = {"wikitext2": 37_700}


def train_blocks(cfg) -> int | None:
    """The real training blocks of a generation: max_train_blocks, else the data set's where known."""
    return cfg.max_train_blocks or TRAIN_BLOCKS.get(cfg.dataset)


def generation_seconds(cfg) -> float | None:
    """Seconds of one LM generation on one GPU, or None outside what was measured."""
    blocks = train_blocks(cfg)
    if not blocks or cfg.model not in MEASURED_MODELS:
        return None
    tokens = blocks * cfg.block_size / MEASURED_BLOCK  # in blocks of the measurement's size
    r = PER_8192_BLOCKS_S
    return STARTUP_S + tokens / 8192 * (r["epoch"] * cfg.epochs + r["sample"] + r["evaluate"])
