"""What the experiments' figures (their figures.py, listed by Experiment.figures) and the
report's every-metric overview share: the metric grid, picking a metric, the gaps note, and trend
(what a caption says about the run, from its numbers). Each
figure function returns (Figure, caption) or None when the run has nothing for it yet, or raises
NotInThisRun when the run's settings never make its data (the page then leaves it off); runs are
drawn side by side (one column, or row, per run).
"""
from __future__ import annotations

import re

import numpy as np

from collapse_hpc.plotting import style
from collapse_hpc.plotting.plots import (Context, draw_series, gens_axis, integer_x, legend_below, maybe_log, no_data,
                                         num, series_data, series_rows)

GAPS = "Gaps mark generations not (yet) finished."


class NotInThisRun(Exception):
    """A figure of settings the run does not have (a sweep it did not run): not drawn, not listed,
    unlike a figure whose data is not finished yet."""


def pick(metrics, *names, pattern: str | None = None) -> str | None:
    """The first of `names` the experiment records, else the first metric matching `pattern`."""
    for n in names:
        if n in metrics:
            return n
    if pattern:
        return next((m for m in metrics if re.search(pattern, m)), None)
    return None


def trend(ctx: Context, metric: str, *, fixed: dict | None = None, exclude: tuple[str, ...] = (),
          stat: str = "mean", start: int | None = None, digits: int = 3) -> str:
    """What this run's numbers say, for a caption: each series' value of `metric` (its mean, or
    median) at its first finished generation (or `start`) and at its last, e.g. "replace 1.9 → 0.0021,
    replace, keep 10% 1.9 → 1.2 (generation 0 → 99)"; runs one after another. "" when nothing is finished."""
    out = []
    for run in ctx.run_labels:
        parts, spans = [], set()
        for label, grp in series_rows(ctx, run, metric, fixed=fixed, exclude=exclude, stat=stat):
            g = grp.dropna(subset=[stat]).sort_values("generation")
            if start is not None:
                g = g[g["generation"] >= start]
            if g.empty:
                continue
            first, last = g.iloc[0], g.iloc[-1]
            span = (int(first["generation"]), int(last["generation"]))
            spans.add(span)
            a = like_for_like(ctx, run, metric, first, span[1], first[stat], stat)
            parts.append((label, f"{num(a, digits)} → {num(last[stat], digits)}", span))
        if not parts:
            continue
        one = len(spans) == 1
        text = ", ".join(f"{label} {values}" + ("" if one else f" (generation {a} → {b})")
                         for label, values, (a, b) in parts)
        if one:
            a, b = spans.pop()
            text += f" (generation {a} → {b})"
        out.append(text if len(ctx.run_labels) == 1 else f"{run}: {text}")
    return "; ".join(out)


def like_for_like(ctx: Context, run: str, metric: str, row, last: int, value: float, stat: str = "mean") -> float:
    """`value`, the series' `stat` at the generation of summary row `row`, taken over only the seeds and
    replicates the series has at generation `last`: in a run stopped midway a chain that stopped early would
    otherwise count at the start and not at the end, and the change would compare different chains."""
    d = series_data(ctx, run, metric, row)
    keys = ["seed", "replicate"]
    have = d.loc[d["generation"] == last, keys].drop_duplicates()
    start = d[d["generation"] == row["generation"]]
    if len(have) >= len(start[keys].drop_duplicates()):
        return value
    at = start.merge(have, on=keys)["value"].astype(float).dropna()
    if not len(at) or np.isinf(at).any():
        return value
    return float(at.mean() if stat == "mean" else at.median())


WORSE = {"higher": " (↑ worse)", "lower": " (↓ worse)"}  # a panel title's note of which way collapse moves it


def band_note(ctx: Context, metrics: list[str]) -> str:
    """What a point and its band are, with n (seeds x replicates per point, or seeds where an experiment
    records one value per seed and generation): no band is promised with n = 1."""
    n = ctx.summary.loc[ctx.summary["metric"].isin(metrics), "n"]
    if not len(n) or n.max() <= 1:
        return "one value per generation and series (n = 1: one seed, no replicates), so no interval"
    counts = f"n = {int(n.min())}" if n.min() == n.max() else f"n = {int(n.min())} to {int(n.max())}"
    replicated = ctx.df.loc[ctx.df["metric"].isin(metrics), "replicate"].nunique() > 1
    return (f"mean over {'seeds × replicates' if replicated else 'seeds'} ({counts} per point), band: its 95% "
            "confidence interval (t)" + _cut(ctx, metrics))


