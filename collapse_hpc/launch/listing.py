"""What `collapse-hpc status RUN` prints of the run's state (launch.status): every unit on its line
where that fits a screen, else a summary (the paper's 635 units): per experiment its units counted by
state, each chain's line, and the units that need a hand (failed, cancelled, completed without being
done) in full, a chain's run of dependents never started as one. `status RUN --all` lists every unit,
`--json` gives everything to scripts."""
from __future__ import annotations

import datetime
import itertools
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

from collapse_hpc.launch.status import BAD, COUNTED, EXPLAINED, HELD, RELEASE, REQUEUED, log_lines, state_of
from collapse_hpc.logs import count
from collapse_hpc.store.layout import existing_run

CHAINS = 12  # chain lines per experiment; the rest are counted
SHOWN = 5  # units (or runs of a chain's dependents) shown in full; the rest are counted


def header(state: dict) -> list[str]:
    ran = state.get("launched") or any(u["state"] == "done" for c in state["chains"] for u in c["units"])
    # no executor in jobs.json: an in-process run records none; with no jobs.json at all, nothing tells
    unrecorded = "not launched yet" if not ran else "run in-process: --executor debug or by hand" \
        if state.get("recorded", True) else "its job records are missing: no jobs.json"
    where = f"{state['executor'] or unrecorded}" + (f", {state['cluster']}" if state.get("cluster") else "")
    out = [f"run {state['run']} ({where})"]
    if state.get("copied_from") and state["executor"] == "slurm":
        out.append(f"a copy of {state['copied_from']}: the jobs recorded there are that folder's; here only the "
                   f"finished units count (submit queues the rest for this folder)")
    elif state.get("copied_from"):
        out.append(f"a copy of {state['copied_from']}: its units run (or ran) there, none runs in this folder, "
                   f"and the processes recorded there are that folder's; here only the finished units count "
                   f"(run goes on from them in this folder)")
    return out


def chain_head(item: dict) -> str:
    total = len(item["units"])
    if item["shape"] != "chain":
        return f"array: {item['done']}/{total} parts done"
    reached = item["reached"]
    # generation 0 not done beside later ones done (its weights lost since): not "no generation finished"
    head = f"generation {reached} reached" if reached >= 0 else \
        "generation 0 not done" if item["done"] else "no generation finished"
    return f"{head} ({item['done']}/{total} done)"


def job_words(u: dict) -> str:
    """A unit's job as the run's back-end names it ("job 123"); one of the other back-end (a run one took over
    from the other) says which: a local process id is no Slurm job id to scancel, nor the reverse."""
    return {"slurm": "Slurm job", "local": "local pid"}.get(u.get("executor") or "", "job") + f" {u['job_id']}"


COLUMNS = (0, 13, 14)  # least widths of a unit line's unit, state and job columns


def _ran(u: dict) -> str:
    """What ran a unit, in its line's job column."""
    return job_words(u) if u["job_id"] else f"by hand on {u['by_hand_on']}" if u.get("by_hand_on") else \
        f"job: {u['unrecorded']}" if u.get("unrecorded") else ""


def _state(u: dict) -> str:
    return u["state"] + (f" (after gen {u['after']})" if u.get("after") is not None else "")


def columns(units: list[dict]) -> tuple[int, int, int]:
    """The widths that line up the columns of `units`' lines: each the widest value's (a 5-digit pid, a long
    job id, an array part's name), at least COLUMNS'."""
    return (max([COLUMNS[0], *(len(u["unit"]) for u in units)]), max([COLUMNS[1], *map(len, map(_state, units))]),
            max([COLUMNS[2], *map(len, map(_ran, units))]))


def ran_for(u: dict) -> str:
    """A unit's (or the report job's) time, over its runs where its job was requeued and ran again (one run's,
    of a job requeued and waiting, is its time alone), right-aligned: "1.4 s" under "0:00:49"."""
    return u["elapsed"].rjust(len("0:00:00")) + (f" over {u['runs']} runs" if u.get("runs", 0) > 1 else "")


def explained(u: dict) -> str:
    """Why a unit's (or the report job's) job waits, in words: a requeued one until its begin time, where squeue
    told it (that time of day, its date too where it is not today's); a held one, what waits on it with it (its
    "behind": held()) and what releases it."""
    if u["reason"] == "BeginTime" and u.get("start_time"):
        begins = datetime.datetime.fromisoformat(u["start_time"])
        shown = f"{begins:%H:%M:%S}" if begins.date() == datetime.date.today() else f"{begins:%Y-%m-%d %H:%M:%S}"
        return REQUEUED.format(f"from {shown}, its begin time")
    if u["reason"] in HELD:
        behind = u.get("behind") or []
        waits = f"{', '.join(['it', *behind[:-1]])} and {behind[-1]} wait" if behind else "it waits"
        return f"{HELD[u['reason']]}: {waits} {RELEASE}"
    return EXPLAINED.get(u["reason"], u["reason"])


