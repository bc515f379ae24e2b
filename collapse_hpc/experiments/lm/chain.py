"""One generation of the recursive chain (run on every rank; rank 0 writes the tables).

  1. training set: real train blocks (generation 0) or the regime's mix of real blocks and
     earlier generations' generated blocks -> train_set.parquet (with lineage); the curated
     regimes pick by scores of the pooled blocks (curation.py: a detector's weights, a verifier's)
  2. train (stage 1, DeepSpeed) from generation 0's model (init: gen0, the paper: the best model
     on the real data by validation loss), from the initial model (init: pretrained) or from
     generation g-1's (init: previous); generation 0 always from the initial model -> model/, the
     best-validation weights (kept on resume: it is written atomically), and with sample_from: last
     also model_last/, the weights after the last epoch; model/training.json says which weights it
     started from and the dtypes that ran; once it is written the training checkpoints go
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

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm import distributed
from collapse_hpc.experiments.lm.pipeline import Pipeline
from collapse_hpc.store import atomic

MODEL, LAST, SHARDS, CHECKPOINTS = "model", "model_last", "shards", "checkpoints"
TRAINING = "training.json"  # inside model/: the stage-1 training summary
EXAMPLES = 4  # prompts whose continuations go to examples.parquet, evenly spaced over the prompts


@dataclass
class _Inputs:
    """What a generation reads: the real splits' blocks and its training set (step 1)."""

    whole: Any  # the whole real train split: what rarity is counted over
    real: Any  # its first max_train_blocks: generation 0's training blocks, the paper's prompts
    val: Any
    test: Any
    train_set: Any = None
    curated: dict = field(default_factory=dict)  # what a curated regime's scores came to (metrics)


def run_generation(ctx) -> None:
    lm = Pipeline.start(ctx.config, ctx.data_dir, ctx.log, run_dir=ctx.run_dir)  # times the imports too
    import torch

    from collapse_hpc.experiments.lm.sample import read_shards

    torch.set_num_threads(ctx.threads)
    distributed.barrier()  # rank 0 has reset the unit folder before anyone writes into it
    inputs = _inputs(ctx, lm)
    _uses_data(ctx, lm.tokenizer)
    training, gen0 = _train(ctx, lm, inputs)
    lm.log_startup(f"gen {ctx.generation}:")
    ctx.record(startup_seconds=lm.startup)
    model = lm.load(ctx.path(MODEL))  # the best weights: every score below is theirs
    weights = _weights(ctx, training)
    prompts, decoding, sample_seconds = _sample(ctx, lm, model, inputs, weights)
    shards = read_shards(ctx.path(SHARDS))
    started = time.perf_counter()
    scores = _evaluate(ctx, lm, model, inputs, shards, gen0)
    # train and sample count the work kept from earlier attempts (a checkpoint, shards); evaluation starts over
    ctx.record(phase_seconds={"train": training.get("seconds"), "sample": sample_seconds,
                              "evaluate": time.perf_counter() - started})
    if not ctx.is_main:
        return
    values = _metrics(ctx, inputs, training, scores, shards, sample_seconds)
    rarity = _rarity(ctx.config, inputs, scores)
    ctx.record(weights=weights, rarity=rarity)
    _write(ctx, lm, inputs, training, weights, decoding, prompts, shards, scores, values, rarity)
    _drop_unread_weights(ctx)


def kept_weights(cfg, generation: int) -> tuple[str, ...]:
    """The weight folders a finished generation keeps (lm.keep_models): needed keeps only what a later
    generation reads, generation 0's model/ (every later one is scored under it, and with init: gen0
    starts from it) and, with init: previous, each model/ (the next one starts from it)."""
    if cfg.keep_models == "all":
        return (MODEL, LAST) if cfg.sample_from == "last" else (MODEL,)
    return (MODEL,) if generation == 0 or cfg.init == "previous" else ()


def _drop_unread_weights(ctx) -> None:
    """Rank 0, once every table is written and every rank has scored (the weights are read no more):
    the weight folders no later generation reads go under keep_models: needed, before the manifest
    (which names what sampled and what was scored by fingerprint, `weights`). A kill between this and
    the manifest retrains the generation on its redo, to the same weights: its shards are kept."""
    import shutil

    for folder in {MODEL, LAST} - set(kept_weights(ctx.config, ctx.generation)):
        shutil.rmtree(ctx.path(folder), ignore_errors=True)