def _cut(ctx: Context, metrics: list[str]) -> str:
    """Where a drawn band stops at a metric's bound (plots.draw_band) instead of the interval's edge: which
    metrics, at which value."""
    at: dict[float, list[str]] = {}
    for m in metrics:
        spec, rows = ctx.spec(m), ctx.summary[ctx.summary["metric"] == m]
        for bound in spec.passed(rows["ci_low"], rows["ci_high"]):
            at.setdefault(bound, []).append(spec.label)
    if not at:
        return ""
    where = "; ".join(f"at {num(b)}: {', '.join(labels)}" for b, labels in sorted(at.items()))
    return (f", drawn only within the values a metric can take (cut {where}; summary.csv keeps the interval "
            f"as computed)")


def median_and_mean(ax, ctx: Context, run: str, metric: str, real: float, empty: str = "no data yet",
                    **series) -> bool:
    """One tails panel: the median over replicates (the typical fit, solid) and the mean (mean_line)
    against the real distribution's own value (thick grey), from 0 up; False, and the panel says
    so (`empty`), when the run has no data for it. `series` goes to draw_series (fixed, exclude)."""
    if not draw_series(ax, ctx, run, metric, stat="median", suffix=" (median)", **series):
        no_data(ax, empty)
        return False
    draw_series(ax, ctx, run, metric, band=False, suffix=" (mean)", thin=True, **series)
    ax.axhline(real, label="the real distribution's own", **style.REAL)
    room_for(ax, [real])  # then from 0: a share is never below it, and the room above only grows
    ax.set_ylim(bottom=0)
    integer_x(ax)
    return True


def mean_line(ctx: Context) -> str:
    """How a caption names median_and_mean's mean line (style.second_statistic) over the report's runs."""
    names = {style.second_statistic_name(len(gens_axis(ctx.planned(run), ctx.summary.loc[ctx.summary["run"] == run,
                                                                                           "generation"])))
             for run in ctx.run_labels}
    if len(names) == 1:
        return names.pop()
    return f"dotted; thin and faint over more than {style.LONG_SERIES} generations"


def rescale_row(axes, real: float) -> None:
    """median_and_mean's panels sharing one y-axis (a row), scaled again once every panel is drawn: the first
    panel's limits had turned the row's autoscaling off, and a later panel's mean ran off its top."""
    ax = axes[0]
    ax.set_autoscaley_on(True)
    ax.autoscale_view(scalex=False)  # over every sibling's data
    room_for(ax, [real])
    ax.set_ylim(bottom=0)


def keep_scale(ax, share: float = 0.1) -> None:
    """A linear y-axis spans at least `share` of its values' magnitude: a metric that barely moves is drawn
    flat rather than magnified until its noise fills the panel."""
    if ax.get_yscale() != "linear":
        return
    lo, hi = ax.get_ylim()
    need = share * max(abs(lo), abs(hi))
    if 0 < hi - lo < need:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - need / 2, mid + need / 2)


ROOM = 0.08  # the least share of a panel's height between a level drawn across it and the panel's edge


def room_for(ax, levels: list[float], room: float = ROOM) -> None:
    """A y-axis widened so that each level (a reference line) lies at least `room` of the panel's height
    from its edge: autoscaled to a level beyond the series, the axis ended 5% past it and the thick line lay on
    the panel's top edge, like the frame rather than a value. A log axis gets its room in decades (a level
    at or below 0 is not drawn there)."""
    log = ax.get_yscale() == "log"
    levels = [y for y in levels if y > 0] if log else levels
    if ax.get_yscale() not in ("linear", "log") or not levels:
        return
    there, back = (np.log10, lambda v: 10.0 ** v) if log else (float, float)
    lo, hi = (there(v) for v in ax.get_ylim())
    top, bottom = there(max(levels)), there(min(levels))
    # each edge moved just far enough: hi' - top >= room * span, bottom - lo' >= room * span, span = hi' - lo'.
    # The span is the largest of the four cases' (neither edge moves, either, both): moving the top edge first
    # and then the bottom one left the top level short of its room again
    span = max(hi - lo, (hi - bottom) / (1 - room), (top - lo) / (1 - room), (top - bottom) / (1 - 2 * room))
    if span > hi - lo:  # else left as it was (a log axis' limits would come back from log space rounded)
        ax.set_ylim(back(min(lo, bottom - room * span)), back(max(hi, top + room * span)))


