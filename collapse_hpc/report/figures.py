"""The report's figures: the paper's figures per experiment, plus every metric of every
experiment against generation. Each figure function returns (Figure, caption) or None when
the run has nothing for it yet; runs are drawn side by side (one column, or row, per run).
"""
from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from collapse_hpc.report import style
from collapse_hpc.report.plots import (Context, Fig, draw_series, gens_axis, integer_x, legend_below, log_y, maybe_log,
                                       no_data, plain_log_ticks, save, series_label, series_order)

log = logging.getLogger("collapse_hpc.report")
GAPS = "Gaps mark generations not (yet) finished."


def pick(metrics, *names, pattern: str | None = None) -> str | None:
    """The first of `names` the experiment records, else the first metric matching `pattern`."""
    for n in names:
        if n in metrics:
            return n
    if pattern:
        return next((m for m in metrics if re.search(pattern, m)), None)
    return None


def metric_grid(ctx: Context, metrics: list[str], *, logy: bool | str = "auto", replicates: bool = False,
                ylabels: dict | None = None):
    """Panels of metric x run (runs side by side), series = regimes and settings."""
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
                         f"replicates with its 95% confidence interval (t). {GAPS}")


def overviews(ctx: Context) -> list:
    """(key, title, function) per page of the every-metric overview."""
    metrics = ctx.metrics()
    pages = [metrics[i:i + PAGE] for i in range(0, len(metrics), PAGE)] or [[]]
    if len(pages) == 1:
        return [("all_metrics", "All metrics", lambda c: overview(c, pages[0]))]
    return [(f"all_metrics_{i + 1}", f"All metrics ({i + 1} of {len(pages)})", lambda c, p=p: overview(c, p))
            for i, p in enumerate(pages)]


# ------------------------------------------------------------------ language model

def lm_sequence_ppl(ctx: Context):
    """The paper's headline figure: perplexity (under the generation-0 model) of each sequence a
    generation produced, one histogram per generation, one panel per regime."""
    tables = []
    for run in ctx.runs:
        for unit in run.finished("lm"):
            path = unit.file("sequence_ppl.parquet")
            if path is None:
                continue
            if "ppl" not in pq.read_schema(path).names:  # evaluate.perplexity_table's column
                continue
            ppl = pq.read_table(path, columns=["ppl"]).column("ppl").to_numpy()
            info = run.variant("lm", unit.variant)
            row = {"regime": info.regime, **info.settings}
            tables.append(pd.DataFrame({"run": run.label, "series": series_label(row, list(info.settings)),
                                        "generation": unit.index, "ppl": ppl}))
    if not tables:
        return None
    d = pd.concat(tables, ignore_index=True)
    d = d[np.isfinite(d["ppl"]) & (d["ppl"] > 0)]
    if d.empty:
        return None
    runs = [r for r in ctx.run_labels if r in set(d["run"])]
    series = sorted(d["series"].unique(), key=series_order)
    lo, hi = d["ppl"].min(), d["ppl"].max()  # the whole range: the tail of unlikely sequences matters
    bins = np.geomspace(lo, max(hi, lo * 1.01), 50)
    gens = sorted(d["generation"].unique())
    colours = style.generation_colours(len(gens))
    fig, axes = style.figure(len(runs), len(series), sharex=True, sharey=True)
    for r, run in enumerate(runs):
        for c, s in enumerate(series):
            ax = axes[r, c]
            sub = d[(d["run"] == run) & (d["series"] == s)]
            if sub.empty:
                no_data(ax)
            for i, g in enumerate(gens):
                x = sub.loc[sub["generation"] == g, "ppl"].to_numpy()
                if len(x):
                    ax.hist(x, bins=bins, density=True, histtype="step", color=colours[i],
                            linestyle=style.generation_dash(i), linewidth=1.2, label=f"generation {g}")
                    ax.hist(x, bins=bins, density=True, histtype="stepfilled", color=colours[i], alpha=0.08)
            ax.set_xscale("log")
            plain_log_ticks(ax.xaxis)
            ax.set_title(s if len(runs) == 1 else f"{run}: {s}")
            ax.set_xlabel("perplexity under the generation-0 model")
            ax.set_ylabel("density")
    legend_below(fig, axes)
    return fig, ("Perplexity of every sequence generated by each generation, scored by the generation-0 "
                 "model (the paper's headline figure), one panel per regime: later generations produce "
                 "more sequences the original model finds likely, and a tail of ones it finds unlikely.")


