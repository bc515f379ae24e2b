"""The language-model experiment (Shumailov et al., section 1): OPT fine-tuned recursively on its
own generated text.

Stage 1 (data, models, DeepSpeed training, evaluation): corpus.py (the prepared splits' text),
sources.py (the user's own files: formats, splits), data.py, tokenizer.py, model.py, train.py,
evaluate.py, distributed.py. Stage 2 (the chain):
sample.py (the paper's decoding into Parquet shards), mixing.py (regimes and lineage), metrics.py
(diversity). pipeline.py holds the steps (train, sample, score, ...) that both chain.py (one
generation) and cli.py (`collapse-hpc lm` with the reference implementation's flags) run.
"""
from __future__ import annotations

from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.logs import count
from collapse_hpc.experiments.base import (Experiment, Registration, check_prepared, default_variants,
                                          sections_placed, sections_seen)
from collapse_hpc.experiments.lm import cli
from collapse_hpc.experiments.lm.config import LMConfig
from collapse_hpc.experiments.lm.cost import generation_seconds, train_blocks
from collapse_hpc.experiments.lm.hub import HUB_FILES

# on disk, per token of a block, measured on the demo (512 blocks of 64 tokens, 4000-token BPE): train_set.parquet's
# ids and lineage, 1.8 bytes; the shards' ids, text and lineage, 1.9, with the perplexity tables (a row a block)
# 2.5, and ~4.5 KB a shard file (one per sample_batch_size prompts); the rest (manifest, metrics, examples,
# training curve) ~30 KB a generation
TRAIN_SET_BYTES_PER_TOKEN = 2.0
SHARD_BYTES_PER_TOKEN = 2.5
SHARD_FILE_BYTES = 4_500
GENERATION_BYTES = 30_000


