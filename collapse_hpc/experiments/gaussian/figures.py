"""The single Gaussian's report figures: error of sigma-hat and the variance against theory."""
from __future__ import annotations

from collapse_hpc.report import style
from collapse_hpc.report.figures import GAPS, pick
from collapse_hpc.report.plots import (Context, draw_series, gens_axis, integer_x, legend_below, log_y, no_data)


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


FIGURES = [("sigma_err", "Error of the estimated standard deviation", gaussian_sigma_err),
           ("variance", "Estimated variance against theory", gaussian_variance)]
