"""Every figure of one experiment in the report: its own (Experiment.figures) and the overview
of every metric against generation, saved as PNG and PDF."""
from __future__ import annotations

import contextlib
import logging

from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, NotInThisRun, band_note, metric_grid
from collapse_hpc.plotting.metrics import declared_order
from collapse_hpc.plotting.plots import Context, Fig, num, save

log = logging.getLogger("collapse_hpc.report")


# metrics per overview figure: 4 rows of 3 panels, 9.3 in with the legend, within a journal page's height
# (style.PAGE_H); 16 made 6 rows, 13 in tall
PAGE = 12
# overview pages at most: a mixture of 1000 components records 19,000 per-component metrics, whose ~1,600
# pages kept aggregate drawing for hours
MAX_PAGES = 10


def constant_metrics(ctx: Context) -> dict[str, list[float]]:
    """Metrics with one value throughout each series (every generation, seed and replicate alike) where
    some series has two generations or more: against generation they draw a flat line that says nothing
    (e.g. the run's one classifier's accuracy). metric -> its values (one per series, without repeats).
    Exact equality: a metric that moves at all is kept."""
    out = {}
    for m, d in _each_metric(ctx):
        g = d.groupby(["run", "regime", *ctx.settings()], dropna=False, sort=False, observed=True).agg(
            low=("value", "min"), high=("value", "max"), first=("generation", "min"), last=("generation", "max"))
        # all NaN: not flat (drawn as missing instead)
        if (g["low"] == g["high"]).all() and (g["last"] > g["first"]).any():
            out[m] = sorted(set(g["low"]))
    return out


def one_generation_metrics(ctx: Context) -> dict[str, tuple[int, list[float]]]:
    """Metrics recorded at one generation only (the initial model's test perplexity, the real data's own
    shares: generation 0) where the run has several: a panel of them is one point, every series' hidden
    under the last one drawn. metric -> (that generation, its values: one per series, without repeats)."""
    if ctx.df.empty or ctx.df["generation"].nunique() < 2:
        return {}
    out = {}
    for m, d in _each_metric(ctx):
        if d["generation"].nunique() == 1:
            means = d.groupby(["run", "regime", *ctx.settings()], dropna=False, observed=True)["value"].mean()
            out[m] = (int(d["generation"].min()), sorted(set(means.dropna())))
    return out


def _each_metric(ctx: Context):
    """(metric, its rows) for each metric of the experiment: grouping every row at once would copy a key
    column per grouping key of every row (the report's peak of memory), one metric's rows are a fraction."""
    for m in ctx.metrics():
        yield m, ctx.df[ctx.df["metric"] == m]


def _overview_note(ctx: Context, constant: dict, bookkeeping: list[str], compute: list[str],
                   single: dict | None = None) -> str:
    """What the grids leave out, with the constants' values, for the captions."""
    notes = []
    if single:
        notes.append("Not drawn, being recorded at one generation only (a single point): " + ", ".join(
            f"{ctx.spec(m).label} at generation {g} ({', '.join(num(v) for v in vals)})"
            for m, (g, vals) in sorted(single.items())) + ".")
    if constant:
        notes.append("Not drawn, being one value throughout each series: " + ", ".join(
            f"{ctx.spec(m).label} ({', '.join(num(v) for v in vals)})" for m, vals in sorted(constant.items())) + ".")
    if bookkeeping:
        notes.append("Not drawn, being how the run was set up rather than what it measured (in metrics.parquet "
                     "and in the run bookkeeping table below): " + ", ".join(sorted(bookkeeping)) + ".")
    if compute:
        notes.append("Timings are in the Compute section: " + ", ".join(sorted(compute)) + ".")
    return " ".join(notes)


def overview(ctx: Context, metrics: list[str], note: str = ""):
    fig = metric_grid(ctx, metrics)
    if not fig:
        return None
    return fig, (f"Metrics of {ctx.experiment} against generation: {band_note(ctx, metrics)}. ↑ worse, ↓ worse: "
                 f"the way collapse moves a metric, as the experiment declares it (none: neither, or not "
                 f"known). {note + ' ' if note else ''}{GAPS}")


def overviews(ctx: Context) -> list:
    """(key, title, function) per page of the every-metric overview: every metric but those that are one
    value throughout each series (constant_metrics) or recorded at one generation only (one_generation_metrics;
    both named with their values in the caption) and those the experiment declares bookkeeping or compute
    (Metric.kind: the bookkeeping table and the Compute section show them)."""
    constant = constant_metrics(ctx)
    kinds = {m: ctx.spec(m).kind for m in ctx.metrics()}
    single = {m: v for m, v in one_generation_metrics(ctx).items() if kinds[m] == "result" and m not in constant}
    bookkeeping = [m for m in ctx.metrics() if kinds[m] == "bookkeeping" and m not in constant]
    compute = [m for m in ctx.metrics() if kinds[m] == "compute"]
    metrics = sorted((m for m in ctx.metrics() if m not in constant and m not in single and kinds[m] == "result"),
                     key=lambda m: declared_order(ctx.specs, m))
    note = _overview_note(ctx, constant, bookkeeping, compute, single)
    if ctx.metrics() and not metrics:  # nothing moves: no grid to draw (not "no data yet")
        return []
    most = PAGE * MAX_PAGES
    if len(metrics) > most:
        left = (f"Not drawn: the last {len(metrics) - most} of {len(metrics)} metrics in the declared order (these "
                f"pages show the first {most}; every metric is in metrics.parquet and summary.csv).")
        note, metrics = " ".join(filter(None, [note, left])), metrics[:most]
    pages = [metrics[i:i + PAGE] for i in range(0, len(metrics), PAGE)] or [[]]
    if len(pages) == 1:
        return [("all_metrics", "All metrics", lambda c: overview(c, pages[0], note))]
    return [(f"all_metrics_{i + 1}", f"All metrics ({i + 1} of {len(pages)})", lambda c, p=p: overview(c, p, note))
            for i, p in enumerate(pages)]


@contextlib.contextmanager
def figure_style():
    """The report's style, and matplotlib's font fallbacks kept off the terminal: a font cache shared
    with another matplotlib install (~/.cache/matplotlib is per version, not per install) can lack
    the bundled STIX and Computer Modern fonts, and each figure then logs one findfont line per
    family while falling back to DejaVu Sans, burying the report's own lines."""
    from matplotlib import rc_context

    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)
    try:
        with rc_context(style.RC):
            yield
    finally:
        fonts.setLevel(level)


def draw(ctx: Context, out) -> list[Fig]:
    """Every figure of one experiment, saved as PNG and PDF under `out`. A figure the data cannot
    support yet comes back without files (the page says so)."""
    from collapse_hpc import experiments

    figs = []
    for key, title, fn in experiments.describe(ctx.experiment).figures() + overviews(ctx):
        with figure_style():
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
