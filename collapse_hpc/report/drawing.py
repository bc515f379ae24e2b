"""Every figure of one experiment in the report: its own (Experiment.figures) and the overview
of every metric against generation, saved as PNG and PDF."""
from __future__ import annotations

import logging

from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, NotInThisRun, metric_grid
from collapse_hpc.plotting.plots import Context, Fig, num, save

log = logging.getLogger("collapse_hpc.report")


PAGE = 16  # metrics per overview figure


def constant_metrics(ctx: Context) -> dict[str, list[float]]:
    """Metrics with one value throughout each series (every generation, seed and replicate alike) where
    some series has two generations or more: against generation they draw a flat line that says nothing
    (e.g. the run's one classifier's accuracy). metric -> its values (one per series, without repeats).
    Exact equality: a metric that moves at all is kept."""
    d = ctx.df
    if d.empty:
        return {}
    g = d.groupby(["run", "regime", *ctx.settings(), "metric"], dropna=False, sort=False).agg(
        low=("value", "min"), high=("value", "max"), first=("generation", "min"), last=("generation", "max"))
    g = g.reset_index()
    g["flat"] = g["low"] == g["high"]  # all NaN: not flat (drawn as missing instead)
    g["span"] = g["last"] > g["first"]
    per = g.groupby("metric").agg(flat=("flat", "all"), span=("span", "any"))
    return {m: sorted(set(g.loc[g["metric"] == m, "low"])) for m in per.index[per["flat"] & per["span"]]}


def _overview_note(ctx: Context, constant: dict, bookkeeping: list[str]) -> str:
    """What the grids leave out, with the constants' values, for the captions."""
    notes = []
    if constant:
        notes.append("Not drawn, being one value throughout each series: " + ", ".join(
            f"{m} ({', '.join(num(v) for v in vals)})" for m, vals in sorted(constant.items())) + ".")
    if bookkeeping:
        notes.append("Not drawn, being how the run was set up rather than what it measured (in metrics.parquet "
                     "and in the table below): " + ", ".join(sorted(bookkeeping)) + ".")
    return " ".join(notes)


def overview(ctx: Context, metrics: list[str], note: str = ""):
    fig = metric_grid(ctx, metrics)
    if not fig:
        return None
    n = ctx.summary.loc[ctx.summary["metric"].isin(metrics), "n"]
    if len(n) and n.max() <= 1:
        what = "one value per generation and series (one seed, no replicates: no interval)"
    else:
        counts = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())} to {int(n.max())}"
        what = (f"mean over the seeds and replicates ({counts} values per point) with its 95% confidence "
                f"interval (t)")
    return fig, (f"Metrics of {ctx.experiment} against generation: {what}. Which way collapse moves each metric "
                 f"(and so which direction is worse) is stated with this experiment's own figures above and in "
                 f"its metric notes. {note + ' ' if note else ''}{GAPS}")


def overviews(ctx: Context) -> list:
    """(key, title, function) per page of the every-metric overview: every metric but those that are one
    value throughout each series (constant_metrics) and those the experiment declares bookkeeping."""
    from collapse_hpc import experiments

    constant = constant_metrics(ctx)
    declared = set(experiments.describe(ctx.experiment).bookkeeping)
    bookkeeping = [m for m in ctx.metrics() if m in declared and m not in constant]
    metrics = [m for m in ctx.metrics() if m not in constant and m not in declared]
    note = _overview_note(ctx, constant, bookkeeping)
    if ctx.metrics() and not metrics:  # nothing moves: no grid to draw (not "no data yet")
        return []
    pages = [metrics[i:i + PAGE] for i in range(0, len(metrics), PAGE)] or [[]]
    if len(pages) == 1:
        return [("all_metrics", "All metrics", lambda c: overview(c, pages[0], note))]
    return [(f"all_metrics_{i + 1}", f"All metrics ({i + 1} of {len(pages)})", lambda c, p=p: overview(c, p, note))
            for i, p in enumerate(pages)]


def draw(ctx: Context, out) -> list[Fig]:
    """Every figure of one experiment, saved as PNG and PDF under `out`. A figure the data cannot
    support yet comes back without files (the page says so)."""
    from matplotlib import rc_context

    from collapse_hpc import experiments

    figs = []
    for key, title, fn in experiments.describe(ctx.experiment).figures() + overviews(ctx):
        with rc_context(style.RC):
            try:
                made = fn(ctx)
            except NotInThisRun:
                continue
            except Exception as e:  # one broken figure must not cost the whole report
                log.warning("figure %s_%s failed: %s: %s", ctx.experiment, key, type(e).__name__, e)
                made, error = None, f"could not be drawn: {type(e).__name__}: {e}"
            else:
                error = "not available yet (no finished data for it)"
            fig = Fig(f"{ctx.experiment}_{key}", title, error)
            if made:
                figure, fig.caption = made
                fig.files = save(figure, out, fig.key)
        figs.append(fig)
    return figs
