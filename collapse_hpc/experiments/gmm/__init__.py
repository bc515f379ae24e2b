"""Gaussian-mixture recursion (the paper's notebook "Normals_GMM_experiments", section 2).

Array-shaped: each task is a chunk of replicates that runs every generation in memory,
vectorised over its replicates (em.py), and writes
- metrics.parquet: one row per generation and replicate (see metrics.py for the columns);
- snapshots.parquet: replicate, generation, x, y: the points of a few generations
  (snapshot_generations) of the first few replicates, for the report's scatter plots: those drawn
  from each one's fit and the real data as generation -1 (snapshot_points: drawn, the notebook's
  panels), or each one's training data (training).
"""
from __future__ import annotations

import re
from pathlib import Path

from collapse_hpc.experiments import parts
from collapse_hpc.experiments.base import Registration, sections_placed
from collapse_hpc.experiments.parts import ArrayExperiment
from collapse_hpc.experiments.gmm.config import GMMConfig
from collapse_hpc.regimes import items_held

NAME = "gmm"

# float64 values a replicate holds per training point while its fit runs, beside its pool (em._fit_all,
# kmeans.kmeans): the training data (2), its centred copy (2), the features (6), k-means' distances,
# labels and ones (7), and 2 more a component (its scores); per drawn point: the real points run_part
# keeps (2), the uniforms (1), the normals (2) and the points drawn (2). tracemalloc: 24 of the 32 at 2
# components; counting the points drawn alone, a part 4 to 10 times its estimate passed the check
FIT_VALUES, DRAW_VALUES = 17, 7
# a snapshot point: held for its table (x, y, its int64 replicate and generation: 4) while the fits run;
# once they are done, also concatenated (4), cast to int32 (1), copied into pyarrow's columns (x, y: 2)
# and encoded by the Parquet writer (3): peak RSS 0.9 of this count (tracemalloc sees numpy's 9)
SNAPSHOT_HELD, SNAPSHOT_WRITTEN = 4, 14


