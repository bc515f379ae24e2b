"""Figures of a paper-scale run: thousands of generations (gmm: 2050) and many replicates stay legible and small."""
from __future__ import annotations

from collections import Counter

import pytest

from collapse_hpc.plotting import plots
from tests.report import synthetic
from tests.report.test_figures import _context


def _thin(fig) -> list:
    """The single replicates' lines (thin, faint) of a figure."""
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_alpha() == 0.25 and ln.get_linewidth() == 0.5]


@pytest.fixture(scope="module")
def long_gmm(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "long"
    synthetic.write_config(root, {"gmm": {"generations": 2050}})
    synthetic.gmm(root, generations=2050, parts=2, replicates=8, snapshot_points=5)
    return _context(root, "gmm")


def test_few_replicate_lines_over_thousands_of_generations(long_gmm, tmp_path):
    """12 replicates' lines of 2050 noisy generations each filled their series' band solid (the gmm's keep 10% at
    paper scale) and made a PDF of 600 KB a panel: over many generations a series draws fewer, rasterized."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2

    fig, caption = gmm_l2(long_gmm)
    per_series = Counter(ln.get_color() for ln in _thin(fig))
    assert len(per_series) == 2 and max(per_series.values()) <= 3, per_series
    assert all(ln.get_rasterized() for ln in _thin(fig))
    assert f"the first {max(per_series.values())} of each series" in caption
    pdf, = [f for f in plots.save(fig, tmp_path, "gmm_l2") if f.suffix == ".pdf"]
    assert pdf.stat().st_size < 150_000, pdf.stat().st_size


def _series_lines(fig) -> list:
    """The series' own lines (labelled, not a single replicate's, not a level across the panel)."""
    return [ln for ax in fig.axes for ln in ax.get_lines()
            if not ln.get_label().startswith("_") and ln not in _thin(fig) and len(set(ln.get_xdata())) > 2]


def test_series_over_thousands_of_generations_are_solid_and_short_ones_keep_their_dashes(long_gmm, tmp_path):
    """A dashed or dotted line over 2050 noisy generations lost its dash pattern and read as a scribble (gmm_l2's
    accumulate dashed, gmm_tails' means dotted): a long series is drawn solid and thinner, told apart by colour and
    markers; a series of a few generations keeps its dash."""
    from collapse_hpc.experiments.gmm.figures import gmm_l2, gmm_tails

    long = [gmm_l2(long_gmm), gmm_tails(long_gmm)]
    drawn = [ln for fig, _ in long for ln in _series_lines(fig)]
    assert len(drawn) == 2 + 2 * 2 * 2  # l2: two series; tails: two panels of two series' median and mean
    assert {ln.get_linestyle() for ln in drawn} == {"-"}
    assert max(ln.get_linewidth() for ln in drawn) < 1.3  # thinner than a short series' (lines.linewidth)
    assert "mean (thin, faint)" in long[1][1] and "mean (dotted)" not in long[1][1]
    root = tmp_path / "short"
    synthetic.write_config(root, {"gmm": {"generations": 12}})
    synthetic.gmm(root, generations=12, replicates=3, snapshot_points=5)
    fig, caption = gmm_tails(_context(root, "gmm"))
    assert {ln.get_linestyle() for ln in _series_lines(fig)} == {"-", "--", ":"} and "mean (dotted)" in caption


def test_snapshots_of_the_papers_eight_panels_fit_a_page_at_a_legible_size(tmp_path):
    """The paper's snapshot generations and the real data (8 panels) made a figure 12.8 in wide, beyond a
    page's 7.2: the generations wrap onto a second line of panels, each still at least 1 in drawn, within a page's
    width and height, every generation titled once and every series named on each line."""
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots, snapshot_layout
    from collapse_hpc.plotting import style

    root = tmp_path / "snap"
    synthetic.write_config(root, {"gmm": {"generations": 80}})
    synthetic.gmm(root, generations=80, replicates=2, snapshot_points=50)  # snapshots every 10th and the last: 9
    fig, _ = gmm_snapshots(_context(root, "gmm"))
    assert fig.get_figwidth() <= style.PAGE_W and fig.get_figheight() <= style.PAGE_H, fig.get_size_inches()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 8 * 2
    titles = [ax.get_title() for ax in shown if ax.get_title()]
    assert len(titles) == len(set(titles)) == 8
    fig.canvas.draw()
    assert min(ax.get_position().width * fig.get_figwidth() for ax in shown) >= 1.0
    assert sorted(t.get_text() for ax in shown for t in ax.texts) == ["accumulate"] * 2 + ["replace"] * 2
    for series in (1, 2, 4, 6):  # the paper's regimes and more: within a page, each panel as large as it fits
        lines, side = snapshot_layout(8, series)
        assert side * -(-8 // lines) <= style.PAGE_W and side * lines * series <= style.PAGE_H and side >= 0.7


def test_snapshot_grid_lines_lie_beneath_the_points(tmp_path):
    """The grid lines were drawn over the snapshots' scatter (matplotlib's default puts them above collections)."""
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots

    root = tmp_path / "grid"
    synthetic.write_config(root, {"gmm": {"generations": 12}})
    synthetic.gmm(root, generations=12, replicates=2, snapshot_points=50)
    fig, _ = gmm_snapshots(_context(root, "gmm"))
    panels = [ax for ax in fig.axes if ax.collections]
    assert panels and all(ax.xaxis.get_zorder() < ax.collections[0].get_zorder() and
                          ax.yaxis.get_zorder() < ax.collections[0].get_zorder() for ax in panels)


def test_snapshot_panels_narrowed_to_a_page_keep_their_tick_labels_apart(tmp_path):
    """Five generations in one line of panels narrowed to fit a page (1.3 in each, 8 in wide before): their
    x tick labels '-2.5 0.0 2.5' ran together; neighbouring labels are at least half an em apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from collapse_hpc.experiments.gmm.figures import gmm_snapshots
    from collapse_hpc.plotting import style
    from collapse_hpc.report import drawing

    root = tmp_path / "five"
    synthetic.write_config(root, {"gmm": {"generations": 41}})
    synthetic.gmm(root, generations=41, replicates=2, snapshot_points=1000)  # snapshots 0, 10, 20, 30, 40
    with drawing.figure_style():
        fig, _ = gmm_snapshots(_context(root, "gmm"))
        assert fig.get_figwidth() <= style.PAGE_W and len({ax.get_title() for ax in fig.axes} - {""}) == 5
        fig.draw_without_rendering()
        renderer = FigureCanvasAgg(fig).get_renderer()
        for ax in fig.axes:
            labels = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                             if t.get_visible() and t.get_text()), key=lambda b: b.x0)
            em = renderer.points_to_pixels(style.RC["xtick.labelsize"])
            assert min((b.x0 - a.x1 for a, b in zip(labels, labels[1:])), default=em) >= em / 2, \
                [t.get_text() for t in ax.get_xticklabels()]


