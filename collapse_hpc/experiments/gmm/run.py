"""One array task of the gmm experiment: a chunk of replicates through every generation."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from collapse_hpc.errors import UserError
from collapse_hpc.experiments import parts
from collapse_hpc.experiments.gmm import cache, em, metrics
from collapse_hpc.experiments.gmm.recursion import REAL_PANEL, FitSettings, draws, real_data, real_modes, recurse


def snapshot_generations(wanted: list[int], generations: int) -> list[int]:
    """Resolve -1 (the last generation) and drop generations past the end."""
    out = {generations + g if g < 0 else g for g in wanted}
    return sorted(g for g in out if 0 <= g < generations)


def snapshot_panels(cfg, generations: int) -> int:
    """Snapshot generations written per replicate: the resolved ones, and the real data's under drawn."""
    n = len(snapshot_generations(cfg.snapshot_generations, generations))
    return n + (1 if n and cfg.snapshot_points == "drawn" else 0)


def run_part(ctx, size: int) -> None:
    import torch

    # one thread per task: parts run side by side, one per core, and torch's intra-op threads
    # only add spin-waiting on such small tensors (20x slower on a busy machine, measured)
    torch.set_num_threads(1)
    em.threads(ctx.threads)  # the fits: one compiled loop per replicate, replicates over threads
    cache.heal()  # a kernel's cached files cut short failed every fit of every later part
    cfg, G = ctx.config, ctx.run.generations_of("gmm")
    ids = parts.replicate_range(cfg.replicates, size, ctx.index)
    R = len(ids)
    # every draw comes from a generator of its replicate (recursion.draws): the variant's seed and
    # the replicate's id within the variant, not the part, decide the results
    rngs = [draws(ctx.variant.seed, i) for i in ids]
    fit = FitSettings(cfg.components, cfg.covariance, cfg.tol, cfg.max_iter, cfg.reg_covar)
    names = metrics.names(cfg.components)
    table = {name: np.empty((G, R)) for name in names}
    snap_gens = set(snapshot_generations(cfg.snapshot_generations, G))
    snap_rows = [r for r in range(R) if ids[r] < cfg.snapshot_replicates]
    snapshots = []
    modes = real_modes(cfg.init_data, cfg.separation)

    def snap(points, generation):
        pts = points[snap_rows]  # (S, n, 2)
        snapshots.append((np.repeat(np.array(ids)[snap_rows], pts.shape[1]),
                          np.full(pts.shape[0] * pts.shape[1], generation), pts.reshape(-1, 2)))

    def record(gen):
        for name, value in metrics.measure(gen, modes).items():
            table[name][gen.index] = value.numpy()
        if gen.index in snap_gens and snap_rows:
            if cfg.snapshot_points == "training":
                snap(gen.data, gen.index)
                return
            # the notebook's panel m: the points drawn from fit m, beside its "Real Data" panel
            if not snapshots:
                snap(np.stack(real), REAL_PANEL)
            snap(gen.samples, gen.index)

    real = [real_data(cfg.init_data, cfg.samples, rng, cfg.separation) for rng in rngs]
    if not em.compiled():  # the job's log says why its first minutes show no fit
        ctx.log.info("gmm: compiling the EM kernels (numba) before the first fit, once per environment")
    ctx.log.info("gmm %s part %d: replicates %d-%d, %d generations", ctx.variant.name, ctx.index,
                 ids.start, ids.stop - 1, G)
    with tqdm(total=G * R, desc=f"gmm {ctx.variant.name} part {ctx.index}", unit="fit", disable=None,
              mininterval=5) as bar:
        try:
            recurse(real, G, ctx.variant.regime, fit, cfg.samples, rngs, record, bar)
        except ValueError as e:  # an EM failure the config can avoid (reg_covar, samples)
            raise UserError(f"gmm {ctx.variant.name} part {ctx.index}: {e}") from None

    meta = {"experiment": "gmm", "variant": ctx.variant.name, "part": ctx.index, "generations": G,
            "replicates": [ids.start, ids.stop], "regime": ctx.variant.regime.record(),
            "init_data": cfg.init_data, "samples": cfg.samples, "snapshot_points": cfg.snapshot_points}
    ctx.write_metrics(parts.metrics_table(table, ids), meta)
    if snapshots:
        rep, gen, xy = (np.concatenate(v) for v in zip(*snapshots))
        ctx.write_table("snapshots.parquet", pa.table({
            "replicate": pa.array(rep.astype(np.int32)), "generation": pa.array(gen.astype(np.int32)),
            "x": pa.array(xy[:, 0]), "y": pa.array(xy[:, 1])}), meta)