def held(u: dict, item: dict, state: dict) -> dict:
    """A held unit (`item`'s) with what waits on it ("behind"): its chain's generations queued after it (a
    chain's last has none, an array's part none), as one range, and the report's job where it is queued
    (afterany on every unit); any other unit as it is."""
    if u.get("reason") not in HELD:
        return u
    later = item["units"][item["units"].index(u) + 1:] if item["shape"] == "chain" else []
    queued = [v["unit"] for v in itertools.takewhile(lambda v: v["state"] == "PENDING", later)]
    behind = [queued[0] if len(queued) == 1 else f"{queued[0]}..{queued[-1]}"] if queued else []
    report = (state.get("aggregate") or {}).get("state") == "PENDING"
    return {**u, "behind": behind + (["the report's job"] if report else [])}


def unit_lines(u: dict, widths: tuple[int, int, int] = COLUMNS, name: str | None = None) -> list[str]:
    """A unit's line (its columns `widths` wide: columns()), and for one not done or failed what is missing, its
    log and last lines; the report's job's too, `name` in the place of the unit's indented name."""
    first = f"  {u['unit']}" if name is None else name
    line = f"{first:<{widths[0] + 2}}  {_state(u):<{widths[1]}} {_ran(u):<{widths[2]}} {ran_for(u)}"
    if u.get("reason"):
        line += f"  ({explained(u)})"
    out = [line.rstrip()]
    if u["state"] == "RUNNING" and u.get("log") and Path(u["log"]).is_file():
        out.append(f"      log: {u['log']}")
    if "why_not_done" in u:
        out += [f"      not done: {u['why_not_done']}", f"      redo: {u['redo']}"]
    if u["state"] in BAD:
        out += log_lines(u.get("log"), u.get("never_started") or (f"waited on {u['dependency']}"
                                                                  if u.get("dependency") else None))
        out += [f"      | {ln}" for ln in u.get("error") or []]
        if u.get("hint"):
            out.append(f"      {u['hint']}")
    return out


def footer(state: dict, widths: tuple[int, int, int] = COLUMNS) -> list[str]:
    """The aggregation job, as a unit is shown (its log to follow where it runs, its error where it failed), its
    columns `widths` wide, the units' above it; and how many units failed."""
    out = []
    agg = state.get("aggregate")
    if agg:
        out += ["", *unit_lines(agg, widths, "aggregate")]
    bad = [u["state"] for item in state["chains"] for u in item["units"] if u["state"] in BAD]
    if bad:
        were = "was" if len(bad) == 1 else "were"
        # only cancelled (by hand, or behind a generation cancelled by hand): there is no cause to fix
        said = f"{count(len(bad), 'unit')} {were} cancelled; " if set(bad) == {"CANCELLED"} else \
            f"{count(len(bad), 'unit')} failed or {were} cancelled; fix the cause, then "
        # a local run (its command is `run`) queues nothing: Slurm's words there misled
        left = "queue what is left (finished units are kept, queued ones not queued twice)" \
            if state.get("executor") == "slurm" else "run what is left (finished units are kept)"
        out += ["", f"{said}{left}:", f"  {state['resume']}"]
    elif agg and agg["state"] == "CANCELLED" and state.get("executor") == "slurm":
        out += ["", "the report's job was cancelled; queue it again (finished units are kept, queued ones not "
                "queued twice):", f"  {state['resume']}"]
    return out


def every_unit(state: dict) -> list[str]:
    """Every chain with every unit on its own line, the columns of each chain's lined up, and the report's job's
    with the last chain's, right above it."""
    out, widths = header(state), COLUMNS
    for item in state["chains"]:
        name = f"{item['experiment']}/{item['variant']}"
        if item.get("not_in_this_run"):
            out += ["", f"{name}  not in this run (left out with --only)"]
            continue
        out += ["", f"{name}  {chain_head(item)}"]
        widths = columns(item["units"])
        for u in item["units"]:
            out += unit_lines(held(u, item, state), widths)
    return out + footer(state, widths)


SCREEN = 60  # lines: a longer listing of every unit is summarised (status --all lists them)


def show(run_dir: str | Path, as_json: bool = False, every: bool = False) -> int:
    """Print the run's status: every unit where that fits a screen (or `every`), else a summary."""
    store = existing_run(run_dir)
    state = state_of(store, run_dir)
    if as_json:
        print(json.dumps(state, indent=1))
        return 0
    lines = every_unit(state)
    print("\n".join(lines if every or len(lines) <= SCREEN else summary(state)))
    for said in (state.get("others"), state.get("accounting"), state.get("controller")):
        if said:
            print(f"note: {said}", file=sys.stderr)
    return 0


