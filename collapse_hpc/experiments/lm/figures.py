"""The language model's report figures: the paper's headline perplexity histograms, test
perplexity (with the initial model before fine-tuning), the tails (test perplexity by the rarity of
the target token, and the rare tokens of generated text against the real data's own share) and the
diversity of generated text; and its texts: what each generation wrote after the same real prompts
(the paper's example of text outputs). A caption states the paper's expectation as such, and what
it says about this run it computes from this run's numbers."""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from collapse_hpc.errors import one_line
from collapse_hpc.plotting import style
from collapse_hpc.plotting.figures import (GAPS, NotInThisRun, band_note, like_for_like, metric_grid, pick,
                                          room_for)
from collapse_hpc.plotting.plots import (REGIME, Context, draw_band, integer_x, legend_below, no_data,
                                         plain_log_ticks, regime_legend, regime_order, series_label, series_order,
                                         unit_order, unit_series)


def unit_tables(ctx: Context, name: str, columns: list[str]) -> pd.DataFrame:
    """`columns` of the table `name` of every finished lm unit, with its run, series and
    generation (empty when no unit has them)."""
    tables = []
    for run in ctx.runs:
        for unit in run.finished("lm"):
            path = unit.file(name)
            if path is None or not set(columns) <= set(pq.read_schema(path).names):
                continue
            info, series = unit_series(run, "lm", unit)
            tables.append(pq.read_table(path, columns=columns).to_pandas().assign(
                run=run.label, series=series, seed=info.seed, generation=unit.index))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"  # 12576, not 1.26e+04


def _change(ratio: float) -> str:
    """A relative change in whole percent: +12%, -3%; under 1% to a tenth (+0.7%, beside a verdict of
    'held (within 1%)' that +1% would contradict); 0% where it rounds to nothing (never -0%)."""
    shown = f"{ratio:+.1%}" if abs(ratio) < 0.01 else f"{ratio:+.0%}"
    return "0%" if shown in ("+0.0%", "-0.0%") else shown


def _ends(ctx: Context, metric: str) -> list[tuple[str, float, int, float]]:
    """(series, mean at generation 0, last generation reached, mean there) of each series that has
    both, in the figures' order; a series is prefixed by its run when the report has several."""
    s = ctx.summary[ctx.summary["metric"] == metric].dropna(subset=["mean"])
    settings = ctx.settings()
    out = []
    for _, grp in s.groupby(["run", "regime", *settings], dropna=False, sort=False):
        g0, last = grp[grp["generation"] == 0], grp[grp["generation"] == grp["generation"].max()]
        if g0.empty or int(last["generation"].iloc[0]) == 0:
            continue
        label = series_label(grp.iloc[0], settings)
        run, end = grp["run"].iloc[0], int(last["generation"].iloc[0])
        start = like_for_like(ctx, run, metric, g0.iloc[0], end, float(g0["mean"].iloc[0]))
        label = label if len(ctx.run_labels) == 1 else f"{run}: {label}"
        out.append(((run, series_order(grp.iloc[0], settings)), label, start, end, float(last["mean"].iloc[0])))
    return [e[1:] for e in sorted(out, key=lambda e: e[0])]


# a percentile of a few hundred sequences, or a perplexity over a few thousand test tokens, moves by a
# percent without any trend: a smaller change is called held, not ranked
NOISE = 0.01


def _here(parts: list[str], most: int = 4) -> str:
    """'Here: a; b; c.' from at most `most` statements (and how many more there are)."""
    if not parts:
        return ""
    more = f"; {len(parts) - most} more series in the figure" if len(parts) > most else ""
    return " Here: " + "; ".join(parts[:most]) + more + "."


def _in_every(agree: list[bool], changes: list[float], unit: str) -> str | None:
    """The captions' rule (agreement_rule), in one place: 'in both seeds', 'in all 3 replicates' where every one,
    two or more, agrees (a direction, the class that rose most) and changed by NOISE or more; else None."""
    if len(agree) < 2 or not all(agree) or any(abs(c) < NOISE for c in changes):
        return None
    return f"in {'both' if len(agree) == 2 else f'all {len(agree)}'} {unit}s"


def agreement_rule(unit: str, does: str) -> str:
    """The rule _in_every applies, as a caption states it."""
    return f"claimed only where every {unit}, two or more, {does} by {NOISE:.0%} or more"


