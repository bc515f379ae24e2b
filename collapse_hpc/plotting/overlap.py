"""Series drawn on one another: two series of the same values (both regimes' tail shares at 0) drew the later
one's markers and line over the earlier's, which a reader could not tell was there. Where a series lies on an
earlier one, its markers are drawn smaller and its line thinner, so the earlier one shows as a rim around it,
as a paper's figure nests coinciding markers; series apart keep their style. Where series meet at some points
only (every regime's generation 0, trained alike on the real data), the later one's markers there hid the earlier
one's: the panel's series are dodged, each moved across by a little under a marker's width."""
from __future__ import annotations

import numpy as np

NEAR = 0.01  # apart by less than this share of the panel, two points are drawn on one another
SHRINK = 0.6  # a covering series' marker size and line width, against the one it covers
DODGE = 0.75  # markers' widths between neighbouring dodged series: the shapes overlap at their edges only


def _points(ax, line) -> np.ndarray:
    """The line's points in panel fractions (0 to 1 across the axes, on their scales), NaN where missing."""
    xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
    with np.errstate(all="ignore"):
        return (ax.transScale + ax.transLimits).transform(xy)


def _covers(mine: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether most (at least two) of a line's points lie on points of an earlier one. A tree, not every
    pair of points: a series of thousands of generations would need a pair array of gigabytes."""
    from scipy.spatial import cKDTree

    seen, there = np.isfinite(mine).all(axis=1), theirs[np.isfinite(theirs).all(axis=1)]
    if seen.sum() < 2 or len(there) == 0:
        return False
    gaps, _ = cKDTree(there).query(mine[seen], distance_upper_bound=NEAR, p=np.inf)
    on = gaps < NEAR
    return on.sum() >= 2 and on.mean() > 0.5


def _marked(ax) -> list:
    ax.get_xlim(), ax.get_ylim()  # the limits autoscaled as drawn, before transLimits reads them
    return [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "", " ")]


def _lying_on(ax) -> tuple[list, list[np.ndarray], list[list[int]]]:
    """The panel's marked lines, their points, and for each the earlier ones it lies on (_covers)."""
    marked = _marked(ax)
    points = [_points(ax, ln) for ln in marked]
    return marked, points, [[j for j in range(i) if _covers(points[i], points[j])] for i in range(len(marked))]


def nest(fig) -> None:
    """Each marked line that lies on an earlier marked line of its panel drawn smaller than that one."""
    for ax in fig.axes:
        marked, _, lies_on = _lying_on(ax)
        for line, under in zip(marked, lies_on):
            if under:
                line.set_markersize(SHRINK * min(marked[j].get_markersize() for j in under))
                line.set_linewidth(SHRINK * min(marked[j].get_linewidth() for j in under))


def _marks(ax, line, points: np.ndarray) -> np.ndarray:
    """Where the line draws its markers (markevery), in points across and up the panel; only the finite."""
    every = line.get_markevery()  # n, (start, n) (style.markevery), or None: every point
    start, step = (0, every) if isinstance(every, int) else every if isinstance(every, tuple) else (0, 1)
    drawn = points[start::step]
    return drawn[np.isfinite(drawn).all(axis=1)] * ax.bbox.size * 72 / ax.figure.dpi


def _hides(mine: np.ndarray, theirs: np.ndarray, near: float) -> bool:
    """Whether a marker of one line lies within `near` (points, across and up) of a marker of another."""
    from scipy.spatial import cKDTree

    if not len(mine) or not len(theirs):
        return False
    gaps, _ = cKDTree(theirs).query(mine, p=np.inf)
    return bool((gaps < near).any())


def _gap(ax, points: list[np.ndarray]) -> float:
    """The least distance across (points) between neighbouring points of one line: a dodge wider than a share of it
    reads as a series drawn a generation early or late."""
    width = ax.bbox.width * 72 / ax.figure.dpi
    gaps = [np.diff(np.unique(p[np.isfinite(p[:, 0]), 0])) * width for p in points]
    return min((float(g.min()) for g in gaps if len(g)), default=np.inf)


def dodge(fig) -> None:
    """Each panel where a marker of one series hides most of another's (their centres closer than half a marker)
    draws its marked series side by side, spread evenly about where they are, in all at most half the room between
    a line's neighbouring points; a series nested on another (nest) moves with it and keeps its rim. Points too
    close for a step of a quarter marker (a long series) are left where they are."""
    from matplotlib.transforms import ScaledTranslation

    for ax in fig.axes:
        marked, points, lies_on = _lying_on(ax)
        roots: list[int] = []  # the series each is drawn on: its own, or the one it is nested on
        for i, under in enumerate(lies_on):
            roots.append(roots[under[0]] if under else i)
        own = sorted(set(roots))
        marks = {i: _marks(ax, marked[i], points[i]) for i in own}
        size = max((ln.get_markersize() for ln in marked), default=0.0)
        if len(own) < 2 or not any(_hides(marks[i], marks[j], size / 2) for i in own for j in own if j < i):
            continue
        step = min(DODGE * size, 0.5 * _gap(ax, [points[i] for i in own]) / (len(own) - 1))
        if step < size / 4:
            continue
        for line, root in zip(marked, roots):
            across = (own.index(root) - (len(own) - 1) / 2) * step / 72  # inches
            line.set_transform(line.get_transform() + ScaledTranslation(across, 0, fig.dpi_scale_trans))
