"""The Gaussian mixture's report figures: squared L2 distance to generation 0 (what the notebook
plots), total variance, samples, and the tails (the share of samples beyond the real distribution's
2- and 3-sigma contour)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from collapse_hpc.experiments.gmm.metrics import SIGMAS, real_share
from collapse_hpc.experiments.gmm.recursion import REAL_PANEL, real_modes
from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, band_note, mean_line, median_and_mean, metric_grid, pick, trend
from collapse_hpc.plotting.plots import (Context, gens_axis, legend_below, no_data, replicate_lines, series_data,
                                         series_rows, unit_order, unit_series)


def _single(ctx: Context) -> str:
    """What the thin lines are: the first replicates of each series, as many as its generations leave room for."""
    most = sorted({replicate_lines(len(gens_axis(ctx.planned(run), ctx.summary.loc[ctx.summary["run"] == run,
                                                                                     "generation"])))
                   for run in ctx.run_labels})
    count = f"{most[0]}" if len(most) == 1 else f"{most[0]} to {most[-1]} (fewer over more generations)"
    return f"single replicates, the first {count} of each series by seed and replicate"
# no-break spaces: a formula is not broken across the lines of a long axis label (plotting.fit)
L2_LABEL = {"l2_squared": "squared L2 distance ‖f₀\u00a0−\u00a0fₖ‖²", "l2": "L2 distance ‖f₀\u00a0−\u00a0fₖ‖"}


def _counted(ctx: Context, metric: str, label: str) -> str:
    """A figure's y label: what it draws, and what that is counted in (the panel has no title to say the first)."""
    unit = ctx.spec(metric).unit
    return f"{label}, {unit}" if unit else label


def gmm_l2(ctx: Context):
    # the notebook plots the closed form itself, sum a_i a_j N(m_i - m_j; 0, C_i + C_j) over ff + gg - 2fg,
    # which is the SQUARED distance; runs from before l2_squared was recorded fall back to l2
    metric = pick(ctx.metrics(), "l2_squared", "l2")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True,
                                 ylabels={metric: _counted(ctx, metric, L2_LABEL[metric])})
    what = "squared L2 distance ‖f₀ − fₖ‖² (the closed form the notebook plots)" if metric == "l2_squared" \
        else "L2 distance ‖f₀ − fₖ‖"
    return fig and (fig, f"Exact {what} between the generation-0 mixture f₀ and each generation's fₖ, log "
                         f"scale: {band_note(ctx, [metric])} (thick), and {_single(ctx)} (thin). Collapse as the paper "
                         "expects it: the distance grows by orders of magnitude (higher is worse); keeping real "
                         f"data holds it down. Here, the mean from generation 1: {trend(ctx, metric, start=1)}. {GAPS}")


def gmm_variance(ctx: Context):
    metric = pick(ctx.metrics(), "total_variance", pattern=r"total_var|variance")
    fig = metric and metric_grid(ctx, [metric], logy=True, replicates=True,
                                 ylabels={metric: _counted(ctx, metric, "total variance")})
    return fig and (fig, "Total variance (trace of the covariance) of the fitted mixture against generation "
                         f"(log scale; the real blob's: 2, two-mode's: 2 + separation²/4): {band_note(ctx, [metric])} "
                         f"(thick), and {_single(ctx)} (thin). Collapse as the paper "
                         "expects it: it falls towards 0 (lower is worse) as the mixture loses its tails. Here, "
                         f"the mean: {trend(ctx, metric)}. {GAPS}")


