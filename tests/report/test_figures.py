"""Every figure of a synthetic four-experiment run is drawn, as PNG and PDF, and is not blank."""
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from collapse_hpc import experiments
from collapse_hpc.experiments.gaussian import figures as gaussian_figures
from collapse_hpc.plotting.figures import NotInThisRun
from collapse_hpc.report import drawing, stats

pytestmark = pytest.mark.slow

BUILTIN = ("lm", "gmm", "gaussian", "vae")  # the synthetic run's experiments
OPTIONAL = {"lm_beyond"}  # only for runs that sweep decoding or run a curated regime
EXPECTED = [f"{e}_{key}" for e in BUILTIN for key, _, _ in experiments.get(e).figures()
            if f"{e}_{key}" not in OPTIONAL] + [f"{e}_all_metrics" for e in BUILTIN]


def ink(png) -> tuple[float, float]:
    """(pixel standard deviation, share of non-white pixels) of a PNG in greyscale."""
    a = np.asarray(Image.open(png).convert("L"), dtype=float)
    return a.std(), (a < 250).mean()


@pytest.mark.parametrize("key", EXPECTED)
def test_figure_drawn_and_not_blank(full_report, key):
    png, pdf = full_report / "figures" / f"{key}.png", full_report / "figures" / f"{key}.pdf"
    assert png.is_file() and pdf.is_file(), f"{key} not drawn"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    std, share = ink(png)
    assert std > 10 and share > 0.02, f"{key} looks blank (std {std:.1f}, ink {share:.3f})"
    w, h = Image.open(png).size
    assert min(w, h) >= 300  # print resolution


def test_no_stray_figures(full_report):
    drawn = {p.stem for p in (full_report / "figures").glob("*.png")}
    assert drawn == set(EXPECTED)
    assert "not available yet" not in (full_report / "results.md").read_text()  # nor listed as missing


def test_summary_csv_matches_long_table(full_report):
    df = pd.read_parquet(full_report / "metrics.parquet")
    summary = pd.read_csv(full_report / "summary.csv")
    one = df[(df["experiment"] == "gmm") & (df["metric"] == "c0_q95_x") & (df["regime"] == "replace-p0")
             & (df["generation"] == 5)]["value"]
    row = summary[(summary["experiment"] == "gmm") & (summary["metric"] == "c0_q95_x")
                  & (summary["regime"] == "replace-p0") & (summary["generation"] == 5)].iloc[0]
    assert row["n"] == len(one) == 6 and row["mean"] == pytest.approx(one.mean())
    assert row["ci_high"] - row["mean"] == pytest.approx(2.5705818366147395 * one.std() / np.sqrt(6), rel=1e-6)


def test_missing_generations_are_absent_from_summary(full_report):
    summary = pd.read_csv(full_report / "summary.csv")
    vae = summary[summary["experiment"] == "vae"]
    assert sorted(vae["generation"].unique()) == [0, 1, 2]  # generation 3 of 4 is not finished
    md = (full_report / "results.md").read_text()
    assert "2 (of 3)" in md  # the table says the last generation reached and how many were planned


def _context(root, experiment):
    from collapse_hpc.report import collect, stats
    from collapse_hpc.plotting.plots import Context

    from collapse_hpc import experiments

    data = [collect.load_run(root)]
    df = collect.tidy(data)
    df = df[df["experiment"] == experiment]
    specs = experiments.describe(experiment).metric_specs(sorted(df["metric"].unique()))
    return Context(experiment, df, stats.summarise(df), data, specs)


def test_lm_training_curves_draw_every_generation_of_every_regime(tmp_path):
    from collapse_hpc.experiments.lm.figures import lm_training_curves
    from tests.report import synthetic

    root = tmp_path / "run"
    synthetic.write_config(root, {"lm": {"generations": 3}}, regimes=[{"name": "replace", "keep_fraction": 0.0},
                                                                      {"name": "replace", "keep_fraction": 0.1}])
    synthetic.lm(root, generations=3, seeds=(0,), small=True)
    fig, caption = lm_training_curves(_context(root, "lm"))
    axes = fig.axes
    assert len(axes) == 4 and "training_curve.parquet" in caption  # loss and tokens/s x 2 regimes
    assert [axes[0].get_ylabel(), axes[2].get_ylabel()] == ["training loss (nats per token)", "tokens/s"]  # units
    loss = axes[0].get_lines()
    assert [line.get_label() for line in loss] == ["generation 0", "generation 1", "generation 2"]
    assert list(loss[0].get_xdata()) == list(range(1, 41))
    written = pd.read_parquet(root / "lm" / "replace-p0-s0" / "gen_000" / "training_curve.parquet")
    np.testing.assert_allclose(loss[0].get_ydata(), written["loss"])
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), written["tokens_per_s"])


def test_one_generation_has_integer_ticks(tmp_path):
    # a line from one point: matplotlib's default x range is +-0.05, whose ticks (-0.045 …) overlap
    from collapse_hpc.plotting import style
    from matplotlib import rc_context
    from tests.report import synthetic

    root = tmp_path / "g1"
    synthetic.write_config(root, {"gaussian": {"generations": 1}}, generations=1)
    synthetic.gaussian(root, generations=1, replicates=5)
    ctx = _context(root, "gaussian")
    with rc_context(style.RC):
        for fn in (gaussian_figures.gaussian_variance, drawing.overviews(ctx)[0][2]):
            fig, _ = fn(ctx)
            fig.canvas.draw()
            for ax in (a for a in fig.axes if a.get_visible()):
                lo, hi = ax.get_xlim()
                shown = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert shown and all(float(t).is_integer() for t in shown), shown


def test_series_ordered_by_regime_before_settings():
    # the same regime keeps its place (and colour) whether or not a setting is in the label
    from collapse_hpc.plotting.plots import series_label, series_order
    from collapse_hpc.regimes import Regime

    rows = [{"regime": r.label, **r.record(), "samples": n} for r, n in (
        (Regime("replace", 0.1), 100), (Regime("accumulate"), 100), (Regime(), 1000), (Regime(), 100),
        (Regime("replace", 0.05), 100), (Regime("accumulate-subsample"), 100))]
    rows.sort(key=lambda row: series_order(row, ["samples"]))
    assert [series_label(row, ["samples"]) for row in rows] == [
        "replace, samples=100", "replace, samples=1000", "replace, keep 5%, samples=100",
        "replace, keep 10%, samples=100", "accumulate, samples=100", "accumulate-subsample, samples=100"]


def _log_labels(lo: float, hi: float) -> list[str]:
    """The tick labels in view of a log_y axis (a panel of the overview's size) over a line from lo to hi."""
    from matplotlib.figure import Figure
    from collapse_hpc.plotting.plots import log_y

    fig = Figure(figsize=(2.4, 2.2))
    ax = fig.subplots()
    ax.plot([0, 1], [lo, hi])
    log_y(ax)
    fig.canvas.draw()
    y0, y1 = ax.get_ylim()
    return [t.get_text() for minor in (False, True) for t in ax.get_yticklabels(minor=minor)
            if t.get_text() and y0 <= t.get_position()[1] <= y1]


def test_log_axes_read_plainly_over_a_decade_or_two():
    # the default labels a narrow log axis "9 x 10^-1", "2 x 10^0"; wide ones keep 10^k
    labels = _log_labels
    narrow = labels(0.85, 2.2)
    assert narrow and all(float(t) for t in narrow), narrow  # plain numbers: 1, 2
    assert "1" in narrow and "2" in narrow
    wide = labels(1e-6, 3)
    assert wide and all("10^" in t for t in wide), wide
    # the demo's |mu - mu_hat| spans 0.02 to 1.1: labelled "0.1" and "1" alone, its n = 1000 levels read nothing
    for lo, hi in ((0.02, 1.1), (0.05, 3)):
        between = labels(lo, hi)
        assert len(between) >= 4 and all(float(t) for t in between), between
        assert {"0.1", "1", "0.2", "0.5"} <= set(between), between


@pytest.mark.parametrize("lo, hi", [(0.05, 0.125), (2.1, 5.3), (0.21, 0.52), (0.6, 1.5), (0.11, 0.28), (0.9, 1.1)])
def test_a_narrow_log_y_axis_labels_at_least_three_plain_values(lo, hi):
    """About 0.4 decades (a share falling from 0.125 to 0.05) read "0.1" and "0.06" alone, or "3" and "4": at
    least three labels, plain numbers, rising, few enough to read."""
    shown = _log_labels(lo, hi)
    values = [float(t) for t in shown]
    assert 3 <= len(shown) <= 8 and values == sorted(set(values)), shown


def test_first_last_table_lists_series_in_the_figures_order(tmp_path):
    from collapse_hpc.report import tables
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3}})
    synthetic.gaussian(root, generations=3, replicates=4)
    ctx = _context(root, "gaussian")
    (_, rows), _ = tables.first_last(ctx.summary, ctx.runs, "gaussian")
    series = list(dict.fromkeys(r[0].split(",")[0] for r in rows))
    assert series == ["replace", "accumulate"], series


def test_lm_beyond_sets_decoding_strategies_and_curated_regimes_side_by_side(tmp_path):
    import shutil

    import pyarrow as pa
    from collapse_hpc.experiments.lm.figures import lm_beyond
    from tests.report import synthetic

    root = tmp_path / "beyond"
    synthetic.write_config(root, {"lm": {"decoding": ["beam", "top_p"]}},
                           regimes=["replace", {"name": "detector-resample", "lm": {"decoding": "beam"}}])
    growth = {"replace-p0-decodingbeam-s0": 10.0, "replace-p0-decodingtop_p0.95-s0": 2.0,
              "detector-resample-decodingbeam-s0": 0.5}
    for variant, step in growth.items():
        for g in range(3):
            metrics = {"generation": pa.array([g], pa.int64()), "test_ppl": [30.0 + step * g],
                       "distinct_4": [0.9 - 0.01 * step * g], "ppl_p50": [20.0 + step * g]}
            synthetic._unit(root, "lm", variant, f"gen_{g:03d}", {"metrics.parquet": metrics})
    ctx = _context(root, "lm")
    fig, caption = lm_beyond(ctx)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "replace, decoding=beam", "replace, decoding=top_p0.95", "detector-resample, decoding=beam"]
    bars = {b.get_label(): [r.get_width() for r in b] for b in ax.containers}
    assert bars == {"generation 0": [30.0, 30.0, 30.0], "last generation (2)": [50.0, 34.0, 31.0]}
    # read top to bottom: the first series first, each one's generation 0 above its last (four panels sharing
    # the y-axis inverted it four times, back to bottom-up); the grid behind the bars, not across them
    first, last = ax.containers
    assert ax.yaxis_inverted() and all(ax.yaxis_inverted() for ax in fig.axes)
    assert [a.get_y() < b.get_y() for a, b in zip(first, last)] == [True] * 3
    assert all(ax.get_axisbelow() is True for ax in fig.axes)
    assert "decoding" in caption.lower()
    # the caption names the regimes and decoding strategies of this run, as the figure does, and no others
    assert caption.startswith("Decoding strategies (beam, top_p0.95) and regimes (replace, detector-resample "
                              "(resampled by a machine-text detector's weights)) side by side"), caption
    assert "accumulate" not in caption and "verifier" not in caption
    # a value of 0 is written beside its bar of length 0, which would otherwise read as a value missing
    assert all(not t.get_text() for a in fig.axes for t in a.texts)
    with_zero = ctx.df.assign(value=ctx.df["value"].where(ctx.df["metric"] != "distinct_4", 0.0))
    zeros, _ = lm_beyond(type(ctx)("lm", with_zero, stats.summarise(with_zero), ctx.runs, ctx.specs))
    assert [t.get_text() for t in zeros.axes[2].texts if t.get_text()] == ["0"] * 6
    # the model that scores generated data named as lm_sequence_ppl's axis names it, not "gen 0"
    assert "median perplexity of generated data under the generation-0 model" in [a.get_xlabel() for a in fig.axes]
    # only generation 0 reached: "generation 0" and "last generation (0)" were two bars of one colour
    for variant in growth:
        for g in (1, 2):
            shutil.rmtree(root / "lm" / variant / f"gen_{g:03d}")
    fig, _ = lm_beyond(_context(root, "lm"))
    assert [b.get_label() for b in fig.axes[0].containers] == ["generation 0 (the last reached)"]
    # a run of the paper's settings alone does not get it, not even as "not available yet"
    plain = tmp_path / "plain"
    synthetic.write_config(plain, {"lm": {"generations": 2}})
    synthetic.lm(plain, generations=2, seeds=(0,), small=True)
    with pytest.raises(NotInThisRun):
        lm_beyond(_context(plain, "lm"))
    assert "lm_beyond" not in {f.key for f in drawing.draw(_context(plain, "lm"), tmp_path / "figs")}


