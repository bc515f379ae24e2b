"""The VAE's report figures: sample grids of every generation, the spread of their latent means
under generation 0's encoder (the paper's figure), the class entropy and the tails."""
from __future__ import annotations

import math

import numpy as np

from collapse_hpc.experiments.vae import grid
from collapse_hpc.experiments.vae.metrics import CLASSES
from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import GAPS, band_note, metric_grid, pick, trend
from collapse_hpc.plotting.plots import Context, no_data, unit_order, unit_series


def _files(ctx: Context, name: str) -> list:
    """(run, series, {generation: path of `name`}, seed) of one seed per series, in the series' order: the
    seed that reached the most generations (the lowest of those), so that a run whose first seed stopped
    early still shows the generations another seed finished."""
    rows = []
    for run in ctx.runs:
        found, orders = {}, {}  # series -> seed -> generation -> path
        for unit in run.finished("vae"):
            info, key = unit_series(run, "vae", unit)
            orders[key] = unit_order(info)
            path = unit.file(name)
            if path is not None:
                found.setdefault(key, {}).setdefault(info.seed, {})[unit.index] = path
        chosen = {k: min(seeds, key=lambda seed: (-len(seeds[seed]), seed)) for k, seeds in found.items()}
        rows += [(run, k, found[k][seed], seed) for k, seed in sorted(chosen.items(), key=lambda kv: orders[kv[0]])]
    return rows


def _seeds_shown(ctx: Context, rows: list) -> str:
    """Which seed each drawn series is, for a caption: '(replace: seed 0; replace, keep 10%: seed 2)'."""
    return "; ".join(f"{key if len(ctx.runs) == 1 else f'{run.label}: {key}'}: seed {seed}"
                     for run, key, _, seed in rows)


SHOWN = 6  # generations a row draws at most: evenly spaced, the first and the last among them
# the fewest CSS pixels a sample spans on the results page, which shows a figure at most style.PAGE_PX wide: 8x8
# digits drawn 16 figure pixels wide (2 mm printed) were 12 px there, ten rows of specks
SAMPLE_PAGE_PX = 30
# the fewest figure pixels a sample spans: SAMPLE_PAGE_PX on the page once a page-wide figure is scaled to it (40:
# 5 mm printed at style.DPI)
SAMPLE_PX = math.ceil(SAMPLE_PAGE_PX * style.PAGE_W * style.DPI / style.PAGE_PX)
# figure pixels between samples: one vanished where the figure is viewed at half size (a 200-dpi PNG on a
# screen), and the black margins of neighbouring 8x8 digits ran together into vertical stripes
FRAME = 2
GAP, LEFT, TOP = 0.06, 0.34, 0.22  # inches: between panels, for the rows' labels, for the titles
MOST = 1.8  # inches a panel spans at most (a run of two generations would otherwise draw 3.4 in panels)
# inches a panel spans down at most: samples go on down a panel, in more rows than across, until this or a page's
# height (style.PAGE_H) shared by the series: six MNIST generations across a page leave 3 samples a row, and a
# square panel showed 3 x 3 of the 100
TALL = 3.0