def gmm_snapshots(ctx: Context, most: int = 8):
    rows = []  # (run label, series, DataFrame of one replicate)
    for run in ctx.runs:
        chosen, orders = {}, {}
        for unit in sorted(run.finished("gmm"), key=lambda u: (u.variant, u.index)):
            info, key = unit_series(run, "gmm", unit)
            orders[key] = unit_order(info)
            if key in chosen:
                continue
            path = unit.file("snapshots.parquet")
            if path is None:
                continue
            snap = pq.read_table(path).to_pandas()
            if snap.empty:
                continue
            chosen[key] = snap[snap["replicate"] == snap["replicate"].min()]
        rows += [(run.label, k, v) for k, v in sorted(chosen.items(), key=lambda kv: orders[kv[0]])]
    if not rows:
        return None
    gens = sorted(set().union(*(set(v["generation"]) for _, _, v in rows)))
    if len(gens) > most:
        gens = [gens[i] for i in np.unique(np.round(np.linspace(0, len(gens) - 1, most)).astype(int))]
    shown = pd.concat([v[v["generation"].isin(gens)] for _, _, v in rows])
    # every point in view: the outermost ones are the tails the figure is about
    lim = np.nanmax(np.abs(shown[["x", "y"]].to_numpy())) * 1.05 if len(shown) else 4
    recorded = {run: set().union(*(set(v["generation"]) for r, _, v in rows if r == run)) for run, _, _ in rows}
    lines, side = snapshot_layout(len(gens), len(rows))
    cols = -(-len(gens) // lines)
    # the asides and titles snapshot_layout set apart, added to the figure: a figure of the panels' sides alone
    # left its equal-aspect panels ~1.1 in of a nominal 1.6 once ticks, titles and the rows' names took their room
    fig, axes = style.figure(lines * len(rows), cols, sharex=True, sharey=True, w=side + GAP + ASIDE_W / cols,
                             h=side + GAP + (ASIDE_H + lines * TITLES) / (lines * len(rows)))
    fig.set_size_inches(min(fig.get_figwidth(), style.PAGE_W), min(fig.get_figheight(), style.PAGE_H))  # rounding
    for ax in axes.flat:
        ax.set_visible(False)  # a last line's panels past the last generation stay empty
    for i, g in enumerate(gens):
        line, c = divmod(i, cols)
        for r, (run, key, snap) in enumerate(rows):
            ax = axes[line * len(rows) + r, c]
            ax.set_visible(True)
            _snapshot_panel(ax, snap[snap["generation"] == g], lim,
                            "missing" if g in recorded[run] else f"not recorded in {run}")
            if r == 0:
                ax.set_title(_panel(g))
            if c == cols - 1 or i == len(gens) - 1:
                row_label(ax, key if len(ctx.runs) == 1 else f"{run}\n{key}", side)
    # the data's two coordinates (gmm.recursion.real_data: two-mode's modes lie apart on x), named once for the
    # whole grid: one "x" under each bottom panel and one "y" beside each row said the same thing four times
    fig.supxlabel("x", fontsize=style.RC["axes.labelsize"])
    fig.supylabel("y", fontsize=style.RC["axes.labelsize"])
    spreads = "; ".join(f"{key if len(ctx.runs) == 1 else f'{run}: {key}'} " + " → ".join(
        f"{_spread(snap[snap['generation'] == g]):.2g}" for g in gens if (snap["generation"] == g).any())
        for run, key, snap in rows)
    what = ("the points drawn from each generation's fit (the notebook's and the paper's panels), beside the real "
            "data" if REAL_PANEL in gens else "each generation's training data")
    return fig, ("Samples of one replicate at the recorded generations (gmm.snapshot_generations; x and y: the "
                 "data's two coordinates, two-mode data's modes lying apart on x; on the same axes throughout, every "
                 f"point in view), one row per series (named on the right): {what}. "
                 "Collapse as the paper expects it: the cloud loses its tails and shrinks towards a point, "
                 "generation after generation (a smaller cloud is "
                 f"worse). Here, the total variance of the points, {' → '.join(_panel(g) for g in gens)}: "
                 f"{spreads}.")


SNAPSHOT_SIDE, SNAPSHOT_LEGIBLE = 1.6, 1.2  # inches a snapshot panel spans at most; the least before lines wrap
# inches of a page's width and height beside the panels: y ticks and "y" on the left, the rows' names on the right;
# x ticks and "x" below; a line's titles; the layout's padding around each panel (measured at the report's fonts)
ASIDE_W, ASIDE_H, TITLES, GAP = 0.55, 0.35, 0.35, 0.13


def snapshot_layout(panels: int, rows: int) -> tuple[int, float]:
    """(lines, panel side in inches) of `panels` generations of `rows` series within a page (style.PAGE_W x
    PAGE_H): the fewest lines of generations whose panels span at least SNAPSHOT_LEGIBLE, else the largest
    panels any number of lines gives. Eight generations in one line were 12.8 in, wider than a page."""
    best = (1, 0.0)
    for lines in range(1, panels + 1):
        side = min(SNAPSHOT_SIDE, (style.PAGE_W - ASIDE_W) / -(-panels // lines) - GAP,
                   (style.PAGE_H - ASIDE_H - lines * TITLES) / (lines * rows) - GAP)
        if side >= SNAPSHOT_LEGIBLE:
            return lines, side
        best = max(best, (lines, side), key=lambda ls: ls[1])
    return best


def _snapshot_panel(ax, pts: pd.DataFrame, lim: float, empty: str) -> None:
    """One generation's points of one series, on the same square axes as every other panel, beneath the grid
    lines' level: the grid was drawn over the scatter."""
    from matplotlib.ticker import MaxNLocator

    if pts.empty:
        no_data(ax, empty)
    size, alpha = dot(len(pts))
    ax.set_axisbelow(True)
    ax.scatter(pts["x"], pts["y"], s=size, color="black", alpha=alpha, linewidths=0, rasterized=True)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):  # "-2.5 0.0 2.5" ran together under a panel narrowed to fit the page
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10]))


# a panel's dots: faint and small where a thousand points make a cloud (gmm.samples' default), larger and darker
# as they are fewer (area ~ 1/points), so that a few points (gmm.samples: 10) are seen at all
CLOUD, DOT_MIN, DOT_MAX = 1000, 1.5, 20.0  # points; marker areas, pt²


def dot(points: int) -> tuple[float, float]:
    """(marker area in pt², alpha) of a snapshot panel's dots for that many points."""
    size = float(np.clip(DOT_MIN * CLOUD / max(points, 1), DOT_MIN, DOT_MAX))
    return size, 0.4 + 0.5 * (size - DOT_MIN) / (DOT_MAX - DOT_MIN)