def test_lm_diversity_caption_names_metrics_as_the_panels_title_them(full_run):
    """The caption's "here" said "distinct_1 fell ... type_token_ratio rose" (column names) under panels
    titled distinct-1 and type-token ratio, as the comparison table names them too."""
    from collapse_hpc.experiments.lm.figures import lm_diversity

    ctx = _context(full_run, "lm")
    fig, caption = lm_diversity(ctx)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    named = [m for m in ctx.metrics() if any(t.startswith(ctx.spec(m).label + " (") for t in titles)]
    assert len(named) >= 2
    for m in named:
        assert any(f"{ctx.spec(m).label} {way} " in caption for way in ("fell", "rose", "stayed")), (m, caption)
        assert f"{m} " not in caption, m


def test_lm_diversity_calls_a_move_under_1_percent_staying_about_the_same(monkeypatch, full_run):
    """distinct-1 moving 0.5 -> 0.5005 (+0.1%) read "distinct-1 fell" or "rose": a change under the captions'
    1% is no direction, and the caption states that threshold."""
    from types import SimpleNamespace

    from collapse_hpc.experiments.lm import figures

    _, caption = figures.lm_diversity(_context(full_run, "lm"))
    assert "A metric that moved by under 1% of its generation-0 value is said to have stayed about the same." \
        in caption, caption
    ends = {"distinct_1": [("replace", 0.5, 3, 0.5005)], "distinct_2": [("replace", 0.5, 3, 0.4995)],
            "distinct_3": [("replace", 0.5, 3, 0.45)], "unigram_entropy": [("replace", 8.0, 3, 8.2)]}
    monkeypatch.setattr(figures, "_ends", lambda ctx, metric: ends[metric])
    said = figures._diversity_statements(SimpleNamespace(spec=lambda m: SimpleNamespace(label=m)), list(ends))
    assert [text.split(" ")[1:3] for text in said] == [["stayed", "about"], ["stayed", "about"], ["fell", "0.5"],
                                                       ["rose", "8"]], said


def test_one_rule_decides_and_words_every_claim_of_agreement(monkeypatch):
    """The sequence histograms' direction (_way) and the tails' ordering (_ordering) each wrote the rule "every
    replicate, two or more, agrees by 1%" and the "both/all N" wording: one helper applies it, and a threshold
    changed in one place changes both verdicts and the rule the captions state."""
    from collapse_hpc.experiments.lm import figures

    assert figures._in_every([True, True], [0.02, -0.03], "seed") == "in both seeds"
    assert figures._in_every([True] * 3, [0.02] * 3, "replicate") == "in all 3 replicates"
    assert figures._in_every([True, False], [0.02, 0.03], "seed") is None  # one disagrees
    assert figures._in_every([True, True], [0.02, 0.005], "seed") is None  # one moved under 1%
    assert figures._in_every([True], [0.5], "seed") is None  # one alone is no agreement
    monkeypatch.setattr(figures, "NOISE", 0.05)
    assert figures._way(0.03, "fell", "rose", [0.03, 0.03]) == "held (within 5%)"
    assert figures._way(0.08, "fell", "rose", [0.08, 0.03]).startswith("rose pooled, not in every seed by 5% or more")
    assert figures._way(0.08, "fell", "rose", [0.08, 0.06]) == "rose in both seeds"
    assert figures._ordering([{"rare": 1.03, "middle": 1.0, "frequent": 1.0}] * 2) == (
        "the rare tokens' rose most in every replicate, in some by under 5%: no ordering beyond noise")
    assert figures._ordering([{"rare": 1.3, "middle": 1.0, "frequent": 1.0}] * 3) == "the tails went first, in all 3 " \
        "replicates"
    assert figures.agreement_rule("seed", "moved that way") == ("claimed only where every seed, two or more, moved "
                                                                "that way by 5% or more")
    flat = {"rare": 1.03, "middle": 1.0, "frequent": 1.0}
    assert figures._verdict("replace", {c: (r, 490.0, 1) for c, r in flat.items()}, [flat] * 2).endswith(
        ": none rose by 5% or more: no class went first")


def test_lm_beyond_caption_names_a_run_without_a_decoding_sweep_by_its_regimes():
    from collapse_hpc.experiments.lm.figures import _compared

    s = pd.DataFrame({"regime": ["replace-p0", "verifier-filter-q0.3", "replace-p0"],
                      "kind": ["replace", "verifier-filter", "replace"], "keep_fraction": [0.0, 0.0, 0.0],
                      "verifier_quantile": [0.5, 0.3, 0.5]})
    assert _compared(s, []) == "Regimes (replace, verifier-filter-q0.3 (filtered by a verifier's perplexity))"
    assert _compared(s[s["kind"] == "verifier-filter"], []) == (
        "The regime verifier-filter-q0.3 (filtered by a verifier's perplexity)")


def test_gmm_l2_figure_plots_the_squared_distance(tmp_path):
    """The L2 figure draws the mean of l2_squared per generation (the notebook's quantity), labelled so, with what
    it is counted in (its y-axis said the distance only, as the total variance's did)."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2, gmm_variance
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 12}}, generations=1)
    synthetic.gmm(root, generations=12)
    ctx = _context(root, "gmm")
    fig, caption = gmm_l2(ctx)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert " ".join(ax.get_ylabel().split()) == "squared L2 distance ‖f₀ − fₖ‖², per data unit² (log scale)"
    assert " ".join(gmm_variance(ctx)[0].axes[0].get_ylabel().split()) == "total variance, data units² (log scale)"
    assert "squared" in caption and "higher is worse" in caption
    want = ctx.df[ctx.df["metric"] == "l2_squared"].groupby(["regime", "generation"])["value"].mean()
    thick = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert len(thick) == 2
    for line in thick:
        regime = "replace-p0" if line.get_label().startswith("replace") else "accumulate"
        np.testing.assert_allclose(line.get_ydata(), want[regime].to_numpy(), rtol=1e-12)


def test_a_long_axis_label_breaks_between_words_not_inside_its_formula(full_run, tmp_path):
    """gmm_l2's y-axis label, taller than its panel, broke as 'squared L2 distance ‖f₀' over '− fₖ‖²': the
    formula now stays whole on one line."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2
    from collapse_hpc.plotting.plots import save

    with drawing.figure_style():
        fig, _ = gmm_l2(_context(full_run, "gmm"))
        save(fig, tmp_path, "gmm_l2")
    lines = [" ".join(line.split()) for line in fig.axes[0].get_ylabel().split("\n")]
    assert len(lines) > 1 and any("‖f₀ − fₖ‖²" in line for line in lines), lines  # whole, on one line


def test_sequence_histograms_draw_each_bins_share_of_the_sequences(full_run):
    """The histograms were densities per unit of perplexity over bins evenly spaced in log perplexity: drawn
    equally wide on the log axis, a bin twice as far out was drawn half as high for as many sequences, which
    flattened the tail of unlikely sequences the figure is about. A bar's height is now its share of the
    generation's sequences (the heights of one histogram sum to 1)."""
    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl
    from matplotlib.patches import Polygon

    with drawing.figure_style():
        fig, caption = lm_sequence_ppl(_context(full_run, "lm"))
    steps = [p for ax in fig.axes for p in ax.patches if isinstance(p, Polygon) and not p.get_fill()]
    assert steps
    for step in steps:
        heights = step.get_xy()[1:-1:2, 1]
        assert heights.sum() == pytest.approx(1.0), step.get_label()
    assert {ax.get_ylabel() for ax in fig.axes} == {"share of sequences"}
    assert "49 bins evenly spaced in log perplexity" in caption


def test_every_caption_says_what_collapse_looks_like(full_report):
    """Each drawn figure's caption names collapse and which direction is worse (results.md holds them)."""
    md = (full_report / "results.md").read_text()
    sections = [s for s in md.split("\n### ")[1:] if "![" in s]
    assert len(sections) == len(EXPECTED)
    for section in sections:
        caption = section.split("\n\n", 2)[-1].lower()
        assert "collapse" in caption and "worse" in caption, section.splitlines()[0]
def test_zero_shot_baseline_in_metrics_and_on_the_test_ppl_figure(full_run, full_report):
    from collapse_hpc.report import collect, stats
    from collapse_hpc.plotting.plots import Context
    from tests.report.synthetic import ZERO_SHOT, ZERO_SHOT_PPL

    df = pd.read_parquet(full_report / "metrics.parquet")
    zs = df[(df["experiment"] == "lm") & (df["metric"] == ZERO_SHOT)]
    assert len(zs) == 4 and set(zs["generation"]) == {0} and set(zs["value"]) == {ZERO_SHOT_PPL}
    data = [collect.load_run(full_run, "full")]
    tidy = collect.tidy(data)
    lm = tidy[tidy["experiment"] == "lm"]
    summary = stats.summarise(lm)
    from collapse_hpc.experiments.lm.figures import lm_test_ppl

    fig, caption = lm_test_ppl(Context("lm", lm, summary, data))
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("initial model")]
    assert len(lines) == 1 and set(lines[0].get_ydata()) == {ZERO_SHOT_PPL}
    assert lines[0].get_label() == f"initial model, before fine-tuning ({ZERO_SHOT_PPL:.4g})"
    # what the initial model is, from generation 0's manifest: the tiny base saw none of the chain's blocks
    assert "the initial model, before fine-tuning, the tiny base, pretrained on real train blocks 512-4607, none " \
           "of which any generation trains on" in caption
    # what the caption says about this run is this run's numbers
    want = summary[(summary["metric"] == "test_ppl") & (summary["regime"] == "replace-p0")].set_index("generation")
    assert f"replace {want['mean'][0]:.3g} -> {want['mean'][3]:.3g} at generation 3" in caption


def test_initial_model_is_described_as_what_it_is():
    from collapse_hpc.experiments.lm.figures import describe_initial

    seen = describe_initial({"kind": "tiny-base", "train_blocks": [0, 4096], "disjoint_from_training_blocks": False})
    assert "include the blocks generation 0 fine-tunes on: not zero-shot" in seen
    assert "facebook/opt-125m" in describe_initial({"kind": "hub", "model": "facebook/opt-125m"})


