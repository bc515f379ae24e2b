"""A fifth experiment, used only by the tests to prove that an experiment is one folder plus one
registry line (tests/conftest.py): categorical recursion on a Zipf distribution, after Dohmatob et
al., "A Tale of Tails: Model Collapse as a Change of Scaling Laws" (2024).

Each generation fits category frequencies to `samples` points (the maximum-likelihood categorical)
and draws the next generation's points from that fit. A category that draws no point is gone for
good under replace: the support shrinks and the tail's mass goes to the head. Array-shaped like
gaussian: each task is a chunk of replicates through every generation, writing metrics.parquet.
"""
from __future__ import annotations

from collapse_hpc.experiments import parts
from collapse_hpc.experiments.base import Registration
from collapse_hpc.experiments.parts import ArrayExperiment
from tests.tail_experiment.config import TailConfig


class Tail(ArrayExperiment):
    name = "tail"
    title = "Zipf tail (categorical)"
    order = 50
    metrics = ("support: categories the fit gives any probability; tail_mass: its probability beyond the "
               "real distribution's head; tv: total variation distance to the real distribution; "
               "entropy: of the fit (nats).")

    def generations(self, run) -> int:
        return run.generations_of(self.name)

    def memory(self, run, variant) -> int:
        from tests.tail_experiment.recursion import METRICS

        cfg = variant.section(run)
        return parts.memory(self.part_size(run, variant), self.generations(run), len(METRICS), cfg.samples,
                            cfg.samples * self.generations(run))  # the pools of every generation

    def metrics_schema(self, section=None):
        from tests.tail_experiment.recursion import SCHEMA

        return SCHEMA

    def run_part(self, ctx, size: int) -> None:
        from tests.tail_experiment.recursion import run_part

        run_part(ctx, size)

    def figures(self):
        from tests.tail_experiment.figures import FIGURES

        return FIGURES


EXPERIMENT = Tail()
REGISTRATION = Registration(TailConfig, EXPERIMENT)  # the entry point (tests/entry_points)