def summary(state: dict) -> list[str]:
    out = header(state)
    experiments: dict[str, list[dict]] = {}
    for item in state["chains"]:
        experiments.setdefault(item["experiment"], []).append(item)
    for name, items in experiments.items():
        out += ["", *experiment_lines(name, items)]
    needing = [entry for name, items in experiments.items() for group in _groups(items) for entry in attention(group)]
    if needing:
        out += ["", "failed, cancelled or completed without being done"
                + (f" (the first {SHOWN} of {len(needing)})" if len(needing) > SHOWN else "") + ":"]
        for entry in needing[:SHOWN]:
            out += entry
        if len(needing) > SHOWN:
            out.append(f"  … {len(needing) - SHOWN} more: collapse-hpc status {shlex.quote(state['run'])} --all")
    units = sum(len(item["units"]) for item in state["chains"])
    return out + footer(state) + ["", f"{count(units, 'unit')} in all; every unit: collapse-hpc status "
                                      f"{shlex.quote(state['run'])} --all (or --json)"]


def experiment_lines(name: str, items: list[dict]) -> list[str]:
    """One line of an experiment's units by state; then a line per chain (CHAINS at most)."""
    if all(item.get("not_in_this_run") for item in items):
        return [f"{name}  not in this run (left out with --only)"]
    units = [u for item in items for u in item["units"]]
    # why a queued job waits (a QOS limit, a drained node) beside its count; a local chain's NOT_RUN
    # reason names its failed generation, shown below
    states = Counter(u["state"] + (f" ({COUNTED.get(u['reason'], u['reason'])})"
                                   if u.get("reason") and u["state"] == "PENDING" else "") for u in units)
    done = states.pop("done", 0)
    shape = items[0]["shape"]
    what = count(len(items), "chain") if shape == "chain" else \
        f"array of {count(len(units), 'part')} ({count(len(items), 'variant')})"
    out = [f"{name}: {what}, {done}/{len(units)} done"
           + ("; " + ", ".join(f"{n} {s}" for s, n in states.most_common()) if states else "")]
    if shape != "chain":
        return out
    width = max(len(item["variant"]) for item in items[:CHAINS])
    for item in items[:CHAINS]:
        nxt = next((u for u in item["units"] if u["state"] != "done"), None)
        # a held job stalls its chain until released: said, where the chain's line shows no reason
        where = f"; {nxt['unit']} {nxt['state']}" + (", held" if nxt.get("reason") in HELD else "") \
            + (f", {job_words(nxt)}" if nxt.get("job_id") else "") if nxt else ""
        out.append(f"  {item['variant']:<{width}}  {chain_head(item)}{where}")
    if len(items) > CHAINS:
        out.append(f"  … {count(len(items) - CHAINS, 'more chain')}")
    return out


def _groups(items: list[dict]) -> list[list[tuple[str, dict]]]:
    """(variant's name, unit) of each chain apart; an experiment's array parts as one list, since a whole
    array failing alike (a bad config) is one entry, not one per variant."""
    named = [[(f"{item['experiment']}/{item['variant']}", u) for u in item["units"]] for item in items
             if not item.get("not_in_this_run")]
    return named if items[0]["shape"] == "chain" else [[nu for group in named for nu in group]]


def attention(units: list[tuple[str, dict]]) -> list[list[str]]:
    """The units to look at, each as status --all shows it under its full name; a run of them alike (a
    chain's dependents cancelled with their failed generation, array parts whose logs end alike) is one."""
    out: list[list[str]] = []
    run: list[tuple[str, dict]] = []

    def close() -> None:
        (name, first), (last_name, last) = (run[0], run[-1]) if run else ((None, None), (None, None))
        if len(run) > 1:
            upto = last["unit"] if last_name == name else f"{last_name}/{last['unit']}"
            lines = unit_lines({**first, "unit": f"{name}/{first['unit']}..{upto}"})
            alike = "" if _unstarted(first) else ", their logs ending alike"
            out.append([f"{lines[0]}  ({count(len(run), 'unit')}{alike})", *lines[1:]])
        elif run:
            out.append(unit_lines({**first, "unit": f"{name}/{first['unit']}"}))
        run.clear()

    for name, u in units:
        if u["state"] not in BAD and "why_not_done" not in u:
            close()
            continue
        if run and not _alike(u, run[0][1]):
            close()
        run.append((name, u))
    close()
    return out


def _alike(u: dict, v: dict) -> bool:
    """Failed the same way: both never started, or both ran and their logs end in the same line."""
    if u["state"] != v["state"] or "why_not_done" in u or "why_not_done" in v:
        return False
    if _unstarted(u) or _unstarted(v):
        return _unstarted(u) and _unstarted(v)
    return bool(u.get("error")) and (u["error"] or [])[-1:] == (v.get("error") or [])[-1:]


def _unstarted(u: dict) -> bool:
    """A failed unit whose job never ran: no log, nothing of its own to show."""
    return u["state"] in BAD and not u.get("error") and not (u.get("log") and Path(u["log"]).is_file()) \
        and "why_not_done" not in u