def test_lm_captions_state_this_runs_tails(full_run, full_report):
    """The tails figure and the sequence histogram say what happened in this run, from its numbers."""
    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl, lm_tails
    from tests.report.synthetic import REAL_MIDDLE_SHARE, REAL_RARE_SHARE, TAIL_PPL

    ctx = _context(full_run, "lm")
    fig, caption = lm_tails(ctx)
    s = ctx.summary[ctx.summary["regime"] == "replace-p0"]
    ratio = {c: s[(s["metric"] == f"test_ppl_{c}") & (s["generation"] == 3)]["mean"].iloc[0] / TAIL_PPL[c][0]
             for c in TAIL_PPL}
    assert ratio["rare"] > ratio["middle"] > ratio["frequent"] > 1  # as the synthetic run is made
    assert ("replace, generation 0 -> 3: " + ", ".join(f"{c} x{ratio[c]:.3g} (from {TAIL_PPL[c][0]:.3g})"
                                                        for c in TAIL_PPL)
            + ": the tails went first, in both replicates") in caption
    for cls, real in (("rare", REAL_RARE_SHARE), ("middle", REAL_MIDDLE_SHARE)):
        ends = s[(s["metric"] == f"{cls}_token_share") & s["generation"].isin([0, 3])].sort_values("generation")["mean"]
        assert (f"{cls.capitalize()} tokens in generated data: replace {ends.iloc[0]:.3g} -> {ends.iloc[1]:.3g} at "
                f"generation 3") in caption and f"against {real:.3g} in the real training blocks" in caption
        label = f"{cls} tokens, real training blocks"
        dotted = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == label]
        assert dotted and set(dotted[0].get_ydata()) == {real}
    fig, caption = lm_sequence_ppl(ctx)
    import pyarrow.parquet as pq

    ppl = {g: np.concatenate([pq.read_table(full_run / "lm" / f"replace-p0-s{seed}" / f"gen_{g:03d}" /
                                            "sequence_ppl.parquet").column("ppl").to_numpy() for seed in (0, 1)])
           for g in (0, 3)}
    med, p95 = ([np.percentile(ppl[g], q) for g in (0, 3)] for q in (50, 95))
    reach = [p95[i] / med[i] for i in (0, 1)]
    assert med[1] < med[0] * 0.99 and p95[1] < p95[0] and reach[1] > reach[0] * 1.01  # as the synthetic run is made
    assert f"replace, generation 0 -> 3: median {med[0]:.3g} -> {med[1]:.3g} ({med[1] / med[0] - 1:+.0%}): the " \
           f"histogram moved left in both seeds; p95 {p95[0]:.3g} -> {p95[1]:.3g}, {reach[0]:.3g} -> " \
           f"{reach[1]:.3g} times the median ({reach[1] / reach[0] - 1:+.0%}): the right tail lengthened in both " \
           "seeds" in caption
    assert "long right tail grows" not in caption  # the old fixed claim
    assert "the right tail shrank" not in caption  # nor a fall of p95 that only follows the median's


@pytest.mark.parametrize("shift, spread, moved, way", [
    (1.0, 1.005, "held (within 1%)", "held (within 1%)"),
    (0.7, 1.0, "moved left in both seeds", "held (within 1%)"),
    (0.7, 1.3, "moved left in both seeds", "lengthened in both seeds"),
    (1.2, 0.8, "moved right in both seeds", "shortened in both seeds")])
def test_sequence_ppl_caption_tells_a_shift_from_a_longer_tail(shift, spread, moved, way):
    """The histogram moving as a whole (its median) is told apart from its right tail reaching further
    (p95 over the median); a change within 1% is noise from a few hundred sequences, called held."""
    import pandas as pd
    from types import SimpleNamespace

    from collapse_hpc.experiments.lm.figures import _tail_statements

    base = np.exp(np.linspace(-1.0, 1.0, 512)) * 100
    later = shift * 100 * (base / 100) ** np.log(spread * np.e)  # log-spread scaled: p95/median ** (1 + log spread)
    one = pd.DataFrame({"run": "r", "series": "replace", "seed": 0, "generation": np.repeat([0, 2], 512),
                        "ppl": np.concatenate([base, later])})
    ctx = SimpleNamespace(in_order=lambda names: list(names))
    (text,) = _tail_statements(ctx, pd.concat([one, one.assign(seed=1)]))
    assert f": the histogram {moved};" in text and text.endswith(f": the right tail {way}"), text
    assert "-0%" not in text


def _two_seeds(later_of_seed_1: float) -> pd.DataFrame:
    """Sequence perplexities of two seeds at generations 0 and 2: seed 0's histogram moved right by 30%,
    seed 1's by `later_of_seed_1` (a factor)."""
    base = np.exp(np.linspace(-1.0, 1.0, 512)) * 100
    return pd.concat([pd.DataFrame({"run": "r", "series": "replace", "seed": seed, "generation": np.repeat([0, 2], 512),
                                    "ppl": np.concatenate([base, base * factor])})
                      for seed, factor in ((0, 1.3), (1, later_of_seed_1))])


@pytest.mark.parametrize("seeds, moved", [
    (_two_seeds(1.3).query("seed == 0"), "moved right (one seed: no telling it from noise)"),
    (_two_seeds(0.9), "moved right pooled, not in every seed by 1% or more: no direction beyond the seeds' spread"),
    (_two_seeds(1.005), "moved right pooled, not in every seed by 1% or more: no direction beyond the seeds' spread"),
    (_two_seeds(1.2), "moved right in both seeds")])
def test_sequence_ppl_caption_claims_a_direction_only_where_every_seed_agrees(seeds, moved):
    """The caption said 'the histogram moved right' of one seed's sequences, or of seeds pooled whose
    histograms went opposite ways."""
    from types import SimpleNamespace

    from collapse_hpc.experiments.lm.figures import _tail_statements

    (text,) = _tail_statements(SimpleNamespace(in_order=lambda names: list(names)), seeds)
    assert f": the histogram {moved};" in text, text


def test_a_panel_only_another_run_fills_says_so_not_no_data_yet(tmp_path):
    """Two real Gaussian runs of different sample sizes side by side: each run's panel of the other's
    n is not in its plan (said so), while a planned panel without data stays 'no data yet'."""
    from collapse_hpc.experiments.gaussian.figures import _per_samples

    ctx = _side_by_side(tmp_path, [("small", 2, "replace"), ("large", 5, "replace")])
    assert ctx.unplanned("small", samples=5) == "not in small" and ctx.unplanned("small", samples=2) is None
    fig, _ = _per_samples(ctx, "var_hat", "var_hat", "mean")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["n = 5: not in small", "n = 2: not in large"]


def _side_by_side(tmp_path, runs):
    """A Context over real Gaussian runs (name, sample size, regime[, generations: 3]) drawn side by side."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug
    from collapse_hpc.plotting.plots import Context
    from collapse_hpc.report import collect, stats
    from collapse_hpc.store import RunStore

    roots = []
    for name, n, regime, *generations in runs:
        g = generations[0] if generations else 3
        run = experiments.config_from_dict({
            "name": name, "executor": "debug", "generations": g, "seeds": [0], "regimes": [regime],
            "gaussian": {"samples": [n], "replicates": 4, "chunk_replicates": 4, "generations": g},
            "gmm": {"enabled": False}, "lm": {"enabled": False}, "vae": {"enabled": False}, "toy": {"enabled": False}})
        store = RunStore(tmp_path / name)
        engine.open_run(store, run)
        debug.execute(store, run, engine.plan(run))
        roots.append(store.root)
    data = [collect.load_run(r) for r in roots]
    df = collect.tidy(data)
    df = df[df["experiment"] == "gaussian"]
    return Context("gaussian", df, stats.summarise(df), data,
                   experiments.describe("gaussian").metric_specs(sorted(df["metric"].unique())))


def test_typical_variance_says_where_sigma_hat_rounded_to_zero_not_that_generations_are_unfinished(tmp_path):
    """n = 2 under replace: a replicate's two draws round to one value once σ̂ is below float64's step beside μ̂,
    σ̂ is 0 and the mean of log σ̂² −∞ from there; its line ended early in a finished run, whose caption said only
    that gaps mark unfinished generations."""
    from collapse_hpc.experiments.gaussian.figures import gaussian_typical_variance

    ctx = _side_by_side(tmp_path, [("tiny", 2, "replace", 60), ("wide", 50, "replace", 60)])
    data = ctx.df[ctx.df["metric"] == "log_var_hat"]
    first = int(data.loc[np.isneginf(data["value"]), "generation"].min())
    _, caption = gaussian_typical_variance(ctx)
    assert "a replicate's σ̂ is exactly 0" in caption
    assert re.search(rf"Here: replace, samples=2 \(tiny\): from generation {first} \(\d of 4 replicates at "
                     rf"generation 59\)\.$", caption), caption
    assert "(wide)" not in caption.split("exactly 0")[1]  # n = 50 keeps its variance: not named


def test_runs_side_by_side_keep_every_series_in_the_legend_and_a_scale_on_every_row(tmp_path):
    """Two runs of different regimes and sample sizes: the one legend names both runs' series (it
    named only the panel with most entries), an empty panel of the tails figure says whose n it is,
    and every row keeps its y scale (an empty panel's shared ticks had emptied the row's)."""
    from collapse_hpc.experiments.gaussian.figures import gaussian_sigma_err, gaussian_tails
    from collapse_hpc.plotting import style
    from matplotlib import rc_context

    ctx = _side_by_side(tmp_path, [("small", 5, "replace"), ("large", 9, "accumulate")])
    with rc_context(style.RC):
        for fn in (gaussian_sigma_err, gaussian_tails):
            fig, _ = fn(ctx)
            fig.canvas.draw()
            (legend,) = fig.legends
            names = [t.get_text() for t in legend.get_texts()]
            assert any(n.startswith("replace") for n in names) and any(n.startswith("accumulate") for n in names), \
                names
            rows: dict = {}
            for ax in fig.axes:
                rows.setdefault(ax.get_subplotspec().rowspan.start, []).append(ax)
            for r, row in rows.items():
                shown = [t.get_text() for ax in row for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]
                assert shown, f"{fn.__name__}: row {r} has no y scale"
                assert row[0].get_ylabel(), f"{fn.__name__}: row {r} has no y label"
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert "n = 9: not in small" in texts and "n = 5: not in large" in texts, texts


def test_a_runs_theory_curve_spans_its_own_generations_not_another_runs(tmp_path):
    """A run of 1 generation beside one of 60: the first run's theory curve ran to generation 59 (every run's
    generations), down to 1e-29 for n = 2, and the shared y scale squeezed the other run's series flat."""
    from collapse_hpc.experiments.gaussian.figures import gaussian_variance, gaussian_w2

    ctx = _side_by_side(tmp_path, [("short", 2, "replace", 1), ("long", 50, "replace", 60)])
    with drawing.figure_style():
        for fn in (gaussian_variance, gaussian_w2):
            fig, _ = fn(ctx)
            spans = {ax.get_title(): max(ln.get_xdata()) for ax in fig.axes for ln in ax.get_lines()
                     if ln.get_label().startswith("theory")}
            assert spans == {"n = 2 (short)": 0, "n = 50 (long)": 59}, (fn.__name__, spans)


def test_an_interval_below_zero_on_a_log_axis_still_holds_its_mean():
    """With a few replicates a 95% interval of a distance reaches below 0; on a log axis its lower
    edge ran from the one positive point to the next, leaving the band above its own mean."""
    from matplotlib.figure import Figure

    from collapse_hpc.plotting.plots import log_y

    gens = np.arange(6.0)  # generation 0: a distance of 0 in every replicate, left out like the line's point
    mean = np.array([0.0, 0.08, 0.09, 0.12, 0.18, 0.25])
    low, high = np.array([0.0, -0.01, -0.01, 0.03, -0.03, -0.03]), np.array([0.0, 0.16, 0.19, 0.21, 0.4, 0.54])
    fig = Figure()
    ax = fig.subplots()
    ax.plot(gens, mean)
    band = ax.fill_between(gens, low, high)
    log_y(ax)
    fig.canvas.draw()
    (path,) = band.get_paths()
    drawn = ax.transData.transform(path.vertices)  # where the edge lands on the page (log: <= 0 is lost)
    drawn = drawn[np.isfinite(drawn).all(axis=1)]
    points = ax.transData.transform(np.column_stack([gens, mean]))
    assert not np.isfinite(points[0]).all() and not np.isclose(drawn[:, 0], ax.transData.transform((0, 1))[0]).any()
    for x, y in points[1:]:
        edge = drawn[np.isclose(drawn[:, 0], x), 1]
        assert len(edge) and edge.min() < y < edge.max(), (x, edge)