def _panel(g: int) -> str:
    return "real data" if g == REAL_PANEL else f"generation {g}"


def row_label(ax, text: str, inches: float) -> None:
    """A row's series named beside its last panel, on the right (the y-axis label says what y is), in lines
    no longer than the panel is high: 'accumulate-subsample' ran past a 1.2 in panel into the next row's."""
    import textwrap

    points = style.RC["axes.labelsize"]
    chars = max(8, int(inches / (0.6 * points / 72)))  # 0.6 em a character: a name's letters run wide
    text = "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))
    ax.annotate(text, xy=(1, 0.5), xycoords="axes fraction", xytext=(4, 0), textcoords="offset points",
                rotation=-90, ha="left", va="center", fontsize=points, linespacing=1.1)


def _spread(points: pd.DataFrame) -> float:
    """Trace of the covariance (ddof 0) of snapshot points."""
    return float(points["x"].var(ddof=0) + points["y"].var(ddof=0))


def _real_shares(ctx: Context, run: str) -> dict[int, float]:
    """k -> the real distribution's own share beyond its k-sigma contour, from the run's gmm section."""
    from collapse_hpc.experiments.gmm.config import GMMConfig

    sec = ctx.run(run).raw_config.get("gmm") or {}
    modes = real_modes(sec.get("init_data") or GMMConfig.init_data, float(sec.get("separation", GMMConfig.separation)))
    return {k: real_share(modes, k) for k in SIGMAS}


def _mostly_beyond(ctx: Context, metric: str) -> str:
    """Per series: the share of replicates with most of their last generation's samples beyond the contour
    (a cloud that collapsed where its centre had wandered), where there are any."""
    out = []
    for run in ctx.run_labels:
        for label, grp in series_rows(ctx, run, metric):
            last = int(grp["generation"].max())
            mine = series_data(ctx, run, metric, grp.iloc[0])
            away = (mine.loc[mine["generation"] == last, "value"] > 0.5).mean()
            if away:
                out.append(f"{label}: {away:.1%} of the replicates at generation {last}"
                           + ("" if len(ctx.run_labels) == 1 else f" ({run})"))
    return "; ".join(out)


def gmm_tails(ctx: Context):
    """The share of each generation's samples beyond the real distribution's 2- and 3-sigma contour:
    median over replicates (solid) and mean (mean_line), against the real distribution's own share."""
    tails = [(k, f"tail_share_{k}sigma") for k in SIGMAS if f"tail_share_{k}sigma" in ctx.metrics()]
    if not tails:
        return None
    runs = ctx.run_labels
    fig, axes = style.figure(len(runs), len(tails), sharey=False)
    for r, run in enumerate(runs):
        real = _real_shares(ctx, run)
        for c, (k, metric) in enumerate(tails):
            ax = axes[r, c]
            if not median_and_mean(ax, ctx, run, metric, real[k]):
                continue
            ax.set_title(f"beyond the {k}σ contour" + ("" if len(runs) == 1 else f" ({run})"))
            ax.set_xlabel("generation")
            ax.set_ylabel("share of samples" if c == 0 else "")
    legend_below(fig, axes)
    own = "; ".join(f"{run + ': ' if len(runs) > 1 else ''}" + ", ".join(
        f"{k}σ {v:.4f}" for k, v in _real_shares(ctx, run).items()) for run in runs)
    here = "; ".join(f"{k}σ, median {m} and mean {a}" + (f" (mostly beyond: {away})" if away else "")
                     for k, metric in tails
                     if (m := trend(ctx, metric, stat="median")) and (a := trend(ctx, metric))
                     for away in [_mostly_beyond(ctx, metric)])
    return fig, ("The tails: the share of each generation's own samples (the points drawn from its fit) beyond the "
                 "real distribution's k-sigma contour, counted exactly per replicate, median over replicates "
                 f"(solid) and mean ({mean_line(ctx)}). The contour: the real data is a mixture of unit-covariance "
                 "normal modes, and a point lies beyond its k-sigma contour when it is more than k (Mahalanobis, here "
                 "Euclidean) from every mode: for the notebook's blob, outside the circle of radius k around the "
                 "origin; for two-mode data, outside both circles of radius k around the two modes. The real "
                 f"distribution's own share (thick grey; exact): {own}. Collapse as the paper expects it: the tails "
                 "are lost first, so the share falls towards 0 (lower is worse). The mean need not fall with the "
                 "median: a replicate whose cloud collapsed puts nearly all its samples where its centre has "
                 f"wandered, which is beyond the contour for some replicates. Here: {here}. {GAPS}")


FIGURES = [("l2", "Squared L2 distance to generation 0", gmm_l2),
           ("variance", "Total variance", gmm_variance),
           ("snapshots", "Samples across generations", gmm_snapshots),
           ("tails", "The tails: samples beyond the real 2σ and 3σ contours", gmm_tails)]
