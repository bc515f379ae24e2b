"""The report's tables, as (header, rows) of strings, rendered by page.py as HTML and Markdown."""
from __future__ import annotations

import math
from collections import defaultdict

import pandas as pd

from collapse_hpc.plotting.plots import num, series_label, series_order, setting_columns
from collapse_hpc.report.collect import RunData

Table = tuple[list[str], list[list[str]]]


def first_last(summary: pd.DataFrame, runs: list[RunData], experiment: str) -> Table:
    """Generation 0 against the last generation reached, per run, series and metric."""
    s = summary[summary["experiment"] == experiment]
    settings = setting_columns(s)
    multi = len({r.label for r in runs}) > 1
    header = (["run"] if multi else []) + ["series", "metric", "generation 0", "last", "last generation",
                                           "n (last)", "relative change"]
    rows = []
    for (run, *_, metric), grp in s.groupby(["run", "regime", *settings, "metric"], dropna=False, sort=True):
        grp = grp.dropna(subset=["mean"]).sort_values("generation")
        if grp.empty:
            continue
        planned = next((r.generations.get(experiment) for r in runs if r.label == run), None)
        g0 = grp[grp["generation"] == 0]["mean"]
        first = g0.iloc[0] if len(g0) else float("nan")
        last = grp.iloc[-1]
        reached = int(last["generation"])
        when = str(reached) if not planned or reached >= planned - 1 else f"{reached} (of {planned - 1})"
        change = (last["mean"] - first) / abs(first) if first and math.isfinite(first) else float("nan")
        label = series_label(grp.iloc[0], settings)
        rows.append((run, series_order(label), metric, ([run] if multi else []) + [
            label, metric, num(first), num(last["mean"]), when, str(int(last["n"])),
            "—" if not math.isfinite(change) else f"{change:+.1%}"]))
    rows.sort(key=lambda r: r[:3])  # series in the figures' order (replace before accumulate)
    return header, [r[3] for r in rows]


def completeness(runs: list[RunData]) -> Table:
    """Units finished / planned per variant: what an in-progress run still lacks."""
    header = ["run", "experiment", "variant", "finished units", "planned", "unfinished", "problems"]
    rows = []
    for run in runs:
        found = defaultdict(list)
        for u in run.units:
            found[(u.experiment, u.variant)].append(u)
        for key in sorted(set(found) | set(run.variants)):
            units = found.get(key, [])
            info = run.variants.get(key)
            done = sum(u.done for u in units)
            unfinished = sum(u.manifest is None for u in units)
            problems = sum(bool(u.problems) for u in units)
            planned = str(info.planned) if info and info.planned is not None else "?"
            rows.append([run.label, key[0], key[1], str(done), planned, str(unfinished), str(problems)])
    return header, rows


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
        rows.append(["hosts", ", ".join(sorted(hosts)[:8]) + (" …" if len(hosts) > 8 else "")])
    return ["package", "version"], rows


def problems(runs: list[RunData]) -> list[str]:
    return [p for run in runs for u in run.units for p in u.problems]


# ------------------------------------------------------------------ texts: what the models wrote

Text = tuple[str, str, Table]  # title, the prompt (shown above the table), table
