"""The tail figures of gmm, gaussian and vae: what they draw, against the real data's own level, with
captions computed from the run's numbers; and the VAE's latent figure as the notebook draws it."""
import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from collapse_hpc.plotting.figures import trend
from collapse_hpc.report import drawing, stats
from tests.report import synthetic
from tests.report.test_figures import _context


def _labels(fig):
    return {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}


def test_gaussian_tails_draw_median_mean_and_the_real_mass(tmp_path):
    from collapse_hpc.experiments.gaussian.figures import gaussian_tails

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 12}})
    synthetic.gaussian(root, generations=12, replicates=40)
    ctx = _context(root, "gaussian")
    fig, caption = gaussian_tails(ctx)
    assert len(fig.axes) == 4  # 2 sigma and 3 sigma x n = 10, 100
    top = fig.axes[0]
    assert top.get_ylabel() == "mass beyond μ ± 2σ" and top.get_title() == "n = 10"
    lines = {ln.get_label(): ln for ln in top.get_lines()}
    d = ctx.df[(ctx.df["metric"] == "tail_mass_2sigma") & (ctx.df["samples"] == 10)]
    d = d[d["regime"] == "replace-p0"]
    np.testing.assert_allclose(lines["replace (median)"].get_ydata(), d.groupby("generation")["value"].median())
    np.testing.assert_allclose(lines["replace (mean)"].get_ydata(), d.groupby("generation")["value"].mean())
    assert set(lines["the real distribution's own"].get_ydata()) == {2 * ndtr(-2)}
    last = d[d["generation"] == 11]["value"]
    assert (f"replace, samples=10: median {d[d['generation'] == 0]['value'].median():.2g} → {last.median():.2g}, "
            f"mean") in caption
    assert f"{(last > 0.5).mean():.1%} of the fits mostly beyond" in caption


def test_gmm_tails_draw_against_the_real_distributions_own_share(tmp_path):
    from collapse_hpc.experiments.gmm.figures import gmm_tails

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 12, "init_data": "two-mode", "separation": 3.0}})
    synthetic.gmm(root, generations=12)
    ctx = _context(root, "gmm")
    fig, caption = gmm_tails(ctx)
    from collapse_hpc.experiments.gmm.metrics import real_share
    from collapse_hpc.experiments.gmm.recursion import real_modes

    own = real_share(real_modes("two-mode", 3.0), 2)
    assert {"replace (median)", "replace (mean)", "accumulate (median)"} <= _labels(fig)
    ref = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "the real distribution's own"]
    assert set(ref[0].get_ydata()) == {own} and f"2σ {own:.4f}" in caption
    assert trend(ctx, "tail_share_3sigma", stat="median") in caption
    assert "more than k (Mahalanobis, here Euclidean) from every mode" in caption


def _room_of(ax, label: str) -> float:
    """The least share of the panel's height between the level drawn as `label` and the panel's edges."""
    level, = {y for ln in ax.get_lines() if ln.get_label() == label for y in ln.get_ydata()}
    lo, hi = ax.get_ylim()
    return min(hi - level, level - lo) / (hi - lo)


def test_the_real_level_of_a_tails_panel_lies_inside_it(tmp_path, full_run):
    """The real distribution's share beyond 2σ, above every replicate's median, set the top of the gmm's
    panel (autoscaled 5% past it): the thick grey line lay on the panel's edge, as did the real blocks' middle
    share in lm_tails' lower row. Each level now lies inside its panel (figures.ROOM of its height)."""
    from collapse_hpc.experiments.gmm.figures import gmm_tails
    from collapse_hpc.experiments.lm.figures import lm_tails

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 12}})
    synthetic.gmm(root, generations=12)
    ctx = _context(root, "gmm")
    df = ctx.df.assign(value=ctx.df["value"].where(~ctx.df["metric"].str.startswith("tail_share"), 0.0))
    fig, _ = gmm_tails(type(ctx)("gmm", df, stats.summarise(df), ctx.runs, ctx.specs))  # the tails all lost
    for ax in fig.axes[:2]:
        assert _room_of(ax, "the real distribution's own") >= 0.075, ax.get_ylim()
        assert ax.get_ylim()[0] == 0  # a share from 0, not below it
    fig, _ = lm_tails(_context(full_run, "lm"))
    for ax in fig.axes:
        for label in {ln.get_label() for ln in ax.get_lines()} & {"rare tokens, real training blocks",
                                                                  "middle tokens, real training blocks"}:
            assert _room_of(ax, label) >= 0.075, (label, ax.get_ylim())