def _way(change: float, down: str, up: str, seeds: list[float]) -> str:
    """The direction of a pooled change, claimed only where every seed, two or more, moved that way by NOISE
    or more (seeds: each seed's own change); one seed's direction is given as such, which noise can make."""
    if abs(change) < NOISE:
        return f"held (within {NOISE:.0%})"
    word = down if change < 0 else up
    if len(seeds) == 1:
        return f"{word} (one seed: no telling it from noise)"
    every = _in_every([(c < 0) == (change < 0) for c in seeds], seeds, "seed")
    return f"{word} {every}" if every else (f"{word} pooled, not in every seed by {NOISE:.0%} or more: no direction "
                                            "beyond the seeds' spread")


def _moves(sub: pd.DataFrame, first: int, last: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The median and p95 of sequence perplexity at the first and the last generation, and how far the
    median moved and the right tail's reach (p95 over the median) changed between them."""
    a, b = (np.percentile(sub.loc[sub["generation"] == g, "ppl"], [50, 95]) for g in (first, last))
    return a, b, b[0] / a[0] - 1, (b[1] / b[0]) / (a[1] / a[0]) - 1


def _tail_statements(ctx: Context, d: pd.DataFrame) -> list[str]:
    """Per series: where the histogram went (its median, generation 0 against the last, pooled over the
    seeds that reached the last) and how far its right tail reaches beyond it (p95 over the median): a
    histogram that moves left as a whole lowers its p95 too, without its tail shrinking."""
    out, order = [], ctx.in_order(d["series"].unique())
    for (run, series), sub in d.groupby(["run", "series"], sort=False):
        first, last = sub["generation"].min(), sub["generation"].max()
        if first != 0 or last == 0:
            continue
        sub = sub[sub["seed"].isin(sub.loc[sub["generation"] == last, "seed"])]  # the chains that got there
        a, b, moved, reach = _moves(sub, first, last)
        seeds = [_moves(one, first, last)[2:] for _, one in sub.groupby("seed", sort=True)
                 if {first, last} <= set(one["generation"])]
        name = series if d["run"].nunique() == 1 else f"{run}: {series}"
        out.append((order.index(series),
                    f"{name}, generation 0 -> {last}: median {_fmt(a[0])} -> {_fmt(b[0])} ({_change(moved)}): the "
                    f"histogram {_way(moved, 'moved left', 'moved right', [m for m, _ in seeds])}; "
                    f"p95 {_fmt(a[1])} -> {_fmt(b[1])}, "
                    f"{a[1] / a[0]:.3g} -> {b[1] / b[0]:.3g} times the median ({_change(reach)}): the right tail "
                    f"{_way(reach, 'shortened', 'lengthened', [r for _, r in seeds])}"))
    return [text for _, text in sorted(out, key=lambda e: e[0])]


def _span(values) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"{lo}" if lo == hi else f"{lo} to {hi}"


def _pooled(d: pd.DataFrame) -> str:
    """What one histogram holds: the sequences of every seed (chain) that reached its generation."""
    per = d.groupby(["run", "series", "generation"], sort=False).agg(seeds=("seed", "nunique"), n=("ppl", "size"))
    seeds = _span(per["seeds"])
    return (f" Each histogram pools the sequences of every seed that reached its generation ({seeds} "
            f"seed{'' if seeds == '1' else 's'}, {_span(per['n'])} sequences per histogram), each scored by "
            "its own seed's generation-0 model.")


def _histograms(ax, ctx: Context, sub: pd.DataFrame, gens: list, bins: np.ndarray) -> None:
    """One panel's histogram of each generation: a bin's share of its sequences, not a density per unit of
    perplexity (on the log axis the bins are drawn equally wide, and a density divides the wider ones, the
    unlikely tail, down)."""
    for g in gens:
        x = sub.loc[sub["generation"] == g, "ppl"].to_numpy()
        if len(x):
            share = np.full(len(x), 1 / len(x))
            ax.hist(x, bins=bins, weights=share, histtype="step", color=ctx.generation_colour(g),
                    linestyle=style.generation_dash(g), linewidth=1.2, label=f"generation {g}")
            ax.hist(x, bins=bins, weights=share, histtype="stepfilled", color=ctx.generation_colour(g), alpha=0.08)


def lm_sequence_ppl(ctx: Context):
    """The paper's headline figure: perplexity (under the generation-0 model) of each sequence a
    generation produced, one histogram per generation, one panel per regime."""
    d = unit_tables(ctx, "sequence_ppl.parquet", ["ppl"])  # evaluate.perplexity_table's column
    if d.empty:
        return None
    d = d[np.isfinite(d["ppl"]) & (d["ppl"] > 0)]
    if d.empty:
        return None
    runs = [r for r in ctx.run_labels if r in set(d["run"])]
    series = ctx.in_order(d["series"].unique())
    lo, hi = d["ppl"].min(), d["ppl"].max()  # the whole range: the tail of unlikely sequences matters
    bins = np.geomspace(lo, max(hi, lo * 1.01), 50)
    gens = sorted(d["generation"].unique())
    fig, axes = style.figure(len(runs), len(series), sharex=True, sharey=True)
    for r, run in enumerate(runs):
        for c, s in enumerate(series):
            ax = axes[r, c]
            sub = d[(d["run"] == run) & (d["series"] == s)]
            if sub.empty:
                absent = ctx.unplanned(run, series=s)
                no_data(ax, f"{s}: {absent}" if absent else "no data yet")
            _histograms(ax, ctx, sub, gens, bins)
            ax.set_xscale("log")
            plain_log_ticks(ax.xaxis)
            ax.set_title(s if len(runs) == 1 else f"{run}: {s}")
            ax.set_xlabel("perplexity under the generation-0 model" + style.LOG_NOTE)
            ax.set_ylabel("share of sequences")
    legend_below(fig, axes)
    return fig, ("Perplexity of every sequence generated by each generation, scored by the generation-0 "
                 f"model (the paper's headline figure), one panel per regime: the share of a generation's "
                 f"sequences in each of {len(bins) - 1} bins evenly spaced in log perplexity.{_pooled(d)} The "
                 "paper expects "
                 "collapse to move the histogram left (more sequences the original model finds likely) while a "
                 "tail of sequences it finds unlikely appears; further from generation 0's histogram is worse. A "
                 f"direction is {agreement_rule('seed', 'moved that way')}."
                 + _here(_tail_statements(ctx, d)))


ZERO_SHOT = "zero_shot_test_ppl"  # the chain's generation 0: the initial model on the real test blocks
INITIAL = "initial model, before fine-tuning"


def initial_models(ctx: Context) -> dict:
    """run -> what its initial model is (generation 0's manifest, `initial_model`: model.initial_model)."""
    out = {}
    for run in ctx.runs:
        for unit in run.finished("lm"):
            info = (unit.manifest or {}).get("initial_model")
            if unit.index == 0 and isinstance(info, dict):
                out.setdefault(run.label, info)
    return out


def describe_initial(info: dict | None) -> str:
    """The initial model in words, saying whether it has seen the chain's real training blocks."""
    kind = (info or {}).get("kind")
    if kind == "hub":
        return f"the pretrained {info.get('model')} (the paper: 115 for OPT-125M zero-shot, 34 after fine-tuning)"
    if kind == "random":
        return "a randomly initialised model"
    if kind == "tiny-base":
        a, b = info.get("train_blocks", ["?", "?"])
        if info.get("disjoint_from_training_blocks"):
            return (f"the tiny base, pretrained on real train blocks {a}-{b - 1 if isinstance(b, int) else b}, "
                    f"none of which any generation trains on (a stand-in for pretrained OPT-125M)")
        return (f"the tiny base, pretrained on real train blocks {a}-{b - 1 if isinstance(b, int) else b}, which "
                f"include the blocks generation 0 fine-tunes on: not zero-shot")
    return "the model every chain starts from"


def lm_test_ppl(ctx: Context):
    metric = pick(ctx.metrics(), "test_ppl", "test_perplexity", "ppl_test", pattern=r"^test.*ppl|ppl.*test")
    d = ctx.df[ctx.df["metric"] == ZERO_SHOT]
    zero_shot = d.groupby("run", observed=True)["value"].mean().dropna()  # one initial model per run: regimes agree
    # side by side, each run's dotted line names its run: the legend showed two alike entries
    refs = {run: [(v, f"{INITIAL}{f' ({run})' if len(zero_shot) > 1 else ''} ({v:.4g})")]
            for run, v in zero_shot.items()}
    for run in ctx.run_labels:  # the paper's zero-shot value, where the run is the paper's setting
        refs.setdefault(run, []).extend(ctx.spec(ZERO_SHOT).paper_marks(ctx.section(run)))
    fig = metric and metric_grid(ctx, [metric], ylabels={metric: "perplexity on real test data"}, references=refs)
    if not fig:
        return None
    infos = initial_models(ctx)
    note = "".join(f" Dotted{f' ({run})' if len(zero_shot) > 1 else ''}: the {INITIAL}, "
                   f"{describe_initial(infos.get(run))}." for run in zero_shot.index)
    if any(ctx.spec(metric).paper_marks(ctx.section(run)) for run in ctx.run_labels):
        note += (" Dark red, dash-dotted: the paper's reported test perplexity of generation 0 (34); in the legend, "
                 "its zero-shot OPT-125M (115): the config is the paper's setting (OPT-125M on WikiText-2).")
    here = _here([f"{label} {_fmt(a)} -> {_fmt(b)} at generation {g} ({_change(b / a - 1)})"
                  for label, a, g, b in _ends(ctx, metric)])
    return fig, (f"Perplexity on the real test set against generation, per regime: {band_note(ctx, [metric])}."
                 f"{note} The paper expects it to rise under collapse (higher is worse), "
                 f"most with no real data kept.{here} {GAPS}")


def _diversity_statements(ctx: Context, metrics: list[str]) -> list[str]:
    out = []
    for m in metrics:
        ends = _ends(ctx, m)
        if ends:
            label, a, g, b = ends[0]  # the first series (replace, the paper's)
            # a 0.1% move read "fell": a change within NOISE is no direction (the caption states the threshold)
            way = "stayed about the same" if b == a or abs(b - a) < NOISE * abs(a) else "fell" if b < a else "rose"
            out.append(f"{ctx.spec(m).label} {way} {_fmt(a)} -> {_fmt(b)} ({label}, generation {g})")  # as titled
    return out


def lm_diversity(ctx: Context):
    diverse = r"distinct_\d+|unigram_entropy|type_token_ratio|self_bleu.*"
    metrics = [m for m in ctx.metrics() if re.fullmatch(diverse, m)]
    fig = metric_grid(ctx, metrics)
    return fig and (fig, "Diversity of the data each generation produces (distinct-n, type-token ratio, "
                         "unigram entropy; its rare tokens, against the real data's share, are in the tails "
                         f"figure) against generation: {band_note(ctx, metrics)}. Later studies expect collapse "
                         "to lower them (lower is "
                         f"worse): fewer distinct phrases. A metric that moved by under {NOISE:.0%} of its "
                         "generation-0 value is said to have stayed about the same."
                         + _here(_diversity_statements(ctx, metrics), most=len(metrics)) + f" {GAPS}")


TAILS = ("rare", "middle", "frequent")  # metrics.CLASSES: test_ppl_<class>
SHARES = ("rare", "middle")  # <class>_token_share of generated data; real_<class>_token_share at generation 0


def _series_rows(ctx: Context, run: str, label: str, metric: str) -> pd.DataFrame:
    """The summary rows (mean, ci) of one series of one run for one metric, by generation."""
    s = ctx.summary[(ctx.summary["run"] == run) & (ctx.summary["metric"] == metric)]
    keep = [series_label(row, ctx.settings()) == label for _, row in s.iterrows()]
    return s[keep].dropna(subset=["mean"]).sort_values("generation")


# the figure's grammar, one line style per quantity, so that no two legend entries look alike (a class keeps its
# colour and marker in both rows): test perplexity solid, filled markers; generated shares dashed, hollow markers;
# the real blocks' shares dotted, no markers
SOLID = {"linestyle": "-"}
GENERATED = {"linestyle": "--", "markerfacecolor": "white"}


def _tail_panel(ax, ctx: Context, run: str, label: str) -> dict:
    """Top panel: each class's test perplexity relative to generation 0; returns class ->
    (ratio at the last generation, generation 0's perplexity, last generation)."""
    rise = {}
    for i, cls in enumerate(TAILS):
        rows = _series_rows(ctx, run, label, f"test_ppl_{cls}")
        base = rows.loc[rows["generation"] == 0, "mean"]
        if base.empty:
            continue
        ratio = rows["mean"].to_numpy() / base.iloc[0]
        ax.plot(rows["generation"], ratio, label=f"{cls} target tokens", **style.token_class(i, len(rows)) | SOLID)
        if rows["generation"].max() > 0:
            rise[cls] = (ratio[-1], base.iloc[0], int(rows["generation"].max()))
    ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1.0)
    ax.ticklabel_format(axis="y", useOffset=False)  # ratios near 1 read 1.001, not "+1" over 0.001
    ax.set_ylabel("test ppl / generation 0's")
    return rise


