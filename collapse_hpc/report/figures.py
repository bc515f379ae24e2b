"""The report's figures: each experiment's own (its figures.py, listed by Experiment.figures),
plus every metric of every experiment against generation, and the helpers they share. Each
figure function returns (Figure, caption) or None when the run has nothing for it yet, or raises
NotInThisRun when the run's settings never make its data (the page then leaves it off); runs are
drawn side by side (one column, or row, per run).
"""
from __future__ import annotations

import logging
import re

from collapse_hpc.report import style
from collapse_hpc.report.plots import Context, Fig, draw_series, integer_x, legend_below, maybe_log, no_data, save

log = logging.getLogger("collapse_hpc.report")
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


def metric_grid(ctx: Context, metrics: list[str], *, logy: bool | str = "auto", replicates: bool = False,
                ylabels: dict | None = None, references: dict | None = None):
    """Panels of metric x run (runs side by side), series = regimes and settings; references:
    run -> [(y, label)] drawn as dotted grey lines across that run's panels (baselines)."""
    runs = ctx.run_labels
    if not metrics or not runs:
        return None
    if len(runs) == 1:
        cols = min(4, len(metrics))
        rows = -(-len(metrics) // cols)
        panels = [(m, runs[0]) for m in metrics]
    else:
        cols, rows = len(runs), len(metrics)
        panels = [(m, r) for m in metrics for r in runs]
    fig, axes = style.figure(rows, cols, sharey="row" if len(runs) > 1 else False)  # runs compare on one scale
    for ax, (metric, run) in zip(axes.flat, panels):
        if not draw_series(ax, ctx, run, metric, replicates=replicates):
            no_data(ax)
        else:
            sel = (ctx.summary["run"] == run) & (ctx.summary["metric"] == metric)
            vals = ctx.summary.loc[sel, "mean"]  # what is drawn decides the scale
            if logy:
                maybe_log(ax, vals, force=logy is True)
            for y, label in (references or {}).get(run, []):
                ax.axhline(y, color="0.35", linestyle=":", linewidth=1.2, label=label)
        named = ylabels and metric in ylabels  # a figure of its own: the page gives its title
        ax.set_title(run if named and len(runs) > 1 else "" if named else
                     metric if len(runs) == 1 else f"{run}: {metric}")
        ax.set_xlabel("generation")
        integer_x(ax)
        ax.set_ylabel((ylabels or {}).get(metric, metric))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    legend_below(fig, axes)
    return fig


# ------------------------------------------------------------------ every experiment

PAGE = 16  # metrics per overview figure


def overview(ctx: Context, metrics: list[str]):
    fig = metric_grid(ctx, metrics)
    return fig and (fig, f"Metrics of {ctx.experiment} against generation: mean over seeds and "
                         f"replicates with its 95% confidence interval (t). Which way collapse moves each metric "
                         f"(and so which direction is worse) is stated with this experiment's own figures above "
                         f"and in its metric notes. {GAPS}")


def overviews(ctx: Context) -> list:
    """(key, title, function) per page of the every-metric overview."""
    metrics = ctx.metrics()
    pages = [metrics[i:i + PAGE] for i in range(0, len(metrics), PAGE)] or [[]]
    if len(pages) == 1:
        return [("all_metrics", "All metrics", lambda c: overview(c, pages[0]))]
    return [(f"all_metrics_{i + 1}", f"All metrics ({i + 1} of {len(pages)})", lambda c, p=p: overview(c, p))
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
