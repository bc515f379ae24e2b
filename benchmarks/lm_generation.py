"""One full LM generation (train + sample + evaluate) of a fixed CPU workload.

Workload: the project's own wikivital preparation, 2048 training blocks, 256 validation and
256 test blocks of 64 tokens; a byte-level BPE of vocabulary 8000; a randomly initialised OPT with
hidden size 256, 4 layers, 4 heads, FFN 1024 (~5.3M parameters); 1 epoch at batch 16, lr 2e-5;
then the paper's decoding (beam 5, repetition penalty 3.0, exactly 64 new tokens) for all 2048
prompts; then test perplexity. Target on 2 CPU cores: <= 138 s (the authors' code: ~276 s).

Baseline, in the same process on the same workload and model shape: the plain Hugging Face path
of the reference code: a bare PyTorch training loop (batch 16, AdamW), `model.generate` at the
reference's batch 16 (same decoding), and perplexity as the mean of `model(...).loss` per batch.
The ratio ours/plain of the seconds is what is recorded (the machine's speed cancels out).

  python benchmarks/lm_generation.py                     the CPU benchmark; last line:
                                                         ratio_to_plain_hf: <ours s / plain s>
  python benchmarks/lm_generation.py --blocks 256        the same with 256 training blocks/prompts
                                                         (a loaded or slow machine)
  python benchmarks/lm_generation.py --decode-only --opt125m --blocks 36718 --batch 512
      time only the paper's decoding with an OPT-125M-shaped model (random weights: the cost
      is the same) on the GPU, e.g. for the whole WikiText-2 train split: ours with fp32 and
      with bf16 weights, each with CUDA graphs of the step on and off (lm.sample_graphs; on a
      CPU: the static step uncaptured, and the default slots-so-far step), HF generate at the
      reference's batch 16 on the first --hf-blocks prompts, the ratios and how many tokens
      agree; last line: decode_tokens_per_s: <ours fp32, sample_graphs auto>
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TRAIN_BLOCKS = 2048  # prompts too
EVAL_BLOCKS = 256  # validation and test
VOCAB = 8000
TARGET_S = 138.0  # on 2 CPU cores: half of the authors' code on this workload (~276 s)
REFERENCE_BATCH = 16  # the reference code's batch for generate and evaluation


def workload_config(sample_batch_size: int, blocks: int = TRAIN_BLOCKS):
    from collapse_hpc.experiments.lm.config import LMConfig

    return LMConfig(dataset="wikivital", model="tiny", pretrained=False, vocab_size=VOCAB, hidden_size=256,
                    layers=4, heads=4, ffn_size=1024, block_size=64, epochs=1, batch_size=16, micro_batch_size=16,
                    lr=2e-5, max_train_blocks=blocks, max_eval_blocks=EVAL_BLOCKS,
                    sample_batch_size=sample_batch_size)


def cpu_generation(data_dir: Path, sample_batch_size: int, n_blocks: int = TRAIN_BLOCKS):
    import torch

    from collapse_hpc.experiments.lm import data, distributed
    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import build_model, load_model
    from collapse_hpc.experiments.lm.sample import Decoding, sample_shards
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer
    from collapse_hpc.experiments.lm.train import train_generation

    from collapse_hpc.machine import cores_per_rank

    torch.set_num_threads(cores_per_rank())
    if not (data_dir / "wikivital" / "train.parquet").is_file():
        data.prepare_wikivital(data_dir)
    cfg = workload_config(sample_batch_size, n_blocks)
    tokenizer = load_tokenizer(cfg, data_dir)
    blocks = {s: data.load_blocks(data_dir, "wikivital", s, tokenizer, 64) for s in ("train", "validation", "test")}
    train = blocks["train"].slice(0, n_blocks)
    val, test = blocks["validation"].slice(0, EVAL_BLOCKS), blocks["test"].slice(0, EVAL_BLOCKS)
    assert train.num_rows == n_blocks and test.num_rows == EVAL_BLOCKS
    model = build_model(cfg, tokenizer, data_dir)
    print(f"workload: {train.num_rows} train / {val.num_rows} validation / {test.num_rows} test blocks of 64, "
          f"vocab {len(tokenizer)}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"{torch.get_num_threads()} threads")
    distributed.init()  # process-group start-up is not part of a generation
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        result = train_generation(model, tokenizer, train, val, cfg, tmp / "model", tmp / "checkpoints", seed=0,
                                  rank=0, world_size=1, local_rank=0)
        trained = time.perf_counter()
        model = load_model(tmp / "model").eval()
        sample_shards(model, tokenizer, train, Decoding.from_config(cfg), tmp / "shards", generation=0,
                      batch_size=cfg.sample_batch_size, seed=0)
        sampled = time.perf_counter()
        test_ppl, _ = perplexity(model, test, batch_size=cfg.eval_batch_size)
        end = time.perf_counter()
    new_tokens = n_blocks * 64
    print(f"train: {trained - start:.1f} s, {result['tokens_per_s']:.0f} tokens/s")
    print(f"sample: {sampled - trained:.1f} s, {new_tokens / (sampled - trained):.0f} tokens/s "
          f"(beam 5, repetition penalty 3.0, 64 new tokens, batch {cfg.sample_batch_size})")
    print(f"evaluate: {end - sampled:.1f} s, test perplexity {test_ppl:.1f}")
    return end - start, (train, test, tokenizer, cfg)


def plain_hf_generation(data_dir: Path, train, test, tokenizer, cfg) -> float:
    """The same generation the reference's way: a bare training loop, HF generate at batch 16."""
    import math

    import torch

    from collapse_hpc.experiments.lm.data import block_array
    from collapse_hpc.experiments.lm.model import build_model
    from collapse_hpc.experiments.lm.sample import Decoding

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from lm_train import plain_loop  # the plain PyTorch loop lm_train.py compares against

    model = build_model(cfg, tokenizer, data_dir)
    ids, test_ids = block_array(train), torch.from_numpy(block_array(test))
    start = time.perf_counter()
    plain_loop(model, ids, cfg)
    trained = time.perf_counter()
    model.eval()
    d = Decoding.from_config(cfg)
    prompts = torch.from_numpy(ids)
    with torch.inference_mode():
        for lo in range(0, len(prompts), REFERENCE_BATCH):
            batch = prompts[lo:lo + REFERENCE_BATCH]
            model.generate(batch, attention_mask=torch.ones_like(batch), num_beams=d.num_beams, do_sample=False,
                           repetition_penalty=d.repetition_penalty, max_new_tokens=d.new_tokens,
                           min_new_tokens=d.new_tokens, pad_token_id=model.config.pad_token_id)
        sampled = time.perf_counter()
        losses = [model(input_ids=b, labels=b).loss.item() for b in test_ids.split(REFERENCE_BATCH)]
    end = time.perf_counter()
    print(f"plain HF train: {trained - start:.1f} s; generate (batch {REFERENCE_BATCH}): {sampled - trained:.1f} s; "
          f"evaluate: {end - sampled:.1f} s, test perplexity {math.exp(sum(losses) / len(losses)):.1f}")
    return end - start