def lm_test_ppl(ctx: Context):
    metric = pick(ctx.metrics(), "test_ppl", "test_perplexity", "ppl_test", pattern=r"test.*ppl|ppl.*test")
    fig = metric and metric_grid(ctx, [metric], ylabels={metric: "perplexity on real test data"})
    return fig and (fig, f"Perplexity on the real test set against generation, per regime; band: 95% "
                         f"confidence interval over seeds. {GAPS}")


def lm_diversity(ctx: Context):
    metrics = [m for m in ctx.metrics() if re.fullmatch(
        r"distinct_\d+|unigram_entropy|type_token_ratio|rare_token_share|self_bleu.*", m)]
    fig = metric_grid(ctx, metrics)
    return fig and (fig, "Diversity of the data each generation produces (distinct-n, type-token ratio, "
                         f"unigram entropy, share of rare tokens) against generation. {GAPS}")


# ------------------------------------------------------------------ Gaussian mixture

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


# ------------------------------------------------------------------ single Gaussian

def _per_samples(ctx: Context, metric: str, theory: bool):
    runs = ctx.run_labels
    ns = sorted(ctx.df["samples"].dropna().unique()) if "samples" in ctx.settings() else [None]
    fig, axes = style.figure(len(runs), len(ns), sharey=True)
    for r, run in enumerate(runs):
        for c, n in enumerate(ns):
            ax = axes[r, c]
            fixed = {"samples": n} if n is not None else None
            if not draw_series(ax, ctx, run, metric, fixed=fixed, exclude=("samples",)):
                no_data(ax)
                continue
            if theory and n is not None:
                gens = gens_axis(ctx.planned(run), ctx.df["generation"])
                curve, label = _theory(ctx, run, int(n), gens)
                ax.plot(gens, curve, color="0.35", linestyle=(0, (1, 1)), linewidth=1.6, label=label)
            log_y(ax)
            ax.set_title((f"n = {n}" if n is not None else metric) + ("" if len(runs) == 1 else f" ({run})"))
            ax.set_xlabel("generation k")
            integer_x(ax)
    legend_below(fig, axes)
    return fig


def _theory(ctx: Context, run: str, n: int, gens):
    """E[σ̂²] after generation k under replacement: σ²·f^(k+1) with f = (n−1)/n for the MLE (1 for
    the unbiased estimator) when generation 0 is already a fit to n real points, σ²·f^k when
    generation 0 records the true parameters (every replicate's σ̂ identical there)."""
    sec = ctx.run(run).raw_config.get("gaussian") or {}
    sigma = float(sec.get("sigma", sec.get("std", 1.0)) or 1.0)
    f = 1.0 if sec.get("estimator") == "unbiased" else (n - 1) / n
    d = ctx.df
    first = d[(d["run"] == run) & (d["metric"] == "sigma_hat") & (d["generation"] == 0) & (d["samples"] == n)]
    exact = len(first) > 1 and first["value"].std() == 0
    curve = sigma ** 2 * f ** (gens + (0 if exact else 1))
    if f == 1.0:
        return curve, r"theory (replace, unbiased): $\sigma^2$"
    return curve, r"theory (replace, MLE): $\sigma^2((n-1)/n)^{%s}$" % ("k" if exact else "k+1")


def gaussian_sigma_err(ctx: Context):
    metric = pick(ctx.metrics(), "abs_sigma_err", pattern=r"sigma.*err")
    if not metric:
        return None
    fig = _per_samples(ctx, metric, theory=False)
    for ax in fig.axes:
        ax.set_ylabel("|σ − σ̂|") if ax.get_subplotspec().is_first_col() else None
    return fig, f"|σ − σ̂| against generation, one panel per sample size n; replace against accumulate. {GAPS}"