def test_vae_tails_and_the_smallest_class(full_run):
    from collapse_hpc.experiments.vae.figures import vae_tails

    ctx = _context(full_run, "vae")
    fig, caption = vae_tails(ctx)
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_visible()] == ["share beyond the real 99% radius",
                                                                        "rarest class's share"]
    refs = {ln.get_label(): set(ln.get_ydata()) for ax in fig.axes for ln in ax.get_lines()
            if not ln.get_label().startswith(("replace", "accumulate"))}
    assert refs == {"real training images (1% by definition)": {0.01}, "all ten classes equally often": {0.1}}
    assert trend(ctx, "latent_tail_share") in caption and trend(ctx, "class_min_share") in caption


def test_vae_class_levels_are_those_of_the_real_images_classes(tmp_path):
    """A data set of the user's with five classes: the rarest class's level is 1/5 and the entropy's log 5, as
    each generation stored them (real_classes), not ten classes' 0.1 and log 10, which read as collapse."""
    from collapse_hpc.experiments.vae.figures import vae_class_entropy, vae_tails

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4, "dataset": "clothes"}})
    synthetic.vae(root, classes=5)
    ctx = _context(root, "vae")
    fig, caption = vae_tails(ctx)
    refs = {ln.get_label(): set(ln.get_ydata()) for ax in fig.axes for ln in ax.get_lines()
            if not ln.get_label().startswith(("replace", "accumulate", "real"))}
    assert refs == {"all five classes equally often": {0.2}}
    assert "dotted: 1/5, all five classes equally often." in caption and "all ten" not in caption
    _, caption = vae_class_entropy(ctx)
    assert "(log 5 = 1.61: all five classes equally often)" in caption and "log 10" not in caption


def test_vae_class_levels_of_a_one_class_data_set_say_one_class_alone(tmp_path):
    """A data set of one class: its level reads "one class alone", not "all one classes equally often"."""
    from collapse_hpc.experiments.vae.figures import vae_class_entropy, vae_tails

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4, "dataset": "sevens"}})
    synthetic.vae(root, classes=1)
    ctx = _context(root, "vae")
    _, caption = vae_tails(ctx)
    assert "dotted: 1, one class alone." in caption and "classes equally" not in caption
    _, caption = vae_class_entropy(ctx)
    assert "(log 1 = 0.00: one class alone)" in caption


@pytest.mark.parametrize("how", ["raw", "standardised"])
def test_latent_figure_raw_as_the_notebook_or_standardised(tmp_path, how):
    from collapse_hpc.experiments.vae.figures import vae_latents

    root = tmp_path / "v"
    section = {"generations": 4, "regimes": [{"name": "replace", "keep_fraction": 0.0}]}
    synthetic.write_config(root, {"vae": section if how == "raw" else {**section, "latent_figure": how}})
    synthetic.vae(root)
    fig, caption = vae_latents(_context(root, "vae"))
    legend = fig.axes[0].get_legend_handles_labels()[1]
    pooled = pd.read_parquet(root / "vae" / "replace-p0-s0" / "gen_001" / "latents.parquet")
    raw = pooled[["mu_0", "mu_1", "mu_2"]].to_numpy().ravel()
    if how == "raw":  # the notebook: every dimension's means as they are (the default)
        assert legend[1] == f"generation 1 (sd {np.std(raw):.2f})"
        assert fig.axes[0].get_xlabel() == "latent mean μ(x), all dimensions pooled" and "as the notebook" in caption
    else:
        assert legend[0] == "generation 0 (sd 1.00)" and "so generation 0 has sd 1" in caption
    assert f"→ {float(legend[-1].split('sd ')[1][:-1]):.2f} (generation 2)" in caption


def test_latent_figure_says_how_many_means_lie_beyond_its_axis(tmp_path):
    """Means beyond the axis are drawn in the outermost bins (clipped); the caption says how many, and
    says nothing where none are."""
    from collapse_hpc.experiments.vae.figures import vae_latents

    section = {"vae": {"generations": 4, "regimes": [{"name": "replace", "keep_fraction": 0.0}]}}
    root = tmp_path / "v"
    synthetic.write_config(root, section)
    synthetic.vae(root)
    assert "outermost" not in vae_latents(_context(root, "vae"))[1]
    root = tmp_path / "far"
    synthetic.write_config(root, section)
    synthetic.vae(root, far=2)  # a quarter of one of 3 dimensions: 1/12 of the pooled means
    fig, caption = vae_latents(_context(root, "vae"))
    assert "Means beyond the axis are drawn in its outermost bins; the most of any generation: replace: 8.3% of " \
           "generation 2's beyond ±4.02; accumulate: 8.3% of generation 2's beyond ±4.02." in caption, caption