def _drawn_snapshots(root):
    """gmm_snapshots of the run at root, drawn at the report's fonts: (figure, its visible panels)."""
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots
    from collapse_hpc.report import drawing

    with drawing.figure_style():
        fig, _ = gmm_snapshots(_context(root, "gmm"))
        fig.draw_without_rendering()
    return fig, [ax for ax in fig.axes if ax.get_visible()]


@pytest.mark.parametrize("generations, panels", [(80, 8), (41, 5), (12, 3)])
def test_snapshot_panels_reach_the_side_their_layout_gives(tmp_path, generations, panels):
    """A figure of the panels' sides alone left each equal-aspect panel ~1.07 in of a nominal 1.6 once the titles,
    ticks and the rows' names took their room: the figure holds that room besides, and each panel is drawn within
    5% of its side (and the figure still within a page)."""
    from collapse_hpc.experiments.gmm.figures import snapshot_layout
    from collapse_hpc.plotting import style

    root = tmp_path / "side"
    synthetic.write_config(root, {"gmm": {"generations": generations}})
    synthetic.gmm(root, generations=generations, replicates=2, snapshot_points=50)
    fig, shown = _drawn_snapshots(root)
    _, side = snapshot_layout(panels, 2)
    drawn = [min(ax.get_position().width * fig.get_figwidth(), ax.get_position().height * fig.get_figheight())
             for ax in shown]
    assert min(drawn) >= 0.95 * side, (min(drawn), side)
    assert fig.get_figwidth() <= style.PAGE_W and fig.get_figheight() <= style.PAGE_H, fig.get_size_inches()


def test_snapshot_row_names_stay_within_their_panels_height(tmp_path):
    """'accumulate-subsample' beside five panels narrowed to fit a page ran past its row's panel into the next
    row's name: a row's name breaks into lines (at its hyphen) no longer than the panel is high."""
    root = tmp_path / "names"
    synthetic.write_config(root, {"gmm": {"generations": 41}})
    synthetic.gmm(root, generations=41, replicates=2, snapshot_points=50,
                  regimes=("replace-p0", "replace-p0.1", "accumulate-subsample"))
    fig, shown = _drawn_snapshots(root)
    named = {t.get_text().replace("\n", ""): (t, ax) for ax in shown for t in ax.texts}
    assert set(named) == {"replace", "replace, keep 10%", "accumulate-subsample"}
    for text, ax in named.values():
        assert text.get_window_extent().height <= ax.get_window_extent().height, text.get_text()
