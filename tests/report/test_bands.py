"""A confidence band stops at the values its metric can take (Metric.bounds): a distance's 95% interval of
three replicates reaching below 0 was drawn below 0 (and off a log axis). summary.csv keeps the interval."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection

from collapse_hpc.plotting.figures import metric_grid
from collapse_hpc.plotting.metrics import NONNEGATIVE, SHARE, Metric, specs
from collapse_hpc.plotting.plots import Context
from collapse_hpc.report import drawing, stats

SPECS = specs(Metric("distance", "distance to the real", bounds=NONNEGATIVE),
              Metric("share", "share beyond 2σ", bounds=SHARE),
              Metric("drift", "drift of the mean"))  # may be negative: no bounds


def _context() -> Context:
    values = {"distance": [0.0, 0.0, 0.3], "share": [0.0, 0.0, 3.0], "drift": [0.0, 0.0, 0.3]}
    rows = [("run", "toy", "replace-p0-s0", "replace-p0", 0, r, g, metric, v * (1 + g / 10))
            for metric, vs in values.items() for g in range(3) for r, v in enumerate(vs)]
    df = pd.DataFrame(rows, columns=["run", "experiment", "variant", "regime", "seed", "replicate", "generation",
                                     "metric", "value"])
    df = df.assign(kind="replace", keep_fraction=0.0, verifier_quantile=0.5)
    df.loc[df["metric"] == "share", "value"] = 1.0 - df.loc[df["metric"] == "share", "value"] / 10
    return Context("toy", df, stats.summarise(df), [RUN], SPECS)


# what the figures read of a run (report.collect's RunData): its label, plan and config
RUN = SimpleNamespace(label="run", generations={"toy": 3}, variants={}, raw_config={}, finished=lambda e: True)


def _band(fig, title: str) -> np.ndarray:
    ax = next(a for a in fig.axes if a.get_title().startswith(title))
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    return np.concatenate([p.vertices[:, 1] for p in band.get_paths()])


def test_a_band_is_drawn_within_its_metrics_bounds_and_the_caption_says_so():
    ctx = _context()
    s = ctx.summary.set_index("metric")
    assert (s.loc["distance", "ci_low"] < 0).all() and (s.loc["share", "ci_high"] > 1).all()  # as computed
    fig = metric_grid(ctx, ["distance", "share", "drift"], logy=False)
    assert _band(fig, "distance").min() == 0.0 and _band(fig, "distance").max() > 0.3
    assert _band(fig, "share").max() == 1.0
    assert _band(fig, "drift").min() < 0  # no bound declared: the interval as computed
    ((_, _, draw),) = drawing.overviews(ctx)
    _, caption = draw(ctx)
    assert ("drawn only within the values a metric can take (cut at 0: distance to the real; at 1: share beyond "
            "2σ; summary.csv keeps the interval as computed)") in caption
    assert (stats.summarise(ctx.df)["ci_low"] == ctx.summary["ci_low"]).all()  # the numbers stay


def test_no_cut_no_note():
    ctx = _context()
    drift = Context("toy", ctx.df[ctx.df["metric"] == "drift"], ctx.summary[ctx.summary["metric"] == "drift"],
                    [RUN], SPECS)
    ((_, _, draw),) = drawing.overviews(drift)
    assert "band: its 95% confidence interval (t)." in draw(drift)[1] and "drawn only within" not in draw(drift)[1]


def test_bounds_cut_values_and_name_what_an_interval_passes():
    spec = Metric("d", "d", bounds=NONNEGATIVE)
    assert spec.within([-0.5, 0.2, np.nan]).tolist()[:2] == [0.0, 0.2] and np.isnan(spec.within([np.nan])[0])
    assert spec.passed([-0.1, 0.0], [1.0, 2.0]) == [0.0] and spec.passed([0.0], [9.0]) == []
    assert Metric("s", "s", bounds=SHARE).passed([-0.1], [1.1]) == [0.0, 1.0]
    assert Metric("x", "x").within([-3.0]).tolist() == [-3.0] and Metric("x", "x").passed([-3.0], [3.0]) == []


def test_the_class_entropy_band_stops_at_the_entropy_of_ten_equal_classes():
    # the VAE's class entropy (nats, ten classes) had its demo band drawn up to 4 nats: past log 10 = 2.30
    from collapse_hpc.experiments.vae.metrics import CLASSES, SPECS as VAE

    rows = [("run", "vae", "replace-p0-s0", "replace-p0", 0, r, g, "class_entropy", v)
            for g in range(3) for r, v in enumerate([0.5, 0.5, 2.3])]
    df = pd.DataFrame(rows, columns=["run", "experiment", "variant", "regime", "seed", "replicate", "generation",
                                     "metric", "value"])
    df = df.assign(kind="replace", keep_fraction=0.0, verifier_quantile=0.5)
    ctx = Context("vae", df, stats.summarise(df), [SimpleNamespace(**{**vars(RUN), "generations": {"vae": 3}})], VAE)
    assert (ctx.summary["ci_high"] > np.log(CLASSES)).all()  # as computed
    band = _band(metric_grid(ctx, ["class_entropy"], logy=False), "class entropy")
    assert np.isclose(band.max(), np.log(CLASSES)) and band.min() == 0.0, band