def test_latent_densities_of_a_long_chain_stay_apart(tmp_path):
    """Ten generations' step outlines in ten neighbouring shades of one map, unfilled, ran together into one outline:
    a panel draws at most five, evenly spaced with the first and the last, each lightly filled, each next one in
    another dash; the caption says which."""
    from matplotlib.colors import to_hex

    from collapse_hpc.experiments.vae.figures import vae_latents

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 10, "regimes": [{"name": "replace", "keep_fraction": 0.0}]}},
                           generations=10)
    synthetic.vae(root, generations=10, finished=10)
    fig, caption = vae_latents(_context(root, "vae"))
    drawn = [p for p in fig.axes[0].patches if str(p.get_label()).startswith("generation ")]
    assert [p.get_label().split(" (")[0] for p in drawn] == [f"generation {g}" for g in (0, 2, 4, 7, 9)]
    assert all(0 < p.get_facecolor()[3] < 0.3 and p.get_edgecolor()[3] == 1 for p in drawn)  # filled, see-through
    assert all(a.get_linestyle() != b.get_linestyle() for a, b in zip(drawn, drawn[1:]))
    assert len({to_hex(p.get_edgecolor()) for p in drawn}) == len(drawn)
    assert "at most 5 generations a panel, evenly spaced (generations 0, 2, 4, 7, 9 of the 10)" in caption, caption


def test_vae_grids_and_latents_show_the_seed_that_got_furthest(tmp_path):
    """A run stopped midway: seed 0 finished generation 0 only, seed 1 three generations. The sample
    grids and the latent densities draw seed 1's three, not seed 0's one and 'missing' twice."""
    from collapse_hpc.experiments.vae.figures import vae_latents, vae_samples

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 3, "regimes": [{"name": "replace", "keep_fraction": 0.0}]}},
                           seeds=(0, 1))
    synthetic.vae(root, finished=1, seed=0)
    synthetic.vae(root, finished=3, seed=1)
    ctx = _context(root, "vae")
    fig, caption = vae_samples(ctx)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "missing" not in texts and sum(bool(ax.images) for ax in fig.axes) == 6  # 2 regimes x 3
    fig, _ = vae_latents(ctx)
    assert [label.split(" (")[0] for label in fig.axes[0].get_legend_handles_labels()[1]] == [
        "generation 0", "generation 1", "generation 2"]