def gaussian_variance(ctx: Context):
    metric = pick(ctx.metrics(), "var_hat", "sigma2_hat")
    if not metric:
        return None
    fig = _per_samples(ctx, metric, theory=True)
    for ax in fig.axes:
        ax.set_ylabel("mean σ̂²") if ax.get_subplotspec().is_first_col() else None
    return fig, ("Mean of the estimated variance σ̂² against generation k, with the theory for the MLE "
                 "under replacement, σ²((n−1)/n)^(k+1) where generation 0 is the first fit to n real points "
                 "(σ²((n−1)/n)^k where generation 0 holds the true parameters); "
                 f"accumulating data keeps the variance. {GAPS}")


# ------------------------------------------------------------------ VAE

def vae_samples(ctx: Context):
    from matplotlib import image

    rows = []  # (run, series, {generation: path})
    for run in ctx.runs:
        grids = {}
        for unit in run.finished("vae"):
            info = run.variant("vae", unit.variant)
            key = series_label({"regime": info.regime, **info.settings}, list(info.settings))
            if info.seed != min(v.seed for v in _variants_of(run, "vae", info.regime)):
                continue  # one seed per regime
            path = unit.file("samples.png")
            if path is not None:
                grids.setdefault(key, {})[unit.index] = path
        rows += [(run, k, v) for k, v in sorted(grids.items(), key=lambda kv: series_order(kv[0]))]
    if not rows:
        return None
    top = max(max(max(v), (r.generations.get("vae") or 0) - 1) for r, _, v in rows)
    fig, axes = style.figure(len(rows), top + 1, w=1.5, h=1.6)
    for r, (run, key, grids) in enumerate(rows):
        for g in range(top + 1):
            ax = axes[r, g]
            if g in grids:
                ax.imshow(image.imread(grids[g]), cmap="gray", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
            else:
                no_data(ax, "missing")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"generation {g}")
            if g == 0:
                ax.set_ylabel(key if len(ctx.runs) == 1 else f"{run.label}\n{key}")
    return fig, ("100 samples decoded from the prior by each generation's VAE (one seed per regime): "
                 "digits blur and converge to a few shapes.")


def _variants_of(run, experiment: str, regime: str):
    vs = [v for (e, _), v in run.variants.items() if e == experiment and v.regime == regime]
    return vs or [run.variant(experiment, u.variant) for u in run.finished(experiment)
                  if run.variant(experiment, u.variant).regime == regime]


def vae_class_entropy(ctx: Context):
    metric = pick(ctx.metrics(), "class_entropy", pattern=r"entropy")
    fig = metric and metric_grid(ctx, [metric], ylabels={metric: "class entropy (nats)"})
    return fig and (fig, "Entropy of the predicted class of the generated samples against generation: "
                         f"lower = less diverse digits. {GAPS}")


FIGURES = {
    "lm": [("sequence_ppl", "Perplexity of generated data under the generation-0 model", lm_sequence_ppl),
           ("test_ppl", "Test perplexity", lm_test_ppl),
           ("diversity", "Diversity of generated data", lm_diversity)],
    "gmm": [("l2", "L2 distance to generation 0", gmm_l2),
            ("variance", "Total variance", gmm_variance),
            ("snapshots", "Samples across generations", gmm_snapshots)],
    "gaussian": [("sigma_err", "Error of the estimated standard deviation", gaussian_sigma_err),
                 ("variance", "Estimated variance against theory", gaussian_variance)],
    "vae": [("samples", "Samples of every generation", vae_samples),
            ("class_entropy", "Class entropy", vae_class_entropy)],
}
WANTED = {name: [t for _, t, _ in figs] for name, figs in FIGURES.items()}


def draw(ctx: Context, out) -> list[Fig]:
    """Every figure of one experiment, saved as PNG and PDF under `out`. A figure the data cannot
    support yet comes back without files (the page says so)."""
    from matplotlib import rc_context

    figs = []
    for key, title, fn in FIGURES.get(ctx.experiment, []) + overviews(ctx):
        with rc_context(style.RC):
            try:
                made = fn(ctx)
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