@pytest.mark.parametrize("ratios, verdict", [
    ({"rare": 1.0012, "middle": 0.9997, "frequent": 0.9999}, "none rose by 1% or more: no class went first"),
    ({"rare": 1.004, "middle": 0.95, "frequent": 0.9}, "none rose by 1% or more: no class went first"),
    ({"rare": 1.3, "middle": 1.1, "frequent": 1.0}, "the tails went first, in both replicates"),
    ({"rare": 1.02, "middle": 1.1, "frequent": 1.0}, "the middle tokens' rose most, not the rare ones', in both "
                                                     "replicates")])
def test_tails_verdict_ranks_only_changes_beyond_noise(ratios, verdict):
    """A tiny model moved every class by a tenth of a percent; the caption said 'the tails went
    first' because the rare ratio was the largest of three equal-within-noise numbers."""
    from collapse_hpc.experiments.lm.figures import _verdict

    text = _verdict("replace", {cls: (r, 490.0, 1) for cls, r in ratios.items()}, [ratios, ratios])
    assert text.endswith(f": {verdict}"), text


@pytest.mark.parametrize("replicates, verdict", [
    # one seed whose rare tokens' perplexity rose 2%, the others' 1.5%: a difference noise makes
    ([{"rare": 1.02, "middle": 1.015, "frequent": 1.01}],
     "the rare tokens' rose most in this one replicate, an ordering one replicate cannot tell from noise"),
    ([{"rare": 1.3, "middle": 1.1, "frequent": 1.0}, {"rare": 1.01, "middle": 1.2, "frequent": 1.0},
      {"rare": 1.25, "middle": 1.1, "frequent": 1.05}],
     "the replicates disagree on which rose most (rare in 2, middle in 1 of 3): no ordering beyond their spread"),
    ([{"rare": 1.3, "middle": 1.1, "frequent": 1.0}, {"rare": 1.005, "middle": 1.0, "frequent": 0.99}],
     "the rare tokens' rose most in every replicate, in some by under 1%: no ordering beyond noise"),
    ([{"rare": 1.3, "middle": 1.1, "frequent": 1.0}, {"rare": 1.2, "middle": 1.05, "frequent": 1.01},
      {"rare": 1.25, "middle": 1.1, "frequent": 1.05}], "the tails went first, in all 3 replicates")])
def test_tails_verdict_claims_an_ordering_only_where_every_replicate_agrees(replicates, verdict):
    """The caption said 'the tails went first' of one seed's 2% rise in rare-token perplexity, and of
    replicates that disagreed, wherever the means' ratio was largest for the rare tokens."""
    from collapse_hpc.experiments.lm.figures import _verdict

    means = {c: float(np.mean([r[c] for r in replicates])) for c in replicates[0]}
    text = _verdict("replace", {c: (r, 490.0, 3) for c, r in means.items()}, replicates)
    assert text.endswith(f": {verdict}"), text


def test_tails_caption_counts_each_series_own_replicates(full_run):
    """The synthetic run's two seeds agree for replace; replace, keep 10% reached generation 3 with one
    seed only (the other stopped after generation 1), whose ordering the caption must not claim."""
    from collapse_hpc.experiments.lm.figures import lm_tails

    _, caption = lm_tails(_context(full_run, "lm"))
    assert "the tails went first, in both replicates" in caption
    assert ("replace, keep 10%, generation 0 -> 3: " in caption
            and "the rare tokens' rose most in this one replicate, an ordering one replicate cannot tell from noise"
            in caption), caption
    assert "claimed only where every replicate, two or more, has the same class's perplexity rise most" in caption


def test_tail_ratios_near_one_are_labelled_as_ratios():
    """Ratios that barely move were labelled 0.0005, 0.0010 under a '+1' in the corner."""
    from types import SimpleNamespace

    from matplotlib import rc_context

    from collapse_hpc.experiments.lm.figures import _tail_panel
    from collapse_hpc.plotting import style

    rows = [{"run": "r", "regime": "replace", "kind": None, "metric": f"test_ppl_{cls}", "generation": g,
             "mean": 490.0 * (1 + g * change), "ci_low": np.nan, "ci_high": np.nan}
            for cls, change in (("rare", 0.0012), ("middle", -0.0003), ("frequent", -0.0001)) for g in (0, 1)]
    ctx = SimpleNamespace(summary=pd.DataFrame(rows), settings=lambda: [])
    with rc_context(style.RC):
        fig, axes = style.figure(2, 1, sharex=True, sharey="row", h=1.4)  # a short panel: few ticks
        _tail_panel(axes[0, 0], ctx, "r", "replace")
        fig.canvas.draw()
    labels = [t.get_text().replace("\N{MINUS SIGN}", "-") for t in axes[0, 0].get_yticklabels() if t.get_text()]
    assert labels and all(float(t) > 0.99 for t in labels), labels


def test_a_regime_has_one_colour_in_every_figure(full_run):
    """accumulate is drawn in one colour whether the figure splits it by sample size (the overview's
    'accumulate, samples=10', its first sample size) or has a panel per size, and in every experiment; keep
    10% (the lm's only) in another: the colour names the regime, not the series' place in one figure."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2
    from collapse_hpc.experiments.lm.figures import lm_test_ppl
    from collapse_hpc.plotting import style
    from matplotlib import rc_context

    colours: dict = {}
    with rc_context(style.RC):
        for experiment, fns in (("gaussian", [gaussian_figures.gaussian_sigma_err]), ("gmm", [gmm_l2]),
                                ("lm", [lm_test_ppl])):
            ctx = _context(full_run, experiment)
            for fn in fns + [drawing.overviews(ctx)[0][2]]:
                fig, _ = fn(ctx)
                for line in (ln for ax in fig.axes for ln in ax.get_lines()):
                    if line.get_label().endswith(", samples=100"):  # the next sample size: the regime's darker shade
                        continue
                    regime = line.get_label().split(", samples=")[0]
                    if not regime.startswith("_") and regime in ("replace", "replace, keep 10%", "accumulate"):
                        colours.setdefault(regime, set()).add(line.get_color())
    assert set(colours) == {"replace", "replace, keep 10%", "accumulate"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len(set().union(*colours.values())) == 3, colours


def test_sample_sizes_of_one_regime_differ_by_shade_and_dash_and_so_do_their_bands(full_run):
    """The overview drew replace's n = 100 and n = 1000 in one black, their bands the same grey: which band
    was whose could not be told. A regime's next sample size is its colour's darker shade (from black: grey),
    with its own dash and the regime's marker, and its band is in that shade."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_hex

    from collapse_hpc.plotting import style
    from matplotlib import rc_context

    ctx = _context(full_run, "gaussian")
    with rc_context(style.RC):
        fig, _ = drawing.overviews(ctx)[0][2](ctx)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"replace, samples=10", "replace, samples=100", "accumulate, samples=10",
                          "accumulate, samples=100"}
    for regime in ("replace", "accumulate"):
        small, large = lines[f"{regime}, samples=10"], lines[f"{regime}, samples=100"]
        assert small.get_marker() == large.get_marker() and small.get_linestyle() != large.get_linestyle()
        assert to_hex(small.get_color()) != to_hex(large.get_color())
        assert to_hex(large.get_color()) == style.shade(small.get_color(), 1, 2)
    assert len({to_hex(ln.get_color()) for ln in lines.values()}) == 4
    bands = {to_hex(b.get_facecolor()[0], keep_alpha=False) for b in ax.collections if isinstance(b, PolyCollection)}
    assert bands == {to_hex(ln.get_color()) for ln in lines.values()}


@pytest.mark.parametrize("experiment", BUILTIN)
def test_a_figure_with_bands_says_what_they_are(full_run, experiment):
    """Every figure that draws a shaded band around a line says in its caption what the band is,
    and over how many values (n)."""
    from matplotlib.collections import PolyCollection
    from collapse_hpc.plotting import style
    from matplotlib import rc_context

    ctx = _context(full_run, experiment)
    banded = []
    with rc_context(style.RC):
        for key, _, fn in experiments.describe(experiment).figures() + drawing.overviews(ctx):
            try:
                made = fn(ctx)
            except NotInThisRun:
                continue
            if made and any(isinstance(c, PolyCollection) for ax in made[0].axes for c in ax.collections):
                banded.append(key)
                assert "band: its 95% confidence interval" in made[1] and "n = " in made[1], (key, made[1])
    assert banded or experiment == "vae"  # the synthetic vae has one seed: no band to explain


@pytest.mark.parametrize("lo, hi, least", [(75.6, 186.0, 3), (20.0, 2000.0, 3), (1.0, 1e5, 3), (408.0, 503.6, 3),
                                           (0.981, 1.02, 3)])
def test_a_narrow_log_axis_labels_at_least_three_values(lo, hi, least):
    """The sequence-perplexity histogram spans 76 to 186 in the demo: labelled 1-2-5 only, its axis read
    "100" and nothing else. A tiny run's spanned 408 to 504, narrower than the finest ladder: "500" alone."""
    from matplotlib.figure import Figure
    from collapse_hpc.plotting.plots import plain_log_ticks

    fig = Figure()
    ax = fig.subplots()
    ax.hist(np.geomspace(lo, hi, 200), bins=np.geomspace(lo, hi, 30))
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    fig.canvas.draw()
    x0, x1 = ax.get_xlim()
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and x0 <= t.get_position()[0] <= x1]
    assert len(shown) >= least and all(float(t) > 0 for t in shown), shown
    assert len(shown) <= 8, shown  # still readable, not every minor tick


def test_captions_of_a_run_stopped_midway_compare_the_same_chains(tmp_path):
    """Seed 1 stopped after generation 0, seed 0 reached generation 3: a caption's change from generation 0
    to 3 starts from seed 0's generation 0 alone, not from the mean of both seeds (which would credit seed 1's
    start to seed 0's end)."""
    import pyarrow.parquet as pq

    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl, lm_test_ppl
    from collapse_hpc.plotting.figures import trend
    from tests.report import synthetic

    root = tmp_path / "lm"
    synthetic.write_config(root, {"lm": {"generations": 4, "seeds": [0, 1]}}, generations=4, seeds=(0, 1))
    synthetic.lm(root, done={"replace-p0-s1": 1, "replace-p0.1-s1": 1}, small=True)
    ctx = _context(root, "lm")
    unit = root / "lm" / "replace-p0-s0"
    start, end = (pq.read_table(unit / f"gen_00{g}" / "metrics.parquet").column("test_ppl")[0].as_py() for g in (0, 3))
    both = ctx.summary[(ctx.summary["metric"] == "test_ppl") & (ctx.summary["regime"] == "replace-p0")
                       & (ctx.summary["generation"] == 0)]["mean"].iloc[0]
    assert f"{both:.3g}" != f"{start:.3g}"  # as the synthetic run is made: the seeds start apart
    assert f"replace {start:.3g} -> {end:.3g} at generation 3" in lm_test_ppl(ctx)[1]
    assert f"replace {start:.3g} → {end:.3g}" in trend(ctx, "test_ppl")
    ppl = pq.read_table(unit / "gen_000" / "sequence_ppl.parquet").column("ppl").to_numpy()
    assert f"replace, generation 0 -> 3: median {np.median(ppl):.3g} -> " in lm_sequence_ppl(ctx)[1]