def _share_panel(ax, ctx: Context, run: str, label: str) -> None:
    """Bottom panel: the shares of rare and of middle tokens in the generated data (dashed, hollow markers),
    and the real training blocks' own shares (dotted, no markers), each in its class's colour."""
    reals = []
    for i, cls in enumerate(SHARES):
        rows = _series_rows(ctx, run, label, f"{cls}_token_share")
        kw = style.token_class(i, len(rows)) | GENERATED
        ax.plot(rows["generation"], rows["mean"], label=f"{cls} tokens, generated data", **kw)
        if rows["ci_low"].notna().any():
            draw_band(ax, ctx.spec(f"{cls}_token_share"), rows["generation"], rows["ci_low"], rows["ci_high"],
                      kw["color"])
        real = ctx.df[(ctx.df["run"] == run) & (ctx.df["metric"] == f"real_{cls}_token_share")]["value"].mean()
        if np.isfinite(real):
            ax.axhline(real, color=kw["color"], linestyle=":", linewidth=1.2,
                       label=f"{cls} tokens, real training blocks")
            reals.append(real)
    room_for(ax, reals)  # the real middle share, above the generated ones, lay on the panel's top edge
    ax.set_ylabel("share of tokens")


def _replicate_rises(ctx: Context, run: str, label: str, g: int) -> list[dict]:
    """Per replicate (seed, replicate) of one series that reached generation g: each class's test
    perplexity at g over its own generation 0's."""
    d = ctx.df[(ctx.df["run"] == run) & ctx.df["metric"].isin([f"test_ppl_{c}" for c in TAILS])
               & ctx.df["generation"].isin([0, g])]
    mine = [grp for _, grp in d.groupby(["regime", *ctx.settings()], dropna=False, sort=False, observed=True)
            if series_label(grp.iloc[0], ctx.settings()) == label]
    if not mine:
        return []
    wide = pd.concat(mine).pivot_table(index=["seed", "replicate"], columns=["metric", "generation"],
                                       values="value", aggfunc="mean", observed=True)
    out = []
    for _, row in wide.iterrows():
        ratios = {c: row.get((f"test_ppl_{c}", g), np.nan) / row.get((f"test_ppl_{c}", 0), np.nan) for c in TAILS}
        if all(np.isfinite(v) for v in ratios.values()):
            out.append(ratios)
    return out


