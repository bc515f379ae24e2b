"""The single Gaussian's report figures, each against the theory of theory.py where it has one:
error of mu-hat and of sigma-hat, mean variance, typical (log) variance, Wasserstein-2 distance to the original,
and the tails (the mass each fit puts beyond the original's 2 and 3 sigma)."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from collapse_hpc.experiments.gaussian import theory
from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, band_note, mean_line, median_and_mean, pick, rescale_row, trend
from collapse_hpc.plotting.plots import (Context, draw_series, gens_axis, integer_x, legend_below, log_y, no_data,
                                         num, series_data, series_rows)

# quantity -> (theory function, label of its curve with %(t)s for the number of fits)
THEORY = {
    "var_hat": (theory.mean_variance, {
        "mle": r"theory (replace, MLE): $E\,\hat\sigma^2=\sigma^2((n-1)/n)^{%(t)s}$",
        "unbiased": r"theory (replace, unbiased): $E\,\hat\sigma^2=\sigma^2$ (martingale)"}),
    "log_var_hat": (theory.mean_log_variance, r"theory (replace): $\log\sigma^2+(%(t)s)\,E\log V$"),
    "w2_squared": (theory.mean_w2_squared, r"theory (replace): $E\,W_2^2$ after %(t)s fits"),
}
# a quantity whose theory value can underflow a float -> its log (n = 2, the MLE, 3000 fits: 2^-3000)
LOG_THEORY = {"var_hat": theory.log_mean_variance}
FLOAT_RANGE = 700  # |x| beyond which e^x leaves a float (e^710 overflows, e^-709 loses digits, e^-746 is 0)


def _samples(ctx: Context) -> list:
    return sorted(ctx.df["samples"].dropna().unique()) if "samples" in ctx.settings() else [None]


def _per_samples(ctx: Context, metric: str, quantity: str | None, ylabel: str, log: bool = True):
    """The figure, and the caption's sentence on where a theory curve leaves its (log) axis ("" where none does)."""
    runs = ctx.run_labels
    ns = _samples(ctx)
    fig, axes = style.figure(len(runs), len(ns), sharey=True)
    data, curves = [], []
    for r, run in enumerate(runs):
        for c, n in enumerate(ns):
            ax = axes[r, c]
            # also on an empty first panel: the row's scale is there
            ax.set_ylabel(ylabel + (style.LOG_NOTE if log else "") if c == 0 else "")
            fixed = {"samples": n} if n is not None else None
            if not draw_series(ax, ctx, run, metric, fixed=fixed, exclude=("samples",)):
                no_data(ax, _empty(ctx, run, n))
                continue
            title = (f"n = {n}" if n is not None else metric) + ("" if len(runs) == 1 else f" ({run})")
            data.append(_drawn_values(ax))  # before the theory, and before log_y floors the bands
            if quantity and n is not None:
                # this run's generations: every run's drew a short run's curve on to another's last, far
                # below its data, and the row's shared scale squeezed the other's series flat
                gens = gens_axis(ctx.planned(run), ctx.summary.loc[ctx.summary["run"] == run, "generation"])
                curve, label = _theory(ctx, run, int(n), gens, quantity)
                ax.plot(gens, curve, label=label, **style.THEORY, **_lone_mark(curve))
                curves.append((title, curve))
            if log:
                log_y(ax)
            ax.set_title(title)
            ax.set_xlabel("generation k")
            integer_x(ax)
    legend_below(fig, axes)
    return fig, (_keep_to_data(axes.flat[0], data, curves) if log and data else "")


def _lone_mark(curve) -> dict:
    """A marker where the theory curve has one point (a run of one generation): a line through one point draws
    nothing, and the legend named a curve the panel did not show. A bar as wide as a stretch of the line."""
    if np.isfinite(curve).sum() != 1:
        return {}
    return {"marker": "_", "markersize": 16, "markeredgewidth": style.THEORY["linewidth"]}


