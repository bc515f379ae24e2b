"""Local back-end: each unit is a submitit LocalExecutor job (real subprocesses, one per rank).

Chains run their generations in order; different chains and array parts run side by side
as long as their ranks fit in the machine's cores (and GPUs, where there are some). A failed
unit stops its chain (later generations are not run); other chains go on; the failures are
listed at the end with their log paths, and the command exits non-zero.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from collapse_hpc import engine
from collapse_hpc.launch import records
from collapse_hpc.launch.distributed import free_port, machine_cores, ranks_of

POLL_S = 0.2
TIMEOUT_MIN = 7 * 24 * 60  # local units are not time-limited (submitit's local default is 2 min)


def gpu_ids() -> list[int]:
    """GPUs of this machine without importing torch: CUDA_VISIBLE_DEVICES, else /dev/nvidiaN."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    return sorted(int(p.name[6:]) for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit())


@dataclass
class Lane:
    """The units of one chain still to run (in order), or one part of an array."""

    experiment: str
    ranks: int
    gpus: int
    jobs: list  # engine.Job, in order
    running: object = None  # (submitit job, engine.Job, started, gpu ids)
    failed: bool = False
    blocked: list = field(default_factory=list)  # dependents never run because of a failure


def _lanes(store, run, chains, gpus_here: int) -> tuple[list[Lane], int]:
    lanes, skipped = [], 0
    for chain in chains:
        todo = []
        for job in chain.jobs:
            if engine.job_done(store, run, job, deep=True):
                skipped += 1
            else:
                todo.append(job)
        if not todo:
            continue
        ranks = ranks_of(run, chain.experiment, chain.variant)
        gpus = 0 if chain.kind == "cpu" or not gpus_here else (1 if chain.kind == "gpu1" else min(ranks, gpus_here))
        if chain.shape == "array":  # every part is independent
            lanes += [Lane(chain.experiment, ranks, gpus, [j]) for j in todo]
        else:
            lanes.append(Lane(chain.experiment, ranks, gpus, todo))
    return lanes, skipped


def execute(store, run, chains, **_) -> dict:
    import submitit

    folder = store.logs / "submitit"
    n_cores, free_gpus = machine_cores(), gpu_ids()
    lanes, skipped = _lanes(store, run, chains, len(free_gpus))
    total = sum(len(lane.jobs) for lane in lanes)
    # ranks that could run at once in the whole plan, finished units included: a resumed run
    # gives each unit the threads of an uninterrupted one (CPU results depend on them)
    width = sum(ranks_of(run, c.experiment, c.variant) * (len(c.jobs) if c.shape == "array" else 1)
                for c in chains) or 1
    threads = str(max(1, n_cores // min(width, n_cores)))
    book = records.load(store)
    book["executor"] = "local"
    counts = {"done": 0, "skipped": skipped, "failed": []}
    if skipped:
        print(f"{skipped} units already finished (skipped)", file=sys.stderr)
    used = 0

    def name_helpers() -> None:
        pids = [int(lane.running[0].job_id) for lane in lanes if lane.running and lane.running[0].job_id.isdigit()]
        store.lock().record_helpers(pids)

    def start(lane: Lane) -> None:
        nonlocal used
        job = lane.jobs[0]
        gpus = [free_gpus.pop(0) for _ in range(lane.gpus)]
        ex = submitit.LocalExecutor(folder=folder)
        setup = [f"export MASTER_PORT={free_port()}", "export MASTER_ADDR=127.0.0.1",
                 f"export COLLAPSE_THREADS=${{COLLAPSE_THREADS:-{threads}}}",
                 f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{threads}}}"]
        ex.update_parameters(timeout_min=TIMEOUT_MIN, tasks_per_node=lane.ranks, gpus_per_node=len(gpus),
                             visible_gpus=tuple(gpus), setup=setup)
        from collapse_hpc.launch.job import UnitJob

        sj = ex.submit(UnitJob(), str(store.root), job.experiment, job.variant, job.index)
        lane.running = (sj, job, time.time(), gpus)
        used += lane.ranks
        records.record(book, job.label, job_id=sj.job_id, log=str(sj.paths.stderr), state="RUNNING",
                       started=time.time(), ranks=lane.ranks)
        records.save(store, book)
        name_helpers()

    def finish(lane: Lane, bar) -> None:
        nonlocal used
        sj, job, started, gpus = lane.running
        lane.running = None
        used -= lane.ranks
        free_gpus.extend(gpus)
        entry = book["units"][job.label]
        entry["elapsed"] = round(time.time() - started, 1)
        try:
            counts[sj.results()[0]] += 1  # rank 0 speaks for the unit
            entry["state"] = "COMPLETED"
            lane.jobs.pop(0)
        except Exception as e:  # the unit failed: its chain stops here
            entry["state"] = "FAILED"
            entry["error"] = error_tail(str(e))
            lane.failed = True
            lane.blocked = lane.jobs[1:]
            counts["failed"].append({"unit": job.label, "log": entry["log"], "error": entry["error"]})
            for dep in lane.blocked:
                records.record(book, dep.label, job_id=None, state="NOT_RUN", reason=f"{job.label} failed")
            lane.jobs = []
            tqdm.write(f"FAILED {job.label}: {entry['error'].splitlines()[-1] if entry['error'] else ''} "
                       f"(log: {entry['log']})", file=sys.stderr)
        records.save(store, book)
        name_helpers()
        bar.update(1 + len(lane.blocked) if lane.failed else 1)

    shown = ""
    try:
        with tqdm(total=total, desc="units", unit="unit", dynamic_ncols=True) as bar:
            while any(lane.jobs or lane.running for lane in lanes):
                for lane in lanes:
                    if lane.running and lane.running[0].done():
                        finish(lane, bar)
                for lane in lanes:
                    if lane.running or not lane.jobs:
                        continue
                    fits = used + lane.ranks <= n_cores and len(free_gpus) >= lane.gpus
                    if fits or (used == 0 and len(free_gpus) >= lane.gpus):  # too big for the machine: alone
                        start(lane)
                running = ", ".join(lane.running[1].label for lane in lanes if lane.running)[:80]
                if running != shown:
                    bar.set_postfix_str(running)
                    shown = running
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for lane in lanes:
            if lane.running:
                lane.running[0].cancel()
                book["units"][lane.running[1].label]["state"] = "CANCELLED"
        records.save(store, book)
        raise
    if counts["failed"]:
        blocked = sum(len(lane.blocked) for lane in lanes)
        print(f"{len(counts['failed'])} unit(s) failed"
              + (f"; {blocked} later generation(s) not run" if blocked else ""), file=sys.stderr)
        for f in counts["failed"]:
            print(f"  {f['unit']}: log {f['log']}", file=sys.stderr)
    return counts


def error_tail(text: str, n: int = 6) -> str:
    """The last lines of a failed job's traceback (submitit frames it between dashed lines)."""
    parts = text.split("-" * 22)
    body = parts[1] if len(parts) >= 3 else text
    lines = [ln for ln in body.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])