def _uses_data(ctx, tokenizer) -> None:
    """The prepared data and its caches this generation read (splits, card, BPE, token blocks, the
    tiny base model) go into its manifest by content hash: verify re-hashes them."""
    from collapse_hpc.experiments.lm.data import SPLITS, blocks_path
    from collapse_hpc.experiments.lm.model import tiny_base
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir

    cfg, folder = ctx.config, ctx.data_dir / ctx.config.dataset
    used = [folder / "card.json"] + [folder / f"{s}.parquet" for s in SPLITS]
    used += [blocks_path(ctx.data_dir, cfg.dataset, s, tokenizer, cfg.block_size, cfg.block_grouping) for s in SPLITS]
    if cfg.tokenizer is None and cfg.model == "tiny":
        used += sorted(p for p in bpe_dir(ctx.data_dir, cfg.dataset, cfg.vocab_size).iterdir() if p.is_file())
    if cfg.model == "tiny" and cfg.pretrained:
        used += sorted(p for p in tiny_base(cfg, tokenizer, ctx.data_dir).iterdir() if p.is_file())
    for path in used:
        if path.is_file():
            ctx.uses(path)


def _inputs(ctx, lm: Pipeline) -> _Inputs:
    """Step 1: the real blocks, and what this generation trains on (identical on every rank: same
    seed): the regime's mix of real blocks and earlier generations' generated ones."""
    import pyarrow as pa

    from collapse_hpc.experiments.lm import curation, mixing
    from collapse_hpc.experiments.lm.sample import read_shards
    from collapse_hpc.regimes import pooled

    cfg = ctx.config
    whole = lm.blocks("train")
    inputs = _Inputs(whole, whole.slice(0, cfg.max_train_blocks) if cfg.max_train_blocks else whole,
                     lm.blocks("validation", cfg.max_eval_blocks), lm.blocks("test", cfg.max_eval_blocks))
    _refuse_empty(cfg, inputs)
    # only the pools the regime draws from are read (the engine hashed those); an older one under
    # replace is an empty stand-in: mix() looks at the newest pool alone there
    pools = set(pooled(ctx.variant.regime, ctx.index))
    generated = [read_shards(p / SHARDS) if g in pools else pa.table({"block_id": pa.array([], pa.int64())})
                 for g, p in enumerate(ctx.previous)]
    scores, inputs.curated = curation.scores(ctx, inputs.real, generated, lm.tokenizer, lm.device)
    inputs.train_set = mixing.training_set(ctx.variant.regime, inputs.real, generated,
                                           np.random.default_rng(ctx.seed(2)), scores)
    ctx.log.info("gen %d (%s): %d training blocks by source %s", ctx.generation, ctx.variant.regime.label,
                 inputs.train_set.num_rows, mixing.counts_by_source(inputs.train_set))
    return inputs


def _refuse_empty(cfg, inputs: _Inputs) -> None:
    """A split without a block (block_size longer than its text under this tokenizer) stops the unit
    here, before a model is built or pretrained."""
    from collapse_hpc.experiments.lm.data import no_blocks

    for split, table in (("train", inputs.whole), ("validation", inputs.val), ("test", inputs.test)):
        if table.num_rows == 0:
            raise UserError(no_blocks(cfg, split, "under this tokenizer"))


