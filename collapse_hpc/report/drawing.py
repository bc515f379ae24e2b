"""Every figure of one experiment in the report: its own (Experiment.figures) and the overview
of every metric against generation, saved as PNG and PDF."""
from __future__ import annotations

import logging

from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, NotInThisRun, metric_grid
from collapse_hpc.plotting.plots import Context, Fig, save

log = logging.getLogger("collapse_hpc.report")


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
