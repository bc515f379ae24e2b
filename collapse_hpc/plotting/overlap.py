"""Series drawn on one another: two series of the same values (both regimes' tail shares at 0) drew the later
one's markers and line over the earlier's, which a reader could not tell was there. Where a series lies on an
earlier one, its markers are drawn smaller and its line thinner, so the earlier one shows as a rim around it,
as a paper's figure nests coinciding markers; series apart keep their style."""
from __future__ import annotations

import numpy as np

NEAR = 0.01  # apart by less than this share of the panel, two points are drawn on one another
SHRINK = 0.6  # a covering series' marker size and line width, against the one it covers


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


def nest(fig) -> None:
    """Each marked line that lies on an earlier marked line of its panel drawn smaller than that one."""
    for ax in fig.axes:
        ax.get_xlim(), ax.get_ylim()  # the limits autoscaled as drawn, before transLimits reads them
        marked = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "", " ")]
        points = [_points(ax, ln) for ln in marked]
        for i, line in enumerate(marked):
            under = [j for j in range(i) if _covers(points[i], points[j])]
            if under:
                line.set_markersize(SHRINK * min(marked[j].get_markersize() for j in under))
                line.set_linewidth(SHRINK * min(marked[j].get_linewidth() for j in under))