def test_gmm_snapshots_show_every_point_and_say_what_a_run_did_not_record(tmp_path):
    """Every sampled point lies inside its panel (the outermost are the tails; the axes came from generation
    0's 99.5% quantile and cut some off), and beside a run of other snapshot generations a cell the run never
    recorded says so instead of 'missing'."""
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots
    from collapse_hpc.plotting.plots import Context
    from collapse_hpc.report import collect, stats
    from collapse_hpc import experiments

    roots = []
    for name, generations in (("long", 21), ("short", 12)):
        root = tmp_path / name
        synthetic.write_config(root, {"gmm": {"generations": generations}}, generations=1)
        synthetic.gmm(root, generations=generations)
        roots.append(root)
    data = [collect.load_run(r) for r in roots]
    df = collect.tidy(data)
    df = df[df["experiment"] == "gmm"]
    ctx = Context("gmm", df, stats.summarise(df), data,
                  experiments.describe("gmm").metric_specs(sorted(df["metric"].unique())))
    fig, caption = gmm_snapshots(ctx)
    for ax in fig.axes:
        for points in ax.collections:
            xy = points.get_offsets()
            (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
            assert ((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)).all()
    from matplotlib.text import Annotation

    texts = {t.get_text() for ax in fig.axes for t in ax.texts if not isinstance(t, Annotation)}  # not row labels
    assert texts == {"not recorded in long", "not recorded in short"}, texts  # 0, 10, 11 against 0, 10, 20
    assert "every point in view" in caption


def test_gmm_snapshots_name_their_axes_and_each_rows_series(tmp_path):
    """The scatter panels had no axis labels (the series' name stood where the y-axis' belongs): the bottom row
    says x, the first column y (the data's two coordinates), and each row names its series on the right, within
    the figure and clear of every panel. Then each bottom panel repeated "x" and each row "y": the grid's shared
    axes are named once, for the whole figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Annotation

    from collapse_hpc.experiments.gmm.figures import gmm_snapshots
    from collapse_hpc.plotting.plots import save
    from collapse_hpc.report import drawing

    root = tmp_path / "gmm"
    synthetic.write_config(root, {"gmm": {"generations": 21, "regimes": [{"name": "replace", "keep_fraction": 0.0},
                                                                         {"name": "accumulate"}]}}, generations=1)
    synthetic.gmm(root, generations=21)
    with drawing.figure_style():
        fig, caption = gmm_snapshots(_context(root, "gmm"))
        save(fig, tmp_path / "out", "gmm_snapshots")
    assert {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes} == {""}
    renderer = FigureCanvasAgg(fig).get_renderer()
    said = [t for t in fig.texts if t.get_text() in ("x", "y")]  # the figure's own labels (supxlabel, supylabel)
    assert sorted(t.get_text() for t in said) == ["x", "y"]
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    x, y = (t.get_window_extent(renderer) for t in sorted(said, key=lambda t: t.get_text()))
    assert x.y1 <= min(p.y0 for p in panels) and y.x1 <= min(p.x0 for p in panels)  # below and left of the grid
    renderer = FigureCanvasAgg(fig).get_renderer()
    names = [(t.get_text(), t.get_window_extent(renderer)) for ax in fig.axes for t in ax.texts
             if isinstance(t, Annotation)]
    assert [name for name, _ in names] == ["replace", "accumulate"]
    for name, box in names:
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), name
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes), name
    assert "x and y: the data's two coordinates" in caption


def test_gmm_snapshots_draw_a_few_points_larger_than_a_cloud_of_many(tmp_path):
    """Every dot was 1.5 pt² at alpha 0.4, as fits a cloud of a thousand points: a snapshot of a few points
    (gmm.samples: 5) showed specks hardly seen. The dots grow and darken as they are fewer."""
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots

    drawn = {}
    for points in (5, 1000):
        root = tmp_path / f"p{points}"
        synthetic.write_config(root, {"gmm": {"generations": 1}}, generations=1)
        synthetic.gmm(root, generations=1, parts=1, replicates=1, snapshot_points=points)
        fig, _ = gmm_snapshots(_context(root, "gmm"))
        dots = [c for ax in fig.axes for c in ax.collections]
        assert dots and all(len(c.get_offsets()) == points for c in dots)
        drawn[points] = (dots[0].get_sizes()[0], dots[0].get_alpha())
    (few, few_alpha), (many, many_alpha) = drawn[5], drawn[1000]
    assert few >= 5 * many and few_alpha > many_alpha, drawn
    assert many <= 2  # a cloud stays fine-grained


@pytest.mark.parametrize("spread", [0.0035, 0.0046, 0.3, 1.0])
def test_latent_figure_tick_labels_leave_room_between_them(tmp_path, spread):
    """A posterior-collapsed latent (a VAE with latent 1 on small images: means within +-0.016) was ticked
    -0.015, -0.010, … 0.015 across a 3.2 in panel, each label touching the next: neighbouring labels are at
    least half an em apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from collapse_hpc.experiments.vae.figures import vae_latents

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4}})
    synthetic.vae(root, spread=spread)
    with drawing.figure_style():
        fig, _ = vae_latents(_context(root, "vae"))
        renderer = FigureCanvasAgg(fig).get_renderer()
        for ax in fig.axes:
            labels = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()),
                            key=lambda b: b.x0)
            em = renderer.points_to_pixels(ax.xaxis.get_ticklabels()[0].get_fontsize())
            assert len(labels) >= 3 and min(b.x0 - a.x1 for a, b in zip(labels, labels[1:])) >= em / 2, \
                [t.get_text() for t in ax.get_xticklabels()]


def test_latent_figure_gives_a_collapsed_latents_sd_its_digits(tmp_path):
    """Latent means within +-0.016 read 'sd 0.00' in every generation's legend entry and in the caption."""
    from collapse_hpc.experiments.vae.figures import vae_latents

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4}})
    synthetic.vae(root, spread=0.0046)
    fig, caption = vae_latents(_context(root, "vae"))
    legend = fig.axes[0].get_legend_handles_labels()[1]
    gen0 = pd.read_parquet(root / "vae" / "replace-p0-s0" / "gen_000" / "latents.parquet").filter(like="mu_")
    assert legend[0] == f"generation 0 (sd {np.std(gen0.to_numpy()):.2g})"
    assert not any(label.endswith("(sd 0.00)") for label in legend), legend
    assert "0.00 →" not in caption and "→ 0.00 " not in caption