def metric_grid(ctx: Context, metrics: list[str], *, logy: bool | str = "auto", replicates: bool = False,
                ylabels: dict | None = None, references: dict | None = None, lines: dict | None = None,
                baselines: dict | None = None):
    """Panels of metric x run (runs side by side), series = regimes and settings; references:
    run -> [(y, label)] drawn as dotted grey lines across that run's panels (baselines); lines:
    metric -> [(y, label)], thick light lines across that metric's panels (the real data's own value);
    baselines: metric -> [(y, label)], dotted grey lines across that metric's panels (a value of another kind,
    which a thick light line would make look like the real data's own in the legend), or metric -> {run: [(y,
    label)]} where the level is the run's own (the VAE's 1/K of its data's K classes).
    logy "auto": a panel's axis goes log where its values span orders of magnitude, unless its metric is bounded
    above (a share); a log axis is named so in its label.
    Panels are titled and labelled from the metrics' declarations (ctx.spec); the paper's reported values
    are drawn as reference marks where a run's config is the paper's setting (Metric.paper)."""
    runs = ctx.run_labels
    if not metrics or not runs:
        return None
    if len(runs) == 1:
        cols = min(3, len(metrics))  # 2.4 in a panel across a paper's width (style.PAGE_W)
        rows = -(-len(metrics) // cols)
        panels = [(m, runs[0]) for m in metrics]
    else:
        cols, rows = len(runs), len(metrics)
        panels = [(m, r) for m in metrics for r in runs]
    fig, axes = style.figure(rows, cols, sharey="row" if len(runs) > 1 else False)  # runs compare on one scale
    for ax, (metric, run) in zip(axes.flat, panels):
        spec = ctx.spec(metric)
        if not draw_series(ax, ctx, run, metric, replicates=replicates):
            no_data(ax)
        else:
            sel = (ctx.summary["run"] == run) & (ctx.summary["metric"] == metric)
            vals = ctx.summary.loc[sel, "mean"]  # what is drawn decides the scale
            # a metric bounded above (a share, an entropy) stays linear: its panels sit beside each other (ten class
            # shares), and log hid the ones that reached 0 while stretching one that stopped at 1e-4 over decades
            if logy is True or (logy and spec.bounds[1] is None):
                maybe_log(ax, vals, force=logy is True)
            drawn = len(ax.get_lines())  # the series'; the levels follow
            for y, label in (references or {}).get(run, []):
                ax.axhline(y, label=label, **style.BASELINE)
            levels = (baselines or {}).get(metric, [])
            for y, label in levels.get(run, []) if isinstance(levels, dict) else levels:
                ax.axhline(y, label=label, **style.BASELINE)
            for y, label in (lines or {}).get(metric, []):
                ax.axhline(y, label=label, **style.REAL)
            for y, label in spec.paper_marks(ctx.section(run)):
                ax.axhline(y, label=label, **style.PAPER)
            # a level within the limits the series alone gave (their 0 stretched to +-0.055) leaves them as
            # they were: scaled again, they are the series' and the levels' own
            ax.autoscale_view()
            keep_scale(ax)
            room_for(ax, [line.get_ydata()[0] for line in ax.get_lines()[drawn:]])
        named = ylabels and metric in ylabels  # a figure of its own: the page gives its title
        title = spec.label + WORSE.get(spec.worse or "", "")
        # within its panel, less the y-axis' ticks and label (about 0.5 in)
        ax.set_title(style.wrap(run if named and len(runs) > 1 else "" if named else
                                title if len(runs) == 1 else f"{run}: {title}", fig.get_figwidth() / cols - 0.5))
        ax.set_xlabel("generation")
        integer_x(ax)
        # the title names the metric, the axis what it is counted in (Metric.scale)
        # a log panel beside linear ones says so: ladder ticks (0.05, 0.07, 0.1) alone do not (a no-break space:
        # fit_labels breaks the label between words, and "(log" over "scale)" read as two notes)
        ax.set_ylabel((ylabels or {}).get(metric, spec.scale)
                      + (style.LOG_NOTE if ax.get_yscale() == "log" else ""))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    legend_below(fig, axes)
    return fig