class LanguageModel(Experiment):
    name = "lm"
    shape = "chain"  # generation g reads generations < g
    job = "gpu"  # DeepSpeed over every GPU of the job
    # kept when an unfinished generation is redone: sampled shards, training checkpoints and the
    # trained models (best and, with sample_from: last, the last epoch's; saved atomically, so a kill
    # during sampling does not retrain)
    resumable = ("shards", "checkpoints", "model", "model_last")
    scratch = ("checkpoints",)
    # what a redo to the same weights and shards writes otherwise: its seconds and tokens/s (metrics.parquet's
    # train_seconds, sample_seconds, sample_tokens_per_s; the curve's seconds, tokens_per_s; training.json's;
    # the seconds each rank sampled for, sample.seconds_name's)
    volatile = ("metrics.parquet", "training_curve.parquet", "model/training.json", "shards/seconds-*.json")
    memory_keys = ("hidden_size", "layers", "ffn_size", "vocab_size", "micro_batch_size", "sample_batch_size",
                   "ranks")
    title = "Language model (OPT)"
    order = 10
    report_files = ("sequence_ppl.parquet", "training_curve.parquet", "examples.parquet")
    metrics = ("test_ppl: perplexity on the real test split (zero_shot_test_ppl, generation 0 only: the initial "
               "model's, before fine-tuning); test_ppl_rare, test_ppl_middle, test_ppl_frequent: the same over the "
               "test tokens whose type is rare (the least frequent types carrying 10% of the real train split's "
               "tokens, and types never seen there), frequent (the most frequent carrying 50%) or in between; "
               "real_train_ppl: on the real training blocks; distinct_n, unigram_entropy, type_token_ratio, "
               "rare_token_share, middle_token_share: diversity of the generated text (real_rare_token_share, "
               "real_middle_token_share, generation 0 only: the real training blocks' own shares); ppl_p5 … "
               "ppl_p95: percentiles of the generated sequences' perplexity under the generation-0 model (see "
               "lm/metrics.py).")
    datasets = {"wikivital": "collapse_hpc.experiments.lm.data:prepare_wikivital",
                "wikitext2": "collapse_hpc.experiments.lm.data:prepare_wikitext2"}
    local_data = "collapse_hpc.experiments.lm.data:prepare_local"
    # regimes that need scores of the pools' blocks (curation.py): a detector's importance weights,
    # a verifier's perplexities
    scored_regimes = ("detector-resample", "verifier-filter")
    hub_files = HUB_FILES  # what stage fetches of a hub model: every tokenizer file the check accepts

    def variants(self, run):
        """regimes x seeds, times the decoding strategies when the config sweeps them (setting
        `decoding`; the paper's beam alone keeps the plain names, replace-p0-s0)."""
        from collapse_hpc.experiments.lm.sample import labels

        def strategies(section):
            names = labels(section)
            return None if names == ["beam"] else [{"decoding": s} for s in names]

        return default_variants(self.name, run, strategies)

    def redone_after(self, changed: dict[str, bool], config: dict) -> dict[str, str]:
        """What an unfinished generation redoes after its how-it-runs knobs changed: only the training
        checkpoints, and only where the optimizer state they hold does not fit the new engine.
        Sampled shards stay (chunk k holds the same prompts and seed on any rank count, and each shard
        records the decoding step that wrote it), and so do the trained models. A checkpoint goes on
        under another micro_batch_size, loss, compilation or evaluation batch (the same weights,
        optimizer state, step and data order; sums and dropout masks differ, as the warning says), and
        under another rank count where ZeRO-0 keeps the optimizer state whole; under ZeRO 1-3 (bf16:
        from ZeRO-1) it is split by rank, and torch's AdamW and DeepSpeed's fused one keep their state
        (the step count of the bias correction) apart."""
        if "fused_adam" in changed:
            return {"checkpoints": "torch's AdamW and DeepSpeed's fused one keep their optimizer state apart"}
        if "ranks" in changed and (stage := _zero_stage(config)) > 0:
            return {"checkpoints": f"ZeRO stage {stage} splits the optimizer state by rank"}
        return {}

    def check(self, run) -> None:
        """The corpus must be prepared beforehand (a run never downloads or builds one itself), and
        the model and tokenizer must be loadable where the jobs run, and the data set's caches (BPE, token
        blocks) must be the files their cards recorded; under every regime's overrides."""
        from collapse_hpc.experiments.lm.corpus import SPLITS
        from collapse_hpc.experiments.lm.caches import check_read_only
        from collapse_hpc.experiments.lm.data import check_caches
        from collapse_hpc.experiments.lm.hub import check_source
        from collapse_hpc.experiments.lm.model import check_fits, check_weights
        from collapse_hpc.experiments.lm.tokenizer import check_tokenizer, tokenizer_tag
        from collapse_hpc.experiments.lm.train import check_deepspeed

        checked, problems, verdicts = set(), [], {}  # verdicts: the held-out splits' (check_caches), by knobs

        def attempt(check, *args, **kwargs):  # the data set and the model apart: both are said, not the first
            try:
                check(*args, **kwargs)
            except UserError as e:
                problems.append(str(e))

        for cfg, where in sections_placed(self.name, run):
            attempt(lambda: check_prepared(self.name, run, SPLITS, cfg, where("dataset"), self.datasets)
                    or check_caches(Path(run.data_dir), cfg, verdicts)  # the caches of a prepared data set
                    or check_read_only(Path(run.data_dir), cfg))
            for key, tag in (("model", None if cfg.model == "tiny" else cfg.model), ("tokenizer", cfg.tokenizer)):
                if tag and (key, tag) not in checked:
                    checked.add((key, tag))
                    attempt(check_source, where(key), tag, slurm=run.executor == "slurm")
                    if key == "model":
                        attempt(check_weights, where(key), tag, cfg.pretrained)
            own = cfg.tokenizer is None  # the model's tag's tokenizer
            tokenizer = tokenizer_tag(cfg)
            if tokenizer and ("vocabulary", tokenizer) not in checked:
                checked.add(("vocabulary", tokenizer))
                attempt(check_tokenizer, where("model" if own else "tokenizer"), tokenizer, model=own)
            attempt(check_deepspeed, where("deepspeed"), cfg)
            attempt(check_fits, cfg, Path(run.data_dir), where, checked)
        if problems:
            raise UserError("; ".join(dict.fromkeys(problems)))

    def hub_models(self, run) -> list[str]:
        from collapse_hpc.experiments.lm.hub import hub_tag

        tags = [t for cfg in sections_seen(self.name, run) for t in (cfg.model, cfg.tokenizer) if hub_tag(t)]
        return list(dict.fromkeys(tags))

    def built_models(self, run) -> list[str]:
        return ["tiny"] if any(cfg.model == "tiny" for cfg in sections_seen(self.name, run)) else []

    def run_unit(self, ctx) -> None:
        from collapse_hpc.experiments.lm.chain import run_generation

        try:
            run_generation(ctx)
        except PermissionError as e:  # a shared, read-only data folder whose caches are not built yet
            data = Path(ctx.data_dir).absolute() / ctx.config.dataset
            if not e.filename or not Path(e.filename).absolute().is_relative_to(data):
                raise
            raise UserError(f"{data}: not writable by you ({e.filename}): the LM keeps its tokenizer, token blocks "
                            f"and tiny base model beside the data set, built once on first use; run once as the "
                            f"folder's owner, or prepare the data set in a folder of yours (data_dir)") from None

    def generations(self, run) -> int:
        return run.generations_of(self.name)

    def memory(self, run, variant) -> int | None:
        """Per rank (lm/memory.py): the larger of training's (state and activations) and sampling's; a rank
        on the CPU (a local run on a machine without GPUs, as engine.check decides) holds more."""
        from collapse_hpc.experiments.lm.memory import memory
        from collapse_hpc.machine import gpu_ids

        return memory(variant.section(run), host=run.executor != "slurm" and not gpu_ids())

    def memory_advice(self, run, variant) -> str:
        """A hub model's size is its own (lm.hidden_size and the other size keys shape the tiny OPT only):
        a smaller batch or model, the state shared over more ranks, or a machine with more memory."""
        if variant.section(run).model == "tiny":
            return super().memory_advice(run, variant)
        if run.executor == "slurm":
            return ("lower lm.micro_batch_size or lm.sample_batch_size, share the model's state over more lm.ranks "
                    "(lm.zero_stage: 3), or name a smaller lm.model")
        return ("lower lm.micro_batch_size or lm.sample_batch_size, name a smaller lm.model, or run it on a machine "
                "with more memory, e.g. on Slurm under a profile whose mem holds it (the model's weights, gradients "
                "and optimizer state do not shrink with the batch)")

    def disk(self, run, variant, index: int) -> int | None:
        """The weights generation `index` keeps (model.weights_bytes, per folder chain.kept_weights) and its
        tables: the generated shards and the training set, tens of MB a generation at the paper's scale
        (all a generation keeps under keep_models: needed); None where the real blocks are not known."""
        from collapse_hpc.experiments.lm.chain import kept_weights
        from collapse_hpc.experiments.lm.model import weights_bytes

        cfg = variant.section(run)
        weights = weights_bytes(cfg, len(kept_weights(cfg, index)))
        blocks = train_blocks(cfg)
        if weights is None or not blocks:
            return None
        train, made = _blocks_written(cfg, variant.regime.name, index, blocks)
        tokens = cfg.block_size * (TRAIN_SET_BYTES_PER_TOKEN * train + SHARD_BYTES_PER_TOKEN * made)
        files = -(-made // cfg.sample_batch_size)
        return weights + int(tokens) + SHARD_FILE_BYTES * files + GENERATION_BYTES

    def gpu_seconds(self, run, variant):
        return generation_seconds(variant.section(run))

    def metrics_schema(self, section=None):
        from collapse_hpc.experiments.lm.metrics import SCHEMA

        return SCHEMA

    def heading(self, sections):
        """e.g. "Language model: tiny OPT (2 layers, 128 wide) on wikivital": the model the runs used."""
        models = ", ".join(dict.fromkeys(model_name(s) for s in sections)) or "OPT"
        datasets = ", ".join(sorted({str(s["dataset"]) for s in sections if s.get("dataset")}))
        return f"Language model: {models}" + (f" on {datasets}" if datasets else "")

    def figures(self):
        from collapse_hpc.experiments.lm.figures import FIGURES

        return FIGURES

    def texts(self, runs):
        from collapse_hpc.experiments.lm.figures import continuations

        return continuations(runs)


def _zero_stage(section: dict) -> int:
    """The ZeRO stage a section's training runs at (train.ds_config, as plain values): its zero_stage,
    or the stage its `deepspeed` mapping sets; bf16 weights from ZeRO-1 on (train._bf16_from_zero1)."""
    over = section.get("deepspeed")
    zero = over.get("zero_optimization") if isinstance(over, dict) else None
    stage = zero.get("stage", section.get("zero_stage", 0)) if isinstance(zero, dict) else section.get("zero_stage", 0)
    return max(int(stage or 0), 1 if section.get("precision") == "bf16" else 0)


def model_name(section: dict) -> str:
    """The model of a config's lm section in words: "tiny OPT (2 layers, 128 wide)", "OPT-125M", "gpt2"."""
    from collapse_hpc.experiments.lm.config import LMConfig

    default = LMConfig()
    tag = str(section.get("model", default.model))
    if tag == "tiny":
        return (f"tiny OPT ({count(section.get('layers', default.layers), 'layer')}, "
                f"{section.get('hidden_size', default.hidden_size)} wide)")
    name = tag.rstrip("/").rsplit("/", 1)[-1]
    return "OPT-" + name[4:].upper() if name.lower().startswith("opt-") else name


def _blocks_written(cfg, regime: str, generation: int, real: int) -> tuple[int, int]:
    """The blocks of generation `generation`'s training set and of its shards, from `real` real blocks:
    every regime but accumulate trains on as many as the real ones; each prompt writes one block (prompts:
    real, the real blocks; train_set, the training set's)."""
    made: list[int] = []
    train = real
    for _ in range(generation + 1):
        train = real + sum(made) if regime == "accumulate" else real
        made.append(train if cfg.prompts == "train_set" else real)
    return train, made[-1]


EXPERIMENT = LanguageModel()
REGISTRATION = Registration(LMConfig, EXPERIMENT, cli=cli)