def _drawn_values(ax) -> np.ndarray:
    """The positive values a panel's series and their bands span."""
    from matplotlib.collections import PolyCollection

    ys = [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.get_lines()]
    ys += [p.vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    y = np.concatenate(ys) if ys else np.array([])
    return y[np.isfinite(y) & (y > 0)]


# decades a theory curve may widen a log axis beyond the data; past them the axis keeps to the data (n = 2 over
# 20000 generations: the curve falls to 1e-308 and the axis ran from there to 1e16, the data a sliver in it)
LEEWAY = 3.0
MARGIN = 0.05  # the share of the span the axis reaches past what it holds, as matplotlib's own margin


def _keep_to_data(ax, data: list, curves: list) -> str:
    """A log y-axis (shared by the figure's panels) whose theory curves run more than LEEWAY decades past the
    data on a side keeps to the data there; the caption's sentence on where each curve leaves it."""
    y = np.log10(np.concatenate(data))
    if not len(y) or not curves:
        return ""
    lo, hi = y.min(), y.max()
    with np.errstate(divide="ignore"):  # a value that underflowed to 0 is -inf: below the axis
        t = np.concatenate([np.log10(c[np.isfinite(c)]) for _, c in curves])
    low, high = t.min() < lo - LEEWAY, t.max() > hi + LEEWAY
    if not (low or high):
        return ""
    a, b = (lo if low else min(lo, t.min())), (hi if high else max(hi, t.max()))
    room = max(MARGIN * (b - a), 0.1)
    bottom, top = 10.0 ** (a - room), 10.0 ** (b + room)
    ax.set_ylim(bottom, top)
    out = []
    for title, c in curves:
        for side, off in (("below", c < bottom), ("above", c > top)):
            if off.any():
                out.append(f"{title}: {side} from generation {int(np.argmax(off))}")
    return (" The axis keeps to the data's range; the theory curve runs far past it and leaves the axis: "
            + "; ".join(out) + ".")


def _empty(ctx: Context, run: str, n) -> str:
    """What an empty panel of sample size n says: not in the run's plan (another run's n), or no data yet."""
    absent = ctx.unplanned(run, samples=n) if n is not None else None
    return f"n = {n}: {absent}" if absent else "no data yet"


def _theory_at_last(ctx: Context, metric: str, quantity: str) -> str:
    """The theory's value at each sample size's last finished generation, for a caption."""
    out = []
    for run in ctx.run_labels:
        for n in _samples(ctx):
            s = ctx.summary[(ctx.summary["run"] == run) & (ctx.summary["metric"] == metric)]
            s = s[s["samples"] == n] if n is not None else s
            if n is None or s.empty:
                continue
            last = int(s["generation"].max())
            value = _theory_value(ctx, run, int(n), last, quantity)
            out.append(f"n = {n}: {value} at generation {last}" + ("" if len(ctx.run_labels) == 1 else f" ({run})"))
    return "; ".join(out)


def _theory_value(ctx: Context, run: str, n: int, last: int, quantity: str) -> str:
    """The theory's value at generation `last` for a caption; from its log as a power of ten where the value
    underflows a float (it read '0 at generation 2999')."""
    if quantity in LOG_THEORY:
        x = float(_theory(ctx, run, n, np.array([last]), quantity, log=True)[0][0])
        if x < -FLOAT_RANGE:
            return _e_to(x)
    return num(_theory(ctx, run, n, np.array([last]), quantity)[0][0], 3)


def _here(ctx: Context, metric: str, quantity: str | None = None) -> str:
    """'Drawn: <the line and its band>. Here: <each series first → last>[; theory under replace: …].' from this
    run's numbers."""
    measured = trend(ctx, metric)
    if not measured:
        return ""
    against = quantity and _theory_at_last(ctx, metric, quantity)
    return (f" Drawn: {band_note(ctx, [metric])}. Here, the mean over replicates: {measured}"
            + (f"; theory under replace: {against}" if against else "") + ".")


def _theory(ctx: Context, run: str, n: int, gens, quantity: str = "var_hat", log: bool = False):
    """The theory curve of `quantity` (its log with `log`, LOG_THEORY) at generations `gens` under replace,
    and its legend label.
    Generation k has had k+1 fits when generation 0 is a fit to n real points, k when generation 0
    records the true parameters (every replicate's sigma_hat identical there)."""
    sec = ctx.run(run).raw_config.get("gaussian") or {}
    sigma = float(sec.get("sigma", sec.get("std", 1.0)) or 1.0)
    estimator = sec.get("estimator") or "mle"
    exact = _exact_start(ctx, run, n)
    fn, labels = THEORY[quantity]
    curve = (LOG_THEORY[quantity] if log else fn)(sigma, n, estimator, gens + (0 if exact else 1))
    label = labels[estimator] if isinstance(labels, dict) else labels
    return curve, label % {"t": "k" if exact else "k+1"}


def _exact_start(ctx: Context, run: str, n: int) -> bool:
    """Whether generation 0 records the true parameters (every replicate's sigma_hat identical) rather than
    a first fit to n real points."""
    d = ctx.df
    first = d[(d["run"] == run) & (d["metric"] == "sigma_hat") & (d["generation"] == 0) & (d["samples"] == n)]
    return len(first) > 1 and first["value"].std() == 0


def _e_to(x: float) -> str:
    """e^x for a caption; as a power of ten past a float's range (n = 2 over 3000 generations: e^14800,
    where it read '—' and numpy warned of the overflow; e^-2079, which read 0)."""
    return num(math.exp(x), 2) if abs(x) < FLOAT_RANGE else f"10^{x / math.log(10):.0f}"


def _carried_by_rare(ctx: Context, metric: str) -> str:
    """Sample sizes whose mean variance this run's replicates cannot follow to its last generation: the
    spread of log σ̂² there (theory.sd_log_variance) makes e^(sd²) above a tenth of the replicates."""
    out = []
    for run in ctx.run_labels:
        s = ctx.summary[(ctx.summary["run"] == run) & (ctx.summary["metric"] == metric)]
        for n in _samples(ctx) if "samples" in s else []:
            at = s[s["samples"] == n]
            if n is None or at.empty:
                continue
            last = at[at["generation"] == at["generation"].max()].iloc[0]
            fits = int(last["generation"]) + (0 if _exact_start(ctx, run, int(n)) else 1)
            sd = float(theory.sd_log_variance(int(n), fits))
            if sd**2 > math.log(max(int(last["n"]), 1) / 10):
                out.append(f"n = {n}: sd {num(sd, 2)} at generation {int(last['generation'])}, e^(sd²) ≈ "
                           f"{_e_to(sd**2)} against {int(last['n'])} replicates"
                           + ("" if len(ctx.run_labels) == 1 else f" ({run})"))
    return "; ".join(out)


def _error(ctx: Context, names: tuple[str, ...], pattern: str, ylabel: str, caption: str):
    """A fitted parameter's distance to the real one, one panel per sample size n."""
    metric = pick(ctx.metrics(), *names, pattern=pattern)
    if not metric:
        return None
    return _per_samples(ctx, metric, None, ylabel)[0], f"{caption}{_here(ctx, metric)} {GAPS}"


def gaussian_mu_err(ctx: Context):
    return _error(ctx, ("mu_error", "abs_mu_err"), r"mu.*err", "|μ − μ̂|", (
        "|μ − μ̂| against generation, one panel per sample size n. Under replace the fitted mean performs "
        "a random walk whose step j has variance σ̂²_{j−1}/n, so E(μ̂ − μ)² = σ²Σ_{j<t} e^j/n after t fits "
        "(e = E V, theory.py): it grows without bound for the unbiased estimator (e = 1) and levels off "
        "near σ² for the MLE (a mean |μ − μ̂| near √(2/π)σ ≈ 0.8σ), whose variance dies and freezes the walk "
        "where it stands. Collapse as the paper expects it: the error grows (higher is worse); accumulating "
        "data keeps it small."))


def gaussian_sigma_err(ctx: Context):
    return _error(ctx, ("sigma_error", "abs_sigma_err"), r"sigma.*err", "|σ − σ̂|", (
        "|σ − σ̂| against generation, one panel per sample size n. Collapse as the paper expects it: the "
        "error grows (higher is worse) under replace, while accumulating data keeps it small."))


def gaussian_variance(ctx: Context):
    metric = pick(ctx.metrics(), "var_hat", "sigma2_hat")
    if not metric:
        return None
    fig, clipped = _per_samples(ctx, metric, "var_hat", "mean σ̂²")
    rare = _carried_by_rare(ctx, metric)
    return fig, ("Mean over replicates of the estimated variance σ̂² against generation k (log scale), with "
                 "its expectation under replace (thick light orange line, behind the series): "
                 "σ²((n−1)/n)^(k+1) for the MLE (generation 0 is the first fit "
                 "to n real points), σ² for the unbiased estimator, whose mean does not move although almost "
                 "every replicate's variance collapses (next figure). Collapse as expected under replace with the "
                 "MLE: the curve falls (lower is worse); accumulating data keeps the variance. The expectation is "
                 "carried by ever rarer replicates as log σ̂² spreads (its sd after t fits: √(t·ψ′((n−1)/2))): "
                 "a mean over R replicates follows the curve while e^(sd²) stays well below R, and falls below it "
                 "after (the typical variance, next figure, is the one to hold against theory there)."
                 + (f" Under replace here: {rare}." if rare else "")
                 + f"{_here(ctx, metric, 'var_hat')}{clipped} {GAPS}")


TYPICAL = ("Typical variance: mean over replicates of log σ̂² against generation k, with its expectation "
           "under replace (thick light orange line, behind the series), log σ² + (k+1)·E log V where V ~ χ²(n−1)/d "
           "is one fit's variance ratio (d = n for "
           "the MLE, n−1 for the unbiased estimator; E log V = ψ((n−1)/2) + log(2/d) < 0 for both). The "
           "straight fall is the theorem's collapse: σ̂² → 0 almost surely, whichever estimator. Lower is "
           "worse; accumulating data is expected to stay near log σ² (0 for σ = 1).")
W2 = ("Squared Wasserstein-2 distance between the real N(μ, σ²) and each generation's fit, (μ̂−μ)² + (σ̂−σ)², "
      "mean over replicates (log scale), with its expectation under replace (thick light orange line, behind the "
      "series): σ²(Σ_{j≤k} e^j/n + e^(k+1) − "
      "2m^(k+1) + 1), e = E V, m = E √V (theory.py). Under the unbiased estimator it grows without bound (the "
      "mean performs a random walk); under the MLE it levels off near 2σ² as σ̂ dies. The unbiased growth is "
      "carried by ever rarer replicates (almost every one's σ̂ dies, so its W₂ settles), so a mean over "
      "finitely many replicates falls below the curve once those are missed (small n, late generations). "
      "Collapse as expected under replace: the distance grows (higher is worse); accumulating data keeps it small.")


def _against_theory(ctx: Context, metric: str, ylabel: str, caption: str, log: bool = True):
    """A metric whose mean theory.py predicts (THEORY's key), per sample size, beside its curve."""
    if metric not in ctx.metrics():
        return None
    fig, clipped = _per_samples(ctx, metric, metric, ylabel, log=log)
    return fig, f"{caption}{_here(ctx, metric, metric)}{clipped} {GAPS}"


POINT_MASS = ("The mean of log σ̂² is −∞, and its line ends, from the generation where a replicate's σ̂ is exactly 0: "
              "its n draws rounded to one value, as float64 resolves μ̂ + σ̂z from μ̂ only while σ̂ is above about "
              "|μ̂|·1e-16 (a point mass of rounding, where the theory's fall goes on below).")


def _point_masses(ctx: Context, metric: str) -> str:
    """Per series whose log σ̂² is −∞ in some replicate (σ̂ exactly 0): the first such generation, and how many
    replicates are so at the last; "" where none is."""
    out = []
    for run in ctx.run_labels:
        for label, grp in series_rows(ctx, run, metric):
            data = series_data(ctx, run, metric, grp.iloc[0])
            gone = data[np.isneginf(data["value"])]
            if gone.empty:
                continue
            last = int(data["generation"].max())
            at_last = data["generation"] == last
            out.append(f"{label}{'' if len(ctx.run_labels) == 1 else f' ({run})'}: from generation "
                       f"{int(gone['generation'].min())} ({int(np.isneginf(data.loc[at_last, 'value']).sum())} of "
                       f"{int(at_last.sum())} replicates at generation {last})")
    return f" {POINT_MASS} Here: {'; '.join(out)}." if out else ""


def gaussian_typical_variance(ctx: Context):
    drawn = _against_theory(ctx, "log_var_hat", "mean log σ̂²", TYPICAL, log=False)
    return drawn and (drawn[0], drawn[1] + _point_masses(ctx, "log_var_hat"))


def gaussian_w2(ctx: Context):
    return _against_theory(ctx, "w2_squared", "mean W₂²", W2)


def _tails_here(ctx: Context, metric: str) -> str:
    """Per series: the median and the mean at the first and last generation, and the share of replicates
    whose fit has more than half its mass beyond the bound at the last (their mean has wandered off)."""
    out = []
    for run in ctx.run_labels:
        parts, spans = [], set()
        for label, grp in series_rows(ctx, run, metric, stat="median"):
            first, last = int(grp["generation"].min()), int(grp["generation"].max())
            spans.add((first, last))
            mine = series_data(ctx, run, metric, grp.iloc[0])
            at = {g: mine.loc[mine["generation"] == g, "value"] for g in (first, last)}
            away = (at[last] > 0.5).mean()
            parts.append(f"{label}: median {num(at[first].median(), 2)} → {num(at[last].median(), 2)}, mean "
                         f"{num(at[first].mean(), 2)} → {num(at[last].mean(), 2)}"
                         + (f" ({away:.1%} of the fits mostly beyond)" if away else "")
                         + ("" if len(spans) == 1 else f" (generation {first} → {last})"))
        if parts:
            span = f"generation {min(spans)[0]} → {min(spans)[1]}: " if len(spans) == 1 else ""
            out.append(("" if len(ctx.run_labels) == 1 else f"{run}: ") + span + "; ".join(parts))
    return "; ".join(out)


def gaussian_tails(ctx: Context):
    """The mass each generation's fit puts beyond the original's k sigma, per sample size: the median over
    replicates (the typical fit) and the mean, with the real distribution's own mass."""
    tails = [(k, f"tail_mass_{k}sigma") for k in theory.SIGMAS if f"tail_mass_{k}sigma" in ctx.metrics()]
    if not tails:
        return None
    runs, ns = ctx.run_labels, _samples(ctx)
    fig, axes = style.figure(len(runs) * len(tails), len(ns), sharey="row")
    for r, (run, (k, metric)) in enumerate((run, t) for run in runs for t in tails):
        for c, n in enumerate(ns):
            ax = axes[r, c]
            ax.set_ylabel(f"mass beyond μ ± {k}σ" if c == 0 else "")
            fixed = {"samples": n} if n is not None else None
            if not median_and_mean(ax, ctx, run, metric, 2 * ndtr(-k), fixed=fixed, exclude=("samples",),
                                   empty=_empty(ctx, run, n)):
                continue
            ax.set_title((f"n = {n}" if n is not None else metric) + ("" if len(runs) == 1 else f" ({run})"))
            ax.set_xlabel("generation k")
        rescale_row(axes[r], 2 * ndtr(-k))
    legend_below(fig, axes)
    here = " ".join(f"{k}σ, {t}." for k, m in tails if (t := _tails_here(ctx, m)))
    return fig, ("The tails: the mass each generation's fit N(μ̂, σ̂²) puts beyond the real μ ± 2σ (top) and "
                 "± 3σ (bottom), exact (closed form), one panel per sample size n: the median over replicates (the "
                 f"typical fit, solid) and the mean ({mean_line(ctx)}), against the real distribution's own 0.0455 "
                 "and 0.0027 (thick grey). Collapse as the paper expects it: the tails are lost first (lower is "
                 "worse). The mean need not fall with the median: a fit whose variance collapsed puts all its mass "
                 f"where its mean has wandered, which is beyond the bound for some replicates. Here: {here} {GAPS}")


FIGURES = [("mu_err", "Error of the estimated mean", gaussian_mu_err),
           ("sigma_err", "Error of the estimated standard deviation", gaussian_sigma_err),
           ("variance", "Estimated variance against theory", gaussian_variance),
           ("typical_variance", "Typical variance (mean log σ̂²) against theory", gaussian_typical_variance),
           ("w2", "Wasserstein-2 distance to the original against theory", gaussian_w2),
           ("tails", "The tails: mass beyond the original's 2σ and 3σ", gaussian_tails)]