def test_side_by_side_initial_models_are_named_by_run(tmp_path):
    """Two runs' dotted initial-model lines had alike legend entries, told apart only by their values."""
    from collapse_hpc.experiments.lm.figures import INITIAL, lm_test_ppl
    from collapse_hpc.plotting.plots import Context
    from collapse_hpc.report import collect, stats
    from tests.report import synthetic

    data = [collect.load_run(synthetic.full_run(tmp_path / name, small=True)) for name in ("first", "second")]
    df = collect.tidy(data)
    df = df[df["experiment"] == "lm"]
    ctx = Context("lm", df, stats.summarise(df), data,
                  experiments.describe("lm").metric_specs(sorted(df["metric"].unique())))
    fig, _ = lm_test_ppl(ctx)
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()} | \
        {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
    initial = sorted(lb for lb in labels if lb.startswith(INITIAL))
    assert len(initial) == 2 and "(first)" in initial[0] and "(second)" in initial[1], initial


def test_a_change_under_1_percent_reads_to_a_tenth():
    # "(+1%)" stood beside "held (within 1%)" for a change of 0.7%
    from collapse_hpc.experiments.lm.figures import _change

    assert [_change(r) for r in (0.12, -0.034, 0.007, -0.0004, 0.0)] == ["+12%", "-3%", "+0.7%", "0%", "0%"]


def test_numbers_below_a_million_read_as_plain_digits():
    """The comparison table's column read "1.258e+04" beside "2730" (test ppl of rare tokens, then middle ones):
    plain digits to the same significant digits below a million, e-notation from there and for the small."""
    from collapse_hpc.plotting.plots import num

    assert [num(v) for v in (12583.2, 2730.4, -25431.7, 9999.6, 999999.6, 0.003357, -0.0)] == [
        "12580", "2730", "-25430", "10000", "1e+06", "0.003357", "0"]
    assert num(1734.2, 2) == "1700" and num(None) == num(float("nan")) == "—"


def test_mean_variance_caption_names_the_sample_sizes_too_few_replicates_can_follow(tmp_path):
    # at the paper's n = 100 the measured mean after 1000 generations is ~10x under (n-1)/n)^1000 with 250
    # replicates: log sigma_hat^2 spreads by sd 4.5 and the mean is carried by 1-in-e^20 replicates
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 30}}, generations=30)
    synthetic.gaussian(root, generations=30, replicates=40)
    _, caption = gaussian_figures.gaussian_variance(_context(root, "gaussian"))
    # n = 10: sd = sqrt(30 trigamma(4.5)) = 2.7, e^7.5 far above 40; n = 100: sd 0.78, e^0.6 = 1.8
    assert "Under replace here: n = 10: sd 2.7 at generation 29, e^(sd²) ≈ 1700 against 40 replicates." \
        in caption, caption
    assert "n = 100: sd" not in caption


def test_mean_variance_caption_writes_an_e_to_the_sd_squared_past_floats_as_a_power_of_ten(tmp_path):
    # n = 2 over 3000 generations: sd of log sigma_hat^2 = 122, e^(sd²) = e^14800 overflowed (a RuntimeWarning
    # on the aggregate's stderr) and the caption read "e^(sd²) ≈ — against 4 replicates"
    import warnings

    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3000}}, generations=3000)
    synthetic.gaussian(root, generations=3000, replicates=4, ns=(2,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, caption = gaussian_figures.gaussian_variance(_context(root, "gaussian"))
    assert "n = 2: sd 120 at generation 2999, e^(sd²) ≈ 10^6429 against 4 replicates." in caption, caption


def test_mean_variance_caption_writes_a_theory_value_under_floats_as_a_power_of_ten(tmp_path):
    # n = 2 over 3000 generations, the MLE: E sigma_hat^2 = (1/2)^3000, about 1e-903, underflowed to 0 and the
    # caption read "theory under replace: n = 2: 0 at generation 2999"; a value in a float's range reads as before
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3000}}, generations=3000)
    synthetic.gaussian(root, generations=3000, replicates=4, ns=(2, 10))
    _, caption = gaussian_figures.gaussian_variance(_context(root, "gaussian"))
    assert "theory under replace: n = 2: 10^-903 at generation 2999; n = 10: 5.34e-138 at generation 2999." \
        in caption, caption


def test_gmm_tails_caption_says_why_the_mean_rises_and_for_how_many_replicates(tmp_path):
    # at 2050 generations the replace mean share beyond 3 sigma rose 0.011 -> 0.031 (one replicate in 32 had
    # collapsed off-centre) while the caption said only that the share falls towards 0
    import pyarrow as pa

    from collapse_hpc.experiments.gmm.figures import gmm_tails
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 3}}, generations=1)
    for regime, shares in (("replace-p0", [[0.13, 0.05, 0.0], [0.13, 0.08, 1.0]]), ("accumulate", [[0.13] * 3] * 2)):
        cols = {"generation": pa.array([0, 1, 2] * 2, pa.int64()),
                "replicate": pa.array([0] * 3 + [1] * 3, pa.int64()),
                "tail_share_2sigma": pa.array([v for rep in shares for v in rep], pa.float64())}
        synthetic._unit(root, "gmm", f"{regime}-s0", "part_000", {"metrics.parquet": cols}, regime=regime)
    _, caption = gmm_tails(_context(root, "gmm"))
    assert "The mean need not fall with the median" in caption
    assert "(mostly beyond: replace: 50.0% of the replicates at generation 2)" in caption, caption
    assert "accumulate: " not in caption.split("mostly beyond")[-1]


def test_sequence_ppl_caption_says_each_histogram_pools_the_seeds(full_run):
    """A histogram of a generation holds the sequences of every seed that reached it, each chain's scored by
    its own generation-0 model: the caption says so and how many (replace, keep 10%'s seed 1 stopped after
    generation 1, so its later histograms hold one seed's 600 sequences, the others two seeds' 1200)."""
    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl

    _, caption = lm_sequence_ppl(_context(full_run, "lm"))
    assert ("Each histogram pools the sequences of every seed that reached its generation (1 to 2 seeds, 600 to "
            "1200 sequences per histogram), each scored by its own seed's generation-0 model.") in caption


def test_vae_figures_of_one_seed_name_it(tmp_path):
    """The sample grids and the latent figure draw one seed per regime, the one that reached the most
    generations: with seeds 0 and 3, seed 3 further along, both captions name seed 3."""
    from collapse_hpc.experiments.vae.figures import vae_latents, vae_samples
    from tests.report import synthetic

    root = tmp_path / "vae"
    synthetic.write_config(root, {"vae": {"generations": 4, "seeds": [0, 3],
                                          "regimes": [{"name": "replace", "keep_fraction": 0.0}]}},
                           generations=4, seeds=(0, 3))
    synthetic.vae(root, finished=2, seed=0)
    synthetic.vae(root, finished=3, seed=3)
    ctx = _context(root, "vae")
    for figure in (vae_samples, vae_latents):
        _, caption = figure(ctx)
        assert "the most generations" in caption and "replace: seed 3" in caption, caption
        assert "seed 0" not in caption


def test_gmm_figures_say_which_single_replicates_they_draw(tmp_path):
    """16 replicates per series: the thin lines are the first 12 of each series, and the captions say so
    (they said 'single replicates', as if every one were drawn)."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2, gmm_variance
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 6}}, generations=1)
    synthetic.gmm(root, generations=6, parts=2, replicates=8)
    ctx = _context(root, "gmm")
    fig, caption = gmm_l2(ctx)
    thin = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("_") and ln.get_linewidth() == 0.5]
    assert len(thin) == 2 * 12  # two series
    for figure in (gmm_l2, gmm_variance):
        assert "single replicates, the first 12 of each series by seed and replicate (thin)" in figure(ctx)[1]


def test_band_note_counts_seeds_where_an_experiment_has_no_replicates(full_run):
    """The language model records one value per seed and generation: its points are means over seeds (the
    caption said 'seeds × replicates' there too); the GMM's are over seeds × replicates."""
    from collapse_hpc.plotting.figures import band_note

    lm = band_note(_context(full_run, "lm"), ["test_ppl"])
    assert lm.startswith("mean over seeds (n = 1 to 2 per point), band: its 95% confidence interval (t)"), lm
    gmm = band_note(_context(full_run, "gmm"), ["l2_squared"])
    assert gmm.startswith("mean over seeds × replicates (n = 6 per point)"), gmm


def _every_figure(ctx):
    """(key, Figure) of every figure of the context's experiment, its own and the overviews."""
    for key, _, fn in experiments.describe(ctx.experiment).figures() + drawing.overviews(ctx):
        try:
            made = fn(ctx)
        except NotInThisRun:
            continue
        if made:
            yield f"{ctx.experiment}_{key}", made[0]


@pytest.mark.parametrize("experiment", BUILTIN)
def test_figures_fit_a_papers_full_width_at_their_own_size(full_run, experiment):
    """Scaled down to a two-column paper's full width (7.2 in) an overview of 4 panels a row (11.6 in) printed
    its 7 pt ticks at 4.4 pt, below the 5 pt journals ask for. The VAE's sample grids too (11.8 in in the demo)."""
    with drawing.figure_style():
        widths = {key: fig.get_figwidth() for key, fig in _every_figure(_context(full_run, experiment))}
    assert widths
    assert {k: w for k, w in widths.items() if w > 7.2 + 1e-9} == {}


def drawing_metrics(ctx) -> list[str]:
    """The metrics the overview draws (its panels' titles)."""
    with drawing.figure_style():
        return [ax.get_title() for _, _, fn in drawing.overviews(ctx) for ax in fn(ctx)[0].axes if ax.get_visible()]


def test_an_overview_of_many_metrics_fits_a_page_in_height(tmp_path):
    """16 metrics a page made an overview of 6 rows, 13 in tall (the demo's lm, gmm and vae): a journal page
    takes 9.7 in (Nature: 247 mm). 13 metrics now make two pages, each within it."""
    from collapse_hpc.plotting import style
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3}}, generations=3)
    synthetic.gaussian(root, generations=3, replicates=3)
    ctx = _context(root, "gaussian")
    ctx = _with(ctx, "gaussian", **{f"extra_{i}": "sigma_hat" for i in range(13 - len(drawing_metrics(ctx)))})
    assert len(drawing_metrics(ctx)) == 13
    with drawing.figure_style():
        pages = drawing.overviews(ctx)
        heights = [fn(ctx)[0].get_figheight() for _, _, fn in pages]
    assert len(pages) == 2 and max(heights) <= style.PAGE_H, heights


@pytest.mark.parametrize("experiment", BUILTIN)
def test_every_panel_of_the_overview_labels_its_y_axis(full_run, experiment):
    """A metric without a unit (a share, a count, distinct-4) left its panel's y-axis without a label."""
    ctx = _context(full_run, experiment)
    with drawing.figure_style():
        for key, fig in _every_figure(ctx):
            if "all_metrics" in key:
                unlabelled = [ax.get_title() for ax in fig.axes if ax.get_visible() and not ax.get_ylabel()]
                assert unlabelled == [], key


def _said(text: str) -> str:
    """A title or axis label as words: lines joined, its worse and log-scale notes left out."""
    text = " ".join(text.replace("\u00a0", " ").split())
    return re.sub(r" \((↑|↓) worse\)| \(log scale\)", "", text)


