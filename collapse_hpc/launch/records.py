"""runs/<run>/jobs.json: which job ran (or runs) each unit, written atomically by both back-ends that
run jobs; a launch in-process (debug) records only its experiments, no executor.

    {"executor"?: "slurm" | "local", "profile": "...", "updated": <time>,
     "units": {"<experiment>/<variant>/gen_NNN": {"job_id", "log", "history": [older job ids],
                                                   "dependency"?, "state"? (local), "executor"?, ...}},
     "aggregate": {"job_id", "log", "dependency"},
     "folder": {"root", "inode"} (the run folder the jobs write to: a copy of it is told apart),
     "experiments"?: [the experiments a local or in-process launch ran, or runs, or was to run],
     "copied_units"?: {<label>: the original's unit} (a copy's: who made the units it was copied with)}

status reads it beside the run store (manifests say what is done) and, on Slurm, sacct.
A unit's job is the book's executor's, unless its entry names another ("executor"): a run one back-end
took over from the other (take_over) keeps the other's entries as that one's, and a unit it runs again
keeps the other's job id in its history as "<executor> <job id>".
"""
from __future__ import annotations

import json
import os
import re
import time

from collapse_hpc.store import write_json
from collapse_hpc.store.reads import ReadOnce, read_text

JOBS = "jobs.json"
# in a copy's book: the original's units, as they were when copied. The jobs are not this folder's (cancel,
# submit and run never read them); status names the one that made a unit the copy holds finished
COPIED = "copied_units"
EXPERIMENTS = "experiments"  # the experiments launched so far (local, debug; a Slurm submit records every unit)
# a local launcher that starts no further unit (a unit failed for want of room): why, until it ends and records
# the units it leaves NOT_RUN; read only while it runs (status), so a killed one's stays harmlessly
STOPPING = "stopping"


_BOOKS = ReadOnce("books_read")


def read_once():
    """Within it each run's book is read once, and the same mapping handed out again: for a process that only
    reads the run (the report, its job), where the job states, the experiments left out and the job's
    replicates each asked for it. Not for one that writes the book (a launch)."""
    return _BOOKS.held()


def load(store) -> dict:
    """The book; {"units": {}} where there is none, with "corrupt" where it is no such mapping. A read the file
    system refuses is NotRead: taken for none, a submit would queue a second chain beside the jobs it names.
    Within read_once, read once a run folder."""
    return _BOOKS.get(store.root, lambda: _load(store))


def _load(store) -> dict:
    path = store.root / JOBS
    try:
        data = json.loads(read_text(path, "job records", "the run and its jobs are kept as they are",
                                    kept=(FileNotFoundError, IsADirectoryError)))
    except FileNotFoundError:
        return {"units": {}}
    except ValueError:
        return {"units": {}, "corrupt": str(path)}
    units = data.setdefault("units", {}) if isinstance(data, dict) else None
    if not isinstance(units, dict) or not all(isinstance(e, dict) for e in units.values()):
        return {"units": {}, "corrupt": str(path)}
    if source := copied_from(store, data):  # its jobs write to the original: none of them is this folder's
        # what the original launched is the copy's too: an experiment it left out (--only) is not one to run
        launched = {EXPERIMENTS: data[EXPERIMENTS]} if isinstance(data.get(EXPERIMENTS), list) else {}
        return {"units": {}, "executor": data.get("executor"), "cluster": data.get("cluster"), "copied_from": source,
                COPIED: {**data.get(COPIED, {}), **data["units"]}, **launched}
    return data


def identity(store) -> dict:
    """The run folder the jobs are submitted for: its path and inode (a copy has another inode; the same
    folder seen through a symlink or another mount keeps it)."""
    return {"root": str(store.root), "inode": store.root.stat().st_ino}


def copied_from(store, data: dict) -> str | None:
    """The folder a book's jobs were submitted for, where this run folder is a copy of it."""
    folder = data.get("folder")
    if not isinstance(folder, dict):
        return _copied_by_logs(store, data)
    if folder.get("inode") in (None, store.root.stat().st_ino):
        return None
    if os.path.realpath(str(folder.get("root"))) == os.path.realpath(store.root):
        return None
    return str(folder.get("root"))


