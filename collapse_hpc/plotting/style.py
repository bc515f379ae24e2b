"""One figure style for the whole report: print-sized, readable in greyscale.

Series (regimes, settings) differ by marker and line style as well as colour, so a
greyscale print still tells them apart; generations use a colour map whose lightness
rises monotonically (magma, cut where it gets too light to see on white) plus cycling line styles.
"""
from __future__ import annotations

import numpy as np

RC = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "legend.frameon": False,
    "savefig.bbox": "tight",  # a safety net for long labels; constrained layout does the rest
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # TrueType: text a PDF reader can select and edit; journals reject Type 3 fonts
    "figure.dpi": 100,
}
DPI = 200  # PNG resolution

# Okabe-Ito colours (colour-blind safe) ordered dark to light, each with its own marker and dash.
COLOURS = ["#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1)), (0, (1, 2)), (0, (8, 2))]

PANEL_W, PANEL_H = 2.9, 2.2  # inches per panel
PAGE_W = 7.2  # a two-column paper's full text width (Nature: 183 mm): wider figures print their 7 pt below 5 pt
PAGE_H = 9.7  # the tallest figure a journal page takes (Nature: 247 mm)
# what a log axis adds to its label: ladder ticks (0.05, 0.1, 0.2) alone read as a linear axis (a no-break space:
# a label broken between words put "(log" over "scale)", two notes)
LOG_NOTE = " (log\u00a0scale)"
PAGE_PX = 1100  # CSS pixels the results page (report.page) shows a figure across at most: wider PNGs are scaled to it
# a level to compare against (the real data's own value): a thick light line behind the series, unlike any of them
REAL = {"color": "0.72", "linestyle": "-", "linewidth": 3.0, "zorder": 0}
# a baseline of another kind (the initial model, a uniform share): dotted dark grey, unlike the real data's level
BASELINE = {"color": "0.35", "linestyle": ":", "linewidth": 1.2}
# what theory expects of a series (the single Gaussian's under replace): a thick light orange line behind the series,
# above their bands. Dotted dark grey on top, it vanished into replace's black line wherever the run followed it.
THEORY = {"color": "#F2C46D", "linestyle": "-", "linewidth": 3.4, "zorder": 1.5, "solid_capstyle": "butt"}
# a value the paper reports (its own setting only): dash-dotted, dark red, behind the series
PAPER = {"color": "#8B0000", "linestyle": (0, (6, 2, 1, 2)), "linewidth": 1.2, "zorder": 1}


# classes of an ordered quantity (lm_tails' token classes, rare to frequent): colours of their own, none of the
# regimes' (COLOURS), so that a class is not read as a regime (rare in replace's black, middle in keep 10%'s blue);
# Paul Tol's muted scheme, colour-blind safe, each contrasting at least 3:1 with white
CLASS_COLOURS = ["#882255", "#117733", "#332288"]


def token_class(i: int, points: int = 10) -> dict:
    """Line keywords of the i-th class of CLASS_COLOURS: series(i)'s marker and dash in the class's colour."""
    colour = CLASS_COLOURS[i % len(CLASS_COLOURS)]
    return series(i, points) | {"color": colour, "markerfacecolor": colour}


SPREAD = 0.5  # how far a regime's last setting moves its colour: half way to black (to white from black)


def shade(colour: str, setting: int, settings: int = 2) -> str:
    """A regime's colour for its `setting`-th of `settings` variants (sample sizes): its own for the first,
    each next one further towards black, from black towards white, so that each stays visible on white. Two
    sample sizes of one regime drawn in one colour left their lines and bands alike (the same grey)."""
    from matplotlib.colors import to_hex, to_rgb

    rgb = to_rgb(colour)
    t = SPREAD * min(setting, settings - 1) / max(1, settings - 1)
    towards = 1.0 if max(rgb) < 0.2 else 0.0
    return to_hex([c + (towards - c) * t for c in rgb])


# a series of more points than this is drawn solid and thinner: a dash (~7 pt a cycle) spans fewer than a panel's
# ~170 pt / LONG_SERIES of them, and over 1000 noisy generations a dashed or dotted line read as a scribble; its
# colour, marker (on ~8 points) and fill tell it apart
LONG_SERIES = 300
LONG_WIDTH = 0.9


def long_series(points: int) -> bool:
    return points > LONG_SERIES


def series(i: int, points: int = 10, setting: int = 0, settings: int = 1) -> dict:
    """Line keywords of the i-th series (of a regime: its colour and marker in every figure); markers on
    at most ~8 points of a long line. `setting`: the i-th regime's variant of another setting (a sample
    size, of `settings`): the regime's hue and marker, darker for each next one (shade), its own dash,
    hollow markers on every other one. Over more than LONG_SERIES points: solid and thinner, no dash."""
    hollow = (i // len(COLOURS) + setting) % 2
    colour = shade(COLOURS[i % len(COLOURS)], setting, settings)
    dash = {"linestyle": "-", "linewidth": LONG_WIDTH} if long_series(points) else \
        {"linestyle": DASHES[(i + setting) % len(DASHES)]}
    return {"color": colour, "marker": MARKERS[i % len(MARKERS)], **dash, "markevery": markevery(points),
            "markerfacecolor": "white" if hollow else colour}


def markevery(points: int, k: int = 0, n: int = 1) -> int | tuple[int, int]:
    """Which points the k-th of a panel's n series marks: about 8 of a line. Where a line marks only some of its
    points (16 or more), each series starts at another of the first points, at least n apart: the regimes' series
    all meet at generation 0 (trained alike on the real data) and their markers there covered each other, too close
    over 30 or more generations for overlap.dodge to move them apart."""
    every = max(1, points // 8)
    if every < 2 or n < 2:
        return every
    every = max(every, n)
    return (k * every // n, every)


def second_statistic(points: int) -> dict:
    """Line keywords of a second statistic beside a series' first (the mean beside the median), in the series'
    colour without markers: dotted, or over a long series (long_series) a thin faint solid line (a dotted one was
    a scribble there)."""
    if long_series(points):
        return {"marker": None, "linestyle": "-", "linewidth": 0.6, "alpha": 0.7}
    return {"marker": None, "linestyle": ":", "linewidth": 0.9}


def second_statistic_name(points: int) -> str:
    """How a caption names the line second_statistic draws."""
    return "thin, faint" if long_series(points) else "dotted"


def wrap(text: str, inches: float, points: float = RC["axes.titlesize"]) -> str:
    """`text` broken into lines of at most `inches` at `points` (a character about 0.55 em on average): a
    panel's title wider than its panel runs into its neighbour's."""
    import textwrap

    glued = text.replace("↑ worse", "↑\0worse").replace("↓ worse", "↓\0worse")  # a note breaks as a whole
    return textwrap.fill(glued, max(8, int(inches / (0.55 * points / 72))), break_on_hyphens=False).replace("\0", " ")


# Generations: magma from black to coral. Its lightness rises monotonically, so the order reads in greyscale and
# to every colour-vision deficiency; cut at 0.68, the lightest generation still contrasts 3:1 with the white page
# (WCAG's least for graphics; viridis up to 0.9 ended in yellow at 1.5:1), and neighbours stay further apart
# under deuteranopia and protanopia than along viridis or cividis cut at the same contrast.
GENERATION_MAP, GENERATION_RANGE = "magma", (0.0, 0.68)


def generation_colours(n: int) -> list:
    """n colours from dark (early generations) to lighter (late ones), each visible on white."""
    from matplotlib import colormaps

    return [colormaps[GENERATION_MAP](x) for x in np.linspace(*GENERATION_RANGE, max(n, 1))]


def generation_dash(i: int):
    return DASHES[i % 4]  # a chain's generations (lm, vae: ten at most), never a long series


def figure(rows: int, cols: int, sharex: bool = False, sharey: bool = False, w: float | None = None,
           h: float = PANEL_H):
    """A Figure (no pyplot: no global state) and a 2-D array of its axes. Panels of the default width
    narrow so that the figure fits a paper's full width (PAGE_W) at its own size; a width given (an image
    grid's pixels) is kept."""
    from matplotlib.figure import Figure

    w = w if w is not None else min(PANEL_W, PAGE_W / cols)

    fig = Figure(figsize=(w * cols, h * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes
