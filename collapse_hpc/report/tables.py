"""The report's tables, as (header, rows) of strings, rendered by page.py as HTML and Markdown."""
from __future__ import annotations

import math
import os
from collections import Counter, defaultdict

import pandas as pd

from collapse_hpc.logs import count, first_few
from collapse_hpc.plotting.metrics import declared_order, spec
from collapse_hpc.plotting.plots import num, series_label, series_order, setting_columns
from collapse_hpc.report.collect import RunData, Unit
from collapse_hpc.store.layout import unit_name

Table = tuple[list[str], list[list[str]]]


def first_last(summary: pd.DataFrame, runs: list[RunData], experiment: str, specs: dict | None = None,
               kind: str = "result") -> tuple[Table, list[str]]:
    """Generation 0 against the last generation every series of a run reached (one generation for all, so
    rows compare like with like), per run, series and metric of `kind` (Metric.kind); a run whose series
    have not all passed generation 0 is left out with a note saying so. Returns (table, notes)."""
    s = summary[summary["experiment"] == experiment]
    s = s[s["mean"].notna() | (s["n_infinite"] > 0)]  # a collapsed row (mean empty) still shows, as —
    s = s[s["metric"].map(lambda m: spec(specs, m).kind == kind).astype(bool)] if len(s) else s
    s, notes = _capped(s, specs)
    settings = setting_columns(s)
    multi = len({r.label for r in runs}) > 1
    header = (["run"] if multi else []) + ["series", "metric", "unit", "collapse", "generation 0", "last common",
                                           "generation", "n (last)", "relative change"]
    rows = []
    for run, rs in s.groupby("run", sort=True):
        reached = rs.groupby(["regime", *settings], dropna=False)["generation"].max()
        last = min([int(reached.min()), *_chains_reached(next(r for r in runs if r.label == run), experiment)])
        planned = next((r.generations.get(experiment) for r in runs if r.label == run), None)
        if last <= 0:
            notes.append(f"{run + ': ' if multi else ''}" + _no_comparison(last, planned))
            continue
        when = str(last) if not planned or last >= planned - 1 else f"{last} (of {planned - 1})"
        for (*_, metric), grp in rs.groupby(["regime", *settings, "metric"], dropna=False, sort=True):
            g0, gl = grp[grp["generation"] == 0], grp[grp["generation"] == last]
            if g0.empty or gl.empty:
                continue
            first, end = g0["mean"].iloc[0], gl.iloc[0]
            label, m = series_label(grp.iloc[0], settings), spec(specs, metric)
            change = (end["mean"] - first) / abs(first) if first and math.isfinite(first) and has_zero(m) \
                else float("nan")
            cells = [label, m.label, m.unit or "—", m.direction or "—", num(first), num(end["mean"]), when,
                     str(int(end["n"])), "—" if not math.isfinite(change) else f"{change:+.1%}"]
            rows.append((run, series_order(grp.iloc[0], settings), declared_order(specs, metric),
                         ([run] if multi else []) + cells))
    rows.sort(key=lambda r: r[:3])  # series, then metrics, in the figures' order (replace first; p5 before p25)
    return (header, [r[3] for r in rows]), notes


def has_zero(m) -> bool:
    """Whether a relative change of metric `m` means anything: a quantity bounded at 0 (a variance, a share,
    a perplexity, an ELBO). A signed one's (a fitted mean, a log variance) depends on where its 0 happens to
    lie: 0.0004 -> 0.11 read +24817%."""
    least, most = m.bounds
    return (least is not None and least >= 0) or (most is not None and most <= 0)


# metrics in a comparison table at most (a row each per series): a mixture of 1000 components records 13 a
# component, whose 13,000 rows buried the table; past it, the first TABLE_HEAD and the last TABLE_TAIL in
# the declared order (the experiment's own metrics, then its first and last components)
TABLE_HEAD, TABLE_TAIL = 40, 20


def _capped(s: pd.DataFrame, specs: dict | None) -> tuple[pd.DataFrame, list[str]]:
    """The summary rows of the metrics a comparison table shows, and a note naming those it leaves out."""
    metrics = sorted(s["metric"].unique(), key=lambda m: declared_order(specs, m))
    if len(metrics) <= TABLE_HEAD + TABLE_TAIL:
        return s, []
    left = metrics[TABLE_HEAD:-TABLE_TAIL]
    note = (f"Not in this table: {len(left)} of its {len(metrics)} metrics, {left[0]} to {left[-1]} in the declared "
            f"order (it shows the first {TABLE_HEAD} and the last {TABLE_TAIL}); every metric is in metrics.parquet "
            f"and summary.csv.")
    return s[~s["metric"].isin(left)], [note]


