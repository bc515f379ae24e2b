"""Benchmark: one epoch of LM fine-tuning, our DeepSpeed engine vs a plain PyTorch loop.

Fixed CPU workload: the project's wikivital preparation, its byte-level BPE (vocabulary 8000),
1024 training blocks of 64 tokens, a randomly initialised OPT (hidden 64, 2 layers, 4 heads,
FFN 256), global batch 128 as micro-batches of 16 with gradient accumulation, AdamW lr 2e-5.
Both loops see the same model, data and order; each is run twice and the best is kept (this
machine is shared). Claim: ours is not slower than the plain loop by more than 10% on CPU.

--opt125m: on a GPU, the OPT-125M architecture (random weights: the hub is not needed for a
speed figure), block 64, micro-batch = global batch 128 (the paper's), 4096 blocks, 2 epochs, for
each of --paths (autocast: bf16 autocast with the chunked loss; compiled: + lm.compile;
compiled-reduce-overhead: + CUDA graphs; bf16: DeepSpeed's bf16 weights; ...): the second
epoch's tokens/s (after the one-time start-up and compilation), model-FLOPs utilisation against
the GPU's dense bf16 peak (--peak-tflops, H100/H200 SXM: 989) and the ratio to a plain eager
PyTorch loop (bf16 autocast, HF's loss, the same model, data and batch) in this process; the bf16
paths also against a plain bf16 loop (bf16 weights, gradients accumulated in fp32, fused AdamW on
fp32 master copies: `precision: bf16`'s optimisation by hand), `ours bf16/plain-bf16: X`. Last
line: `ours/plain-eager: X` for the fastest path. --tiny: the same with a tiny OPT, to dry-run
the script on a CPU (fp32 there).

Last line without --opt125m: `tokens_per_s: <ours>`.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collapse_hpc.experiments.lm import distributed  # noqa: E402
from collapse_hpc.experiments.lm.config import LMConfig  # noqa: E402


def plain_loop(model, ids, cfg, seed: int = 0, bf16_weights: bool = False) -> float:
    """The same epoch as train_generation, written as a bare PyTorch loop; returns tokens/s. On a
    GPU bf16 autocast over fp32 weights; with bf16_weights, what `precision: bf16` does by hand:
    bf16 weights, gradients accumulated into fp32 ones, AdamW on fp32 master copies, copied back."""
    import torch

    from collapse_hpc.experiments.lm.train import batch_plan, epoch_order

    device = next(model.parameters()).device
    autocast = device.type == "cuda" and not bf16_weights
    model.train()
    params = list(model.parameters())
    if bf16_weights:
        model.to(torch.bfloat16)
        master = [p.detach().float() for p in params]
        for m in master:
            m.grad = torch.zeros_like(m)
    else:
        master = params
    # the autocast baseline as the issue measured it (foreach AdamW, HF's default cache); the bf16 one
    # as our engine runs: fused AdamW on CUDA, no KV cache
    fused, extra = (device.type == "cuda", {"use_cache": False}) if bf16_weights else (None, {})
    opt = torch.optim.AdamW(master, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    micro, accum = batch_plan(cfg.batch_size, cfg.micro_batch_size, 1)
    steps = -(-len(ids) // cfg.batch_size)
    order = epoch_order(len(ids), seed, 0, steps * cfg.batch_size)
    start = time.perf_counter()
    for step in range(steps):
        for m in range(accum):
            pos = step * cfg.batch_size + m * micro
            batch = torch.from_numpy(ids[order[pos:pos + micro]]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=batch, labels=batch, **extra).loss / accum
            loss.backward()
            loss.item()
            if bf16_weights:
                torch._foreach_add_([m.grad for m in master], [p.grad for p in params])
                model.zero_grad(set_to_none=True)
        opt.step()
        if bf16_weights:
            with torch.no_grad():
                torch._foreach_copy_(params, master)
            torch._foreach_zero_([m.grad for m in master])
        else:
            opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size * ids.shape[1] / (time.perf_counter() - start)


def ours(model, tokenizer, train, val, cfg, steady: bool = False) -> float:
    """Our engine's tokens/s over the whole run, or (steady) over its last epoch only."""
    from collapse_hpc.experiments.lm.train import train_generation

    with tempfile.TemporaryDirectory() as tmp:
        summary = train_generation(model, tokenizer, train, val, cfg, Path(tmp) / "model", Path(tmp) / "ckpt",
                                   seed=0, rank=0, world_size=1, local_rank=0)
    if steady:
        steps = -(-train.num_rows // cfg.batch_size)
        return steps * cfg.batch_size * cfg.block_size / summary["epoch_seconds"][-1]
    return summary["tokens_per_s"]


def cpu_benchmark(args) -> float:
    from collapse_hpc.experiments.lm import data
    from collapse_hpc.experiments.lm.model import random_model, tiny_config
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    data_dir = Path(args.data_dir)
    if not (data_dir / "wikivital" / "card.json").is_file():
        data.prepare_wikivital(data_dir)
    cfg = LMConfig(dataset="wikivital", model="tiny", pretrained=False, hidden_size=64, layers=2, heads=4,
                   ffn_size=256, epochs=1, batch_size=128, micro_batch_size=16, eval_batch_size=64)
    tok = load_tokenizer(cfg, data_dir)
    train = data.load_blocks(data_dir, "wikivital", "train", tok, 64).slice(0, args.blocks)
    val = data.load_blocks(data_dir, "wikivital", "validation", tok, 64).slice(0, 64)
    ids = data.block_array(train)
    distributed.init()
    distributed.keep_freed_memory()  # the allocator policy ours sets on CPU, for both loops
    results = {"plain": [], "ours": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        results["plain"].append(plain_loop(random_model(tiny_config(cfg, tok)), ids, cfg))
        results["ours"].append(ours(random_model(tiny_config(cfg, tok)), tok, train, val, cfg))
    plain, mine = max(results["plain"]), max(results["ours"])
    print(f"workload: {len(ids)} blocks x 64 tokens, 1 epoch, tiny OPT hidden 64 x 2 layers, vocab {len(tok)}, "
          f"batch 128 = 8 x micro 16, torch threads {__import__('torch').get_num_threads()}")
    print(f"plain PyTorch loop: {plain:,.0f} tokens/s   (runs: {', '.join(f'{x:,.0f}' for x in results['plain'])})")
    print(f"ours (DeepSpeed ZeRO-0): {mine:,.0f} tokens/s   (runs: {', '.join(f'{x:,.0f}' for x in results['ours'])})")
    ratio = mine / plain
    print(f"ours / plain: {ratio:.3f}" + ("" if ratio >= 0.9 else "   WARNING: more than 10% slower"))
    return mine


PATHS = {  # --paths: our engine's configurations, each against the same plain eager loop
    "autocast": {},  # bf16 autocast over fp32 weights, the chunked loss (the defaults)
    "autocast-hf-loss": {"loss_chunk_tokens": 0},  # HF's loss over the whole batch's logits
    "compiled": {"compile": True},
    "compiled-reduce-overhead": {"compile": True, "compile_mode": "reduce-overhead"},  # + CUDA graphs
    "bf16": {"precision": "bf16"},  # DeepSpeed's bf16 weights, fp32 master copies
    "bf16-compiled": {"precision": "bf16", "compile": True},
}


def opt_shape(tiny: bool):
    """OPT-125M's architecture (random weights: the hub is not needed for a speed figure), or a
    tiny OPT for a dry run of the script on a CPU."""
    from transformers import OPTConfig

    if tiny:
        return OPTConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256,
                         max_position_embeddings=128, word_embed_proj_dim=64)
    return OPTConfig(vocab_size=50272, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     ffn_dim=3072, max_position_embeddings=2048, word_embed_proj_dim=768)


def _table(a):
    import pyarrow as pa

    offsets = pa.array([i * a.shape[1] for i in range(len(a) + 1)], pa.int32())
    return pa.table({"block_id": pa.array(range(len(a)), pa.int64()),
                     "input_ids": pa.ListArray.from_arrays(offsets, pa.array(a.ravel(), pa.int32()))})


class _Tok:  # only len() and save_pretrained are used by training
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def save_pretrained(self, _):
        pass


def _path(name, shape, ids, args, plain: float, flops_per_token: float) -> float:
    """One path of our engine: steady tokens/s (second epoch), printed with MFU and the ratio."""
    import torch

    from collapse_hpc.experiments.lm.model import random_model

    torch._dynamo.reset()
    cfg = LMConfig(model="facebook/opt-125m", epochs=2, batch_size=128, micro_batch_size=args.micro,
                   zero_stage=args.zero, eval_batch_size=512, **PATHS[name])
    tps = ours(random_model(shape), _Tok(shape.vocab_size), _table(ids), _table(ids[:256]), cfg, steady=True)
    mfu = tps * flops_per_token / (args.peak_tflops * 1e12)
    print(f"ours {name}: {tps:,.0f} tokens/s, MFU {100 * mfu:.1f}%, ours/plain-eager {tps / plain:.2f}", flush=True)
    return tps


def gpu_benchmark(args) -> float:
    """Our engine's paths against a plain eager loop (bf16 autocast on a GPU, the same model, data
    and batch) in this process; the plain loop is timed before and after them, its best kept."""
    import numpy as np
    import torch

    from collapse_hpc.experiments.lm.model import random_model

    shape, device = opt_shape(args.tiny), "cuda" if torch.cuda.is_available() else "cpu"
    ids = np.random.default_rng(0).integers(4, shape.vocab_size - 7, (args.blocks, 64))
    params = sum(p.numel() for p in random_model(shape).parameters())
    L, d = shape.num_hidden_layers, shape.hidden_size
    flops_per_token = 6 * params + 12 * L * d * 64  # PaLM's estimate: 6N + 12 L d T
    distributed.init()
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}, transformers {__import__('transformers').__version__}; "
          f"{'tiny OPT' if args.tiny else 'OPT-125M shape'} ({params / 1e6:.1f}M parameters), ZeRO-{args.zero}, "
          f"block 64, global batch 128 = micro {args.micro} x accumulation {128 // args.micro}, {args.blocks} blocks")
    plain_loop(random_model(shape).to(device), ids[:1280], LMConfig(micro_batch_size=args.micro))  # warm-up
    cfg = LMConfig(micro_batch_size=args.micro)
    plain = [plain_loop(random_model(shape).to(device), ids, cfg)]
    plain_mfu = plain[0] * flops_per_token / (args.peak_tflops * 1e12)
    print(f"plain eager loop: {plain[0]:,.0f} tokens/s, MFU {100 * plain_mfu:.1f}%")
    bf16_paths = [name for name in args.paths.split(",") if PATHS[name].get("precision") == "bf16"]
    plain_bf16 = []  # `precision: bf16`'s own baseline: the same optimisation by hand
    if bf16_paths:
        plain_bf16.append(plain_loop(random_model(shape).to(device), ids, cfg, bf16_weights=True))
        print(f"plain bf16 loop (bf16 weights, fp32 gradients and master copies): {plain_bf16[0]:,.0f} tokens/s")
    results = {}
    for name in args.paths.split(","):
        try:
            results[name] = _path(name, shape, ids, args, plain[0], flops_per_token)
        except Exception as e:  # one failing path (e.g. CUDA graphs) must not hide the others' figures
            print(f"ours {name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    plain.append(plain_loop(random_model(shape).to(device), ids, cfg))
    print(f"plain eager loop, again: {plain[1]:,.0f} tokens/s (the best of both is the baseline)")
    if bf16_paths:
        plain_bf16.append(plain_loop(random_model(shape).to(device), ids, cfg, bf16_weights=True))
        print(f"plain bf16 loop, again: {plain_bf16[1]:,.0f} tokens/s (the best of both is its baseline)")
        for name in bf16_paths:
            if name in results:
                print(f"ours {name}/plain-bf16: {results[name] / max(plain_bf16):.2f}")
    if not results:
        raise SystemExit("every path failed")
    best = max(results, key=results.get)
    print(f"fastest path: {best}")
    print(f"ours/plain-eager: {results[best] / max(plain):.2f}")
    return results[best]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--blocks", type=int, default=1024, help="training blocks in the epoch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--opt125m", action="store_true", help="GPU: OPT-125M bf16 throughput and MFU per path")
    p.add_argument("--paths", default="autocast,compiled,bf16",
                   help=f"--opt125m: comma-separated, of {', '.join(PATHS)}")
    p.add_argument("--tiny", action="store_true", help="--opt125m: a tiny OPT (a dry run of the script on a CPU)")
    p.add_argument("--micro", type=int, default=128, help="--opt125m: micro-batch per forward")
    p.add_argument("--zero", type=int, default=0, help="--opt125m: ZeRO stage")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="--opt125m: dense bf16 peak of the GPU")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    unknown = set(args.paths.split(",")) - set(PATHS)
    if unknown:
        p.error(f"--paths: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PATHS)})")
    if args.opt125m:
        if args.blocks == p.get_default("blocks"):
            args.blocks = 4096  # 32 steps per epoch: the second epoch is timed
        gpu_benchmark(args)  # its last line: ours/plain-eager: X
        return
    print(f"tokens_per_s: {cpu_benchmark(args):.0f}")


if __name__ == "__main__":
    main()
