"""collapse-hpc status RUN: per chain, the generation reached and each unit's job.

A unit's state comes from the run store first (a verified manifest: done), then from its
recorded job (runs/<run>/jobs.json): squeue and sacct on Slurm, the launcher's own record
for local runs. A failed job shows its log path and the last lines of its error.
"""
from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch import records
from collapse_hpc.store import RunStore, read_manifest
from collapse_hpc.store.lock import pid_alive

BAD = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "INTERRUPTED"}


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id -> (state, elapsed) from sacct, overridden by squeue for jobs still queued."""
    out: dict[str, tuple[str, str]] = {}
    bases = sorted({str(j).split("_")[0] for j in job_ids if j})
    if not bases:
        return out
    if shutil.which("sacct"):
        res = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,Elapsed", "-j", ",".join(bases)],
                             capture_output=True, text=True, timeout=60)
        for line in res.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                out[parts[0]] = (parts[1].split()[0], parts[2])  # "CANCELLED by 0" -> CANCELLED
    if shutil.which("squeue"):
        from collapse_hpc.launch.slurm import squeue

        try:
            out.update(squeue(["-j", ",".join(bases)]))
        except UserError:  # e.g. every job has left the queue ("Invalid job id"): sacct's states stand
            pass
    return out


def _clock(seconds) -> str:
    return str(datetime.timedelta(seconds=int(seconds))) if seconds is not None else ""


def _print_log(log: str | None, dependency: str | None) -> None:
    if log and Path(log).is_file():
        print(f"      log: {log}")
    else:  # cancelled while queued (an afterok parent failed): it never ran, so there is no log
        print("      never started, no log" + (f" (waited on {dependency})" if dependency else ""))


def error_lines(log: str | None, n: int = 5) -> list[str]:
    """The last non-empty lines of a job's stderr (the exception is at the end)."""
    if not log or not Path(log).is_file():
        return []
    with open(log, "rb") as f:
        f.seek(max(0, os.path.getsize(log) - 262144))  # progress bars fill a short tail
        text = f.read().decode(errors="replace")
    # a progress bar redraws itself with \r: keep what a terminal would show, not every redraw
    shown = [([seg for seg in ln.split("\r") if seg.strip()] or [""])[-1] for ln in text.split("\n")]
    lines = [ln.rstrip() for ln in shown if ln.strip()]
    # Slurm's own reason (*** JOB 45 ON vm CANCELLED AT … ***): the job may log on for its kill wait
    reason = [ln for ln in lines if ln.startswith("slurmstepd") and "***" in ln][-1:]
    if reason and reason[0] not in lines[-n:]:
        return reason + lines[-(n - 1):]
    return lines[-n:]


def unit_state(store: RunStore, run, job, entry: dict, slurm: dict, local: bool) -> tuple[str, str]:
    """(state, elapsed) of one unit."""
    unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    manifest = read_manifest(unit_dir)
    if manifest is not None and engine.job_done(store, run, job):
        return "done", _clock(manifest.get("seconds"))
    jid = entry.get("job_id")
    if local:
        state = entry.get("state") or ("not run" if jid is None else "?")
        if state == "RUNNING" and not (str(jid).isdigit() and pid_alive(int(jid))):
            state = "INTERRUPTED"  # the launcher died with the job
        return state, _clock(entry.get("elapsed"))
    if jid is None:
        return "not submitted", ""
    state, elapsed = slurm.get(str(jid), ("UNKNOWN", ""))
    return state, elapsed


def _book(store: RunStore) -> dict:
    """jobs.json; a corrupt one is one error line, since every unit would silently read 'not run'."""
    book = records.load(store)
    if book.get("corrupt"):
        raise UserError(f"{book['corrupt']}: jobs.json is corrupt (not a JSON mapping of units), so job "
                        f"states are unknown; restore it, or remove it to see only what the manifests say")
    return book


def show(run_dir: str | Path) -> int:
    store = RunStore(run_dir)
    if not store.exists():
        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    run = store.load_config(experiments.sections())
    chains = engine.load_plan(store, run)
    book = _book(store)
    local = book.get("executor") != "slurm"
    units = book["units"]
    slurm = {} if local else slurm_states([e.get("job_id") for e in units.values()]
                                          + [book.get("aggregate", {}).get("job_id")])
    where = f"{book.get('executor', 'not launched yet')}" + (f", {book['cluster']}" if book.get("cluster") else "")
    print(f"run {store.root} ({where})")
    failed = 0
    for chain in chains:
        states = [(job, *unit_state(store, run, job, units.get(job.label, {}), slurm, local)) for job in chain.jobs]
        done = sum(s == "done" for _, s, _ in states)
        if chain.shape == "chain":
            reached = -1
            for job, s, _ in states:
                if s != "done":
                    break
                reached = job.index
            head = (f"generation {reached} reached" if reached >= 0 else "no generation finished") + \
                f" ({done}/{len(states)} done)"
        else:
            head = f"array: {done}/{len(states)} parts done"
        print(f"\n{chain.experiment}/{chain.variant.name}  {head}")
        for job, s, elapsed in states:
            entry = units.get(job.label, {})
            jid = entry.get("job_id")
            unit = job.label.rsplit("/", 1)[1]
            line = f"  {unit}  {s:<13} {('job ' + str(jid)) if jid else '':<14} {elapsed}"
            if entry.get("reason") and s == "NOT_RUN":
                line += f"  ({entry['reason']})"
            print(line.rstrip())
            if s in BAD or s == "FAILED":
                failed += 1
                log = entry.get("log")
                _print_log(log, entry.get("dependency"))
                for ln in (entry.get("error") or "").splitlines()[-5:] if local else error_lines(log):
                    print(f"      | {ln}")
    agg = book.get("aggregate")
    if agg:
        state, elapsed = slurm.get(str(agg.get("job_id")), ("UNKNOWN", ""))
        print(f"\naggregate  {state:<13} job {agg['job_id']:<10} {elapsed}".rstrip())
        if state in BAD:
            _print_log(agg.get("log"), agg.get("dependency"))
            for ln in error_lines(agg.get("log")):
                print(f"      | {ln}")
    if failed:
        print(f"\n{failed} unit(s) failed or were cancelled; fix the cause and run or submit again "
              f"(finished units are kept)")
    return 0
