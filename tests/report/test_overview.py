"""Captions computed from the run's own numbers (plotting.figures.trend), and the All-metrics grids without
metrics that are one value throughout each series or that record how the run was set up."""
import pandas as pd

from collapse_hpc.plotting.figures import trend
from collapse_hpc.report import drawing
from tests.report import synthetic
from tests.report.test_figures import _context


def test_trend_reads_first_and_last_generation_from_the_summary(tmp_path):
    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 12}}, generations=1)
    synthetic.gmm(root, generations=12)
    ctx = _context(root, "gmm")
    s = ctx.summary[ctx.summary["metric"] == "c0_cov_trace"].set_index(["regime", "generation"])["mean"]
    text = trend(ctx, "c0_cov_trace")
    assert text == (f"replace {s['replace-p0', 0]:.3g} → {s['replace-p0', 11]:.3g}, accumulate "
                    f"{s['accumulate', 0]:.3g} → {s['accumulate', 11]:.3g} (generation 0 → 11)")
    med = ctx.df[ctx.df["metric"] == "c0_cov_trace"].groupby(["regime", "generation"])["value"].median()
    assert f"replace {med['replace-p0', 2]:.3g} → " in trend(ctx, "c0_cov_trace", stat="median", start=2)
    assert trend(ctx, "no_such_metric") == ""


def test_all_metrics_leave_out_constant_and_bookkeeping_metrics(full_run):
    ctx = _context(full_run, "vae")
    ((_, _, draw),) = drawing.overviews(ctx)
    fig, caption = draw(ctx)
    drawn = {" ".join(ax.get_title().split()) for ax in fig.axes if ax.get_visible()}  # a long title breaks
    # titled by their declarations (vae/metrics.py), with the way collapse moves them
    assert drawn == {"class entropy (↓ worse)", "rarest class's share (↓ worse)", "latent tail share (↓ worse)"}
    assert "classifier accuracy (0.94)" in caption  # one value throughout: not drawn
    assert "real_share." in caption and "how the run was set up" in caption  # declared bookkeeping
    assert "one value per generation and series (n = 1: one seed, no replicates), so no interval" in caption


def test_a_metric_that_moves_at_all_stays_in_the_grid():
    from collapse_hpc.plotting.plots import Context
    from collapse_hpc.report import stats

    rows = []
    for regime, level in (("replace-p0", 5.0), ("accumulate", 7.0)):
        for g in range(3):
            for r in range(2):
                rows += [("run", "toy", "v", regime, 0, r, g, "flat", 1.0),  # the same everywhere
                         ("run", "toy", "v", regime, 0, r, g, "per_series", level),  # flat within each series
                         ("run", "toy", "v", regime, 0, r, g, "moves", 1.0 + (g == 2 and r == 1) * 1e-12),
                         ("run", "toy", "v", regime, 0, r, g, "missing", float("nan"))]
    rows += [("run", "toy", "v", "replace-p0", 0, 0, 0, "once", 3.0)]  # one generation: not a line at all
    df = pd.DataFrame(rows, columns=["run", "experiment", "variant", "regime", "seed", "replicate", "generation",
                                     "metric", "value"])
    df = df.assign(kind=df["regime"].map({"replace-p0": "replace", "accumulate": "accumulate"}), keep_fraction=0.0,
                   verifier_quantile=0.5)  # the regime's values, as collect.tidy gives them
    ctx = Context("toy", df, stats.summarise(df), [])
    assert drawing.constant_metrics(ctx) == {"flat": [1.0], "per_series": [5.0, 7.0]}


def test_all_metrics_leave_out_a_metric_of_generation_0_only(full_run):
    """The initial model's test perplexity and the real data's shares exist at generation 0 only: as
    panels they were one point each, every series but the last hidden under it. The caption gives them."""
    from tests.report.synthetic import REAL_MIDDLE_SHARE, REAL_RARE_SHARE, ZERO_SHOT_PPL

    ctx = _context(full_run, "lm")
    captions, titles = [], set()
    for _, _, draw in drawing.overviews(ctx):
        fig, caption = draw(ctx)
        captions.append(caption)
        titles |= {ax.get_title() for ax in fig.axes if ax.get_visible()}
    for metric in ("zero_shot_test_ppl", "real_rare_token_share", "real_middle_token_share"):
        assert not any(t.startswith(ctx.spec(metric).label) for t in titles), titles
    assert any(t.startswith(ctx.spec("test_ppl").label) for t in titles)
    note = (f"recorded at one generation only (a single point): {ctx.spec('real_middle_token_share').label} at "
            f"generation 0 ({REAL_MIDDLE_SHARE:g}), {ctx.spec('real_rare_token_share').label} at generation 0 "
            f"({REAL_RARE_SHARE:g}), {ctx.spec('zero_shot_test_ppl').label} at generation 0 ({ZERO_SHOT_PPL:g})")
    assert all(note in c for c in captions), captions[0]


def test_a_metric_is_named_and_measured_alike_in_its_figure_and_the_comparison_table():
    """The comparison table (from the metrics' declarations) said "label entropy" beside a figure and a
    section titled class entropy, validation loss in "nats" beside training loss in "nats per token", and
    the EM lower bound in "nats" without saying of what."""
    from collapse_hpc import experiments
    from collapse_hpc.experiments.lm.figures import CURVES

    declared = {e: experiments.describe(e).metric_specs([]) for e in ("lm", "gmm", "vae")}
    entropy = declared["vae"]["class_entropy"]
    assert f"{entropy.label} ({entropy.unit})" == "class entropy (nats)"  # vae_class_entropy's axis
    assert f"training loss ({declared['lm']['val_loss'].unit})" == dict(CURVES)["loss"]
    assert declared["gmm"]["lower_bound"].unit == "nats per point"


def test_the_overview_draws_a_bounded_number_of_pages(monkeypatch):
    """A mixture of 1000 components records ~19,000 per-component metrics: the overview made a page of 12
    panels for each, ~1,600 figures that kept aggregate drawing for hours. It stops at MAX_PAGES and says
    how many metrics are left to metrics.parquet."""
    from collapse_hpc.plotting.plots import Context
    from collapse_hpc.report import stats

    names = [f"m{i:04d}" for i in range(drawing.PAGE * drawing.MAX_PAGES + 30)]
    rows = [("run", "toy", "v", "replace-p0", 0, r, g, m, float(g * (r + 1) + i))
            for i, m in enumerate(names) for g in range(2) for r in range(2)]
    df = pd.DataFrame(rows, columns=["run", "experiment", "variant", "regime", "seed", "replicate", "generation",
                                     "metric", "value"]).assign(kind="replace", keep_fraction=0.0,
                                                                verifier_quantile=0.5)
    ctx = Context("toy", df, stats.summarise(df), [])
    monkeypatch.setattr(drawing, "overview", lambda c, metrics, note: (metrics, note))  # what each page would draw
    pages = drawing.overviews(ctx)
    assert len(pages) == drawing.MAX_PAGES
    assert pages[-1][1] == f"All metrics ({drawing.MAX_PAGES} of {drawing.MAX_PAGES})"
    drawn = [draw(ctx) for _, _, draw in pages]
    assert [m for metrics, _ in drawn for m in metrics] == names[:drawing.PAGE * drawing.MAX_PAGES]
    assert all(f"Not drawn: the last 30 of {len(names)} metrics" in note for _, note in drawn)
