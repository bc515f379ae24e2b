"""Toy experiment: generation g writes g's values derived from generation g-1's, deterministically."""
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from collapse_hpc.experiments.base import Experiment, Registration
from collapse_hpc.experiments.schema import INT32, MetricsSchema
from collapse_hpc.plotting.metrics import Metric
from tests.toy_experiment.config import ToyConfig


class Toy(Experiment):
    name = "toy"
    job = "cpu"
    shape = "chain"
    resumable = ("steps",)  # a requeued unit keeps its finished steps
    scratch = ("steps",)  # not results: removed before the manifest

    def generations(self, run):
        return run.generations_of(self.name)

    def memory(self, run, variant):
        return 8 * variant.section(run).rows

    def metrics_schema(self, section=None):
        return MetricsSchema(per_replicate=True, generation=INT32, metrics={"value": Metric("value", "value")})

    def run_unit(self, ctx):
        cfg = ctx.config
        if ctx.index == cfg.fail_at:
            raise RuntimeError(f"toy failure at generation {ctx.index}")
        rng = np.random.default_rng(ctx.seed())
        if ctx.previous:
            prev = pq.read_table(ctx.previous[-1] / "metrics.parquet").column("value").to_numpy()
            values = prev + rng.normal(size=cfg.rows)
        else:
            values = rng.normal(size=cfg.rows)
        # sleep in steps, each recorded in the resumable folder, so a requeue continues
        steps = max(1, int(cfg.sleep_s / 0.5)) if cfg.sleep_s else 0
        for s in range(steps):
            marker = ctx.dir / "steps" / f"{s}.done"
            if marker.exists():
                continue
            time.sleep(0.5)
            marker.parent.mkdir(exist_ok=True)
            marker.write_text("")
        ctx.write_metrics(pa.table({
            "generation": pa.array([ctx.index] * cfg.rows, pa.int32()),
            "replicate": pa.array(range(cfg.rows), pa.int32()),
            "value": values}))


EXPERIMENT = Toy()
REGISTRATION = Registration(ToyConfig, EXPERIMENT)  # the entry point (tests/entry_points)