def decode_model(opt125m: bool, device: str):
    """A random OPT of OPT-125M's shape (or the CPU workload's): decoding costs the same whatever the weights."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    if opt125m:  # facebook/opt-125m's architecture
        config = OPTConfig(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                           num_attention_heads=12, max_position_embeddings=2048, word_embed_proj_dim=768)
    else:
        config = OPTConfig(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=4, ffn_dim=1024,
                           num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=256)
    torch.manual_seed(0)
    return OPTForCausalLM(config).to(device).eval()


def _timed(fn, prompts, batch: int, device: str):
    """(new tokens per second, the tokens) of fn over `prompts` in batches of `batch`."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start, out = time.perf_counter(), []
    for lo in range(0, len(prompts), batch):
        out.append(fn(prompts[lo:lo + batch].to(device)).cpu())
    seconds = time.perf_counter() - start
    tokens = torch.cat(out)
    return tokens.numel() / seconds, tokens


def _decode_paths(model, prompts, batch: int, device: str) -> tuple[dict, dict]:
    """Ours with fp32 and bf16 weights, each with the step's CUDA graphs on and off (on a CPU: the
    static step uncaptured, and the slots-so-far step): (new tokens/s, tokens) per path. The first
    batch (the graph's capture) is a warm-up, timed on its own."""
    from collapse_hpc.experiments.lm.sample import Decoding, generate, in_precision

    rates, tokens = {}, {}
    for precision in ("fp32", "bf16"):
        sampler = in_precision(model, precision)
        for graphs in ("on", "off"):
            d, states = Decoding(precision=precision, graphs=graphs), {}
            warm, _ = _timed(lambda b: generate(sampler, b, d, states=states), prompts[:batch], batch, device)
            path = f"{precision} graphs {graphs}"
            rates[path], tokens[path] = _timed(lambda b: generate(sampler, b, d, states=states), prompts, batch,
                                               device)
            print(f"ours {path} (step {d.step(device)}): {rates[path]:.0f} new tokens/s (first batch, with "
                  f"capture: {warm:.0f})")
    return rates, tokens


