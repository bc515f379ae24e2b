"""The single Gaussian's report figures, each against the theory of theory.py where it has one:
error of sigma-hat, mean variance, typical (log) variance and Wasserstein-2 distance to the original."""
from __future__ import annotations

from collapse_hpc.experiments.gaussian import theory
from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, pick
from collapse_hpc.plotting.plots import (Context, draw_series, gens_axis, integer_x, legend_below, log_y, no_data)

# quantity -> (theory function, label of its curve with %(t)s for the number of fits)
THEORY = {
    "var_hat": (theory.mean_variance, {
        "mle": r"theory (replace, MLE): $E\,\hat\sigma^2=\sigma^2((n-1)/n)^{%(t)s}$",
        "unbiased": r"theory (replace, unbiased): $E\,\hat\sigma^2=\sigma^2$ (martingale)"}),
    "log_var_hat": (theory.mean_log_variance, r"theory (replace): $\log\sigma^2+(%(t)s)\,E\log V$"),
    "w2_squared": (theory.mean_w2_squared, r"theory (replace): $E\,W_2^2$ after %(t)s fits"),
}


def _per_samples(ctx: Context, metric: str, quantity: str | None, ylabel: str, log: bool = True):
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
            if quantity and n is not None:
                gens = gens_axis(ctx.planned(run), ctx.df["generation"])
                curve, label = _theory(ctx, run, int(n), gens, quantity)
                ax.plot(gens, curve, color="0.35", linestyle=(0, (1, 1)), linewidth=1.6, label=label)
            if log:
                log_y(ax)
            ax.set_title((f"n = {n}" if n is not None else metric) + ("" if len(runs) == 1 else f" ({run})"))
            ax.set_xlabel("generation k")
            ax.set_ylabel(ylabel if c == 0 else "")
            integer_x(ax)
    legend_below(fig, axes)
    return fig


def _theory(ctx: Context, run: str, n: int, gens, quantity: str = "var_hat"):
    """The theory curve of `quantity` at generations `gens` under replace, and its legend label.
    Generation k has had k+1 fits when generation 0 is a fit to n real points, k when generation 0
    records the true parameters (every replicate's sigma_hat identical there)."""
    sec = ctx.run(run).raw_config.get("gaussian") or {}
    sigma = float(sec.get("sigma", sec.get("std", 1.0)) or 1.0)
    estimator = sec.get("estimator") or "mle"
    d = ctx.df
    first = d[(d["run"] == run) & (d["metric"] == "sigma_hat") & (d["generation"] == 0) & (d["samples"] == n)]
    exact = len(first) > 1 and first["value"].std() == 0
    fn, labels = THEORY[quantity]
    curve = fn(sigma, n, estimator, gens + (0 if exact else 1))
    label = labels[estimator] if isinstance(labels, dict) else labels
    return curve, label % {"t": "k" if exact else "k+1"}


def gaussian_sigma_err(ctx: Context):
    metric = pick(ctx.metrics(), "sigma_error", "abs_sigma_err", pattern=r"sigma.*err")
    if not metric:
        return None
    fig = _per_samples(ctx, metric, None, "|σ − σ̂|")
    return fig, ("|σ − σ̂| against generation, one panel per sample size n. Collapse: the error grows "
                 f"(higher is worse) under replace, while accumulating data keeps it small. {GAPS}")


def gaussian_variance(ctx: Context):
    metric = pick(ctx.metrics(), "var_hat", "sigma2_hat")
    if not metric:
        return None
    fig = _per_samples(ctx, metric, "var_hat", "mean σ̂²")
    return fig, ("Mean over replicates of the estimated variance σ̂² against generation k (log scale), with "
                 "its expectation under replace: σ²((n−1)/n)^(k+1) for the MLE (generation 0 is the first fit "
                 "to n real points), σ² for the unbiased estimator, whose mean does not move although almost "
                 "every replicate's variance collapses (next figure). Collapse: the curve falls (lower is "
                 f"worse); accumulating data keeps the variance. {GAPS}")


TYPICAL = ("Typical variance: mean over replicates of log σ̂² against generation k, with its expectation "
           "under replace, log σ² + (k+1)·E log V where V ~ χ²(n−1)/d is one fit's variance ratio (d = n for "
           "the MLE, n−1 for the unbiased estimator; E log V = ψ((n−1)/2) + log(2/d) < 0 for both). The "
           "straight fall is the theorem's collapse: σ̂² → 0 almost surely, whichever estimator. Lower is "
           "worse; accumulate stays near log σ² = 0 for σ = 1.")
W2 = ("Squared Wasserstein-2 distance between the real N(μ, σ²) and each generation's fit, (μ̂−μ)² + (σ̂−σ)², "
      "mean over replicates (log scale), with its expectation under replace: σ²(Σ_{j≤k} e^j/n + e^(k+1) − "
      "2m^(k+1) + 1), e = E V, m = E √V (theory.py). Under the unbiased estimator it grows without bound (the "
      "mean performs a random walk); under the MLE it levels off near 2σ² as σ̂ dies. The unbiased growth is "
      "carried by ever rarer replicates (almost every one's σ̂ dies, so its W₂ settles), so a mean over "
      "finitely many replicates falls below the curve once those are missed (small n, late generations). "
      "Collapse: the distance grows (higher is worse); accumulating data keeps it small.")


def _against_theory(ctx: Context, metric: str, ylabel: str, caption: str, log: bool = True):
    """A metric whose mean theory.py predicts (THEORY's key), per sample size, beside its curve."""
    if metric not in ctx.metrics():
        return None
    return _per_samples(ctx, metric, metric, ylabel, log=log), f"{caption} {GAPS}"


def gaussian_typical_variance(ctx: Context):
    return _against_theory(ctx, "log_var_hat", "mean log σ̂²", TYPICAL, log=False)


def gaussian_w2(ctx: Context):
    return _against_theory(ctx, "w2_squared", "mean W₂²", W2)


FIGURES = [("sigma_err", "Error of the estimated standard deviation", gaussian_sigma_err),
           ("variance", "Estimated variance against theory", gaussian_variance),
           ("typical_variance", "Typical variance (mean log σ̂²) against theory", gaussian_typical_variance),
           ("w2", "Wasserstein-2 distance to the original against theory", gaussian_w2)]