def _no_comparison(last: int, planned: int | None) -> str:
    """Why a run has no row: a run of one generation is finished, and 'yet' had it wait for a later one."""
    if last == 0 and planned == 1:
        return ("no comparison: its chains run one generation (0), with none after it to compare with; "
                "run more generations (--generations, or the section's generations)")
    return "no comparison yet: " + ("a chain has not finished generation 0" if last < 0 else
                                     "not every chain has finished a generation after 0 (the last generation "
                                     "all of them reached is 0)")


def _chains_reached(run: RunData, experiment: str) -> list[int]:
    """The last generation each chain of the experiment reached in order (-1: none); [] for an array one."""
    done = {(u.variant, u.index) for u in run.units if u.experiment == experiment and u.done}
    out = []
    for (e, variant), info in run.variants.items():
        if e == experiment and info.shape == "chain":
            g = 0
            while (variant, g) in done:
                g += 1
            out.append(g - 1)
    return out


def _rel(run: RunData, text: str) -> str:
    """A message with the run folder's absolute path made relative to it (the page names no machine path)."""
    return text.replace(str(run.root) + os.sep, "").replace(str(run.root), ".")


def _why(run: RunData, experiment: str, variant: str, unit: str, found, jobs: dict) -> str:
    """Why a unit is not finished, as far as the run folder and its job record tell."""
    entry = jobs.get(f"{experiment}/{variant}/{unit}", {})
    if found is not None and found.problems:
        return "artefact missing or not matching its manifest: " + _rel(run, found.problems[0])
    state = str(entry.get("state") or "")
    if state in ("FAILED", "INTERRUPTED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NOT_RUN"):
        err = [ln for ln in str(entry.get("error") or entry.get("reason") or "").splitlines() if ln.strip()]
        return state.lower().replace("_", " ") + (f": {_rel(run, err[-1])}" if err else "")
    if state in ("PENDING", "REQUEUED", "CONFIGURING"):  # a Slurm job's (collect.job_states)
        return "queued"
    if state == "RUNNING":  # its folder may not exist yet
        return "running"
    if state == "UNKNOWN":  # collect.job_states: sacct failed, and the job has left the queue
        return (f"job {entry.get('job_id')}'s state unknown: Slurm's accounting (sacct) did not answer; "
                f"collapse-hpc status tells once it does")
    if found is None:
        return "not started"
    if state == "COMPLETED":  # the job ended well, yet the unit recorded nothing: see collapse-hpc status
        return "its job completed, but manifest.json is missing"
    return "unfinished (no manifest yet)"


def unfinished(runs: list[RunData]) -> list[str]:
    """One line per chain (or array) of the plan that is not complete: its first unfinished unit and why."""
    out = []
    for run in runs:
        jobs = run.jobs
        found = {(u.experiment, u.variant, u.index): u for u in run.units}
        for (experiment, variant), info in sorted(run.variants.items()):
            if info.planned is None or experiment in run.left_out:
                continue
            units = [found.get((experiment, variant, i)) for i in range(info.planned)]
            done = sum(bool(u and u.done) for u in units)
            if done == info.planned:
                continue
            i = next(i for i, u in enumerate(units) if not (u and u.done))
            what, name = "generations" if info.shape == "chain" else "parts", unit_name(info.shape, i)
            why = _why(run, experiment, variant, name, units[i], jobs)
            out.append(f"{run.label + ': ' if len(runs) > 1 else ''}{experiment}/{variant}: {done} of "
                       f"{info.planned} {what} finished; {name}: {why}")
    return out


def left_out(runs: list[RunData]) -> list[str]:
    """One line per run that left experiments of its plan out with --only (status says each of their chains
    is not in the run): they are neither unfinished nor in the progress table."""
    return [f"{run.label + ': ' if len(runs) > 1 else ''}{', '.join(run.left_out)}: not in this run (left out "
            f"with --only)" for run in runs if run.left_out]