@pytest.mark.parametrize("experiment", BUILTIN)
def test_no_panel_says_its_title_again_on_its_y_axis(full_run, experiment):
    """The overview titled a panel 'distinct-4 (↓ worse)' and labelled its y-axis 'distinct-4', every metric without
    a unit so: the axis says what the values are counted in (a fraction, bits), the title what the metric is."""
    ctx = _context(full_run, experiment)
    said_twice = []
    with drawing.figure_style():
        for key, fig in _every_figure(ctx):
            for ax in fig.axes:
                if ax.get_visible() and ax.get_title() and \
                        _said(ax.get_title()).split(": ")[-1] == _said(ax.get_ylabel()):
                    said_twice.append((key, _said(ax.get_title()), _said(ax.get_ylabel())))
    assert said_twice == [], said_twice


def _with(ctx, experiment: str, **copies):
    """ctx with metrics the synthetic run does not record: each new name's values those of the metric it names."""
    from collapse_hpc.plotting.plots import Context

    df = pd.concat([ctx.df, *(ctx.df[ctx.df["metric"] == of].assign(metric=name) for name, of in copies.items())])
    return Context(experiment, df, stats.summarise(df), ctx.runs,
                   experiments.describe(experiment).metric_specs(sorted(df["metric"].unique())))


def _scales(ctx) -> dict[str, str]:
    """The overview's panels: title -> y-axis label, as words."""
    with drawing.figure_style():
        return {_said(ax.get_title()): _said(ax.get_ylabel()) for _, _, overview in drawing.overviews(ctx)
                for ax in overview(ctx)[0].axes if ax.get_visible()}


def test_the_gaussian_overview_counts_its_values_in_the_data_units(full_run):
    """Every gaussian estimate's y-axis read "value": the fits, errors and W2 are stored in the real data's units
    (the config's sigma is not divided out), variances and W2² in their square, the masses as fractions; the gmm's
    positions and variances likewise, and its L2 distances between its 2-D densities (each per data unit²), which
    read "value" too, per data unit (squared: per data unit²)."""
    scales = _scales(_context(full_run, "gaussian")) | _scales(_with(_context(full_run, "gmm"), "gmm", l2="l2_squared"))
    assert {t: scales[t] for t in ("fitted σ", "|σ − fitted σ|", "fitted variance", "W2² to the real",
                                   "log fitted variance", "mass beyond the real μ ± 2σ")} == {
        "fitted σ": "data units", "|σ − fitted σ|": "data units", "fitted variance": "data units²",
        "W2² to the real": "data units²", "log fitted variance": "ln of data units²",
        "mass beyond the real μ ± 2σ": "fraction"}, scales
    assert scales["total variance"] == "data units²" and scales["comp. 0 95% tail x"] == "data units", scales
    assert scales["squared L2 to generation 0"] == "per data unit²", scales
    assert scales["L2 distance to generation 0"] == "per data unit", scales


def test_the_vae_overview_counts_the_frechet_distance_in_squared_feature_units(full_run):
    """The Fréchet distance's y-axis read "value": FID's formula gives the distance squared, between Gaussians fitted
    to the classifier's penultimate features."""
    scales = _scales(_with(_context(full_run, "vae"), "vae", frechet="class_entropy"))
    assert scales["Fréchet distance"] == "classifier feature units²", scales


@pytest.mark.parametrize("experiment", BUILTIN)
def test_panel_titles_do_not_run_into_each_other(full_run, experiment):
    """Three overview panels across a paper's width: 'L2 distance to generation 0 (↑ worse)' ran into
    'squared L2 to generation 0 (↑ worse)' beside it; a long title breaks into lines within its panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with drawing.figure_style():
        for key, fig in _every_figure(_context(full_run, experiment)):
            renderer = FigureCanvasAgg(fig).get_renderer()
            fig.draw_without_rendering()
            boxes = [(ax.title.get_text(), ax.title.get_window_extent(renderer)) for ax in fig.axes
                     if ax.get_visible() and ax.title.get_text()]
            clashes = [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:]
                       if box.overlaps(other)]
            assert clashes == [], key


def test_vae_latent_legends_are_readable_and_off_the_densities(full_run):
    """Each latent panel's legend was inside the panel at x-small (5.6 pt) over the densities' shoulders:
    at the style's legend size it sits below the panel, clear of the data and of the axis label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from collapse_hpc.experiments.vae.figures import vae_latents
    from collapse_hpc.plotting import style

    with drawing.figure_style():
        fig, _ = vae_latents(_context(full_run, "vae"))
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw_without_rendering()
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            assert min(t.get_fontsize() for t in legend.get_texts()) >= style.RC["legend.fontsize"]
            box = legend.get_window_extent(renderer)
            assert not box.overlaps(ax.get_window_extent(renderer))
            assert not box.overlaps(ax.xaxis.label.get_window_extent(renderer))
            assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)


def test_lm_training_curves_of_every_regime_share_a_scale(full_run):
    """The training loss of replace and of keep 10% side by side was drawn on each panel's own y-range (3 to 6.5
    beside 3 to 6.7 in the demo), so equal heights were different losses: a row shares its y-axis."""
    from collapse_hpc.experiments.lm.figures import lm_training_curves

    with drawing.figure_style():
        fig, _ = lm_training_curves(_context(full_run, "lm"))
    rows = {}
    for ax in fig.axes:
        rows.setdefault(ax.get_ylabel(), []).append(ax)
    assert all(len(row) > 1 for row in rows.values())
    for row in rows.values():
        assert all(ax.get_shared_y_axes().joined(row[0], ax) for ax in row), row[0].get_ylabel()


def test_training_curves_tick_whole_optimizer_steps(tmp_path):
    """A generation of four optimizer steps (a small run) was ticked 1.0, 1.5, 2.0 … 4.0: half a step."""
    from collapse_hpc.experiments.lm.figures import lm_training_curves
    from tests.report import synthetic

    root = tmp_path / "run"
    synthetic.write_config(root, {"lm": {"generations": 2}})
    synthetic.lm(root, generations=2, seeds=(0,), small=True, steps=4)
    with drawing.figure_style():
        fig, _ = lm_training_curves(_context(root, "lm"))
        for ax in fig.axes:  # within the style: the ticks a locator gives depend on the labels' size
            lo, hi = ax.get_xlim()
            shown = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), shown


def _vae_tails_latent_share_0(tmp_path, save_to=None):
    """vae_tails of a synthetic 3-generation run whose share beyond the real 99% radius stays 0 throughout
    (as in a small run); laid out and saved as printed where `save_to` is given."""
    from collapse_hpc.experiments.vae.figures import vae_tails
    from collapse_hpc.plotting.plots import Context, save
    from tests.report import synthetic

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 3}}, generations=3)
    synthetic.vae(root, generations=3, finished=3)
    ctx = _context(root, "vae")
    df = ctx.df.assign(value=ctx.df["value"].where(ctx.df["metric"] != "latent_tail_share", 0.0))
    ctx = Context("vae", df, stats.summarise(df), ctx.runs, ctx.specs)
    with drawing.figure_style():
        fig, _ = vae_tails(ctx)
        if save_to is not None:
            save(fig, save_to, "vae_tails")
    return fig


def test_an_overview_grid_draws_every_share_on_one_kind_of_axis_and_names_a_log_one(tmp_path):
    """The VAE's every-metric grid put "share labelled 6" (0.1 down to 1e-4, never 0) on a log axis beside
    nine linear shares that reached 0: the same fall read as three decades in one panel and as a drop to 0 in
    the next. A share (a metric bounded above) stays linear; an unbounded metric spanning decades (a distance)
    may still go log, and its axis label then says so."""
    import pandas as pd

    from collapse_hpc.plotting.figures import metric_grid
    from collapse_hpc.plotting.plots import Context
    from tests.report import synthetic

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4}}, generations=4)
    synthetic.vae(root, generations=4, finished=4)
    ctx = _context(root, "vae")
    falls = {"class_min_share": lambda g: 0.1 * 10.0 ** -g, "latent_tail_share": lambda g: 0.01 * (g < 2),
             "frechet": lambda g: 10.0 ** g}
    base = ctx.df[ctx.df["metric"] == "class_entropy"]
    df = pd.concat([ctx.df[~ctx.df["metric"].isin(list(falls))]] + [
        base.assign(metric=m, value=base["generation"].map(f).astype(float)) for m, f in falls.items()])
    df["metric"] = df["metric"].astype(str)
    ctx = Context("vae", df, stats.summarise(df), ctx.runs, ctx.specs)
    with drawing.figure_style():
        fig = metric_grid(ctx, ["class_min_share", "latent_tail_share", "frechet"])
    scales = {" ".join(ax.get_title().split()).split(" (")[0]: (ax.get_yscale(), ax.get_ylabel())
              for ax in fig.axes if ax.get_visible()}
    assert scales["rarest class's share"][0] == scales["latent tail share"][0] == "linear", scales
    assert "log" not in scales["rarest class's share"][1] + scales["latent tail share"][1], scales
    assert scales["Fréchet distance"] == ("log", "classifier feature units² (log\u00a0scale)"), scales


def test_a_share_that_stays_0_is_not_drawn_below_0(tmp_path):
    """vae_tails' share beyond the real 99% radius was 0 in every generation of a small run: its axis ran from
    -0.055 to 0.055 (matplotlib's spread of one value; the real images' 1% line, inside it, did not rescale it),
    as if a share could be negative. The axis now holds the series and that line, and stops near 0."""
    fig = _vae_tails_latent_share_0(tmp_path)
    lo, hi = fig.axes[0].get_ylim()
    assert -0.05 * hi <= lo < 0 and 0.01 < hi < 0.02, (lo, hi)


def test_a_reference_line_beyond_the_series_lies_inside_its_panel(tmp_path):
    """vae_tails' real images' 1% line, above a share that stayed 0, set the axis' top at 1.05%: the thick line
    lay on the panel's top edge (and the 0.1 line of the rarest class's share on its panel's). Each level now
    lies well inside its panel, clear of the edge by more than its own width."""
    fig = _vae_tails_latent_share_0(tmp_path)
    for ax, level in zip(fig.axes, (0.01, 0.1)):
        lo, hi = ax.get_ylim()
        assert level in {line.get_ydata()[0] for line in ax.get_lines()}
        assert (hi - level) / (hi - lo) >= 0.075, (level, lo, hi)
        assert (hi - level) / (hi - lo) < 0.15  # room, not a panel of empty space