ORDERED = "has the same class's perplexity rise most,"  # what every replicate does for _ordering to claim it


def _ordering(replicates: list[dict]) -> str:
    """Which class went first, claimed only where every replicate, two or more, has the same class's test
    perplexity rise most and by NOISE or more: one seed's ordering is a coin that noise can turn."""
    if not replicates:
        return "no replicate has every class at both generations: no ordering"
    firsts = [max(r, key=r.__getitem__) for r in replicates]
    n, first = len(replicates), firsts[0]
    if n == 1:
        return (f"the {first} tokens' rose most in this one replicate, an ordering one replicate cannot tell "
                "from noise")
    if firsts.count(first) < n:
        counts = ", ".join(f"{c} in {firsts.count(c)}" for c in TAILS if c in firsts)
        return f"the replicates disagree on which rose most ({counts} of {n}): no ordering beyond their spread"
    every = _in_every([True] * n, [max(r[first] - 1, 0) for r in replicates], "replicate")
    if every is None:
        return (f"the {first} tokens' rose most in every replicate, in some by under {NOISE:.0%}: no ordering "
                "beyond noise")
    return (f"the tails went first, {every}" if first == "rare"
            else f"the {first} tokens' rose most, not the rare ones', {every}")


def _verdict(label: str, rise: dict, replicates: list[dict]) -> str:
    """rise: class -> (ratio of the means, generation 0's mean, last generation); replicates: each
    replicate's own ratios (_replicate_rises)."""
    g = max(v[2] for v in rise.values())
    first = max(rise, key=lambda k: rise[k][0])
    verdict = (f"none rose by {NOISE:.0%} or more: no class went first" if rise[first][0] < 1 + NOISE
               else _ordering(replicates))
    return (f"{label}, generation 0 -> {g}: " + ", ".join(f"{k} x{rise[k][0]:.3g} (from {_fmt(rise[k][1])})"
                                                           for k in TAILS if k in rise) + f": {verdict}")


