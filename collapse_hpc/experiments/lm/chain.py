"""One generation of the recursive chain (run on every rank; rank 0 writes the tables).

  1. training set: real train blocks (generation 0) or the regime's mix of real blocks and
     earlier generations' generated blocks -> train_set.parquet (with lineage); the curated
     regimes pick by scores of the pooled blocks (curation.py: a detector's weights, a verifier's)
  2. train (stage 1, DeepSpeed) from generation 0's model (init: gen0, the paper: the best model
     on the real data by validation loss), from the initial model (init: pretrained) or from
     generation g-1's (init: previous); generation 0 always from the initial model -> model/, the
     best-validation weights (kept on resume: it is written atomically), and with sample_from: last
     also model_last/, the weights after the last epoch; model/training.json says which weights it
     started from and the dtypes that ran
  3. sample with the weights `sample_from` names (best: model/, last: model_last/): every real
     training block is a prompt (prompts: real, the paper), or every block of this generation's
     training set (prompts: train_set) -> shards/part-<rank>-<chunk>.parquet; the continuations of
     a few fixed prompts, as text -> examples.parquet (for the report)
  4. evaluate, always with model/ (best): real-test perplexity, per test block -> test_ppl.parquet,
     and over the test tokens of each rarity class (metrics.py: rare / middle / frequent, defined
     over the whole real train split) -> test_ppl_rare ...; perplexity of the real training blocks
     (the reference's --evalgen_only) -> real_train_ppl.parquet; each generated block's perplexity
     under the generation-0 model -> sequence_ppl.parquet (all: block_id, ppl); generation 0 also
     scores the initial model, before fine-tuning, on the test split (zero_shot_test_ppl: the
     paper's 115 for OPT-125M; what that model is goes to the manifest, `initial_model`); diversity
     -> metrics.parquet (one wide row); the training curve (per optimizer step: loss, learning
     rate, tokens/s) -> training_curve.parquet. The manifest's `weights` names the weights that
     sampled and those that were scored (folder, fingerprint, epoch).
"""
from __future__ import annotations

import json
import time

import numpy as np

from collapse_hpc.store import atomic

MODEL, LAST, SHARDS, CHECKPOINTS = "model", "model_last", "shards", "checkpoints"
TRAINING = "training.json"  # inside model/: the stage-1 training summary
EXAMPLES = 4  # prompts whose continuations go to examples.parquet, evenly spaced over the prompts


def _blocks(ctx, tokenizer, split: str, limit: int = 0):
    from collapse_hpc.experiments.lm.data import load_blocks

    cfg = ctx.config
    table = load_blocks(ctx.data_dir, cfg.dataset, split, tokenizer, cfg.block_size, cfg.block_grouping)
    return table.slice(0, limit) if limit else table


def _train(ctx, tokenizer, train_set, val, log) -> dict:
    """Train this generation's model unless an earlier attempt already saved it."""
    from collapse_hpc.experiments.lm import distributed
    from collapse_hpc.experiments.lm.model import build_model, load_model, weights_fingerprint
    from collapse_hpc.experiments.lm.train import train_generation

    cfg, out = ctx.config, ctx.path(MODEL)
    if (out / TRAINING).is_file():
        log.info("gen %d: model already trained (%s), not training again", ctx.generation, out)
        distributed.barrier()
        return json.loads((out / TRAINING).read_text())
    if ctx.previous and cfg.init in ("gen0", "previous"):
        source = ctx.previous[0 if cfg.init == "gen0" else -1] / MODEL
        model, init_from = load_model(source), source.parent.name
    else:
        model, init_from = build_model(cfg, tokenizer, ctx.data_dir), "initial"
    start = {"init": cfg.init, "init_from": init_from, "init_weights_sha256": weights_fingerprint(model)}
    log.info("gen %d: training from %s weights (%s)", ctx.generation, init_from, start["init_weights_sha256"])
    result = start | train_generation(model, tokenizer, train_set, val, cfg, out, ctx.path(CHECKPOINTS),
                              seed=ctx.seed(1), rank=ctx.rank, world_size=ctx.world_size,
                              local_rank=ctx.local_rank, log=log,
                              last_dir=ctx.path(LAST) if cfg.sample_from == "last" else None)
    if ctx.is_main:
        atomic.write_json(out / TRAINING, result)
    distributed.barrier()
    return result


