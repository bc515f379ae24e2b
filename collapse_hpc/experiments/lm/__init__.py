"""The language-model experiment (Shumailov et al., section 1): OPT fine-tuned recursively on its
own generated text.

Stage 1 (data, models, DeepSpeed training, evaluation): data.py, tokenizer.py, model.py, train.py,
evaluate.py, distributed.py. Stage 2 (the chain): sample.py (the paper's decoding into Parquet
shards), mixing.py (regimes and lineage), metrics.py (diversity), chain.py (one generation),
cli.py (`collapse-hpc lm` with the reference implementation's flags).
"""
from __future__ import annotations

from collapse_hpc.experiments.base import check_prepared, default_variants


class LanguageModel:
    name = "lm"
    shape = "chain"  # generation g reads generations < g
    job = "gpu"  # DeepSpeed over every GPU of the job
    # kept when an unfinished generation is redone: sampled shards, training checkpoints and the
    # trained model (saved atomically, so a kill during sampling does not retrain)
    resumable = ("shards", "checkpoints", "model")
    scratch = ("checkpoints",)

    def variants(self, run):
        """regimes x seeds, times the decoding strategies when the config sweeps them (setting
        `decoding`; the paper's beam alone keeps the plain names, replace-p0-s0)."""
        from collapse_hpc.experiments.lm.sample import labels

        strategies = labels(run.section(self.name))
        extra = None if strategies == ["beam"] else [{"decoding": s} for s in strategies]
        return default_variants(self.name, run, extra)

    def units(self, run, variant) -> int:
        return run.generations_of(self.name)

    def check(self, run) -> None:
        """The corpus must be prepared beforehand (a run never downloads or builds one itself), and
        the model and tokenizer must be loadable where the jobs run."""
        from collapse_hpc.experiments.lm.data import SPLITS
        from collapse_hpc.experiments.lm.hub import check_source

        check_prepared(self.name, run, SPLITS)
        cfg = run.section(self.name)
        for key, tag in (("model", None if cfg.model == "tiny" else cfg.model), ("tokenizer", cfg.tokenizer)):
            if tag:
                check_source(f"{self.name}.{key}", tag, slurm=run.executor == "slurm")

    def run_unit(self, ctx) -> None:
        from collapse_hpc.experiments.lm.chain import run_generation

        run_generation(ctx)


EXPERIMENT = LanguageModel()