def _rows(side: int, scale: int, cols: int, tall: int) -> int:
    """Rows of samples of a panel at most `tall` pixels high, each sample side x side at `scale`: as many as fit,
    at most the grid's own ROWS (a panel then holds cols x ROWS of the 100 samples)."""
    return int(np.clip((tall - FRAME) // (side * scale + FRAME), 1, grid.ROWS))


def _scale(side: int, budget: int) -> tuple[int, int]:
    """(samples a side, integer scale) of a panel `budget` pixels wide: as many of the grid's samples a side
    as a scale drawing each at least SAMPLE_PX wide allows, at the largest such scale. An integer scale is
    what keeps every image pixel, and every frame between samples, the same size in print."""
    for cols in range(grid.COLS, 0, -1):
        scale = (budget - (cols + 1) * FRAME) // (cols * side)
        if scale >= 1 and (scale * side >= SAMPLE_PX or cols == 1):
            return cols, scale
    return 1, 1


def _panel(path, budget: int, tall: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """A generation's samples.png as the figure draws it, pixel for pixel, and the samples it shows across and
    down, as many down as `tall` pixels hold (_rows; default: as many as across) ((0, 0): a PNG not of
    grid.write_grid's layout, shown whole, at an integer scale up or every n-th pixel)."""
    cells = grid.read_cells(path)
    if cells is None:
        from PIL import Image

        with Image.open(path) as im:
            px = np.asarray(im.convert("L"))
        if px.shape[1] > budget:
            return px[::-(-px.shape[1] // budget), ::-(-px.shape[1] // budget)], (0, 0)
        return np.kron(px, np.ones((budget // px.shape[1],) * 2, np.uint8)), (0, 0)
    side = max(cells.shape[1:])
    cols, scale = _scale(side, budget)
    rows = cols if tall is None else _rows(side, scale, cols, tall)
    return grid.canvas(cells, cols, scale, FRAME, rows), (cols, rows)


def _shown(top: int) -> list[int]:
    return sorted({int(g) for g in np.round(np.linspace(0, top, min(SHOWN, top + 1)))})


def vae_samples(ctx: Context):
    rows = _files(ctx, "samples.png")
    if not rows:
        return None
    top = max(max(max(v), (r.generations.get("vae") or 0) - 1) for r, _, v, _ in rows)
    gens = _shown(top)
    dpi, gap = style.DPI, round(GAP * style.DPI)
    budget = min(int(((style.PAGE_W - LEFT) * dpi - gap * (len(gens) - 1)) // len(gens)), round(MOST * dpi))
    tall = min(round(TALL * dpi), int(((style.PAGE_H - TOP) * dpi - gap * (len(rows) - 1)) // len(rows)))
    panels = {(r, g): _panel(grids[g], budget, tall) for r, (_, _, grids, _) in enumerate(rows)
              for g in gens if g in grids}
    width = max(p.shape[1] for p, _ in panels.values())
    heights = [max((p.shape[0] for (i, _), (p, _) in panels.items() if i == r), default=width)
               for r in range(len(rows))]
    fig = _pixel_figure(ctx, rows, gens, panels, width, heights)
    counted = [f"{m} {t}" for m in ("class_entropy", "class_min_share") if m in ctx.metrics() and (t := trend(ctx, m))]
    here = (" Here (the classifier's labels of vae.eval_samples samples, mean over seeds): " + "; ".join(counted)
            + ".") if counted else ""
    across, down = max(n for _, n in panels.values())
    least = f"{SAMPLE_PX / style.DPI * 25.4:.0f} mm wide, {SAMPLE_PAGE_PX} px on the results page"
    what = (f"The first {across} × {down} (across × down) of the 100 samples of each generation's samples.png (as "
            f"many across as fit the page's width with each sample at least {least}, as many down as fit "
            f"{TALL:g} in or the page's height)" if 0 < across * down < grid.ROWS * grid.COLS else "100 samples")
    which = "" if len(gens) == top + 1 else f" Generations {', '.join(map(str, gens))} of 0 to {top}."
    return fig, (f"{what} decoded from the prior by each generation's VAE, every image pixel drawn as the same "
                 "whole number of figure pixels (one seed per regime, the one "
                 f"that reached the most generations: {_seeds_shown(ctx, rows)}).{which} Collapse "
                 "as the paper expects it: from left to right the images blur and converge to a few shapes, then one "
                 "(fewer and blurrier shapes are worse)." + here)


def _pixel_figure(ctx: Context, rows: list, gens: list[int], panels: dict, width: int, heights: list[int]):
    """Panels placed at whole pixels of style.DPI, each image at its own size: no layout engine resizes them,
    so nothing resamples the samples."""
    from matplotlib.figure import Figure

    dpi, gap, left, top = style.DPI, round(GAP * style.DPI), round(LEFT * style.DPI), round(TOP * style.DPI)
    w = left + len(gens) * width + (len(gens) - 1) * gap + 2
    h = top + sum(heights) + (len(rows) - 1) * gap + 2
    fig = Figure(figsize=(w / dpi, h / dpi))
    y = top
    for r, (run, key, grids, _) in enumerate(rows):
        for c, g in enumerate(gens):
            image, _ = panels.get((r, g), (None, 0))
            pw, ph = (image.shape[1], image.shape[0]) if image is not None else (width, heights[r])
            ax = fig.add_axes(((left + c * (width + gap)) / w, 1 - (y + ph) / h, pw / w, ph / h))
            if image is not None:
                # as RGB bytes: a grey colour map rounds some levels to their neighbour
                ax.imshow(np.repeat(image[..., None], 3, axis=2), interpolation="nearest", aspect="auto")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
            else:
                no_data(ax, "missing")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(f"generation {g}", fontsize=style.RC["axes.labelsize"], pad=3)
            if c == 0:
                ax.set_ylabel(key if len(ctx.runs) == 1 else f"{run.label}\n{key}")
        y += heights[r] + gap
    return fig


def _latent_figure(ctx: Context, run) -> str:
    """vae.latent_figure of the run's config (its default where the config predates the key)."""
    from collapse_hpc.experiments.vae.config import VaeConfig

    chosen = (run.raw_config.get("vae") or {}).get("latent_figure")
    return chosen if chosen in ("raw", "standardised") else VaeConfig.latent_figure


def _latent_values(tables: dict, how: str) -> tuple[dict, str]:
    """generation -> the latent means pooled over dimensions, raw (the notebook) or standardised by
    generation 0's spread per dimension over the dimensions it uses (spread > 0.1); and the axis label."""
    cols = [c for c in tables[0].columns if c.startswith("mu_")]
    if how == "raw":
        return {g: t[cols].to_numpy().ravel() for g, t in tables.items()}, "latent mean μ(x), all dimensions pooled"
    used = [c for c in cols if tables[0][c].std() > 0.1] or cols
    centre, spread = tables[0][used].mean(), tables[0][used].std()
    return ({g: ((t[used] - centre) / spread).to_numpy().ravel() for g, t in tables.items()},
            "latent mean / its spread at generation 0")


# densities a panel draws at most: evenly spaced generations, the first and the last among them; ten outlines of
# neighbouring magma shades (a paper-shaped chain) ran together into one
DENSITIES = 5
FILL = 0.08  # the opacity of a density's fill, as lm_sequence_ppl's histograms: overlapping fills stay see-through


def _drawn(gens: list[int]) -> list[int]:
    """At most DENSITIES of `gens` (sorted), evenly spaced among them, the first and the last included."""
    return [gens[i] for i in sorted({int(i) for i in np.round(np.linspace(0, len(gens) - 1, min(DENSITIES,
                                                                                                 len(gens))))})]


def _densities(ax, ctx: Context, values: dict, edges: np.ndarray) -> None:
    """Each generation's density as a lightly filled step outline in its colour, each next one in the next dash:
    densities that coincide still show each outline."""
    from matplotlib.colors import to_rgb

    for k, (g, z) in enumerate(values.items()):
        colour = ctx.generation_colour(g)
        ax.hist(np.clip(z, -edges[-1], edges[-1]), bins=edges, density=True, histtype="stepfilled",
                facecolor=(*to_rgb(colour), FILL), edgecolor=colour, linestyle=style.generation_dash(k),
                linewidth=1.4, label=f"generation {g} (sd {_sd(z)})")


def vae_latents(ctx: Context, bins: int = 81, reach: float = 4.0):
    """Per series, the density of the latent means of each generation's samples under generation 0's
    encoder, pooled over dimensions: raw, as the notebook draws it, or standardised (vae.latent_figure)."""
    import pyarrow.parquet as pq
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in _files(ctx, "latents.parquet") if 0 in r[2]]
    if not rows:
        return None
    fig, axes = style.figure(1, len(rows), w=3.2, h=3.3)  # one density axis or one each: _density_axes
    spreads, kinds, beyond, subsets = [], set(), [], []
    for ax, (run, key, paths, _) in zip(axes.flat, rows):
        how = _latent_figure(ctx, run)
        kinds.add(how)
        values, xlabel = _latent_values({g: pq.read_table(p).to_pandas() for g, p in sorted(paths.items())}, how)
        drawn = {g: values[g] for g in _drawn(sorted(values))}
        if len(drawn) < len(values):
            subsets.append((key if len(ctx.runs) == 1 else f"{run.label}: {key}",
                            f"generations {', '.join(map(str, drawn))} of the {len(values)}"))
        # standardised: +-reach spreads; raw: the range of generation 0's means (the notebook's axis is theirs)
        edge = reach if how == "standardised" else 1.1 * float(np.quantile(np.abs(values[0]), 0.999)) or 1.0
        edges = np.linspace(-edge, edge, bins + 1)
        _densities(ax, ctx, drawn, edges)
        last = max(values)
        share, g = max((float(np.mean(np.abs(z) > edge)), g) for g, z in drawn.items())
        if share:  # np.clip piles them into the outer bins: say how many
            beyond.append(("" if len(rows) == 1 else f"{key}: ")
                          + f"{share:.1%} of generation {g}'s beyond ±{edge:.3g}")
        spreads.append(f"{key if len(ctx.runs) == 1 else f'{run.label}: {key}'} {_sd(values[0])} → "
                       f"{_sd(values[last])} (generation {last})")
        ax.set_title(key if len(ctx.runs) == 1 else f"{run.label}\n{key}")
        # at most 5 ticks: matplotlib's own ran -0.015, -0.010, … 0.015 over a collapsed latent, labels touching
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10]))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density" if ax is axes.flat[0] else "")
        _legend_below(ax)
    scales = _density_axes(list(axes.flat))
    what = {"raw": "pooled over every latent dimension as they are (as the notebook draws them)",
            "standardised": "each dimension centred and divided by its spread in generation 0's samples, "
                            "pooled over the dimensions generation 0 uses (so generation 0 has sd 1)"}
    return fig, ("The paper's VAE figure: the latent means μ(x) that generation 0's encoder gives to images "
                 "(vae.latent_samples) generated by each generation (latents.parquet), "
                 + "; ".join(what[k] for k in sorted(kinds)) + " (vae.latent_figure); one panel per regime, each of "
                 f"one seed, the one that reached the most generations ({_seeds_shown(ctx, rows)}), sd in the "
                 "legend"
                 + (f"; at most {DENSITIES} generations a panel, evenly spaced ({_subsets(subsets, len(rows))})"
                    if subsets else "")
                 + ". Collapse as the paper expects it: generation after generation the density "
                 "narrows towards a spike (narrower, a smaller sd, is worse). Here, the sd of the pooled means: "
                 + "; ".join(spreads) + "." + scales
                 + (" Means beyond the axis are drawn in its outermost bins; the most of any generation: "
                    + "; ".join(beyond) + "." if beyond else ""))


# panels whose tallest densities differ more than this many-fold get a density axis each: on one axis a collapsed
# regime's spike (replace) flattened the other panels' densities (accumulate) to their floor
OWN_AXES = 3.0


def _density_axes(axes: list) -> str:
    """One density axis across the panels (labelled on the first) where their tallest densities are within
    OWN_AXES of each other, else one each, each labelled; the caption's sentence where they differ."""
    tops = [ax.get_ylim()[1] for ax in axes]
    if max(tops) <= OWN_AXES * min(tops):
        for ax in axes:
            ax.set_ylim(ax.get_ylim()[0], max(tops))
            ax.tick_params(labelleft=ax is axes[0])
        return ""
    for ax in axes:
        ax.set_ylabel("density")
    return (f" Each panel has its own density axis: the tallest densities differ {max(tops) / min(tops):.0f}-fold, "
            "and on one axis the lower would lie flat.")


def _subsets(subsets: list[tuple[str, str]], panels: int) -> str:
    """Which generations the panels draw: once where every panel draws the same, else per panel."""
    if len(subsets) == panels and len({text for _, text in subsets}) == 1:
        return subsets[0][1]
    return "; ".join(f"{key}: {text}" for key, text in subsets)


def _sd(values) -> str:
    """The sd of latent means to two decimals, or two significant digits below 0.01: a latent collapsed
    to a point read 'sd 0.00' in every generation, its narrowing hidden."""
    sd = float(np.std(values))
    return f"{sd:.2f}" if sd >= 0.01 or sd == 0 else f"{sd:.2g}"


def _legend_below(ax) -> None:
    """A panel's own legend (its generations' sd) below its x-axis label, at the style's legend size: inside
    the panel, shrunk to x-small (5.6 pt), it sat on the densities' shoulders."""
    from matplotlib.transforms import offset_copy

    below = offset_copy(ax.transAxes, fig=ax.figure, y=-2.6 * style.RC["axes.labelsize"] - 6, units="points")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncols=2)


WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _class_counts(ctx: Context) -> dict[str, list[int]]:
    """run -> the class counts of its real training images (real_classes, stored by each generation), ten where a
    run predates the column (digits and MNIST have ten)."""
    stored = ctx.df[ctx.df["metric"] == "real_classes"]
    return {run: sorted({int(k) for k in stored.loc[stored["run"] == run, "value"].dropna()}) or [CLASSES]
            for run in ctx.run_labels}


def _evenly(k: int) -> str:
    if k == 1:  # a data set of one class: its share and entropy cannot move
        return "one class alone"
    return f"all {WORDS[k] if k < len(WORDS) else k} classes equally often"


def _share(k: int) -> str:
    """1/k as the caption writes it: 0.1 for ten classes, else the fraction."""
    return f"{1 / k:g}" if k in (1, 10) else f"1/{k}"


def _counts_note(counts: dict[str, list[int]], each) -> str:
    """`each(k)` of every class count, once where every run has the same, else run by run."""
    ks = sorted({k for v in counts.values() for k in v})
    if len(ks) == 1:
        return each(ks[0])
    return "; ".join(f"{run}: " + ", ".join(each(k) for k in v) for run, v in counts.items())


def vae_tails(ctx: Context):
    metrics = [m for m in ("latent_tail_share", "class_min_share") if m in ctx.metrics()]
    if not metrics:
        return None
    counts = _class_counts(ctx)
    fig = metric_grid(ctx, metrics, ylabels={"latent_tail_share": "share beyond the real 99% radius",
                                             "class_min_share": "rarest class's share"},
                      lines={"latent_tail_share": [(0.01, "real training images (1% by definition)")]},
                      baselines={"class_min_share": {run: [(1 / k, _evenly(k)) for k in ks]
                                                     for run, ks in counts.items()}})
    here = "; ".join(f"{m}: {t}" for m in metrics if (t := trend(ctx, m)))
    return fig, ("The tails of the VAE's output: the share of each generation's generated images (the "
                 "vae.eval_samples it emits as training data, binary under vae.synthetic: bernoulli) whose latent "
                 "mean under generation 0's encoder lies farther from the prior's centre than 99% of the real "
                 "training images' (share beyond the real 99% radius; the radius is in each unit's metrics.parquet "
                 "metadata, latent_tail), and the share of the rarest class among the classifier's labels of those "
                 "images (rarest class's share, of the classes the real training images have); "
                 f"{band_note(ctx, metrics)}. Thick grey: the real training images' own 1% beyond the radius; "
                 f"dotted: {_counts_note(counts, lambda k: f'{_share(k)}, {_evenly(k)}')}. Collapse as the paper "
                 "expects it: the tails go first, so both "
                 f"fall to 0 while the common shapes remain (lower is worse). Here: {here}. {GAPS}")


def vae_class_entropy(ctx: Context):
    metric = pick(ctx.metrics(), "class_entropy", pattern=r"entropy")
    fig = metric and metric_grid(ctx, [metric], ylabels={metric: "class entropy (nats)"})
    most = _counts_note(_class_counts(ctx), lambda k: f"log {k} = {math.log(k):.2f}: {_evenly(k)}")
    return fig and (fig, "Entropy of the classifier's labels of the generated samples (vae.eval_samples) "
                         f"against generation ({most}): "
                         f"{band_note(ctx, [metric])}. Collapse as the "
                         "paper expects it: it falls towards 0, one class's shape left (lower is worse). Here: "
                         f"{trend(ctx, metric)} nats. {GAPS}")


FIGURES = [("samples", "Samples of every generation", vae_samples),
           ("latents", "Latent means of generated images under the generation-0 encoder", vae_latents),
           ("class_entropy", "Class entropy", vae_class_entropy),
           ("tails", "The tails: latent tail and rarest class", vae_tails)]