def absent_from(runs: list[RunData], experiment: str) -> str:
    """For the section of `experiment` in a report of several runs, where some left it out with --only: which
    runs its figures and tables are of (each draws the runs that have it, so a run left out is no empty panel,
    nor a word in the figure saying whose the panels are)."""
    gone = [r.label for r in runs if experiment in r.left_out]
    have = [r.label for r in runs if experiment in r.experiments()]
    if len(runs) < 2 or not gone:
        return ""
    return (f"Not in {', '.join(gone)} (left out with --only): the figures and tables of this section are of "
            f"{', '.join(have)} only.")


def completeness(runs: list[RunData]) -> Table:
    """Units finished / planned per variant: what an in-progress run still lacks, started (a folder
    without its manifest) or not (a generation after a stopped one has no folder). Generations past a
    chain's planned end are not the plan's (beyond_plan says them), as in verify and status."""
    header = ["run", "experiment", "variant", "finished units", "planned", "unfinished", "not started", "problems"]
    rows = []
    for run in runs:
        found = defaultdict(list)
        for u in run.units:
            if not _past_plan(run, u):
                found[(u.experiment, u.variant)].append(u)
        for key in sorted(set(found) | {k for k in run.variants if k[0] not in run.left_out}):
            units = found.get(key, [])
            info = run.variants.get(key)
            done = sum(u.done for u in units)
            unfinished = sum(u.manifest is None for u in units)
            problems = sum(bool(u.problems) for u in units)
            known = info is not None and info.planned is not None
            waiting = sum(1 for i in range(info.planned) if i not in {u.index for u in units}) if known else "?"
            planned = str(info.planned) if known else "?"
            rows.append([run.label, key[0], key[1], str(done), planned, str(unfinished), str(waiting), str(problems)])
    return header, rows


def beyond_plan(runs: list[RunData]) -> list[str]:
    """A line per run with finished generations past its chains' planned end (a run made with more
    generations than its config now asks for): how many, of which experiment, past which count."""
    out = []
    for run in runs:
        finished: dict[tuple[str, int], int] = defaultdict(int)
        for u in run.units:
            if u.done and _past_plan(run, u):
                finished[(u.experiment, run.variants[(u.experiment, u.variant)].planned)] += 1
        if finished:
            parts = [f"{n} of {exp} (past its {planned})" for (exp, planned), n in sorted(finished.items())]
            out.append(f"{run.label + ': ' if len(runs) > 1 else ''}"
                       f"{count(sum(finished.values()), 'finished generation')} beyond the plan, left from a run "
                       f"with more generations: {', '.join(parts)}; not counted above (a run with more "
                       f"--generations takes them up again)")
    return out


def _past_plan(run: RunData, u: Unit) -> bool:
    info = run.variants.get((u.experiment, u.variant))
    return info is not None and info.shape == "chain" and info.planned is not None and u.index >= info.planned


def compute(runs: list[RunData]) -> Table:
    """Core- and GPU-hours summed from the manifests (seconds x resources held)."""
    header = ["run", "experiment", "units", "unit-hours", "core-hours", "GPU-hours"]
    rows, total = [], [0, 0.0, 0.0, 0.0]
    for run in runs:
        per = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
        for u in run.units:
            if not u.done:
                continue
            sec = float(u.manifest.get("seconds") or 0.0)
            res = u.manifest.get("resources") or {}
            acc = per[u.experiment]
            for i, v in enumerate((1, sec / 3600, sec * res.get("cpus", 1) / 3600, sec * res.get("gpus", 0) / 3600)):
                acc[i] += v
                total[i] += v
        for exp, (n, hours, core, gpu) in sorted(per.items()):
            rows.append([run.label, exp, str(n), num(hours), num(core), num(gpu)])
    rows.append(["all", "", str(total[0]), num(total[1]), num(total[2]), num(total[3])])
    return header, rows