def lm_tails(ctx: Context):
    """Beyond the paper, the tails measured: per series, the real-test perplexity over target tokens
    of each rarity class relative to generation 0 (top), and the shares of rare and middle tokens
    in the generated data against the real training blocks' own shares (bottom)."""
    s = ctx.summary
    if not {f"test_ppl_{c}" for c in TAILS} <= set(s["metric"]):
        return None
    panels = [(run, label) for run in ctx.run_labels for label in ctx.series_labels()
              if not _series_rows(ctx, run, label, "test_ppl_rare").empty]
    if not panels:
        return None
    # the page's width: the rows' legends stand beside the panels
    fig, axes = style.figure(2, len(panels), sharex=True, sharey="row", w=style.PAGE_W / len(panels))
    statements = []
    for c, (run, label) in enumerate(panels):
        rise = _tail_panel(axes[0, c], ctx, run, label)
        _share_panel(axes[1, c], ctx, run, label)
        axes[0, c].set_title(label if len(ctx.run_labels) == 1 else f"{run}: {label}")
        axes[1, c].set_xlabel("generation")
        integer_x(axes[1, c])
        if rise:
            g = max(v[2] for v in rise.values())
            statements.append(_verdict(label if len(ctx.run_labels) == 1 else f"{run}: {label}", rise,
                                       _replicate_rises(ctx, run, label, g)))
    _rows_legend(fig, axes)
    shares = _share_statements(ctx)
    return fig, ("The tails, measured (beyond the paper). Top: perplexity on the real test set over the predicted "
                 "tokens whose type is rare (the least frequent types carrying 10% of the real train split's tokens, "
                 "and types never seen there), frequent (the most frequent carrying 50%) or in between, each "
                 "relative to generation 0 (solid, filled markers; dotted grey: generation 0's own, 1). Bottom: the "
                 "shares of rare and of middle tokens in each generation's generated data (dashed, hollow markers; "
                 f"{band_note(ctx, [f'{c}_token_share' for c in SHARES])}); dotted, the real training blocks' own "
                 "shares. A class has one colour and marker in both rows. Collapse is expected to forget the "
                 "tails first: the rare tokens' perplexity rises most (higher is worse) and generated text holds "
                 "fewer rare tokens than real text (lower is worse). Which class went first is "
                 f"{agreement_rule('replicate', ORDERED)}; one "
                 "replicate's ordering is given as such, which noise can make."
                 + _here(statements, most=len(statements))
                 + "".join(f" {text[0].upper()}{text[1:]}." for text in shares) + f" {GAPS}")