def _train(ctx, lm: Pipeline, inputs: _Inputs) -> tuple[dict, Any]:
    """Step 2: train this generation's model unless an earlier attempt already saved it. Returns
    the training summary and, where training starts from generation 0's saved model, an untouched
    copy of that model: step 4's scorer, which is then not read from disk a second time (training
    changes the model it is given, so the scorer is never that object)."""
    import copy

    from collapse_hpc.experiments.lm.model import build_model, load_model, weights_fingerprint

    cfg, out, log = ctx.config, ctx.path(MODEL), ctx.log
    published = _published(ctx, out)
    if published is not None:
        log.info("gen %d: model already trained (%s), not training again", ctx.generation, out)
        distributed.barrier()
        _trained(ctx)  # a kill between publishing the model and removing its checkpoints left them
        return published, None
    started = time.perf_counter()
    gen0 = None
    if ctx.previous and cfg.init in ("gen0", "previous"):
        source = ctx.previous[0 if cfg.init == "gen0" else -1] / MODEL
        model, init_from = load_model(source), source.parent.name
        if source == ctx.previous[0] / MODEL:  # init gen0, or previous at generation 1
            gen0 = copy.deepcopy(model)
    else:
        model, init_from = build_model(cfg, lm.tokenizer, ctx.data_dir), "initial"
    start = {"init": cfg.init, "init_from": init_from, "init_weights_sha256": weights_fingerprint(model)}
    lm.startup["model_load"] = time.perf_counter() - started  # with the fingerprint (0.4 s for OPT-125M)
    log.info("gen %d: training from %s weights (%s)", ctx.generation, init_from, start["init_weights_sha256"])
    result = start | lm.train(model, inputs.train_set, inputs.val, out, seed=ctx.seed(1),
                              checkpoints=ctx.path(CHECKPOINTS),
                              last=ctx.path(LAST) if cfg.sample_from == "last" else None)
    lm.startup.update(result.get("startup", {}))
    if ctx.is_main:
        atomic.write_json(out / TRAINING, result)
    distributed.barrier()
    _trained(ctx)
    return result, gen0


def _published(ctx, out) -> dict | None:
    """The training summary of the model an earlier attempt published, or None where there is none. A
    published model whose files no longer read (each is written whole and renamed, so cut short after: a
    node's crash before its data reached the disk, a stopped copy), its summary included, failed every redo
    of its unfinished generation; it is removed and trained again, to the same weights. So too model_last/
    (sample_from: last), which the same training writes: both go, as a pair. A read the file system refuses
    (permissions, an I/O error) is no damage: the unit stops on it, the model kept (NotRead)."""
    from collapse_hpc.experiments.lm.model import unreadable
    from collapse_hpc.experiments.lm.summary import read_summary

    if not (out / TRAINING).is_file():
        return None
    summary, damaged = read_summary(out / TRAINING, _kept(ctx))
    folders = [out] + ([ctx.path(LAST)] if ctx.config.sample_from == "last" else [])
    why = (out / TRAINING, damaged) if damaged else next(
        ((f, w) for f in folders if (w := unreadable(f, _kept(ctx))) is not None), None)
    if why is None:
        return summary
    ctx.log.warning("warning: gen %d: %s: %s; training it again", ctx.generation, *why)
    distributed.barrier()  # every rank has looked before rank 0 removes it
    if ctx.is_main:
        import shutil

        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    distributed.barrier()
    return None


def _kept(ctx) -> str:
    """What goes on from a published model the file system would not read now (NotRead)."""
    return f"kept as it is (not trained again); gen {ctx.generation} goes on from it"


def _trained(ctx) -> None:
    """Once model/training.json is published no step reads the training checkpoints again (a redo
    skips training), so they go now rather than with the manifest: a step of OPT-125M with its
    optimizer state, ~1.5 GB, no longer waits on a quota through sampling and evaluation, nor in a
    generation stopped there. Rank 0, after every rank has returned from training."""
    import shutil

    if ctx.is_main:
        shutil.rmtree(ctx.path(CHECKPOINTS), ignore_errors=True)


def _weights(ctx, training: dict) -> dict:
    """The weights that sample (sample_from: best, model/; last, model_last/) and those every score
    is taken with (model/): folder, fingerprint, epoch."""
    from collapse_hpc.experiments.lm.model import model_fingerprint

    sampled = LAST if ctx.config.sample_from == "last" else MODEL
    sha = {folder: model_fingerprint(ctx.path(folder)) for folder in {sampled, MODEL}}  # each read once
    return {"sampled": {"folder": sampled, "sha256": sha[sampled],
                        "epoch": training["best_epoch"] if sampled == MODEL else training["epochs"] - 1},
            "scored": {"folder": MODEL, "sha256": sha[MODEL], "epoch": training["best_epoch"]}}