def curve_table(generation: int, curve: dict | None):
    """The training curve (train.CURVE: one row per optimizer step) as a table; empty when the
    model was trained before curves were recorded."""
    import pyarrow as pa

    from collapse_hpc.experiments.lm.train import CURVE

    curve = curve or {k: [] for k in CURVE}
    columns = {"generation": pa.array([generation] * len(curve["step"]), pa.int64()),
               "step": pa.array(curve["step"], pa.int64()), "epoch": pa.array(curve["epoch"], pa.int64())}
    return pa.table({**columns, **{k: pa.array(curve[k], pa.float64()) for k in CURVE if k not in columns}})


def run_generation(ctx) -> None:
    import torch

    from collapse_hpc.experiments.lm import curation, distributed, metrics, mixing
    from collapse_hpc.experiments.lm.data import block_array
    from collapse_hpc.experiments.lm.evaluate import perplexity, perplexity_table, score
    from collapse_hpc.experiments.lm.model import build_model, initial_model, load_model, model_fingerprint
    from collapse_hpc.experiments.lm.sample import Decoding, read_shards, sample_shards
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    cfg, log, g = ctx.config, ctx.log, ctx.generation
    torch.set_num_threads(ctx.threads)
    distributed.init()
    distributed.barrier()  # rank 0 has reset the unit folder before anyone writes into it
    tokenizer = load_tokenizer(cfg, ctx.data_dir)
    whole = _blocks(ctx, tokenizer, "train")  # the whole real train split: what rarity is counted over
    real = whole.slice(0, cfg.max_train_blocks) if cfg.max_train_blocks else whole
    val = _blocks(ctx, tokenizer, "validation", cfg.max_eval_blocks)
    test = _blocks(ctx, tokenizer, "test", cfg.max_eval_blocks)

    # 1. what this generation trains on (identical on every rank: same seed)
    device = distributed.device(ctx.local_rank)
    generated = [read_shards(p / SHARDS) for p in ctx.previous]
    scores, curated = curation.scores(ctx, real, generated, tokenizer, device)
    train_set = mixing.training_set(ctx.variant.regime, real, generated, np.random.default_rng(ctx.seed(2)), scores)
    log.info("gen %d (%s): %d training blocks by source %s", g, ctx.variant.regime.label, train_set.num_rows,
             mixing.counts_by_source(train_set))

    # 2. train
    training = _train(ctx, tokenizer, train_set, val, log)

    # 3. sample with the weights sample_from names (the same on every rank and on resume)
    model = load_model(ctx.path(MODEL)).to(device).eval()  # best: every score below is its
    sampled = ctx.path(LAST if cfg.sample_from == "last" else MODEL)
    sampler = model if sampled.name == MODEL else load_model(sampled).to(device).eval()
    weights = {"sampled": {"folder": sampled.name, "sha256": model_fingerprint(sampled),
                           "epoch": training["best_epoch"] if sampled.name == MODEL else training["epochs"] - 1},
               "scored": {"folder": MODEL, "sha256": model_fingerprint(ctx.path(MODEL)),
                          "epoch": training["best_epoch"]}}
    prompts = mixing.prompts(cfg.prompts, train_set, real, np.random.default_rng(ctx.seed(3)))
    decoding = Decoding.from_config(cfg, ctx.variant.settings.get("decoding"))
    t0 = time.time()
    sample_shards(sampler, tokenizer, prompts, decoding, ctx.path(SHARDS), generation=g, rank=ctx.rank,
                  world_size=ctx.world_size, batch_size=cfg.sample_batch_size, seed=ctx.seed(4),
                  model_hash=weights["sampled"]["sha256"], device=device, log=log, prompt_source=cfg.prompts)
    sample_seconds = time.time() - t0
    del sampler
    distributed.barrier()  # every shard exists

    # 4. evaluate with the best weights (sharded over ranks; every rank gets the full result)
    ev = dict(batch_size=cfg.eval_batch_size, device=device, rank=ctx.rank, world_size=ctx.world_size,
              bf16=cfg.eval_precision == "bf16")
    whole_ids = block_array(whole)
    classes = metrics.token_classes(metrics.token_counts(whole_ids, model.get_input_embeddings().num_embeddings),
                                    cfg.rare_fraction, cfg.frequent_fraction)
    test_scores = score(model, test, classes=classes, **ev)
    real_ppl, real_seq_ppl = perplexity(model, real, **ev)
    shards = read_shards(ctx.path(SHARDS))
    gen_ids = block_array(shards)
    scorer = model if g == 0 else load_model(ctx.previous[0] / MODEL).to(device).eval()
    _, seq_ppl = perplexity(scorer, gen_ids, **ev)
    baseline = {}
    if g == 0:  # the initial model before any fine-tuning, on the same test blocks (a reference line)
        initial = build_model(cfg, tokenizer, ctx.data_dir).to(device).eval()
        baseline["zero_shot_test_ppl"] = perplexity(initial, test, **ev)[0]
        real_shares = metrics.class_shares(block_array(real), classes)
        baseline.update(real_rare_token_share=real_shares["rare"], real_middle_token_share=real_shares["middle"])
        ctx.record(initial_model=initial_model(cfg, ctx.data_dir, tokenizer))
        del initial
    if not ctx.is_main:
        return
    tails = {f"test_ppl_{c}": test_scores.class_ppl(k) for k, c in enumerate(metrics.CLASSES)}
    values = {"test_ppl": test_scores.corpus_ppl, **tails, **baseline, "real_train_ppl": real_ppl,
              "val_loss": training.get("best_val_loss", float("nan")),
              **metrics.ppl_percentiles(seq_ppl),
              **metrics.diversity(gen_ids, shards.column("text").to_pylist(), classes),
              "train_seconds": training.get("seconds", float("nan")), "sample_seconds": sample_seconds,
              "sample_tokens_per_s": gen_ids.size / sample_seconds if sample_seconds > 0 else float("nan"),
              **curated}
    if curated:  # what the curation let through: real blocks, and distinct blocks (it may draw one twice)
        src = train_set.column("source_generation").to_numpy()
        pairs = set(zip(src.tolist(), train_set.column("source_block_id").to_pylist()))
        values.update(train_real_share=float((src == mixing.REAL).mean()),
                      train_distinct_share=len(pairs) / max(train_set.num_rows, 1))
    rarity = {"rare_fraction": cfg.rare_fraction, "frequent_fraction": cfg.frequent_fraction,
              "real_train_tokens": int(whole_ids.size), "real_train_mass": metrics.class_shares(whole_ids, classes),
              "test_target_share": metrics.class_shares(block_array(test)[:, 1:], classes)}
    ctx.record(weights=weights, rarity=rarity)
    meta = {"generation": g, "regime": ctx.variant.regime.label, "seed": ctx.variant.seed,
            "model_sha256": weights["scored"]["sha256"], "sampled_sha256": weights["sampled"]["sha256"],
            "sample_from": cfg.sample_from, "decoding": decoding.metadata(), "init": cfg.init,
            "init_from": training.get("init_from"), "prompts": cfg.prompts,
            "train_blocks": train_set.num_rows, "generated_blocks": shards.num_rows}
    ctx.write_table("train_set.parquet", train_set, meta)
    ctx.write_table("test_ppl.parquet", perplexity_table(test, test_scores.per_sequence), meta)
    ctx.write_table("real_train_ppl.parquet", perplexity_table(real, real_seq_ppl), meta)
    ctx.write_table("sequence_ppl.parquet", perplexity_table(shards, seq_ppl), meta)
    ctx.write_table("examples.parquet", mixing.examples(prompts, shards, tokenizer, EXAMPLES, cfg.prompts), meta)
    ctx.write_table("metrics.parquet", metrics.metrics_table(g, values), meta | {"rarity": rarity})
    ctx.write_table("training_curve.parquet", curve_table(g, training.get("curve")), meta)
    log.info("gen %d (%s): test ppl %.2f (rare %.1f, middle %.1f, frequent %.1f), generated-data ppl under "
             "gen 0: median %.2f, rare tokens %.4f of generated", g, ctx.variant.regime.label,
             test_scores.corpus_ppl, *tails.values(), values["ppl_p50"], values["rare_token_share"])