def _rows_legend(fig, axes) -> None:
    """A legend beside each row, of that row's lines: one legend below for both rows (7 entries in one column)
    put the classes' perplexities and their shares in one list, where 'rare' named two different lines."""
    for row in axes:
        entries = {}
        for ax in row:
            entries.update(zip(*reversed(ax.get_legend_handles_labels())))
        if entries:
            row[-1].legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(1.02, 0.5))


def _share_statements(ctx: Context) -> list[str]:
    """Per token class in SHARES: its share of generated data, first and last, beside the real blocks'."""
    shares = []
    for cls in SHARES:
        moved = "; ".join(f"{label} {_fmt(a)} -> {_fmt(b)} at generation {g}"
                          for label, a, g, b in _ends(ctx, f"{cls}_token_share"))
        real = ctx.df[ctx.df["metric"] == f"real_{cls}_token_share"]["value"]
        if moved:
            shares.append(f"{cls} tokens in generated data: {moved}"
                          + (f", against {_fmt(real.mean())} in the real training blocks" if len(real) else ""))
    return shares


# what the comparison of decoding strategies and regimes shows: metric -> its axis label
COMPARED = {"test_ppl": "test perplexity",
            "ppl_p50": "median perplexity of generated data under the generation-0 model",  # lm_sequence_ppl's
            "distinct_4": "distinct-4 of generated data", "rare_token_share": "share of rare tokens generated"}


