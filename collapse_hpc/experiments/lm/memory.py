"""Bytes one rank of an LM generation holds at its peak, from the config alone (the plan's estimate,
the engine's refusal of what no machine holds, the local launcher's lanes).

A generation trains, then samples the next generation's data; its peak is the larger of
- training: the DeepSpeed state (state_bytes: weights, gradients and AdamW's moments, as the ZeRO
  stage shares them out) and what autograd keeps of one micro-batch (activation_bytes);
- sampling: the weights in sample_precision, the decoder's key/value caches and a step's logits
  (sampling_bytes).
Activations per token, measured on a CPU (the saved tensors of LossHead's forward, fp32, OPT of hidden
128-256, 2-4 layers): layers x (40.25 hidden + 4 feed-forward) + 8 hidden bytes; the chunked loss adds
the output embedding's fp32 gradient and a chunk's logits, softmax and their gradient (fp32), HF's loss
the whole micro-batch's. bf16 autocast keeps about as much (bf16 activations, plus bf16 copies of the
weights).
"""
from __future__ import annotations

from collapse_hpc.experiments.lm.model import CHUNKED_LOSS, Shape, parameters, shape
from collapse_hpc.experiments.lm.sample import Decoding
from collapse_hpc.experiments.lm.train import batch_plan, ds_config, zero_stage


# What a unit's process on the CPU holds that does not grow with the model: Python with torch, transformers
# and DeepSpeed loaded (~545 MB resident, a third of it their code), the data, the tokenizer and the engine's
# objects (~55 MB more). Measured as the peak RSS of a whole unit process (as the local executor runs it:
# one process a generation), a tiny OPT: 546 MB; taken with room (other builds of these libraries).
HOST_FIXED = 1 << 30


def memory(cfg, *, host: bool = False) -> int | None:
    """The larger of training's and sampling's bytes per rank; None where the model's size is unknown
    (training's state alone where its shapes are unknown: at least that). `host`: a rank on the CPU,
    whose memory also holds what host_bytes counts and the process itself (HOST_FIXED): the whole unit
    process, what the local launcher weighs against this machine (on a GPU, those are the host's)."""
    state = state_bytes(cfg)
    if state is None:
        return None
    dims = shape(cfg)
    host_held = host_bytes(cfg) if host else 0
    if dims is None:
        return state + host_held + (HOST_FIXED if host else 0)
    peak = max(state + host_held + activation_bytes(cfg, dims), sampling_bytes(cfg, dims))
    return peak + HOST_FIXED if host else peak


def host_bytes(cfg) -> int:
    """What a CPU rank holds beyond the state, growing with the model: DeepSpeed's flat fp32 copy of the
    gradients (even on one rank), more fp32 copies of the weights (the best weights read back beside the
    optimizer at the end of training, generation 0's model kept to score the generated text), and the
    pages of a weights file mapped while it is read (resident, though the kernel may drop them). The
    memory training frees stays the process's (distributed.keep_freed_memory). Measured as the peak RSS
    of a whole unit process less a tiny OPT's, the larger at generation 1: 28-31 B a parameter (13M and
    43M parameters), 27 B a parameter between them, against the state's 16; counted as 16 more."""
    return 16 * (parameters(cfg) or 0)


def state_bytes(cfg) -> int | None:
    """Training's state per rank, read off the DeepSpeed config that runs (ds_config): the weights
    (fp32, bf16 under `precision: bf16`), the gradients (fp32; bf16 where bf16 weights accumulate in
    bf16), AdamW's two fp32 moments and, under bf16, the fp32 master copies; the optimizer's state
    shared out over the ranks from ZeRO stage 1 on, the gradients from 2, the weights at 3. None where
    the model's size is unknown."""
    n = parameters(cfg)
    if n is None:
        return None
    precision = "bf16" if cfg.precision == "bf16" else "fp32"  # autocast keeps fp32 weights
    conf = ds_config(cfg, 1, 1, cfg.ranks, precision)
    stage = zero_stage(conf)
    bf16 = precision == "bf16"
    accumulate_fp32 = not bf16 or conf.get("data_types", {}).get("grad_accum_dtype") == "fp32"
    weights, gradients, optimizer = (2 if bf16 else 4) * n, (4 if accumulate_fp32 else 2) * n, (12 if bf16 else 8) * n
    return sum(b // (cfg.ranks if stage >= s else 1) for b, s in ((weights, 3), (gradients, 2), (optimizer, 1)))


def activation_bytes(cfg, dims: Shape) -> int:
    """What autograd keeps of one micro-batch (micro-batch blocks of block_size tokens) for backward,
    and the loss's logits."""
    micro, _ = batch_plan(cfg.batch_size, cfg.micro_batch_size, cfg.ranks)
    tokens = micro * cfg.block_size
    kept = tokens * (dims.layers * (41 * dims.hidden + 4 * dims.ffn) + 8 * dims.hidden)
    if cfg.loss_chunk_tokens and dims.kind in CHUNKED_LOSS:
        return kept + 4 * dims.vocab * dims.hidden + 3 * 4 * min(cfg.loss_chunk_tokens, tokens) * dims.vocab
    return kept + 3 * 4 * tokens * dims.vocab


def sampling_bytes(cfg, dims: Shape) -> int:
    """Sampling's weights and caches: sample_batch_size prompts of block_size tokens, each continued by
    block_size new tokens on `num_beams` beams where a strategy is beam search. OPT's decoder keeps a
    prompt's keys and values once for its beams (sample.py), `generate` once per beam."""
    decodings = [Decoding.from_config(cfg, s) for s in cfg.decoding]  # a variant's, or every strategy's
    beams, new = max(d.beams for d in decodings), max(d.new_tokens for d in decodings)
    width = 2 if cfg.sample_precision == "bf16" else 4
    batch, prompt = cfg.sample_batch_size, cfg.block_size
    slots = batch * (prompt + beams * new) if dims.kind == "opt" else batch * beams * (prompt + new)
    caches = 2 * dims.layers * slots * dims.hidden * width  # keys and values of every layer
    logits = 3 * 4 * batch * beams * dims.vocab  # a step's logits, log-probabilities and scores (fp32)
    return width * (parameters(cfg) or 0) + caches + logits
