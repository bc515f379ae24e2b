"""Drawing helpers shared by the experiments' figures: series, bands, gaps, saving.

They draw from the report's tables (long metrics: KEYS, settings, TAIL; their summary: SUMMARY)
and know nothing of run folders: a figure reaches a run only through the objects the report
hands it in its Context (report.collect's RunData).
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from collapse_hpc import regimes
from collapse_hpc.plotting import style
from collapse_hpc.plotting.metrics import Metric, spec
from collapse_hpc.store.atomic import atomic_path
from collapse_hpc.store.live import made

REGIME = list(regimes.VALUES)  # the regime as values (kind, keep_fraction, ...) beside its label `regime`
KEYS = ["run", "experiment", "variant", "regime", *REGIME, "seed"]  # then setting columns
TAIL = ["replicate", "generation", "metric", "value"]
SUMMARY = ["n", "n_infinite", "mean", "std", "ci_low", "ci_high"]  # report.stats.summarise's columns


def setting_columns(df: pd.DataFrame) -> list[str]:
    """Setting columns that carry values in this (e.g. one experiment's) table."""
    return [c for c in df.columns if c not in KEYS + TAIL + SUMMARY and df[c].notna().any()]


@dataclass
class Context:
    """What one experiment's figures draw from."""

    experiment: str
    df: pd.DataFrame  # long metrics of this experiment, all runs
    summary: pd.DataFrame  # its summary rows
    runs: list[Any]  # every run of the report (in order): report.collect's RunData
    specs: dict = field(default_factory=dict)  # metric -> plotting.metrics.Metric (the experiment's declarations)

    @functools.cached_property
    def run_labels(self) -> list[str]:
        present = set(self.df["run"].unique())
        return [r.label for r in self.runs if r.label in present or r.finished(self.experiment)]

    def run(self, label: str):
        return next(r for r in self.runs if r.label == label)

    def planned(self, label: str) -> int | None:
        return self.run(label).generations.get(self.experiment)

    def generation_colour(self, g: int):
        """Generation g's colour (style.generation_colours), one in every figure of the report: the map spans
        generation_count, not the generations one figure draws (a run stopped midway gave generation 3 one
        colour where its experiment had reached 3 and another where it had reached 5)."""
        return style.generation_colours(max(self.generation_count, g + 1))[g]

    @functools.cached_property
    def generation_count(self) -> int:
        """The most generations of a chain experiment (a unit per generation: the ones whose figures draw a
        colour per generation) that a run of the report plans or has reached; an array experiment's
        thousands of generations (gmm's 2050) are drawn along an axis and would leave the map no room."""
        planned = [run.generations.get(e) or 0 for run in self.runs
                   for e in {e for (e, _), info in run.variants.items() if info.shape == "chain"}]
        reached = [u.index + 1 for run in self.runs for u in run.units if u.name.startswith("gen_")]
        return max([1, *planned, *reached])

    def metrics(self) -> list[str]:
        return self._metrics

    @functools.cached_property
    def _metrics(self) -> list[str]:
        return sorted(self.df["metric"].unique())

    def settings(self) -> list[str]:
        return self._settings

    def spec(self, metric: str) -> Metric:
        """The metric's declaration (display name, unit, direction), or a bare one of its column name."""
        return spec(self.specs, metric)

    def section(self, label: str) -> dict:
        """The run's config section of this experiment (a raw mapping; {} when it has none)."""
        sec = self.run(label).raw_config.get(self.experiment)
        return sec if isinstance(sec, dict) else {}

    @functools.cached_property
    def _settings(self) -> list[str]:
        return setting_columns(self.df)

    def medians(self, run: str, metric: str) -> pd.DataFrame:
        """The summary's rows of `metric` in `run` with the median over seeds and replicates instead of the
        mean (column median): for metrics whose mean a few replicates carry. Computed once per pair."""
        if (run, metric) not in self._medians:
            keys = ["run", "experiment", "regime", *REGIME, *self.settings(), "metric", "generation"]  # the summary's
            d = self.df[(self.df["run"] == run) & (self.df["metric"] == metric)]
            self._medians[(run, metric)] = d.groupby(keys, dropna=False, sort=True, observed=True)[
                "value"].median().rename("median").reset_index()
        return self._medians[(run, metric)]

    @functools.cached_property
    def _medians(self) -> dict:
        return {}

    def series_labels(self, exclude: tuple[str, ...] = ()) -> list[str]:
        rows = self.summary.drop_duplicates(["regime", *self.settings()])
        orders = {series_label(r, self.settings(), exclude): series_order(r, self.settings(), exclude)
                  for _, r in rows.iterrows()}
        return sorted(orders, key=orders.__getitem__)

    def unplanned(self, label: str, series: str | None = None, **settings) -> str | None:
        """'not in <run>' where the run plans no variant of this experiment with that series label
        and those setting values: a panel of a comparison that only another run fills, which
        'no data yet' would promise. None where it plans one, or its plan is unknown."""
        infos = [i for (e, _), i in self.run(label).variants.items() if e == self.experiment]
        if not infos:
            return None
        if series is not None:
            infos = [i for i in infos if unit_label(i) == series]
        if any(all(i.settings.get(k) == v for k, v in settings.items()) for i in infos):
            return None
        return f"not in {label}"

    def series_style(self, row, points: int, exclude: tuple[str, ...] = ()) -> dict:
        """Line keywords of the series a summary row belongs to: colour and marker from its regime's place
        among every regime of the report (so a regime looks the same in every figure, whatever else is
        drawn beside it), its shade and dash from its settings' place among this experiment's (samples=1000
        darker than samples=100, and dashed otherwise)."""
        settings = [k for k in self.settings() if k not in exclude]
        combos = self.summary.drop_duplicates(settings) if settings else self.summary.head(1)
        texts = sorted({tuple(_settings_text(r, settings, ())) for _, r in combos.iterrows()},
                       key=lambda t: _natural(", ".join(t)))
        mine = tuple(_settings_text(row, settings, ()))
        return style.series(self._regime_places.get(regime_legend(row), len(self._regime_places)), points,
                            texts.index(mine) if mine in texts else 0, len(texts))

    @functools.cached_property
    def _regime_places(self) -> dict:
        """regime (as legends name it) -> its place among the regimes of every experiment of every run."""
        found = {regime_legend(variant_row(info)): regime_order(variant_row(info))
                 for run in self.runs for info in run.variants.values()}
        for _, row in self.summary.drop_duplicates(["regime", *REGIME]).iterrows():
            found.setdefault(regime_legend(row), regime_order(row))
        return {name: i for i, name in enumerate(sorted(found, key=found.__getitem__))}

    def in_order(self, labels) -> list[str]:
        """Series labels as unit_series names them, in the legends' order (from their variants' values)."""
        return sorted(labels, key=lambda label: self._orders.get(label, (True, label)))

    @functools.cached_property
    def _orders(self) -> dict:
        return {unit_label(info): unit_order(info) for run in self.runs
                for (experiment, _), info in run.variants.items() if experiment == self.experiment}


@dataclass
class Fig:
    key: str  # file stem, e.g. gmm_l2
    title: str
    caption: str
    files: list[Path] = field(default_factory=list)


def regime_legend(row) -> str:
    """The regime of a row (of the metrics, the summary or a variant) as legends name it, made from its
    values (regimes.legend); a row without them (a unit of an unknown variant) shows its label."""
    values = _regime_values(row)
    return str(row["regime"]) if values is None else regimes.legend(*values)


def _regime_values(row) -> tuple[str, float, float] | None:
    """kind, keep_fraction and verifier_quantile of a row; None where it has no kind. A value the row lacks
    (a run recorded before the regime had it) is the regime's default: a NaN in a sort key left the
    comparison table's rows in no order at all."""
    kind = row.get("kind")
    if kind is None or pd.isna(kind):
        return None
    default = regimes.Regime()
    keep, quantile = (float(row.get(key, math.nan)) for key in ("keep_fraction", "verifier_quantile"))
    return (kind, default.keep_fraction if math.isnan(keep) else keep,
            default.verifier_quantile if math.isnan(quantile) else quantile)


def _settings_text(row, settings: list[str], exclude: tuple[str, ...]) -> list[str]:
    return [f"{k}={row[k]}" for k in settings if k not in exclude and pd.notna(row[k])]


def series_label(row, settings: list[str], exclude: tuple[str, ...] = ()) -> str:
    return ", ".join([regime_legend(row), *_settings_text(row, settings, exclude)])


def _natural(text: str) -> list:
    """A sort key reading digits as numbers: samples=100 before samples=1000."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def regime_order(row) -> tuple:
    """Where a row's regime goes in legends: replace (by kept fraction) before the other kinds."""
    values = _regime_values(row)
    return (True, str(row["regime"]), 0.0, 0.5) if values is None else regimes.order(*values)


def series_order(row, settings: list[str], exclude: tuple[str, ...] = ()) -> tuple:
    """Where a row's series goes in legends: its regime, then settings in natural order (samples=100
    before samples=1000): the regime decides first, so it keeps its place with or without settings.
    From the row's values, never from its label."""
    return (*regime_order(row), _natural(", ".join(_settings_text(row, settings, exclude))))


def variant_row(info) -> dict:
    """A variant (report.collect's VariantInfo) as a row: its regime's label and values, its settings."""
    return {"regime": info.regime, **info.values, **info.settings}


def unit_label(info) -> str:
    return series_label(variant_row(info), list(info.settings))


def unit_order(info) -> tuple:
    return series_order(variant_row(info), list(info.settings))


def unit_series(run, experiment: str, unit) -> tuple:
    """A finished unit's variant (VariantInfo) and the label of the series it belongs to: its
    regime and settings, as the figures' legends name them (unit_order(info): its place in them)."""
    info = run.variant(experiment, unit.variant)
    return info, unit_label(info)


def num(v, digits: int = 4) -> str:
    """A number as tables and captions write it (— for none): `digits` significant digits, as plain digits
    below a million (12580, not 1.258e+04 in a column beside 2730), in e-notation from there."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or pd.isna(v):
        return "—"
    text = f"{v + 0.0:.{digits}g}"  # + 0.0: no "-0"
    rounded = float(text)
    return f"{rounded:.0f}" if 10.0 ** digits <= abs(rounded) < 1e6 else text


def gens_axis(planned: int | None, observed) -> np.ndarray:
    """Every planned generation, so that missing ones show as gaps (NaN), never as zeros."""
    seen = np.asarray(observed)  # a table's column of generations: a Python int each would be ~36 bytes
    top = max(planned - 1 if planned else -1, int(seen.max()) if len(seen) else -1)
    return np.arange(0, top + 1)


def series_rows(ctx: Context, run: str, metric: str, *, fixed: dict | None = None, exclude: tuple[str, ...] = (),
                stat: str = "mean") -> list[tuple[str, pd.DataFrame]]:
    """(label, its summary rows) of each series of `run` for `metric`, in the legend's order; stat
    "median": the median over seeds and replicates (Context.medians) in the rows' column median."""
    s = ctx.summary if stat == "mean" else ctx.medians(run, metric)
    s = s[(s["run"] == run) & (s["metric"] == metric)]
    for k, v in (fixed or {}).items():
        s = s[s[k] == v]
    settings = ctx.settings()
    groups = [(series_order(grp.iloc[0], settings, exclude), series_label(grp.iloc[0], settings, exclude), grp)
              for _, grp in s.groupby(["regime", *settings], dropna=False, sort=False, observed=True)]
    return [(label, grp) for _, label, grp in sorted(groups, key=lambda olg: olg[:2])]


def draw_series(ax, ctx: Context, run: str, metric: str, *, fixed: dict | None = None, band: bool = True,
                exclude: tuple[str, ...] = (), replicates: bool = False, stat: str = "mean",
                suffix: str = "", thin: bool = False) -> int:
    """Mean (95% CI band) or median against generation of each series of `run` for `metric`; returns
    lines drawn. thin: a second statistic beside the first (style.second_statistic: dotted, or thin and faint
    over a long series), labelled with `suffix` after the series' label."""
    drawn = 0
    rows = series_rows(ctx, run, metric, fixed=fixed, exclude=exclude, stat=stat)
    for k, (label, grp) in enumerate(rows):
        gens = gens_axis(ctx.planned(run), grp["generation"])
        g = grp.set_index("generation").reindex(gens)
        kw = ctx.series_style(grp.iloc[0], len(gens), exclude)
        kw["markevery"] = style.markevery(len(gens), k, len(rows))  # the panel's series mark other generations
        if thin:
            kw.update(style.second_statistic(len(gens)))
        if replicates:
            _replicate_lines(ax, ctx, run, metric, grp.iloc[0], gens, kw["color"])
        ax.plot(gens, g[stat].to_numpy(), label=label + suffix, **kw)
        if band and stat == "mean" and g["ci_low"].notna().any():
            draw_band(ax, ctx.spec(metric), gens, g["ci_low"], g["ci_high"], kw["color"])
        drawn += 1
    return drawn


def draw_band(ax, spec: Metric, x, low, high, colour) -> None:
    """A 95% interval as a light band, within the values the metric can take (spec.bounds): a distance's
    interval of a few replicates reaching below 0 is drawn down to 0 (band_note says so)."""
    ax.fill_between(x, spec.within(low), spec.within(high), color=colour, alpha=0.18, linewidth=0, hatch=None)


def series_data(ctx: Context, run: str, metric: str, row) -> pd.DataFrame:
    """The long rows (every seed, replicate and generation) of the series a summary row belongs to."""
    d = ctx.df[(ctx.df["run"] == run) & (ctx.df["metric"] == metric) & (ctx.df["regime"] == row["regime"])]
    for k in ctx.settings():
        d = d[d[k] == row[k]] if pd.notna(row[k]) else d[d[k].isna()]
    return d


REPLICATE_LINES = 12  # single replicates drawn per series (draw_series' replicates): the first, by seed and replicate
# ...fewer over many generations: a panel is ~500 pixels wide, and 12 noisy lines of 2050 generations each (the
# gmm's keep 10% and accumulate-subsample) filled their band solid, hiding the series' mean; 2400 points a series
# keep 12 lines up to 200 generations, REPLICATE_LEAST from 800
REPLICATE_POINTS, REPLICATE_LEAST = 2400, 3


def replicate_lines(generations: int) -> int:
    """Single replicates drawn per series over that many generations."""
    return int(np.clip(REPLICATE_POINTS // max(generations, 1), REPLICATE_LEAST, REPLICATE_LINES))


def _replicate_lines(ax, ctx, run, metric, row, gens, colour) -> None:
    d = series_data(ctx, run, metric, row)
    for (_, _), one in list(d.groupby(["seed", "replicate"], observed=True))[:replicate_lines(len(gens))]:
        y = one.set_index("generation")["value"].reindex(gens)
        # rasterized: thousands of thin vertices made the PDF's vectors (600 KB a panel at 2050 generations)
        ax.plot(gens, y.to_numpy(), color=colour, alpha=0.25, linewidth=0.5, marker=None, linestyle="-",
                rasterized=True)


def maybe_log(ax, values, force: bool = False) -> None:
    """Log y-axis when positive values span orders of magnitude; with `force` (distances, variances)
    also when some are 0 (e.g. the distance at generation 0), which are then left out."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    positive = v[v > 0]
    if not len(positive) or (not force and len(positive) < len(v)):  # a real zero stays visible
        return
    if force or positive.max() / positive.min() > 100:
        log_y(ax)


def log_y(ax) -> None:
    """A log y-axis labelled 10^k over many decades, and 0.9, 1, 2 … over one or two (the default
    writes 9 x 10^-1 and 2 x 10^0 there): at 2 and 5 as well over one to two decades (the default labelled
    0.1 and 1 alone there: a level at 0.03 read nothing), and at the sparsest ladder that labels three
    values or more over less than a decade (_log_ladder_ticks: 0.4 decades read "0.1" and "0.06" alone)."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Readable(LogFormatterSciNotation):
        minor = False

        def __call__(self, x, pos=None):
            decades = _decades(self.axis)
            if decades <= 1:  # the ladder's major ticks say it all; minor labels would sit between them
                return "" if self.minor else f"{x:g}"
            if self.minor and decades <= 2 and x > 0:  # the minor ticks' 2 and 5 only
                return f"{x:g}" if round(x / 10.0 ** math.floor(math.log10(x) + 1e-9), 6) in (2, 5) else ""
            text = super().__call__(x, pos)
            return f"{x:g}" if text and decades <= 2 else text

    ax.set_yscale("log", nonpositive="mask")
    _bands_to_floor(ax)
    ax.yaxis.set_major_locator(_ladder_locator(narrow_only=True))
    ax.yaxis.set_major_formatter(Readable())
    minor = Readable(labelOnlyBase=False, minor_thresholds=(1, 0.4))
    minor.minor = True
    ax.yaxis.set_minor_formatter(minor)


def _decades(axis) -> float:
    """Decades an axis' view spans (inf where it reaches 0 or below)."""
    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    return math.log10(hi / lo) if lo > 0 else math.inf


def _bands_to_floor(ax) -> None:
    """A 95% interval reaching 0 or below (few replicates) runs off a log axis's bottom: masked, its
    lower edge would skip those generations and the band would leave its own mean. Where the whole
    interval is 0 (a distance at generation 0) it stays out, as the line's point does."""
    from matplotlib.collections import PolyCollection

    for band in (c for c in ax.collections if isinstance(c, PolyCollection)):  # fill_between's, in data units
        for path in band.get_paths():
            x, y = path.vertices[:, 0], path.vertices[:, 1]
            top = np.isin(x, x[y > 0])  # the generations whose upper edge is on the axis
            if (top & (y <= 0)).any():  # far below the axis (its limits come from the data)
                path.vertices = np.column_stack([x, np.where(top & (y <= 0), y[y > 0].min() * 1e-6, y)])


def plain_log_ticks(axis) -> None:
    """A log axis labelled 20, 50, 100, 200 … (the default labels every minor tick as 3 x 10^1, 4 x 10^1,
    … and they collide), with as few labels as still give at least three in view: 80, 100, 150 where the
    axis spans less than a decade (1-2-5 alone would label 100 and nothing else)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_locator(_ladder_locator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_ladder_ticks(lo: float, hi: float, least: int = 3) -> np.ndarray:
    """Ticks at 1, 10, 100 …, else 1-2-5, else finer ladders: the sparsest with `least` ticks in [lo, hi]."""
    ladders = ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
               (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))
    lo, hi = sorted((lo, hi))
    hi = hi if hi > 0 else 1.0
    lo = lo if lo > 0 else hi / 1e3
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for subs in ladders:
        ticks = np.array(sorted(s * 10.0 ** k for k in decades for s in subs))
        if ((ticks >= lo) & (ticks <= hi)).sum() >= least:
            return ticks
    # narrower than the finest ladder (408 to 504 read "500" alone): evenly spaced round values, which a
    # span this short draws almost evenly spaced on the log axis too
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], min_n_ticks=least).tick_values(lo, hi)


def _ladder_locator(narrow_only: bool = False):
    """A matplotlib Locator of _log_ladder_ticks over the axis' view (defined here: importing this module
    does not import matplotlib); narrow_only: over a decade or less only, matplotlib's own log ticks (1, 10,
    100 …) over wider views, which their labels read well."""
    from matplotlib.ticker import LogLocator

    class LogLadder(LogLocator):
        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin, vmax):
            if narrow_only and not (0 < min(vmin, vmax) and math.log10(max(vmin, vmax) / min(vmin, vmax)) <= 1):
                return super().tick_values(vmin, vmax)
            return _log_ladder_ticks(vmin, vmax)

    return LogLadder()


def integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    # min_n_ticks=1: a single generation's +-0.05 range holds one integer, and the default (2)
    # falls back to fractional ticks that overlap; at most 7 ticks in steps of 1, 2 or 5 (times 10^k): the
    # default ran 0, 25, … 200 across a 2 in panel, each label touching the next
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))


def no_data(ax, text: str = "no data yet") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    # a shared axis's ticks are its whole row's (column's): emptying them here would leave the panels
    # beside it without a scale
    if len(ax.get_shared_x_axes().get_siblings(ax)) == 1:
        ax.set_xticks([])
    if len(ax.get_shared_y_axes().get_siblings(ax)) == 1:
        ax.set_yticks([])
    ax.grid(False)


def legend_below(fig, axes) -> None:
    """One legend for the figure: every panel's entries, each label once (runs side by side draw
    different series)."""
    entries: dict = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    handles, labels = list(entries.values()), list(entries)
    if not labels:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = (fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)).get_renderer()
    # as many columns (4 at most) as the figure's width holds, measured: reckoned at 0.065 in a character, one
    # column of four entries took 40% of a two-panel figure's height where two columns fitted
    for ncols in range(min(len(labels), 4), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols)
        if ncols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()


def save(fig, out: Path, key: str) -> list[Path]:
    """The figure as PNG and PDF, the same bytes each time the same figure is saved: the PDF without
    the date it was written (dated SOURCE_DATE_EPOCH where that is set, as reproducible builds ask), so a
    report made again from the same run changes no figure file. Both keep the matplotlib version that
    drew them (PNG Software, PDF Creator and Producer). Axis labels are said once and broken into lines where
    longer than their panels first (plotting.fit), a series lying on another drawn within it and series meeting at
    some points dodged (plotting.overlap)."""
    from collapse_hpc.plotting.fit import fit_labels, once
    from collapse_hpc.plotting.overlap import dodge, nest

    once(fig)
    nest(fig)
    dodge(fig)
    fit_labels(fig)
    made(out)  # never a run folder removed meanwhile again (its report/figures/)
    files = []
    for fmt in ("png", "pdf"):
        path = out / f"{key}.{fmt}"
        undated = {"CreationDate": None} if fmt == "pdf" and not os.environ.get("SOURCE_DATE_EPOCH") else None
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=style.DPI, metadata=undated)
        files.append(path)
        fig.set_layout_engine("none")  # laid out once for the PNG; the PDF reuses it
    return files
