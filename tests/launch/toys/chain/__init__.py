"""ltchain: generation g = generation g-1 + noise; steps recorded in a resumable folder."""
import atexit
import logging
import os
import signal
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import Experiment, Registration
from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.plotting.metrics import Metric, specs
from tests.launch.toys import full_disk
from tests.launch.toys.chain.config import ChainToyConfig

STEP_S = 0.5
LOST_WAIT_S = 240  # a peer's collective that never notices (NCCL) runs to its timeout


class ChainToy(Experiment):
    name = "ltchain"
    shape = "chain"
    job = "gpu"  # the lm's kind: ranks from the config, GPUs where a profile gives some
    resumable = ("steps",)
    memory_keys = ("rows",)  # what memory() grows with

    def generations(self, run):
        return run.generations_of(self.name)

    def memory(self, run, variant):
        return 8 * variant.section(run).rows

    def metrics_schema(self, section=None):
        columns = specs(*(Metric(m, m) for m in ("x", "world_size", "rank_sum")))
        return MetricsSchema(per_replicate=True, metrics=columns)

    def run_unit(self, ctx):
        cfg = ctx.config
        if ctx.index == cfg.fail_at and cfg.fail_seed in (-1, ctx.variant.seed) and cfg.fail_rank in (-1, ctx.rank):
            raise (UserError if cfg.fail_as == "input" else RuntimeError)(f"ltchain failure at generation {ctx.index}")
        if ctx.index == cfg.warns_at and ctx.is_main:
            logging.getLogger("collapse_hpc").warning("warning: ltchain step folder %s set aside", ctx.dir / "steps")
        rank_sum = float(ctx.rank + 1)
        if ctx.world_size > 1:  # a real rendezvous through the exported variables
            import torch
            import torch.distributed as dist

            dist.init_process_group("gloo")
            t = torch.tensor([rank_sum])
            dist.all_reduce(t)
            rank_sum = float(t.item())
            dist.destroy_process_group()
        if ctx.world_size == 1 and cfg.keeps_group:
            _join_alone()
        if ctx.world_size > 1 and cfg.lost_rank >= 0:
            _lose(ctx, cfg.lost_rank)
        if not ctx.is_main:
            return
        if cfg.linger_s:  # after the manifest is written: a finished unit whose process has not yet ended
            atexit.register(time.sleep, cfg.linger_s)
        for s in range(int(cfg.sleep_s / STEP_S)):
            marker = ctx.dir / "steps" / f"{s:03d}.done"
            if marker.exists():
                continue
            if s == 1 and cfg.deaf_s:
                _deaf(cfg.deaf_s)
            time.sleep(STEP_S)
            with ctx.atomic(f"steps/{s:03d}.done") as tmp:
                tmp.write_text("")
            print(f"ltchain step {s} done", file=sys.stderr, flush=True)
        rng = np.random.default_rng(ctx.seed())
        if ctx.previous:
            prev = pq.read_table(ctx.previous[-1] / "metrics.parquet").column("x").to_numpy()
            values = prev + rng.normal(size=cfg.rows)
        else:
            values = rng.normal(size=cfg.rows)
        ctx.write_metrics(pa.table({
            "generation": pa.array([ctx.index] * cfg.rows, pa.int64()),
            "replicate": pa.array(range(cfg.rows), pa.int64()),
            "x": pa.array(values, pa.float64()),
            "world_size": pa.array([float(ctx.world_size)] * cfg.rows),
            "rank_sum": pa.array([rank_sum] * cfg.rows)}))
        ctx.write_json("env.json", {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")})
        if os.environ.get(full_disk.FULL_AT) == str(ctx.index):  # its manifest and result find no room
            full_disk.fill()


def _deaf(seconds: float) -> None:
    """Ctrl-C ignored for `seconds`, as numba's compile drops the KeyboardInterrupt raised in a C callback."""
    kept = signal.signal(signal.SIGINT, signal.SIG_IGN)
    time.sleep(seconds)
    signal.signal(signal.SIGINT, kept)


def _join_alone() -> None:
    import torch.distributed as dist

    from collapse_hpc.machine import free_port

    if not dist.is_initialized():  # joined already: reused, as distributed.init does
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


def _lose(ctx, lost: int) -> None:
    """Rank `lost` dies where its peers on this host cannot see it (no record): the others block."""
    if ctx.rank == lost:
        from collapse_hpc.launch import peers

        (peers.folder(ctx.run_dir, peers._job_id()) / f"{lost}.json").unlink()
        print(f"ltchain rank {lost} dies", file=sys.stderr, flush=True)
        os._exit(1)
    print(f"ltchain rank {ctx.rank} waits for rank {lost}", file=sys.stderr, flush=True)
    time.sleep(LOST_WAIT_S)


EXPERIMENT = ChainToy()
REGISTRATION = Registration(ChainToyConfig, EXPERIMENT)  # the entry point (tests/entry_points)