def _sample(ctx, lm: Pipeline, model, inputs: _Inputs, weights: dict):
    """Step 3: the next generation's data, by the weights sample_from names (the same on every rank
    and on resume) -> (prompts, the decoding's metadata, seconds this rank sampled: over the attempts, as the
    shards kept from an earlier one are not sampled again; Pipeline.sample)."""
    from collapse_hpc.experiments.lm import mixing
    from collapse_hpc.experiments.lm.sample import Decoding, shards_decoding

    cfg = ctx.config
    sampler = model if weights["sampled"]["folder"] == MODEL else lm.load(ctx.path(LAST))
    prompts = mixing.prompts(cfg.prompts, inputs.train_set, inputs.real, np.random.default_rng(ctx.seed(3)))
    decoding = Decoding.from_config(cfg, ctx.variant.settings.get("decoding"))
    seconds = lm.sample(sampler, prompts, decoding, ctx.path(SHARDS), generation=ctx.generation, seed=ctx.seed(4),
                        model_hash=weights["sampled"]["sha256"], prompt_source=cfg.prompts)
    # with the weights' precision and the step that ran: the shards' (kept ones may be another's), once all exist
    ran = shards_decoding(ctx.path(SHARDS), decoding.metadata(lm.device))
    ctx.record(decoding=ran)
    return prompts, ran, seconds


def _evaluate(ctx, lm: Pipeline, model, inputs: _Inputs, shards, gen0=None) -> dict:
    """Step 4, with the best weights (sharded over ranks; every rank gets the full result): the
    real test split, also by token class; the real training blocks; the generated blocks under the
    generation-0 model (`gen0` where step 2 kept it, else read from its folder); generation 0 also
    scores the initial model (a reference line)."""
    from collapse_hpc.experiments.lm import metrics
    from collapse_hpc.experiments.lm.data import block_array

    cfg = ctx.config
    whole_ids = block_array(inputs.whole)
    classes = metrics.token_classes(metrics.token_counts(whole_ids, model.get_input_embeddings().num_embeddings),
                                    cfg.rare_fraction, cfg.frequent_fraction)
    scores = {"classes": classes, "whole_ids": whole_ids, "test": lm.score(model, inputs.test, classes=classes),
              "real": lm.score(model, inputs.real), "gen_ids": block_array(shards)}
    if ctx.generation == 0:
        scorer = model
    else:
        scorer = gen0.to(lm.device).eval() if gen0 is not None else lm.load(ctx.previous[0] / MODEL)
    scores["generated"] = lm.score(scorer, scores["gen_ids"])
    scores["baseline"] = _initial_model(ctx, lm, inputs, classes) if ctx.generation == 0 else {}
    return scores


def _initial_model(ctx, lm: Pipeline, inputs: _Inputs, classes) -> dict:
    """Generation 0's reference lines: the initial model, before any fine-tuning, on the same test
    blocks, and the real training blocks' own token-class shares; the manifest says what that
    initial model is."""
    from collapse_hpc.experiments.lm import metrics
    from collapse_hpc.experiments.lm.data import block_array
    from collapse_hpc.experiments.lm.model import build_model, initial_model

    cfg = ctx.config
    initial = build_model(cfg, lm.tokenizer, ctx.data_dir).to(lm.device).eval()
    baseline = {"zero_shot_test_ppl": lm.score(initial, inputs.test).corpus_ppl}
    real_shares = metrics.class_shares(block_array(inputs.real), classes)
    baseline.update(real_rare_token_share=real_shares["rare"], real_middle_token_share=real_shares["middle"])
    ctx.record(initial_model=initial_model(cfg, ctx.data_dir, lm.tokenizer))
    return baseline


