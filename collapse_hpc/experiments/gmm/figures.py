"""The Gaussian mixture's report figures: squared L2 distance to generation 0 (what the notebook
plots), total variance, samples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, metric_grid, pick
from collapse_hpc.plotting.plots import (Context, no_data, series_order, unit_series)


L2_LABEL = {"l2_squared": "squared L2 distance ‖f₀ − fₖ‖²", "l2": "L2 distance ‖f₀ − fₖ‖"}


def gmm_l2(ctx: Context):
    # the notebook plots the closed form itself, sum a_i a_j N(m_i - m_j; 0, C_i + C_j) over ff + gg - 2fg,
    # which is the SQUARED distance; runs from before l2_squared was recorded fall back to l2
    metric = pick(ctx.metrics(), "l2_squared", "l2")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True, ylabels={metric: L2_LABEL[metric]})
    what = "squared L2 distance ‖f₀ − fₖ‖² (the closed form the notebook plots)" if metric == "l2_squared" \
        else "L2 distance ‖f₀ − fₖ‖"
    return fig and (fig, f"Exact {what} between the generation-0 mixture f₀ and each generation's fₖ, log "
                         "scale: mean over replicates (thick), 95% confidence band, and single replicates "
                         "(thin). Collapse: the distance grows by orders of magnitude (higher is worse); "
                         f"keeping real data holds it down. {GAPS}")


def gmm_variance(ctx: Context):
    metric = pick(ctx.metrics(), "total_variance", pattern=r"total_var|variance")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True,
                                 ylabels={metric: "total variance"})
    return fig and (fig, "Total variance (trace of the covariance) of the fitted mixture against generation "
                         "(log scale; real data: 2). Collapse: it falls towards 0 (lower is worse) as the "
                         f"mixture loses its tails. {GAPS}")


def gmm_snapshots(ctx: Context, most: int = 8):
    rows = []  # (run label, series, DataFrame of one replicate)
    for run in ctx.runs:
        chosen = {}
        for unit in sorted(run.finished("gmm"), key=lambda u: (u.variant, u.index)):
            _, key = unit_series(run, "gmm", unit)
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
    return fig, ("Samples of one replicate at the recorded generations (gmm.snapshot_generations; same axes "
                 "throughout). Collapse: the cloud loses its tails and shrinks towards a point, generation "
                 "after generation (a smaller cloud is worse); a cloud that keeps the generation-0 spread has "
                 "not collapsed.")


FIGURES = [("l2", "Squared L2 distance to generation 0", gmm_l2),
           ("variance", "Total variance", gmm_variance),
           ("snapshots", "Samples across generations", gmm_snapshots)]