def lm_beyond(ctx: Context):
    """Beyond the paper: every series (decoding strategy, regime) at generation 0 and at the last
    generation reached, one panel per metric; part of a run's report only when it sweeps decoding
    strategies or runs a curated regime."""
    from collapse_hpc.regimes import SCORED

    s = ctx.summary
    settings = ctx.settings()
    if "decoding" not in settings and not s["kind"].isin(SCORED).any():
        raise NotInThisRun
    metrics = [m for m in COMPARED if m in set(s["metric"])]
    runs = ctx.run_labels
    if not metrics or not runs:
        return None
    series = ctx.series_labels()
    fig, axes = style.figure(len(runs), len(metrics), sharey=True, h=0.3 * len(series) + 1.2)
    for r, run in enumerate(runs):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            sub = s[(s["run"] == run) & (s["metric"] == metric)].dropna(subset=["mean"])
            _bars(ax, ctx, series, *_first_and_last(sub, series, settings))
            ax.set_xlabel(COMPARED[metric])
            if len(runs) > 1:
                ax.set_title(run)
    legend_below(fig, axes)
    return fig, (f"{_compared(s, settings)} side by side: each series at generation 0 and at the last generation "
                 "reached. Collapse shows as test perplexity rising from generation 0 (higher is worse) and "
                 "diversity (distinct-4, rare tokens) falling (lower is worse).")


# what a curated regime does, for a caption naming it
CURATION = {"detector-resample": "resampled by a machine-text detector's weights",
            "verifier-filter": "filtered by a verifier's perplexity"}


def _compared(s: pd.DataFrame, settings: list[str]) -> str:
    """What lm_beyond sets side by side, as this run has it: its decoding strategies, and its regimes as the
    figure names them (a curated one with what it does); a caption listing every regime the code offers named
    some the run never ran."""
    rows = s.drop_duplicates(["regime", *REGIME]).dropna(subset=["kind"])
    kinds = {regime_legend(r): r["kind"] for _, r in sorted(rows.iterrows(), key=lambda r: regime_order(r[1]))}
    regimes = [f"{name} ({CURATION[kind]})" if kind in CURATION else name for name, kind in kinds.items()]
    decoding = sorted(s["decoding"].dropna().unique()) if "decoding" in settings else []
    said = f"regimes ({', '.join(regimes)})" if len(regimes) > 1 else f"the regime {regimes[0]}" if regimes else ""
    if decoding:
        said = " and ".join(filter(None, [f"decoding strategies ({', '.join(map(str, decoding))})", said]))
    said = said or "its series"
    return said[0].upper() + said[1:]


def _bars(ax, ctx: Context, series: list[str], first, last, reached) -> None:
    """Each series' bar at generation 0 above its bar at the last generation reached, the first series at the
    top; one bar a series where no series got past generation 0 (two bars of one colour said the same twice)."""
    y = np.arange(len(series))
    ax.set_axisbelow(True)  # the grid behind the bars, not across them
    if max(reached) == 0:
        ax.barh(y, first, height=0.6, color=ctx.generation_colour(0), label="generation 0 (the last reached)")
    else:
        ax.barh(y - 0.2, first, height=0.4, color=ctx.generation_colour(0), label="generation 0")
        ax.barh(y + 0.2, last, height=0.4, color=ctx.generation_colour(max(reached)),
                label=f"last generation ({max(reached)})")
    for bars in ax.containers:  # a bar of length 0 is not seen: said, or a series' 0 read as its value missing
        ax.bar_label(bars, ["0" if v == 0 else "" for v in bars.datavalues], padding=2, fontsize=6)
    ax.set_yticks(y, series)
    if not ax.yaxis_inverted():  # the panels share their y-axis: inverting each in turn undid it every other time
        ax.invert_yaxis()


def _first_and_last(sub, series: list[str], settings) -> tuple[list, list, list]:
    """Per series of `sub` (one run's one metric): its mean at generation 0, at the last generation
    it reached, and that generation (NaN, NaN, 0 where it has none)."""
    first, last, reached = [], [], []
    for label in series:
        rows = sub[[series_label(row, settings) == label for _, row in sub.iterrows()]]
        g0 = rows.loc[rows["generation"] == 0, "mean"]
        end = rows.sort_values("generation").tail(1)
        first.append(g0.iloc[0] if len(g0) else np.nan)
        last.append(end["mean"].iloc[0] if len(end) else np.nan)
        reached.append(int(end["generation"].iloc[0]) if len(end) else 0)
    return first, last, reached


CURVES = [("loss", "training loss (nats per token)"), ("tokens_per_s", "tokens/s")]  # column, axis label


