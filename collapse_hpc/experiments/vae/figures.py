"""The VAE's report figures: sample grids of every generation and the class entropy."""
from __future__ import annotations

from collapse_hpc.report import style
from collapse_hpc.report.figures import GAPS, metric_grid, pick
from collapse_hpc.report.plots import (Context, no_data, series_label, series_order)


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


FIGURES = [("samples", "Samples of every generation", vae_samples),
           ("class_entropy", "Class entropy", vae_class_entropy)]