def decode_only(blocks: int, batch: int, opt125m: bool, device: str, hf_blocks: int) -> None:
    """The paper's decoding alone on random 64-token prompts: ours in fp32 and bf16, CUDA graphs of
    the step on and off, and HF generate at the reference's batch 16 on the first hf_blocks prompts
    (all in this process); the rates, their ratios and how many tokens agree."""
    import torch

    from collapse_hpc.experiments.lm.sample import Decoding, generate_hf, token_agreement

    model = decode_model(opt125m, device)
    prompts = torch.randint(3, model.config.vocab_size, (blocks, 64), generator=torch.Generator().manual_seed(1))
    where = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"decoding: beam 5, repetition penalty 3.0, 64 new tokens, {blocks} prompts at batch {batch} on {device} "
          f"({where}); torch {torch.__version__}, transformers {__import__('transformers').__version__}")
    rates, tokens = _decode_paths(model, prompts, batch, device)
    with torch.inference_mode():
        hf, hf_tokens = _timed(lambda b: generate_hf(model, b, Decoding()), prompts[:hf_blocks], REFERENCE_BATCH,
                               device)
    print(f"HF generate fp32 (batch {REFERENCE_BATCH}, {hf_blocks} prompts): {hf:.0f} new tokens/s")
    n = len(hf_tokens)
    print("token agreement of graphs on with off: " + ", ".join(
        f"{p} {token_agreement(tokens[f'{p} graphs on'], tokens[f'{p} graphs off']):.4f}" for p in ("fp32", "bf16")))
    print("token agreement with HF generate: " + ", ".join(
        f"{path} {token_agreement(t[:n], hf_tokens):.4f} (rows equal {int((t[:n] == hf_tokens).all(1).sum())}/{n})"
        for path, t in tokens.items())
        + f"; bf16 with fp32 (graphs on): {token_agreement(tokens['bf16 graphs on'], tokens['fp32 graphs on']):.4f}")
    print("decode ours/HF generate: " + ", ".join(f"{path} {r / hf:.2f}" for path, r in rates.items()))
    print("decode graphs on/off: " + ", ".join(f"{p} {rates[f'{p} graphs on'] / rates[f'{p} graphs off']:.2f}"
                                               for p in ("fp32", "bf16")))
    default = "on" if device == "cuda" else "off"  # sample_graphs auto
    print(f"decode_tokens_per_s: {rates[f'fp32 graphs {default}']:.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data", help="prepared data sets (wikivital is prepared if missing)")
    p.add_argument("--sample-batch-size", type=int, default=None, help="prompts per sampling batch")
    p.add_argument("--decode-only", action="store_true", help="time only the decoding (see above)")
    p.add_argument("--opt125m", action="store_true", help="decode-only: OPT-125M's architecture")
    p.add_argument("--blocks", type=int, default=TRAIN_BLOCKS, help="training blocks, also the prompts (the "
                   "138 s target is for the default)")
    p.add_argument("--batch", type=int, default=128, help="decode-only: prompts per batch")
    p.add_argument("--device", default=None, help="decode-only: cpu or cuda (default: cuda if available)")
    p.add_argument("--hf-blocks", type=int, default=64, help="decode-only: prompts HF generate decodes")
    a = p.parse_args()
    if a.decode_only:
        import torch

        decode_only(a.blocks, a.batch, a.opt125m, a.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                    min(a.hf_blocks, a.blocks))
        return
    from collapse_hpc.experiments.lm.config import LMConfig

    seconds, (train, test, tokenizer, cfg) = cpu_generation(
        Path(a.data_dir), a.sample_batch_size or LMConfig().sample_batch_size, a.blocks)
    target = f" (the {TARGET_S:.0f} s target: ratio {seconds / TARGET_S:.2f})" if a.blocks == TRAIN_BLOCKS else ""
    print(f"ours: {seconds:.1f} s per generation{target}")
    plain = plain_hf_generation(Path(a.data_dir), train, test, tokenizer, cfg)
    print(f"plain Hugging Face path: {plain:.1f} s per generation")
    print(f"ratio_to_plain_hf: {seconds / plain:.2f}")


if __name__ == "__main__":
    main()