def lm_training_curves(ctx: Context):
    """Training loss and throughput against the optimizer step, one line per generation (mean
    over seeds), one column per regime: training_curve.parquet of each finished unit."""
    d = unit_tables(ctx, "training_curve.parquet", ["step", "loss", "tokens_per_s"])
    if d.empty:
        return None
    d = d.groupby(["run", "series", "generation", "step"], as_index=False)[["loss", "tokens_per_s"]].mean()
    panels = [(r, s) for r in ctx.run_labels for s in ctx.in_order(d["series"].unique())
              if ((d["run"] == r) & (d["series"] == s)).any()]
    gens = sorted(d["generation"].unique())
    fig, axes = style.figure(2, len(panels), sharex=True, sharey="row")  # regimes compare on one scale
    for c, (run, s) in enumerate(panels):
        sub = d[(d["run"] == run) & (d["series"] == s)]
        for g in gens:
            line = sub[sub["generation"] == g]
            for r, (col, label) in enumerate(CURVES):
                axes[r, c].plot(line["step"], line[col], color=ctx.generation_colour(g),
                                linestyle=style.generation_dash(g),
                                linewidth=1.0, label=f"generation {g}" if r == 0 else None)
                axes[r, c].set_ylabel(label)
        axes[0, c].set_title(s if len(ctx.run_labels) == 1 else f"{run}: {s}")
        axes[1, c].set_xlabel("optimizer step within the generation")
        integer_x(axes[1, c])  # a short generation's few steps were ticked 1.0, 1.5, 2.0 …
    legend_below(fig, axes)
    return fig, ("Training loss (mean of each optimizer step's micro-batches) and training throughput "
                 "against the step, one line per generation (mean over seeds), per regime, from each "
                 "generation's training_curve.parquet. Under collapse later generations train to a lower "
                 "loss: their data is text earlier models found likely, so a loss below generation 0's is "
                 "worse here, not better. Tokens/s shows only the run's speed.")


FIGURES = [("sequence_ppl", "Perplexity of generated data under the generation-0 model", lm_sequence_ppl),
           ("test_ppl", "Test perplexity", lm_test_ppl),
           ("tails", "The tails: test perplexity by token rarity, rare tokens generated", lm_tails),
           ("diversity", "Diversity of generated data", lm_diversity),
           ("training_curves", "Training curves", lm_training_curves),
           ("beyond", "Beyond the paper: decoding strategies and curated regimes", lm_beyond)]


def continuations(runs, prompts: int = 2) -> list:
    """The paper's example of text outputs: what each generation wrote after the same prompts (the
    chain's examples.parquet: the same real blocks in every generation under prompts: real), one
    table per prompt, a row per generation and a column per series (its seed that got furthest)."""
    out = []
    for run in runs:
        found: dict = defaultdict(lambda: defaultdict(dict))  # series -> seed -> generation -> file
        orders = {}
        for unit in run.finished("lm"):
            path = unit.file("examples.parquet")
            if path is not None:
                info, series = unit_series(run, "lm", unit)
                found[series][info.seed][unit.index] = path
                orders[series] = unit_order(info)
        if not found:
            continue
        series = sorted(found, key=orders.__getitem__)
        # per series its seed that reached the most generations (the lowest of those): a seed stopped early
        # would leave the generations another finished blank
        chosen = {s: min(found[s], key=lambda seed: (-len(found[s][seed]), seed)) for s in series}
        texts = {s: {g: pq.read_table(p).to_pylist() for g, p in found[s][chosen[s]].items()} for s in series}
        gens = sorted({g for s in series for g in texts[s]})
        first = texts[series[0]][min(texts[series[0]])]
        for ex in first[:: max(1, len(first) // prompts)][:prompts]:
            block, rows = ex["prompt_block_id"], []
            for g in gens:
                cells = [next((e["continuation"] for e in texts[s].get(g, []) if e["prompt_block_id"] == block), None)
                         for s in series]
                rows.append([str(g)] + [_one_line(c) if c else "—" for c in cells])
            where = "real training block" if ex["prompt_source"] == "real" else \
                "block of each generation's own training set (the prompts differ by generation)"
            title = f"{where} {block}" + (f" ({run.label})" if len(runs) > 1 else "")
            out.append((title[0].upper() + title[1:], _one_line(ex["prompt"]), (["generation", *series], rows)))
    return out


def _one_line(text: str) -> str:
    """Generated text as one table cell: its runs of white space one space (the layout's, not the model's),
    what else does not print escaped (errors.one_line: a byte-level BPE can write ESC or NUL, which would
    drive the terminal of whoever reads results.md there)."""
    return one_line(" ".join(str(text).split()))