def test_a_series_drawn_on_another_shows_the_one_beneath(tmp_path):
    """Both regimes' share beyond the real 99% radius stayed 0: keep 10%'s squares and line, drawn last, hid
    replace's circles and line entirely. The later series now lies within the earlier (smaller markers, a
    thinner line), which rims it; in the panel beside, where the series differ, both keep their size."""
    fig = _vae_tails_latent_share_0(tmp_path, save_to=tmp_path / "out")
    zero, apart = ([ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None")] for ax in fig.axes[:2])
    assert len(zero) == len(apart) == 2 and list(zero[0].get_ydata()) == list(zero[1].get_ydata()) == [0.0] * 3
    assert zero[1].get_markersize() < 0.7 * zero[0].get_markersize()
    assert zero[1].get_linewidth() < zero[0].get_linewidth()
    assert apart[0].get_markersize() == apart[1].get_markersize() == zero[0].get_markersize()
    legend, = fig.legends  # the legend keeps each series' own marker
    assert len({h.get_markersize() for h in legend.get_lines() if h.get_marker() not in (None, "None")}) == 1


def _saved(ctx, out):
    """(key, Figure) of every figure of the experiment, each saved (plots.save lays it out as it is printed)."""
    from collapse_hpc.plotting.plots import save

    for key, fig in _every_figure(ctx):
        save(fig, out, key)
        yield key, fig


@pytest.mark.parametrize("experiment", BUILTIN)
def test_axis_labels_stay_within_their_panels(full_run, experiment, tmp_path):
    """vae_tails' 'share beyond the real 99% radius' was taller than its panel and ran past it: every y-axis
    label is at most its panel's height (and every x-axis label its width), and inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with drawing.figure_style():
        for key, fig in _saved(_context(full_run, experiment), tmp_path):
            renderer = FigureCanvasAgg(fig).get_renderer()
            for ax in (a for a in fig.axes if a.get_visible()):
                box = ax.get_window_extent(renderer)
                for label, along in ((ax.yaxis.label, "height"), (ax.xaxis.label, "width")):
                    if not label.get_text():
                        continue
                    extent = label.get_window_extent(renderer)
                    assert getattr(extent, along) <= getattr(box, along) + 1, (key, label.get_text())
                    assert fig.bbox.y0 - 1 <= extent.y0 and extent.y1 <= fig.bbox.y1 + 1, (key, label.get_text())


def _look(handle) -> tuple:
    """What a legend entry's key looks like: colour, line style and width, marker and its fill (a patch: its
    fill, edge and hatch)."""
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D

    if isinstance(handle, Line2D):
        fill = handle.get_markerfacecolor()
        return ("line", to_hex(handle.get_color()), handle.get_linestyle(), str(getattr(handle, "_dash_pattern", "")),
                round(handle.get_linewidth(), 2), handle.get_marker() or "None",
                to_hex(fill) if fill not in ("none", None) else "none")
    return ("patch", to_hex(handle.get_facecolor()), to_hex(handle.get_edgecolor()), handle.get_hatch(),
            handle.get_linestyle())


@pytest.mark.parametrize("experiment", BUILTIN)
def test_no_two_legend_entries_look_alike(full_run, experiment):
    """lm_tails' 'rare target tokens' (test perplexity) and 'rare tokens, generated' (a share) had the same
    black solid line and filled circle; vae_tails' two reference levels the same thick grey. Within a legend,
    entries of different labels differ in colour, line style, marker or fill."""
    with drawing.figure_style():
        for key, fig in _every_figure(_context(full_run, experiment)):
            for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
                looks: dict = {}
                for handle, text in zip(legend.legend_handles, legend.get_texts()):
                    looks.setdefault(_look(handle), set()).add(text.get_text())
                alike = [labels for labels in looks.values() if len(labels) > 1]
                assert alike == [], (key, alike)


def _contrast(colour) -> float:
    """WCAG contrast ratio of a colour against the white page."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (lin @ [0.2126, 0.7152, 0.0722] + 0.05)


@pytest.mark.parametrize("n", [2, 3, 6, 20])
def test_generation_colours_are_ordered_and_each_visible_on_white(n):
    """viridis up to 0.9 ended in a yellow that contrasted 1.5:1 with the page: late generations were hard to
    see. Every generation contrasts at least 3:1 (WCAG's least for graphics), and lightness rises with the
    generation (their order reads in greyscale and to colour-blind readers), each a colour of its own."""
    from matplotlib.colors import to_hex

    from collapse_hpc.plotting import style

    colours = style.generation_colours(n)
    contrast = [_contrast(c) for c in colours]
    assert min(contrast) >= 3.0, contrast
    assert all(a > b for a, b in zip(contrast, contrast[1:])), contrast  # lighter each generation
    assert len({to_hex(c) for c in colours}) == n


def test_every_figure_of_generations_draws_them_in_the_same_visible_colours(full_run):
    """The sequence histograms, the training curves and the VAE's latent densities give generation g one
    colour (the latent figure had its own copy of the colour map), each visible on white."""
    from matplotlib.colors import to_hex

    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl, lm_training_curves
    from collapse_hpc.experiments.vae.figures import vae_latents

    seen: dict = {}
    with drawing.figure_style():
        for experiment, fn in (("lm", lm_sequence_ppl), ("lm", lm_training_curves), ("vae", vae_latents)):
            fig, _ = fn(_context(full_run, experiment))
            lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("generation ")]
            patches = [p for ax in fig.axes for p in ax.patches if str(p.get_label()).startswith("generation ")]
            assert lines or patches, fn.__name__
            for artist in lines + patches:
                colour = to_hex(artist.get_edgecolor() if artist in patches else artist.get_color(), keep_alpha=False)
                assert _contrast(colour) >= 3.0, (fn.__name__, artist.get_label())
                seen.setdefault((fn.__module__, artist.get_label().split(" (")[0]), set()).add(colour)
    assert all(len(c) == 1 for c in seen.values()), seen


def test_a_generation_has_one_colour_across_experiments_of_a_run_stopped_midway(full_run):
    """The lm had reached generation 3 and the vae generation 2 (of 4 each): each figure spread the colour map
    over its own generations, so generation 1 was one colour in the sequence histograms and another in the
    latent densities. The map spans the run's planned generations (its chains': gmm's 12 are drawn along an
    axis), so generation g has one colour in every figure of the report."""
    from matplotlib.colors import to_hex

    from collapse_hpc.experiments.lm.figures import lm_sequence_ppl, lm_training_curves
    from collapse_hpc.experiments.vae.figures import vae_latents

    seen: dict = {}
    with drawing.figure_style():
        for experiment, fn in (("lm", lm_sequence_ppl), ("lm", lm_training_curves), ("vae", vae_latents)):
            fig, _ = fn(_context(full_run, experiment))
            for ax in fig.axes:
                for artist in [*ax.get_lines(), *ax.patches]:
                    label = str(artist.get_label())
                    if label.startswith("generation "):
                        colour = artist.get_edgecolor() if artist in ax.patches else artist.get_color()
                        seen.setdefault(label.split(" (")[0], set()).add(to_hex(colour, keep_alpha=False))
    assert {"generation 0", "generation 1", "generation 2"} <= set(seen)
    assert all(len(c) == 1 for c in seen.values()), seen
    assert {_context(full_run, e).generation_count for e in ("lm", "vae", "gmm")} == {4}


@pytest.mark.parametrize("name", ["gaussian_variance", "gaussian_typical_variance", "gaussian_w2"])
def test_the_theory_line_shows_where_replace_follows_it(full_run, name):
    """The expectation under replace was a dotted dark grey line of about the width of replace's black line,
    drawn among the series: where the run followed theory it vanished into that line. It is drawn behind every
    series (their lines and markers stay whole on top), solid, more than twice as wide as a series' line (it
    shows on both sides of one lying on it) and far lighter than any series' colour."""
    from matplotlib.colors import to_rgb

    def lightness(colour) -> float:
        return float(np.dot(to_rgb(colour), [0.2126, 0.7152, 0.0722]))

    with drawing.figure_style():
        fig, _ = getattr(gaussian_figures, name)(_context(full_run, "gaussian"))
    checked = 0
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        theory = [ln for ln in lines if ln.get_label().startswith("theory")]
        series = [ln for ln in lines if ln not in theory]
        for t in theory:
            assert t.get_linestyle() == "-"
            for s in series:
                assert t.get_zorder() < s.get_zorder(), s.get_label()
                assert t.get_linewidth() > 2 * s.get_linewidth(), s.get_label()
                assert lightness(t.get_color()) > lightness(s.get_color()) + 0.25, s.get_label()
                checked += 1
    assert checked


def _found(png: np.ndarray, panel: np.ndarray) -> bool:
    """Whether `panel` lies in `png` pixel for pixel."""
    rows = np.lib.stride_tricks.sliding_window_view(png, (1, panel.shape[1]))[:, :, 0, :]
    return any(y + panel.shape[0] <= png.shape[0] and np.array_equal(png[y:y + panel.shape[0], x:x + panel.shape[1]],
                                                                     panel)
               for y, x in zip(*np.nonzero((rows == panel[0]).all(-1))))


def test_vae_sample_grids_fit_the_page_pixel_for_pixel(tmp_path):
    """The grids were drawn at their PNG's own size (11.8 in for the demo's six generations): at a paper's
    7.2 in every image pixel is now the same whole number of figure pixels, so the saved figure holds each
    generation's grid exactly, frames and all (nothing resampled): the first 5 x 10 samples (across x down), 8x8
    digits five times over (40 figure pixels a sample, 30 px on the results page)."""
    from collapse_hpc.experiments.vae import grid
    from collapse_hpc.experiments.vae.figures import _panel, vae_samples
    from collapse_hpc.plotting.plots import save
    from tests.report import synthetic

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 6}}, generations=6)
    synthetic.vae(root, generations=6, finished=6)
    with drawing.figure_style():
        fig, caption = vae_samples(_context(root, "vae"))
        assert fig.get_figwidth() <= 7.2 and caption.startswith("The first 5 × 10 (across × down) of the 100 samples")
        png = np.asarray(Image.open(save(fig, tmp_path / "out", "vae_samples")[0]).convert("L"))
    for path in sorted(root.glob("vae/*/gen_*/samples.png")):
        cells = grid.read_cells(path)
        panel, shown = _panel(path, 218, 600)  # what six panels across 7.2 in and two series give each
        assert shown == (5, 10) and panel.shape == (10 * 8 * 5 + 11 * 2, 5 * 8 * 5 + 6 * 2)  # five times, 2 px frames
        assert np.array_equal(panel[2:42, 2:42], np.kron(cells[0], np.ones((5, 5), np.uint8)))
        assert _found(png, panel), path


@pytest.mark.parametrize("generations, side", [(6, 8), (3, 8), (2, 8), (10, 28)])
def test_vae_samples_are_legible_at_the_size_the_results_page_shows_them(tmp_path, monkeypatch, generations, side):
    """The results page shows a figure at most style.PAGE_PX (1100) px wide: the demo's six generations of 8x8
    digits, 16 figure pixels each in a 1228 px PNG, were 14 px there, ten rows of specks. Every sample now spans
    at least 30 px on the page (and a whole number of figure pixels per image pixel), the PNG at most a page
    wide and well under a megabyte."""
    from collapse_hpc.experiments.vae import figures as vae_figures
    from collapse_hpc.plotting import style
    from collapse_hpc.plotting.plots import save
    from tests.report import synthetic

    grid_png = synthetic._grid_png
    monkeypatch.setattr(synthetic, "_grid_png", lambda blur, seed: grid_png(blur, seed, side=side, scale=2))
    fig, caption = _vae_samples_drawn(tmp_path / "s", generations=generations)
    png = save(fig, tmp_path / "out", "vae_samples")[0]
    width = Image.open(png).size[0]
    shown = min(1.0, style.PAGE_PX / width)  # the page's scale of this PNG
    found = re.search(r"The first (\d+) × ", caption)
    cols = int(found.group(1)) if found else 10  # samples across a panel
    for ax in fig.axes:
        (image,) = ax.images
        sample = (image.get_array().shape[1] - (cols + 1) * vae_figures.FRAME) / cols  # figure pixels
        assert sample % side == 0 and sample * shown >= 30, (generations, side, sample, shown)
    assert width <= style.PAGE_W * style.DPI and png.stat().st_size < 1e6
    from collapse_hpc.report import page

    assert f"max-width:{style.PAGE_PX}px" in page.CSS  # the width the page shows it at, as reckoned here


