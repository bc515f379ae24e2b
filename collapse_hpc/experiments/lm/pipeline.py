"""The language model's steps, each callable on its own. The chain (chain.py: one generation of a
recursive chain) and the reference CLI (cli.py: the authors' main.py, by its flags) are two orders
of these same steps:

  start    join the process group (every rank), this rank's device, the tokenizer  -> Pipeline
  blocks   a real split's token blocks (cached), the first `limit` of them
  train    fine-tune a model on blocks (DeepSpeed, train.py): the best-validation weights saved
           to a folder (and with `last`, those after the last epoch); returns the summary
  load     saved weights onto this rank's device, for scoring or sampling
  sample   continue prompt blocks into Parquet shards (sample.py), the chunks still to do dealt over the ranks
  score    perplexities of blocks: corpus, per block, per target-token class (evaluate.py)

Each step runs on every rank; train, sample and score return once every rank has finished
(start, blocks and load need no other rank). Beneath them, each in one function of its own: one
optimizer step (train.py `_Training.optimizer_step`), the token losses of a batch of blocks
(evaluate.py `_loss_sums`), one batch of prompts decoded (sample.py `generate`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_hpc.experiments.lm import distributed

COMPILE_CACHE = ".compile-cache"  # in the run folder: torch.compile's caches, written by this run only


def compile_cache(run_dir: Path) -> dict[str, str]:
    """Point inductor's and Triton's caches into the run folder (their defaults are folders in /tmp
    that every user of the node may write, and a planted entry there is code our jobs would run)."""
    root = Path(run_dir).absolute() / COMPILE_CACHE
    env = {"TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"), "TRITON_CACHE_DIR": str(root / "triton")}
    os.environ.update(env)
    return env


@dataclass
class Pipeline:
    cfg: Any  # LMConfig
    data_dir: Path
    tokenizer: Any
    rank: int
    world_size: int
    local_rank: int
    device: Any  # torch.device
    log: logging.Logger
    startup: dict[str, float]  # seconds of the one-time phases of this process, in order

    @classmethod
    def start(cls, cfg, data_dir: Path, log: logging.Logger | None = None, run_dir: Path | None = None) -> "Pipeline":
        """Join the process group and load the tokenizer; with `compile` or `sample_compile` and a
        run folder, the compile caches go into it (before anything compiles)."""
        if (cfg.compile or cfg.sample_compile) and run_dir is not None:
            compile_cache(run_dir)
        startup, t = {}, time.perf_counter()
        import torch  # noqa: F401  (timed on their own; DeepSpeed is imported by training alone)
        import transformers  # noqa: F401

        startup["imports"], t = time.perf_counter() - t, time.perf_counter()
        rank, world_size, local_rank = distributed.init(cfg.collective_timeout_s)
        startup["process_group"], t = time.perf_counter() - t, time.perf_counter()
        from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(cfg, data_dir)
        startup["tokenizer"] = time.perf_counter() - t
        return cls(cfg, Path(data_dir), tokenizer, rank, world_size, local_rank, distributed.device(local_rank),
                   log or logging.getLogger("collapse_hpc.lm"), startup)

    def log_startup(self, prefix: str) -> None:
        """One line of the job log: the seconds of each start-up phase so far."""
        names = {"imports": "imports", "process_group": "process group", "tokenizer": "tokenizer",
                 "model_load": "model load", "deepspeed_import": "DeepSpeed import",
                 "deepspeed_init": "DeepSpeed init",
                 "first_step": "first step" + (" (compiles)" if self.cfg.compile else "")}
        self.log.info("%s start-up: %s", prefix, ", ".join(f"{names.get(k, k)} {v:.2f} s"
                                                             for k, v in self.startup.items()))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def blocks(self, split: str, limit: int = 0):
        """The split's blocks (block_id, input_ids) as the config cuts them; the first `limit` (0: all)."""
        from collapse_hpc.experiments.lm.data import load_blocks

        cfg = self.cfg
        table = load_blocks(self.data_dir, cfg.dataset, split, self.tokenizer, cfg.block_size, cfg.block_grouping)
        return table.slice(0, limit) if limit else table

    def train(self, model, blocks, val, out: Path, *, seed: int, checkpoints: Path, last: Path | None = None) -> dict:
        """Fine-tune `model` (consumed) on `blocks`, validated on `val`: the best weights to `out`,
        with `last` the last epoch's there too; resumes from `checkpoints` (train.train_generation)."""
        from collapse_hpc.experiments.lm.train import train_generation

        summary = train_generation(model, self.tokenizer, blocks, val, self.cfg, out, checkpoints, seed=seed,
                                   rank=self.rank, world_size=self.world_size, local_rank=self.local_rank,
                                   log=self.log, last_dir=last)
        distributed.barrier()
        return summary

    def load(self, folder: Path):
        """A saved model (float32) on this rank's device, in eval mode."""
        from collapse_hpc.experiments.lm.model import load_model

        return load_model(folder).to(self.device).eval()

    def sample(self, model, prompts, decoding, shards: Path, *, generation: int, seed: int, model_hash: str,
               prompt_source: str = "train_set") -> float:
        """This rank's share of the chunks of `prompts` still to do continued into `shards` (chunks
        already there are kept); returns the seconds this rank sampled, over the attempts: the chunks kept
        are not sampled again, so the seconds earlier attempts sampled them for count (sample.sampled_before)."""
        from collapse_hpc.experiments.lm.sample import remaining_chunks, sample_shards, sampled_before

        started = time.time()
        batch_size = self.cfg.sample_batch_size
        remaining = remaining_chunks(shards, prompts.num_rows, batch_size, model_hash)
        before = sampled_before(shards, self.rank, model_hash)
        distributed.barrier()  # every rank read the folder before any writes to it: the same chunks dealt
        sample_shards(model, self.tokenizer, prompts, decoding, shards, generation=generation, rank=self.rank,
                      world_size=self.world_size, batch_size=batch_size, seed=seed, model_hash=model_hash,
                      device=self.device, log=self.log, prompt_source=prompt_source, remaining=remaining,
                      seconds_before=before)
        seconds = before + time.time() - started
        distributed.barrier()  # every shard exists
        return seconds

    def score(self, model, blocks, classes=None):
        """evaluate.Scores of `blocks` (a table or an id array) under `model`, sharded over the ranks
        (every rank gets them all), in the config's eval precision; with `classes`, per token class."""
        from collapse_hpc.experiments.lm.evaluate import score

        cfg = self.cfg
        return score(model, blocks, batch_size=cfg.eval_batch_size, device=self.device, rank=self.rank,
                     world_size=self.world_size, bf16=cfg.eval_precision == "bf16", classes=classes)