def _copied_by_logs(store, data: dict) -> str | None:
    """For a book of an older version (no `folder`): the run folder its jobs' logs are in
    (<run>/logs/submitit/…), where that is another folder still there; a folder since moved or out of
    sight from here cannot be told from this one, and counts as it."""
    logs = [e.get("log") for e in [*data["units"].values(), data.get("aggregate") or {}] if isinstance(e, dict)]
    roots = {log.rpartition(f"{os.sep}logs{os.sep}submitit{os.sep}")[0] for log in logs if isinstance(log, str)}
    roots.discard("")
    if len(roots) != 1:
        return None
    (root,) = roots
    try:
        return None if os.path.samefile(root, store.root) else root
    except OSError:  # gone (moved, or a mount this host lacks)
        return None


def save(store, data: dict) -> None:
    data["updated"] = time.time()
    write_json(store.root / JOBS, data)


def record(data: dict, label: str, **fields) -> dict:
    """Set a unit's job (of the book's executor); a different earlier job id goes to its history, named
    with its executor where that was another. What the entry said of the unit before (its state, why it was not
    run) is that earlier job's, or the want of one's: a new job starts without it."""
    entry = data["units"].setdefault(label, {})
    old = entry.get("job_id")
    if "job_id" in fields and str(fields["job_id"]) != str(old):
        if old is not None:
            made = executor_of(data, entry)
            entry.setdefault("history", []).append(str(old) if made == data.get("executor") else f"{made} {old}")
        for stale in ("state", "elapsed", "error", "dependency", "executor", "name", "reason"):
            entry.pop(stale, None)
    entry.update(fields)
    return entry


def reason(entry: dict) -> str | None:
    """Why a unit was not run, as its entry records it. An older version wrote a want of room's error in
    brackets of its own ("… failed for want of room (No space left on device)"), which status showed in a
    second pair: read as the writer words it now (local._Pool.out_of_room)."""
    said = entry.get("reason")
    return re.sub(r"^(.* failed for want of room) \((.*)\)$", r"\1: \2", said) if isinstance(said, str) else said


def executor_of(data: dict, entry: dict) -> str | None:
    """The back-end whose job a unit's entry names: its own record, else the book's."""
    return entry.get("executor") or data.get("executor")


def take_over(data: dict, executor: str) -> None:
    """Make `executor` the book's, the units the other one recorded kept as its (their job ids and states
    are still that back-end's to tell: sacct's, or the local launcher's record)."""
    before = data.get("executor")
    if before and before != executor:
        for entry in data["units"].values():
            entry.setdefault("executor", before)
    data["executor"] = executor


def executors(data: dict) -> set[str]:
    """Every back-end whose jobs the book names."""
    return {e for e in (executor_of(data, entry) for entry in data["units"].values()) if e}


def launching(data: dict, chains) -> None:
    """Add the experiments a launch runs (all the plan's, or those of --only): one of them no unit of
    which has started yet (the launcher stopped or killed before it) is still the run's, not left out."""
    data[EXPERIMENTS] = sorted({*data.get(EXPERIMENTS, []), *(c.experiment for c in chains)})


def launched_here(store, chains) -> None:
    """Book a launch in this process (the debug executor, an experiment by hand), which records no jobs: the
    experiments it runs (launching), so that one it has not reached yet reads not run, as a local launch's
    does, not left out with --only. A corrupt book, and a copy's (the original's jobs), stay as they are."""
    book = load(store)
    if book.get("corrupt") or book.get("copied_from"):
        return
    before = book.get(EXPERIMENTS)
    launching(book, chains)
    if book[EXPERIMENTS] != before:  # a run resumed as it was leaves the folder's bytes as they were
        save(store, book)


def job_ids(data: dict) -> set[str]:
    """Every Slurm job id the book names: its Slurm units' and the aggregation job's (only Slurm queues one).
    A unit the local launcher ran names its process id, which squeue may list as another job of the user's."""
    ids = {str(e.get("job_id")) for e in data["units"].values()
           if e.get("job_id") is not None and executor_of(data, e) == "slurm"}
    return ids | ({str(data.get("aggregate", {}).get("job_id"))} - {"None"})