def test_vae_sample_grids_viewed_at_half_size_keep_every_frame(tmp_path):
    """A 200-dpi figure on a screen, or scaled to a column, is shown at about half its pixels: 1 px frames
    between the samples fell out every other time, and the black margins of neighbouring 8x8 digits ran
    together into vertical stripes. Every frame is still there in each half of the pixels."""
    from collapse_hpc.experiments.vae import grid
    from collapse_hpc.experiments.vae.figures import _panel

    digits = np.zeros((100, 8, 8))
    digits[:, 1:7, 2:6] = 1.0  # a white digit, black margins
    grid.write_grid(digits, tmp_path / "samples.png", 4)
    for budget in (218, 360):  # six generations across the page; two
        panel, (across, down) = _panel(tmp_path / "samples.png", budget, 600)
        for phase in (0, 1):
            half = panel[phase::2, phase::2]
            frames = (half == grid.BACKGROUND).all(axis=0).sum(), (half == grid.BACKGROUND).all(axis=1).sum()
            assert frames == (across + 1, down + 1), (budget, phase, frames)


def _vae_samples_drawn(root, generations: int):
    """vae_samples of a synthetic VAE run of `generations`, every one finished: (figure, caption)."""
    from collapse_hpc.experiments.vae.figures import vae_samples
    from tests.report import synthetic

    synthetic.write_config(root, {"vae": {"generations": generations}}, generations=generations)
    synthetic.vae(root, generations=generations, finished=generations)
    with drawing.figure_style():
        return vae_samples(_context(root, "vae"))


def test_vae_sample_grids_of_large_images_show_fewer_samples_across_and_more_down(tmp_path, monkeypatch):
    """28x28 images (MNIST) over ten generations: six generations, evenly spaced, first and last among them,
    each 3 samples across at two figure pixels per image pixel (7 mm a sample), within 7.2 in. Square panels
    showed 3 x 3 of the 100 samples; a panel now goes on down, 3 x 10, the figure within a page's height."""
    from collapse_hpc.plotting import style
    from tests.report import synthetic

    grid_png = synthetic._grid_png
    monkeypatch.setattr(synthetic, "_grid_png", lambda blur, seed: grid_png(blur, seed, side=28, scale=2))
    fig, caption = _vae_samples_drawn(tmp_path / "m", generations=10)
    assert fig.get_figwidth() <= 7.2 and fig.get_figheight() <= style.PAGE_H
    assert [ax.get_title() for ax in fig.axes[:6]] == [f"generation {g}" for g in (0, 2, 4, 5, 7, 9)]
    assert {ax.images[0].get_array().shape[:2] for ax in fig.axes} == {(10 * 28 * 2 + 11 * 2, 3 * 28 * 2 + 4 * 2)}
    assert "The first 3 × 10 (across × down) of the 100 samples" in caption
    assert "Generations 0, 2, 4, 5, 7, 9 of 0 to 9." in caption


def test_vae_sample_grids_of_another_layout_are_drawn_whole(tmp_path, monkeypatch):
    """A samples.png not of vae.grid's layout (an older run's) is still drawn, whole, within the page."""
    from tests.report import synthetic

    plain = np.random.default_rng(0).integers(0, 256, (600, 600)).astype(np.uint8)

    def png(blur, seed):
        import io

        buf = io.BytesIO()
        Image.fromarray(plain).save(buf, format="PNG")
        return buf.getvalue()

    monkeypatch.setattr(synthetic, "_grid_png", png)
    fig, caption = _vae_samples_drawn(tmp_path / "p", generations=3)
    assert fig.get_figwidth() <= 7.2 and caption.startswith("100 samples")
    assert {ax.images[0].get_array().shape[:2] for ax in fig.axes} == {(300, 300)}  # every second pixel


def test_generation_ticks_leave_room_between_their_labels(tmp_path):
    """200 generations across a 2 in panel were labelled 0, 25, 50 … 200, each label touching the next
    ('125150175200'): neighbouring tick labels are at least half an em apart, in every panel of every figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 200}}, generations=200)
    synthetic.gaussian(root, generations=200, replicates=2)
    with drawing.figure_style():
        for key, fig in _saved(_context(root, "gaussian"), tmp_path / "out"):
            renderer = FigureCanvasAgg(fig).get_renderer()
            for ax in (a for a in fig.axes if a.get_visible()):
                labels = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                                 if t.get_visible() and t.get_text()), key=lambda b: b.x0)
                em = renderer.points_to_pixels(ax.xaxis.get_ticklabels()[0].get_fontsize())
                gaps = [b.x0 - a.x1 for a, b in zip(labels, labels[1:])]
                assert labels and min(gaps, default=em) >= em / 2, (key, [t.get_text() for t in ax.get_xticklabels()])


def test_a_row_sharing_its_scale_names_it_once(full_run, tmp_path):
    """The training curves of two regimes side by side, on one scale a row, repeated 'training loss (nats per
    token)' beside the right panel, whose ticks are hidden: the row's first panel names it, once."""
    from collapse_hpc.experiments.lm.figures import lm_training_curves
    from collapse_hpc.plotting.plots import save

    with drawing.figure_style():
        fig, _ = lm_training_curves(_context(full_run, "lm"))
        save(fig, tmp_path, "curves")
    labels = [[" ".join(ax.get_ylabel().split()) for ax in row] for row in np.array(fig.axes).reshape(2, -1)]
    assert labels == [["training loss (nats per token)", ""], ["tokens/s", ""]], labels


def test_series_meeting_at_some_generations_both_show_there(full_run, tmp_path):
    """lm_diversity: both regimes' generation 0 is trained on the same real data, one value in every panel; keep
    10%'s square, drawn last, hid replace's circle there (and wherever two regimes came near). Where markers of two
    series meet, the panel's series are drawn side by side (dodged): no marker's centre lies within half a marker of
    another series' marker."""
    from collapse_hpc.experiments.lm.figures import lm_diversity
    from collapse_hpc.plotting.plots import save

    with drawing.figure_style():
        fig, _ = lm_diversity(_context(full_run, "lm"))
        save(fig, tmp_path, "diversity")
        fig.draw_without_rendering()
    for ax in fig.axes:
        marked = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None")]
        assert len(marked) == 2 and marked[0].get_ydata()[0] == marked[1].get_ydata()[0], ax.get_title()
        a, b = (ln.get_transform().transform(ln.get_xydata()) * 72 / fig.dpi for ln in marked)  # in points
        apart = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2).min()
        assert apart >= marked[0].get_markersize() / 2, (ax.get_title(), apart)
        # beside, not moved off their generation: at most a third of the way to the next
        step = np.diff(a[:, 0]).min()
        both = min(len(a), len(b))
        assert np.abs(a[:both, 0] - b[:both, 0]).max() <= step / 3, (ax.get_title(), step)


def test_a_wrapped_title_keeps_its_worse_note_whole():
    from collapse_hpc.plotting import style

    assert style.wrap("log fitted variance (↓ worse)", 1.9) == "log fitted variance\n(↓ worse)"


def test_a_figure_legend_takes_as_many_columns_as_its_width_holds(full_run):
    """vae_tails' four entries stood in one column, 40% of the figure's height, reckoned at 0.065 in a
    character where two columns fitted: measured, the legend spreads over the columns the width holds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from collapse_hpc.experiments.vae.figures import vae_tails

    with drawing.figure_style():
        fig, _ = vae_tails(_context(full_run, "vae"))
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw_without_rendering()
        legend, = fig.legends
        box = legend.get_window_extent(renderer)
    assert box.width <= fig.bbox.width and box.height < 0.25 * fig.bbox.height, (box, fig.bbox)


def test_every_log_axis_says_so_in_its_label(full_run):
    """σ̂² and W₂² were drawn on log axes with plain ticks (0.05, 0.1, 0.2, 0.5, 1), the sequence perplexities
    on a log x axis ticked 100, 150, 200, their labels silent: a reader took the straight decay for linear. Every
    labelled log axis of every figure says 'log scale', as the overview's panels do."""
    from collapse_hpc import experiments
    from collapse_hpc.plotting.figures import NotInThisRun

    silent = []
    with drawing.figure_style():
        for experiment in ("gaussian", "gmm", "lm", "vae"):
            ctx = _context(full_run, experiment)
            for key, _, fn in experiments.describe(experiment).figures() + drawing.overviews(ctx):
                try:
                    drawn = fn(ctx)
                except NotInThisRun:  # a figure this run has no data for: the page says so instead
                    continue
                for ax in drawn[0].axes if drawn else []:
                    for axis, label, scale in (("x", ax.get_xlabel(), ax.get_xscale()),
                                               ("y", ax.get_ylabel(), ax.get_yscale())):
                        if scale == "log" and label and "log" not in label.replace("\u00a0", " "):
                            silent.append((experiment, key, axis, label))
    assert not silent, silent


def test_figure_headings_name_what_is_drawn_not_what_it_should_show():
    """The lm's tails figure was headed 'The tails go first' over a caption that, of one replicate, claims no
    ordering: a heading says what is drawn; which class went first is the caption's to claim, under its rule."""
    import re

    from collapse_hpc import experiments

    for experiment in ("gaussian", "gmm", "lm", "vae"):
        for _, title, _ in experiments.describe(experiment).figures():
            assert not re.search(r"\b(go|goes|went|gone) first\b", title, re.I), (experiment, title)


def _marked_generations(line) -> set:
    every = line.get_markevery()
    start, step = every if isinstance(every, tuple) else (0, every)
    return set(np.asarray(line.get_xdata())[start::step].tolist())


def test_series_of_30_generations_mark_other_generations_each(tmp_path):
    """Over 30 generations every series marked generations 0, 3, 6 …: all four of the gaussian's series met at
    generation 0, each marker on the last, too close to their neighbours to be dodged. A panel's series now start
    their markers at other generations, at least as many apart as there are series: none marks a generation
    another marks, and each still marks about 8."""
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 30}}, generations=30)
    synthetic.gaussian(root, generations=30, replicates=3)
    ctx = _context(root, "gaussian")
    _, _, overview = drawing.overviews(ctx)[0]
    with drawing.figure_style():
        fig, _ = overview(ctx)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for ax in panels:
        marked = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert len(marked) == 4, ax.get_title()
        at = [_marked_generations(ln) for ln in marked]
        assert all(not a & b for i, a in enumerate(at) for b in at[:i]), (ax.get_title(), at)
        assert all(7 <= len(a) <= 8 for a in at), (ax.get_title(), at)
    assert len(panels) > 4


def test_a_theory_curve_of_one_generation_is_drawn_where_the_legend_names_it(tmp_path):
    # a line through one point draws nothing: the legend named the theory curve, the panels showed none
    from tests.report import synthetic

    root = tmp_path / "g1"
    synthetic.write_config(root, {"gaussian": {"generations": 1}}, generations=1)
    synthetic.gaussian(root, generations=1, replicates=5)
    with drawing.figure_style():
        fig, _ = gaussian_figures.gaussian_variance(_context(root, "gaussian"))
    theory = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("theory")]
    assert len(theory) == 2 and all(ln.get_marker() not in (None, "None", "") for ln in theory)


def test_a_theory_curve_far_past_the_data_leaves_the_axis_and_the_caption_says_where(tmp_path):
    # n = 2 over 3000 generations: (1/2)^k falls to 5e-324 and the log axis ran from there to 1e16, the data a
    # sliver at its top
    from tests.report import synthetic

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3000}}, generations=3000)
    synthetic.gaussian(root, generations=3000, replicates=4, ns=(2,))
    ctx = _context(root, "gaussian")
    with drawing.figure_style():
        fig, caption = gaussian_figures.gaussian_variance(ctx)
    s = ctx.summary[(ctx.summary["metric"] == "var_hat") & (ctx.summary["mean"] > 0)]
    bottom, top = fig.axes[0].get_ylim()
    assert s["mean"].min() / 1e3 < bottom < s["mean"].min() and s["mean"].max() < top < 1e3, (bottom, top)
    first = int(np.argmax(0.5 ** np.arange(1, 3001) < bottom))  # generation k has had k+1 fits
    assert f"leaves the axis: n = 2: below from generation {first}." in caption, caption