class GMMExperiment(ArrayExperiment):
    name = NAME
    title = "Gaussian mixture"
    order = 20
    report_files = ("snapshots.parquet",)  # gmm_snapshots
    metrics = ("l2: exact L2 distance between each generation's fitted mixture and generation 0's; "
               "total_variance: trace of the fitted mixture's covariance; tail_share_2sigma, tail_share_3sigma: the "
               "share of each generation's samples beyond the real distribution's 2- and 3-sigma contour (more "
               "than 2 or 3 from every real mode); per component cK_: weight, mean, covariance and tail positions "
               "(see gmm/metrics.py).")

    def generations(self, run) -> int:
        return run.generations_of(NAME)

    def metrics_schema(self, section=None):
        from collapse_hpc.experiments.gmm.metrics import schema

        return schema(section.components if section is not None else None)

    def metric_specs(self, columns):
        """Also the per-component columns among `columns` (their number is the config's)."""
        from collapse_hpc.experiments.gmm.metrics import SPECS, component_specs

        return SPECS | component_specs(columns)

    def pool_bytes(self, run, variant) -> float:
        """A replicate's Pool in recursion.recurse at its fullest: `samples` 2-D float64 points from
        each generation but the last (whose samples train no one)."""
        return 2 * 8 * self._pool_points(run, variant, variant.regime)

    def _pool_points(self, run, variant, regime) -> int:
        n = variant.section(run).samples
        return items_held(regime, n, n, self.generations(run) - 1)

    def part_memory(self, run, variant, size: int, regime=None) -> int:
        """Its metrics table and pools, and the larger of its fits' values beside the snapshots held
        (FIT_VALUES, DRAW_VALUES) and the snapshots' once written."""
        from collapse_hpc.experiments.gmm.metrics import names
        from collapse_hpc.experiments.gmm.run import snapshot_panels

        cfg, G, regime = variant.section(run), self.generations(run), regime or variant.regime
        n, K, pool = cfg.samples, cfg.components, self._pool_points(run, variant, regime)
        train = pool if regime.name == "accumulate" else n  # accumulate trains on its whole pool
        points = (FIT_VALUES + 2 * K) * train + DRAW_VALUES * n
        shown = min(size, cfg.snapshot_replicates) * snapshot_panels(cfg, G) * n
        held = parts.memory(size, G, len(names(K)), 0, 2 * pool)
        return held + 8 * max(size * points + SNAPSHOT_HELD * shown, SNAPSHOT_WRITTEN * shown)

    def disk(self, run, variant, index: int) -> int | None:
        """Its metrics.parquet and snapshots.parquet: the points (int32 replicate and generation, float64 x
        and y) of each snapshot generation of its replicates among the first snapshot_replicates."""
        from collapse_hpc.experiments.gmm.run import snapshot_panels

        cfg, G = variant.section(run), self.generations(run)
        ids = parts.replicate_range(cfg.replicates, self.part_size(run, variant), index)
        shown = len([i for i in ids if i < cfg.snapshot_replicates])
        points = shown * snapshot_panels(cfg, G) * cfg.samples
        return super().disk(run, variant, index) + 24 * points

    def training_points(self, run, variant) -> tuple[int, str]:
        return variant.section(run).samples, f"{NAME}.samples"

    def check(self, run) -> None:
        """A share of real points that rounds to none or all refused (ArrayExperiment.check). Said up front:
        snapshot generations the run does not reach, and on this machine (a local run) the wait for numba's
        first compile, as the units' bar stays at 0 meanwhile."""
        import logging

        from collapse_hpc.experiments.gmm import passes
        from collapse_hpc.experiments.gmm.em import compiled

        super().check(run)
        for line in snapshot_beyond(run, self.generations(run)):
            logging.getLogger("collapse_hpc").warning(line)
        if run.executor != "slurm" and not passes.CACHED:
            logging.getLogger("collapse_hpc").warning(
                "gmm: numba has nowhere to cache the EM kernels (NUMBA_CACHE_DIR, %s, ~/.cache/numba: none writable): "
                "every gmm unit compiles them again (up to 2 minutes on 2 cores); set "
                "NUMBA_CACHE_DIR to a folder of yours", Path(passes.__file__).parent / "__pycache__")
        elif run.executor != "slurm" and not compiled():
            logging.getLogger("collapse_hpc").info(
                "gmm: the first fit compiles the EM kernels (numba; up to 2 minutes on 2 cores, once per "
                "environment, cached afterwards)")

    def run_part(self, ctx, size: int) -> None:
        from collapse_hpc.experiments.gmm.run import run_part

        run_part(ctx, size)

    def figures(self):
        from collapse_hpc.experiments.gmm.figures import FIGURES

        return FIGURES

    def derive(self, df):
        """Runs that recorded per-component variances only: their sum is the total variance."""
        if "total_variance" not in df:
            comps = [c for c in df.columns if re.fullmatch(r"(trace|var|variance)_?(c|comp|component)?_?\d+", c)]
            if comps:
                df = df.assign(total_variance=df[comps].sum(axis=1))
        return df


def snapshot_beyond(run, generations: int) -> list[str]:
    """A line per section (the gmm section's, a regime's override of it) whose snapshot_generations the run's
    generations do not reach, past the end (7 of 4) or counted back past the start (-9 of 4): kept, a longer
    run may reach them, but nothing of them is drawn now. The default's 100 is for the runs that reach it."""
    G, lines = generations, []
    for section, where in sections_placed(NAME, run):
        wanted = section.snapshot_generations
        beyond = [g for g in wanted if not -G <= g < G] if wanted != GMMConfig().snapshot_generations else []
        if beyond:
            lines.append(f"{where('snapshot_generations')} {beyond}: beyond the run's {G} generations (0..{G - 1}, "
                         f"or -1..-{G} counted back from the last); no snapshots of them")
    return list(dict.fromkeys(lines))


EXPERIMENT = GMMExperiment()
REGISTRATION = Registration(GMMConfig, EXPERIMENT)

