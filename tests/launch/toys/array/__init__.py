"""ltarray: single-Gaussian recursion, each part running its replicates through every generation."""
import numpy as np
import pyarrow as pa

from collapse_hpc.experiments.base import Experiment, Registration
from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.plotting.metrics import Metric, specs
from tests.launch.toys.array.config import ArrayToyConfig


class ArrayToy(Experiment):
    name = "ltarray"
    shape = "array"
    job = "cpu"

    def units(self, run, variant):
        return run.section(self.name).parts

    def generations(self, run):
        return run.generations_of(self.name)

    def memory(self, run, variant):
        cfg = variant.section(run)
        return 8 * cfg.samples + 32 * cfg.replicates * self.generations(run)

    def metrics_schema(self, section=None):
        return MetricsSchema(per_replicate=True, metrics=specs(Metric("mu", "mean"), Metric("sigma", "std")))

    def run_unit(self, ctx):
        cfg = ctx.config
        if ctx.index == cfg.fail_part:
            raise RuntimeError(f"ltarray failure in part {ctx.index}")
        cols = {"generation": [], "replicate": [], "mu": [], "sigma": []}
        for r in range(cfg.replicates):
            replicate = ctx.index * cfg.replicates + r
            rng = np.random.default_rng(ctx.seed(r))
            mu, sigma = 0.0, 1.0
            for g in range(self.generations(ctx.run)):
                x = rng.normal(mu, sigma, cfg.samples)
                mu, sigma = float(x.mean()), float(x.std())
                for k, v in (("generation", g), ("replicate", replicate), ("mu", mu), ("sigma", sigma)):
                    cols[k].append(v)
        ctx.write_metrics(pa.table(cols))


EXPERIMENT = ArrayToy()
REGISTRATION = Registration(ArrayToyConfig, EXPERIMENT)  # the entry point (tests/entry_points)