def _metrics(ctx, inputs: _Inputs, training: dict, scores: dict, shards, sample_seconds: float) -> dict:
    """metrics.parquet's one row: perplexities, diversity of the generated text, timings, and what
    a curated regime let through."""
    from collapse_hpc.experiments.lm import metrics, mixing

    test, gen_ids = scores["test"], scores["gen_ids"]
    tails = {f"test_ppl_{c}": test.class_ppl(k) for k, c in enumerate(metrics.CLASSES)}
    values = {"test_ppl": test.corpus_ppl, **tails, **scores["baseline"], "real_train_ppl": scores["real"].corpus_ppl,
              "val_loss": training.get("best_val_loss", float("nan")),
              **metrics.ppl_percentiles(scores["generated"].per_sequence),
              **metrics.diversity(gen_ids, shards.column("text").to_pylist(), scores["classes"]),
              "train_seconds": training.get("seconds", float("nan")), "sample_seconds": sample_seconds,
              "sample_tokens_per_s": gen_ids.size / sample_seconds if sample_seconds > 0 else float("nan"),
              **inputs.curated}
    if inputs.curated:  # what the curation let through: real blocks, and distinct blocks (it may draw one twice)
        src = inputs.train_set.column("source_generation").to_numpy()
        pairs = set(zip(src.tolist(), inputs.train_set.column("source_block_id").to_pylist()))
        values.update(train_real_share=float((src == mixing.REAL).mean()),
                      train_distinct_share=len(pairs) / max(inputs.train_set.num_rows, 1))
    return values


def _rarity(cfg, inputs: _Inputs, scores: dict) -> dict:
    """How the token classes were drawn, for the manifest and metrics.parquet's metadata."""
    from collapse_hpc.experiments.lm import metrics
    from collapse_hpc.experiments.lm.data import block_array

    whole_ids, classes = scores["whole_ids"], scores["classes"]
    return {"rare_fraction": cfg.rare_fraction, "frequent_fraction": cfg.frequent_fraction,
            "real_train_tokens": int(whole_ids.size), "real_train_mass": metrics.class_shares(whole_ids, classes),
            "test_target_share": metrics.class_shares(block_array(inputs.test)[:, 1:], classes)}


def curve_table(generation: int, curve: dict | None):
    """The training curve (train.CURVE: one row per optimizer step) as a table; empty when the
    model was trained before curves were recorded."""
    import pyarrow as pa

    from collapse_hpc.experiments.lm.train import CURVE

    curve = curve or {k: [] for k in CURVE}
    columns = {"generation": pa.array([generation] * len(curve["step"]), pa.int64()),
               "step": pa.array(curve["step"], pa.int64()), "epoch": pa.array(curve["epoch"], pa.int64())}
    return pa.table({**columns, **{k: pa.array(curve[k], pa.float64()) for k in CURVE if k not in columns}})


def _write(ctx, lm: Pipeline, inputs: _Inputs, training, weights, decoding, prompts, shards, scores, values,
           rarity) -> None:
    """Rank 0: this generation's tables, each with the same metadata."""
    from collapse_hpc.experiments.lm import mixing
    from collapse_hpc.experiments.lm.evaluate import perplexity_table
    from collapse_hpc.experiments.lm.metrics import metrics_table

    cfg, g = ctx.config, ctx.generation
    meta = {"generation": g, "regime": ctx.variant.regime.record(), "seed": ctx.variant.seed,
            "model_sha256": weights["scored"]["sha256"], "sampled_sha256": weights["sampled"]["sha256"],
            "sample_from": cfg.sample_from, "decoding": decoding, "init": cfg.init,
            "init_from": training.get("init_from"), "prompts": cfg.prompts,
            "train_blocks": inputs.train_set.num_rows, "generated_blocks": shards.num_rows}
    ctx.write_table("train_set.parquet", inputs.train_set, meta)
    ctx.write_table("test_ppl.parquet", perplexity_table(inputs.test, scores["test"].per_sequence), meta)
    ctx.write_table("real_train_ppl.parquet", perplexity_table(inputs.real, scores["real"].per_sequence), meta)
    ctx.write_table("sequence_ppl.parquet", perplexity_table(shards, scores["generated"].per_sequence), meta)
    ctx.write_table("examples.parquet", mixing.examples(prompts, shards, lm.tokenizer, EXAMPLES, cfg.prompts),
                    meta)
    ctx.write_metrics(metrics_table(g, values), meta | {"rarity": rarity})
    ctx.write_table("training_curve.parquet", curve_table(g, training.get("curve")), meta)
    ctx.log.info("gen %d (%s): test ppl %.2f (rare %.1f, middle %.1f, frequent %.1f), generated-data ppl under "
                 "gen 0: median %.2f, rare tokens %.4f of generated", g, ctx.variant.regime.label,
                 values["test_ppl"], values["test_ppl_rare"], values["test_ppl_middle"], values["test_ppl_frequent"],
                 values["ppl_p50"], values["rare_token_share"])