def phases(df: pd.DataFrame, runs: list[RunData], specs: dict) -> Table:
    """Per run, experiment and generation: what a unit cost (its seconds from the manifests, × the CPU cores and
    × the GPUs it held; the mean over the generation's units) and the phases the experiment times (its metrics
    of kind compute, e.g. training and sampling seconds, tokens/s; mean over series and seeds). An array
    experiment's unit runs every generation: its row is "all". specs: experiment -> its metric declarations."""
    def declared(e):  # the experiment's order of declaration (training before sampling), then the rest
        order = list(specs.get(e) or {})
        return lambda m: (order.index(m) if m in order else len(order), m)

    timed = {e: sorted((m for m in df.loc[df["experiment"] == e, "metric"].unique()
                        if spec(specs.get(e), m).kind == "compute"), key=declared(e))
             for e in df["experiment"].unique()}
    columns = list(dict.fromkeys(spec(specs.get(e), m).axis for e in sorted(timed) for m in timed[e]))
    timing = sorted({m for e in timed for m in timed[e]})
    header = ["run", "experiment", "generation", "units", "seconds", "CPU core-seconds", "GPU-seconds", *columns]
    rows = []
    for run in runs:
        cost = defaultdict(list)
        for u in run.units:
            if u.done:
                res = u.manifest.get("resources") or {}
                sec = float(u.manifest.get("seconds") or 0.0)
                key = (u.experiment, u.index if u.name.startswith("gen_") else -1)
                cost[key].append((sec, sec * res.get("cpus", 1), sec * res.get("gpus", 0)))
        d = df[(df["run"] == run.label) & df["metric"].isin(timing)]  # the rest is no timing: a copy spared
        for (experiment, g), units in sorted(cost.items()):
            mean = [sum(c[i] for c in units) / len(units) for i in range(3)]
            cells = dict.fromkeys(columns, "—")
            for m in timed.get(experiment, []) if g >= 0 else []:
                v = d.loc[(d["experiment"] == experiment) & (d["metric"] == m) & (d["generation"] == g), "value"]
                cells[spec(specs.get(experiment), m).axis] = num(v.mean()) if len(v) else "—"
            rows.append([run.label, experiment, str(g) if g >= 0 else "all", str(len(units)),
                         *(num(v) for v in mean), *cells.values()])
    return header, rows


def packages(runs: list[RunData]) -> Table:
    """Package versions recorded in the manifests (every distinct version, if they differ)."""
    seen = defaultdict(set)
    commits, hosts = set(), set()
    for run in runs:
        for u in run.units:
            if u.done:
                for name, version in (u.manifest.get("packages") or {}).items():
                    seen[name].add(str(version))
                if u.manifest.get("git_commit"):
                    commits.add(u.manifest["git_commit"][:12])
                if u.manifest.get("host"):
                    hosts.add(u.manifest["host"])
    rows = [[name, ", ".join(sorted(v))] for name, v in sorted(seen.items())]
    if commits:
        rows.append(["git commit", ", ".join(sorted(commits))])
    if hosts:
        rows.append(["hosts", first_few(sorted(hosts), 8, ", ")])
    return ["package", "version"], rows


def problems(runs: list[RunData]) -> list[str]:
    return [_rel(run, p) for run in runs for u in run.units for p in u.problems]


def column_notes(runs: list[RunData]) -> list[str]:
    """A line per experiment and kind of what its units' metrics.parquet lack of its declared metrics or hold
    besides them (collect.Columns, as tidy read them), each column with how many of the units read it concerns."""
    out = []
    for experiment in sorted({e for r in runs for e in r.columns}):
        seen = [r.columns[experiment] for r in runs if experiment in r.columns]
        units = sum(c.units for c in seen)
        for kind, said in (("lacking", "declared metrics missing from its units' metrics.parquet (written by an "
                                       "older version, or edited; its figures and tables lack them there): {}"),
                           ("unknown", "columns of its units' metrics.parquet that are no metric or key it "
                                       "declares, not shown: {}"),
                           ("not_float", "declared metrics its units' metrics.parquet hold as another type than "
                                         "float64, not shown: {}")):
            found: Counter = sum((getattr(c, kind) for c in seen), Counter())
            by_units = defaultdict(list)  # the columns of each count of units, most first
            for c, n in sorted(found.items()):
                by_units[n].append(c)
            if found:
                out.append(f"{experiment}: " + said.format("; ".join(
                    f"{first_few(columns, 8, ', ')} in {n} of {count(units, 'unit')}"
                    for n, columns in sorted(by_units.items(), reverse=True))))
    return out


# ------------------------------------------------------------------ texts: what the models wrote

Text = tuple[str, str, Table]  # title, the prompt (shown above the table), table
