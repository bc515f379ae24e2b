"""Axis labels said once and kept within their panels: a label longer than its panel's side runs past the
panel, into the next row's or off the figure, and constrained layout cannot shrink text to stop it."""
from __future__ import annotations

import re
import textwrap


def once(fig) -> None:
    """A panel sharing its y-axis with the panel to its left (its ticks hidden) drops a y-axis label that repeats
    that panel's; a panel sharing its x-axis with the one below drops a repeated x-axis label."""
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is None:
            continue
        for other in fig.axes:
            there = other.get_subplotspec()
            if there is None or other is ax:
                continue
            beside = there.rowspan == spec.rowspan and there.colspan.start < spec.colspan.start
            below = there.colspan == spec.colspan and there.rowspan.start > spec.rowspan.start
            if beside and ax.get_shared_y_axes().joined(ax, other) and other.get_ylabel() == ax.get_ylabel():
                ax.set_ylabel("")
            if below and ax.get_shared_x_axes().joined(ax, other) and other.get_xlabel() == ax.get_xlabel():
                ax.set_xlabel("")


def fit_labels(fig) -> None:
    """Break each y-axis label taller than its panel, and each x-axis label wider, into lines that fit,
    measured in the figure as laid out (the longest line the panel's side holds, at the label's size)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    for _ in range(3):  # a label broken into lines takes room from its panel, which the layout gives back smaller
        fig.draw_without_rendering()  # the panels' sizes as they will be saved
        changed = False
        for ax in (a for a in fig.axes if a.get_visible()):
            box = ax.get_window_extent(renderer)
            changed |= _fit(ax.yaxis.label, box.height, "height", renderer)
            changed |= _fit(ax.xaxis.label, box.width, "width", renderer)
        if not changed:
            return


def _fit(label, side: float, along: str, renderer) -> bool:
    """Re-wrap `label` at fewer characters a line until its extent `along` is within `side` pixels; whether
    it changed."""
    # ASCII whitespace only: a no-break space (inside a formula: ‖f₀ − fₖ‖²) stays, and textwrap keeps it whole
    text = re.sub(r"[ \t\n\r\f\v]+", " ", label.get_text()).strip()
    if not text or getattr(label.get_window_extent(renderer), along) <= side:
        return False
    for chars in range(len(text) - 1, 7, -1):
        label.set_text(textwrap.fill(text, chars, break_on_hyphens=False))
        if getattr(label.get_window_extent(renderer), along) <= side:
            break
    return True
