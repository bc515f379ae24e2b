"""The Gaussian mixture's report figures: L2 distance to generation 0, total variance, samples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from collapse_hpc.report import style
from collapse_hpc.report.figures import GAPS, metric_grid, pick
from collapse_hpc.report.plots import (Context, no_data, series_label, series_order)


def gmm_l2(ctx: Context):
    metric = pick(ctx.metrics(), "l2_to_gen0", "l2", pattern=r"l2")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True,
                                 ylabels={metric: "L2 distance to gen. 0"})
    return fig and (fig, "Exact L2 distance between the generation-0 mixture and each generation's, log "
                         "scale: mean over replicates (thick), 95% confidence band, and single replicates "
                         f"(thin). {GAPS}")


def gmm_variance(ctx: Context):
    metric = pick(ctx.metrics(), "total_variance", pattern=r"total_var|variance")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True,
                                 ylabels={metric: "total variance"})
    return fig and (fig, f"Total variance of the fitted mixture against generation (log scale). {GAPS}")


def gmm_snapshots(ctx: Context, most: int = 6):
    rows = []  # (run label, series, DataFrame of one replicate)
    for run in ctx.runs:
        chosen = {}
        for unit in sorted(run.finished("gmm"), key=lambda u: (u.variant, u.index)):
            info = run.variant("gmm", unit.variant)
            key = series_label({"regime": info.regime, **info.settings}, list(info.settings))
            if key in chosen:
                continue
            path = unit.file("snapshots.parquet")
            if path is None:
                continue
            snap = pq.read_table(path).to_pandas()
            if snap.empty:
                continue
            chosen[key] = snap[snap["replicate"] == snap["replicate"].min()]
        rows += [(run.label, k, v) for k, v in sorted(chosen.items(), key=lambda kv: series_order(kv[0]))]
    if not rows:
        return None
    gens = sorted(set().union(*(set(v["generation"]) for _, _, v in rows)))
    if len(gens) > most:
        gens = [gens[i] for i in np.unique(np.round(np.linspace(0, len(gens) - 1, most)).astype(int))]
    first = pd.concat([v[v["generation"] == gens[0]] for _, _, v in rows])
    lim = np.nanquantile(np.abs(first[["x", "y"]].to_numpy()), 0.995) * 1.15 if len(first) else 4
    fig, axes = style.figure(len(rows), len(gens), sharex=True, sharey=True, w=1.6, h=1.6)
    for r, (run, key, snap) in enumerate(rows):
        for c, g in enumerate(gens):
            ax = axes[r, c]
            pts = snap[snap["generation"] == g]
            if pts.empty:
                no_data(ax, "missing")
            ax.scatter(pts["x"], pts["y"], s=1.5, color="black", alpha=0.4, linewidths=0, rasterized=True)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            if r == 0:
                ax.set_title(f"generation {g}")
            if c == 0:
                ax.set_ylabel(key if len(ctx.runs) == 1 else f"{run}\n{key}")
    return fig, ("Samples of one replicate at chosen generations (same axes throughout): the mixture "
                 "loses its tails and shrinks towards a point.")


FIGURES = [("l2", "L2 distance to generation 0", gmm_l2),
           ("variance", "Total variance", gmm_variance),
           ("snapshots", "Samples across generations", gmm_snapshots)]