def test_lm_tails_colours_its_token_classes_unlike_any_regime(full_run):
    """The token classes took the regimes' colours (rare in replace's black, middle in keep 10%'s blue), so a
    class read as a regime of the other figures; each class now has a colour of its own, the same in both rows."""
    from matplotlib.colors import to_hex

    from collapse_hpc.experiments.lm.figures import lm_tails
    from collapse_hpc.plotting import style

    fig, _ = lm_tails(_context(full_run, "lm"))
    colours = {}
    for ax in fig.axes:
        for ln in ax.get_lines():
            cls = ln.get_label().split(" ")[0]
            if cls in ("rare", "middle", "frequent"):
                colours.setdefault(cls, set()).add(to_hex(ln.get_color()))
    assert set(colours) == {"rare", "middle", "frequent"}
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour a class, in both rows
    used = set().union(*colours.values())
    assert len(used) == 3 and not used & {c.lower() for c in style.COLOURS}, colours


def test_every_gaussian_tails_panel_of_a_row_holds_its_lines(tmp_path):
    """The panels of a row share their y-axis, and the first panel's limits (set for the real mass' room) turned
    the row's autoscaling off: a later sample size whose mean rose higher (paper scale: n = 50's replace mean at
    0.25 in a row scaled to n = 10's 0.16) ran off the panel's top. The row is scaled again once all are drawn."""
    from collapse_hpc.experiments.gaussian.figures import gaussian_tails

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 12}})
    synthetic.gaussian(root, generations=12, replicates=20)
    ctx = _context(root, "gaussian")
    tails, second = ctx.df["metric"].str.startswith("tail_mass"), ctx.df["samples"] == 100
    df = ctx.df.assign(value=ctx.df["value"].where(~(tails & second), 0.6))  # n = 100 (right): far above n = 10
    fig, _ = gaussian_tails(type(ctx)("gaussian", df, stats.summarise(df), ctx.runs, ctx.specs))
    for ax in fig.axes:
        top = max(np.nanmax(ln.get_ydata()) for ln in ax.get_lines())
        assert top <= ax.get_ylim()[1], (ax.get_title(), top, ax.get_ylim())
        assert ax.get_ylim()[0] == 0


@pytest.mark.parametrize("finished", [3, 5])
def test_latent_panels_share_a_density_axis_unless_a_spike_would_flatten_another(tmp_path, finished):
    """On one density axis replace's spike (generation 4: sd 0.11) flattened accumulate's densities (sd 0.45) to
    the panel's floor: panels whose tallest densities differ more than OWN_AXES-fold get an axis each, each labelled,
    and the caption says so; densities of a like height (generation 2: sd 0.2 and 0.63) keep one axis."""
    from collapse_hpc.experiments.vae.figures import OWN_AXES, vae_latents

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 5}}, generations=5)
    synthetic.vae(root, generations=5, finished=finished)
    fig, caption = vae_latents(_context(root, "vae"))
    tops = [ax.get_ylim()[1] for ax in fig.axes if ax.get_legend() is not None]
    assert len(tops) == 2
    if finished == 5:
        assert max(tops) > OWN_AXES * min(tops)
        assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["density", "density"]
        assert "Each panel has its own density axis: the tallest densities differ" in caption
    else:
        assert tops[0] == tops[1] and "own density axis" not in caption
        assert fig.axes[1].get_ylabel() == "" and not fig.axes[1].yaxis.majorTicks[0].label1.get_visible()


def test_vae_tails_panels_and_table_say_which_way_is_worse(tmp_path):
    """The tails' caption says both of its metrics fall under collapse (lower is worse), but the latent tail
    share declared no direction: its overview panel had no arrow and the comparison table's collapse column read
    '—'. Both tail metrics now say lower is worse, in the panel titles and the table."""
    from collapse_hpc.experiments.vae.figures import vae_tails
    from collapse_hpc.report import tables

    root = tmp_path / "v"
    synthetic.write_config(root, {"vae": {"generations": 4}}, generations=4)
    synthetic.vae(root, generations=4, finished=4)
    ctx = _context(root, "vae")
    fig, caption = vae_tails(ctx)
    assert "lower is worse" in caption
    with drawing.figure_style():
        fig, _ = drawing.overview(ctx, ["latent_tail_share", "class_min_share"])
    titles = [" ".join(ax.get_title().replace("\0", " ").split()) for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 2 and all(t.endswith("(↓ worse)") for t in titles), titles
    (header, rows), _ = tables.first_last(ctx.summary, ctx.runs, "vae", ctx.specs)
    tails = {r[header.index("metric")]: r[header.index("collapse")] for r in rows
             if r[header.index("metric")] in ("latent tail share", "rarest class's share")}
    assert tails and set(tails.values()) == {"lower is worse"}, tails
