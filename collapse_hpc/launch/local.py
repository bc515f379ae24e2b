"""Local back-end: each unit is a submitit LocalExecutor job (real subprocesses, one per rank).

Chains run their generations in order; different chains and array parts run side by side
as long as their ranks fit in the machine's cores (and GPUs, where there are some) and CPU units'
memory (the experiments' memory()) fits in what the machine has available as the run starts. A failed
unit stops its chain (later generations are not run); other chains go on; the failures are
listed at the end with their log paths, and the command exits non-zero. A unit failed for want of
room (a full disk, a quota, `ulimit -f`) stops further starts: every unit after it would fail the same way.
A unit's log is a file in the run: its warning lines (a training checkpoint set aside) are said on the
console too, as the unit finishes.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch import peers, records
from collapse_hpc.machine import available_memory, free_port, gpu_ids, machine_cores, term_as_interrupt
from collapse_hpc.logs import count
from collapse_hpc.store import space
from collapse_hpc.store.live import RunRemoved, at_work, removed

POLL_S = 0.2
CANCEL_WAIT_S = 10  # on Ctrl-C, how long the units' processes get to end before their state is read
KILLED = "its process was killed (it ended without a result or an error: a signal, the OOM killer)"
# a warning line of a unit's log (logs.setup's format: "HH:MM:SS collapse_hpc: warning: …")
UNIT_WARNING = re.compile(r"^\d\d:\d\d:\d\d collapse_hpc[\w.]*: warning: (.+)$")
TIMEOUT_MIN = 7 * 24 * 60  # local units are not time-limited (submitit's local default is 2 min)


@dataclass
class Lane:
    """The units of one chain still to run (in order), or one part of an array."""

    experiment: str
    ranks: int
    gpus: int
    jobs: list  # engine.Job, in order
    memory: int = 0  # bytes a unit holds in this machine's memory (experiments' memory(); 0: unknown or on GPUs)
    advice: str = ""  # how a unit of it holds less memory (experiments' memory_advice), for a unit killed (OOM)
    running: object = None  # (submitit job, engine.Job, started, gpu ids)
    failed: bool = False
    blocked: list = field(default_factory=list)  # dependents never run because of a failure


def _lanes(store, run, chains, gpus_here: int) -> tuple[list[Lane], int]:
    lanes, skipped = [], 0
    for chain in chains:
        todo = engine.pending(store, run, chain)
        skipped += len(chain.jobs) - len(todo)
        if not todo:
            continue
        ranks = chain.ranks
        gpus = 0 if chain.kind == "cpu" or not gpus_here else (1 if chain.kind == "gpu1" else min(ranks, gpus_here))
        # a GPU unit's memory() is its GPU's; a CPU unit's is this machine's, shared by the units side by side
        exp = experiments.get(chain.experiment)
        need = 0 if gpus else (exp.memory(run, chain.variant) or 0) * ranks
        advice = exp.memory_advice(run, chain.variant)
        if chain.shape == "array":  # every part is independent
            lanes += [Lane(chain.experiment, ranks, gpus, [j], need, advice) for j in todo]
        else:
            lanes.append(Lane(chain.experiment, ranks, gpus, todo, need, advice))
    return lanes, skipped


def execute(store, run, chains, **_) -> dict:
    n_cores, free_gpus = machine_cores(), gpu_ids()
    lanes, skipped = _lanes(store, run, chains, len(free_gpus))
    _refuse_unwritable(store, lanes)
    pool = _Pool(store, run, lanes, n_cores, free_gpus, str(unit_threads(store, run, chains, n_cores)))
    if pool.book.get("corrupt"):  # written over, it kept the mark: status and submit called the new records corrupt
        raise UserError(f"{pool.book['corrupt']} is corrupt: the run's job records are unknown; restore it, or "
                        f"remove it (a Slurm run's jobs still queued: cancel them first, squeue --me), then run again; "
                        f"no unit was started")
    records.launching(pool.book, chains)
    if settle(store, run, pool.book):
        pool.save()
    pool.counts["skipped"] = skipped
    if skipped:
        print(f"{count(skipped, 'unit')} already finished (skipped)", file=sys.stderr)
    with term_as_interrupt(), at_work(store.root):  # a `kill` of the launcher cancels its units, as Ctrl-C does
        try:
            pool.run()
        except KeyboardInterrupt:
            pool.cancel()
            raise
        except RunRemoved:  # rm -rf of the run: its units stop on their own, and nothing is recorded
            pool.wait_running()
            raise
    if pool.counts["failed"]:
        blocked = sum(len(lane.blocked) for lane in lanes)
        print(f"{count(len(pool.counts['failed']), 'unit')} failed"
              + (f"; {count(blocked, 'later generation')} not run" if blocked else ""), file=sys.stderr)
        for f in pool.counts["failed"]:
            print(f"  {f['unit']}: log {f['log']}", file=sys.stderr)
    if pool.short is not None:
        pool.not_started()
    if pool.halted is not None:
        _halted(store, pool.book, lanes, pool.halted)
    return pool.counts


def _refuse_unwritable(store, lanes: list[Lane]) -> None:
    """No unit starts where one could not write: its folder (engine.refuse_unwritable), or logs/submitit, where
    each unit's job file goes (a refusal there said "RUN/logs/submitit/<hex>.pkl: Permission denied")."""
    engine.refuse_unwritable(store, [job for lane in lanes for job in lane.jobs])
    jobs = store.logs / "submitit"
    if lanes and (said := space.not_writable(jobs)):
        raise UserError(f"{said}; each unit's job file and log go there: give yourself write permission (chmod u+w "
                        f"{shlex.quote(str(jobs))}), or run a copy you may write to (cp -r, --run COPY); no unit was "
                        f"started")


def settle(store, run, book: dict) -> bool:
    """Units jobs.json still calls RUNNING, though no launcher runs them (this one holds the run's lock,
    and the lock refused it while any of their processes lived): a launcher that could not record their
    end (a full disk), or was killed outright. Recorded as their manifests say: COMPLETED where
    finished, else INTERRUPTED (as status reads them). Whether any was."""
    settled = False
    for chain in engine.load_plan(store, run):
        for job in chain.jobs:
            entry = book["units"].get(job.label)
            if entry is not None and entry.get("state") == "RUNNING":
                entry["state"] = "COMPLETED" if engine.job_done(store, run, job) else "INTERRUPTED"
                settled = True
    return settled


def _halted(store, book: dict, lanes: list[Lane], e: OSError) -> None:
    """The run's folder took no more writes of the launcher's own: what was not started, then why,
    in the one error line."""
    left = sum(len(lane.jobs) for lane in lanes)
    if left:
        print(f"{count(left, 'unit')} not started", file=sys.stderr)
    with contextlib.suppress(OSError):  # the final states, where there is room again
        records.save(store, book)
    if space.refused(e):
        raise UserError(space.explain(e) + space.KEPT) from e
    raise e


def unit_threads(store, run, chains, n_cores: int) -> int:
    """Threads per rank: the machine's cores over the ranks that could run at once in the run's whole
    plan (plan.json; `chains` where it does not read), finished units and experiments left out with --only
    included, so that a resumed run, one of some experiments only (--only) and a unit redone by hand give
    each unit the threads of an uninterrupted run (CPU results depend on them)."""
    with contextlib.suppress(UserError):
        chains = engine.load_plan(store, run)
    width = sum(c.ranks * (len(c.jobs) if c.shape == "array" else 1) for c in chains) or 1
    return max(1, n_cores // min(width, n_cores))


class _Pool:
    """Runs lanes side by side as their ranks fit in the cores (and GPUs), recording each job."""

    def __init__(self, store, run, lanes: list[Lane], n_cores: int, free_gpus: list[int], threads: str):
        self.store, self.run_config, self.lanes = store, run, lanes
        self.n_cores, self.free_gpus, self.threads = n_cores, free_gpus, threads
        self.folder = store.logs / "submitit"
        self.book = records.load(store)
        # the folder the units run in: a copy (cp -r) of it reads this book as the original's (status)
        records.take_over(self.book, "local")  # a Slurm run's units it does not run again stay Slurm's
        self.book.update(folder=records.identity(store))
        self.book.pop("copied_from", None)  # a copied run's book is its own from its first run
        self.book.pop(records.STOPPING, None)  # an earlier launcher's, killed before it ended
        self.counts = {"done": 0, "skipped": 0, "failed": []}
        self.halted: OSError | None = None  # a write of the launcher's own the run's folder refused
        self.short: str | None = None  # a unit failed for want of room: why no further unit starts
        self.used = 0  # ranks running now
        # memory the units may share: what is available as the run starts (a paper-scale gaussian part
        # holds 4 GiB; one per core of a laptop would not fit); unknown: not limited
        self.memory, self.memory_used = available_memory(), 0
        self.warnings = Warnings()

    def run(self) -> None:
        shown = ""
        with tqdm(total=sum(len(lane.jobs) for lane in self.lanes), desc="units", unit="unit",
                  dynamic_ncols=True) as bar:
            while any(lane.running or (lane.jobs and not self.stopped) for lane in self.lanes):
                if removed(self.store.root):
                    raise RunRemoved(self.store.root)
                for lane in self.lanes:
                    if lane.running and lane.running[0].done():
                        self.finish(lane, bar)
                    elif lane.running:
                        self.say_warnings(lane.running[1].label, self.book["units"][lane.running[1].label]["log"])
                for lane in self.lanes:
                    if lane.running or not lane.jobs or self.stopped:
                        continue
                    fits = self.used == 0 or (  # too big: alone
                        self.used + lane.ranks <= self.n_cores
                        and (self.memory is None or self.memory_used + lane.memory <= self.memory))
                    if fits and len(self.free_gpus) >= lane.gpus:
                        self.start(lane)
                running = ", ".join(lane.running[1].label for lane in self.lanes if lane.running)[:80]
                if running != shown:
                    bar.set_postfix_str(running)
                    shown = running
                time.sleep(POLL_S)

    @property
    def stopped(self) -> bool:
        """No further unit starts: the launcher's own write or a unit's was refused for want of room."""
        return self.halted is not None or self.short is not None

    def out_of_room(self, label: str, number: int | None) -> None:
        """A unit failed for want of room (a full disk, a quota, `ulimit -f`; number: its errno, None where
        its result could not be written): every unit after it would fail the same way, so none starts; the
        running ones finish or fail on their own."""
        if self.stopped:
            return
        # no brackets: status shows it as the reason of each unit not started, in brackets of its own
        self.short = f"{label} failed for want of room: {os.strerror(number) if number else 'no result written'}"
        self.book[records.STOPPING] = self.short  # saved with the failed unit: status says so of those left
        todo = {errno.EFBIG: "raise the file-size limit (`ulimit -f unlimited`)",
                errno.EROFS: "write where it is writable"}.get(number or 0, "free space")
        tqdm.write(f"{self.short}; no further unit starts; waiting for the running ones; {todo}, "
                   f"{space.AGAIN}{space.KEPT}", file=sys.stderr)

    def not_started(self) -> None:
        """The units left by out_of_room: recorded NOT_RUN with its reason, and counted."""
        left = [job for lane in self.lanes for job in lane.jobs]
        self.book.pop(records.STOPPING, None)
        for job in left:
            records.record(self.book, job.label, job_id=None, state="NOT_RUN", reason=self.short)
        for lane in self.lanes:
            lane.jobs = []
        if left:
            print(f"{count(len(left), 'unit')} not started", file=sys.stderr)
            self.save()

    def name_helpers(self) -> None:
        pids = [int(lane.running[0].job_id) for lane in self.lanes
                if lane.running and lane.running[0].job_id.isdigit()]
        with self.writing():
            self.store.lock().record_helpers(pids)

    def save(self) -> None:
        with self.writing():
            records.save(self.store, self.book)

    @contextlib.contextmanager
    def writing(self, where: Path | None = None):
        """A write of the launcher's own (jobs.json, the lock, a job's pickle) that the file system
        refuses (a full disk, a quota, a read-only remount) halts the run: no unit starts after it,
        the running ones finish or fail on their own (their work is kept), then its error ends the
        command in one line. It does not end it at once: units left without their launcher stop."""
        try:
            yield
        except OSError as e:
            e = space.named(e, where)  # submitit's pickle names no file
            if self.halted is None:
                tqdm.write(f"{e.filename}: {e.strerror or e}: no further unit starts; waiting for the running "
                           f"ones", file=sys.stderr)
                self.halted = e

    def start(self, lane: Lane) -> None:
        import submitit

        from collapse_hpc.launch import controller
        from collapse_hpc.launch.job import LAUNCHER, UnitJob

        job = lane.jobs[0]
        gpus = self.free_gpus[:lane.gpus]
        ex = submitit.LocalExecutor(folder=self.folder)
        # the controller's own output to a file: on Ctrl-C (the terminal signals every process of the
        # group) it would print its KeyboardInterrupt traceback here; $$ is its job id
        setup = [f"exec >>{shlex.quote(str(self.folder))}/$$_controller.log 2>&1",
                 f"export MASTER_PORT={free_port()}", "export MASTER_ADDR=127.0.0.1",
                 f"export {LAUNCHER}={os.getpid()}",
                 f"export COLLAPSE_THREADS=${{COLLAPSE_THREADS:-{self.threads}}}",
                 f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{self.threads}}}",
                 controller.command(self.folder)]  # in place of submitit's: it records the signal that ends a rank
        ex.update_parameters(timeout_min=TIMEOUT_MIN, tasks_per_node=lane.ranks, gpus_per_node=len(gpus),
                             visible_gpus=tuple(gpus), setup=setup)
        with self.writing(self.folder):  # submitit writes the job's pickle there, naming no file
            sj = ex.submit(UnitJob(), str(self.store.root), job.experiment, job.variant, job.index)
        if self.halted is not None:
            return
        del self.free_gpus[:lane.gpus]
        lane.running = (sj, job, time.time(), gpus)
        self.used += lane.ranks
        self.memory_used += lane.memory
        records.record(self.book, job.label, job_id=sj.job_id, log=str(sj.paths.stderr), state="RUNNING",
                       started=time.time(), ranks=lane.ranks)
        self.save()
        self.name_helpers()

    def say_warnings(self, label: str, log: str) -> None:
        """A unit's new warning lines, on the console: its log is a file in the run."""
        for said in self.warnings.new(log):
            tqdm.write(f"warning: {label}: {said}", file=sys.stderr)

    def finish(self, lane: Lane, bar) -> None:
        sj, job, started, gpus = lane.running
        lane.running = None
        self.used -= lane.ranks
        self.memory_used -= lane.memory
        self.free_gpus.extend(gpus)
        entry = self.book["units"][job.label]
        entry["elapsed"] = round(time.time() - started, 1)
        self.say_warnings(job.label, entry["log"])  # the rest of them
        try:
            self.counts[_result(sj, lambda: engine.job_done(self.store, self.run_config, job))] += 1
            entry["state"] = "COMPLETED"
            lane.jobs.pop(0)
        except Exception as e:  # the unit failed: its chain stops here
            self.fail(lane, job, entry, e, sj)
        shutil.rmtree(peers.folder(self.store.root, sj.job_id), ignore_errors=True)
        with contextlib.suppress(OSError):  # the last one leaves no empty folder
            peers.folder(self.store.root, sj.job_id).parent.rmdir()
        self.save()
        self.name_helpers()
        bar.update(1 + len(lane.blocked) if lane.failed else 1)

    def fail(self, lane: Lane, job, entry: dict, e: Exception, sj) -> None:
        entry["state"] = "FAILED"
        from collapse_hpc.launch import controller

        entry["error"] = error_tail(str(e))
        signalled = controller.ended(self.folder, sj.job_id)
        lost = None
        if "has not produced any output" in str(e):  # submitit: no result, no exception: the process died
            lost = unwritten(sj)
            entry["error"] += f"\n{lost or _killed(signalled, lane.advice)}"
        if lane.ranks > 1 and (found := peers.culprit(peers.folder(self.store.root, sj.job_id),
                                                      {r: controller.said(sig, lane.advice)
                                                       for r, (_, sig) in signalled.items()})):
            # the rank that ended the unit, not rank 0, which a lost peer stopped, and that rank's log
            from submitit.core.utils import JobPaths

            rank, which = found
            entry["error"] += f"\n{which}"
            entry["log"] = str(JobPaths(self.folder, sj.job_id, rank).stderr)
        lane.failed = True
        lane.blocked = lane.jobs[1:]
        self.counts["failed"].append({"unit": job.label, "log": entry["log"], "error": entry["error"]})
        for dep in lane.blocked:
            records.record(self.book, dep.label, job_id=None, state="NOT_RUN", reason=f"{job.label} failed")
        lane.jobs = []
        tqdm.write(f"FAILED {job.label}: {last_error(entry['error'])} (log: {entry['log']})", file=sys.stderr)
        if (number := refused_in(e)) is not None or lost:
            self.out_of_room(job.label, number)

    def wait_running(self) -> None:
        """The running units' ends, up to CANCEL_WAIT_S: each stops by itself once its run folder is removed."""
        deadline = time.time() + CANCEL_WAIT_S
        while time.time() < deadline and not all(lane.running[0].done() for lane in self.lanes if lane.running):
            time.sleep(POLL_S)

    def cancel(self) -> None:
        """Ctrl-C: the running jobs are cancelled; each is recorded by what its manifest says once
        its process has ended. A unit may have finished after the last poll (its manifest is
        complete, its process not yet gone): that one is COMPLETED, not CANCELLED."""
        running = [lane.running for lane in self.lanes if lane.running]
        for sj, *_ in running:
            sj.cancel()
        # cancel() signals the shell that submitit runs its controller under (setup lines), which dies
        # and leaves the unit running; a terminal's Ctrl-C reaches every process, a `kill` of the
        # launcher does not. So the unit processes, as they registered in the run, are told too.
        lock, told = self.store.lock(), set()
        deadline = time.time() + CANCEL_WAIT_S
        try:
            while time.time() < deadline:
                units = set(lock.workers())
                if not units and all(sj.done() for sj, *_ in running):
                    break
                for pid in units - told:
                    _interrupt(pid)
                told |= units
                time.sleep(POLL_S / 4)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, record what the manifests say now
            pass
        _kill_deaf(lock)
        for sj, job, started, _ in running:
            entry = self.book["units"][job.label]
            entry["elapsed"] = round(time.time() - started, 1)
            entry["state"] = "COMPLETED" if engine.job_done(self.store, self.run_config, job) else "CANCELLED"
        self.save()


def runs_here(store) -> bool:
    """Whether a launcher of this host, or unit processes it left, run the run (what cancel_run stops)."""
    from collapse_hpc.store.lock import launcher_pid

    lock = store.lock()
    return launcher_pid(lock) is not None or bool(lock.workers())


def cancel_run(store) -> int:
    """`collapse-hpc cancel` of a local run, from another shell: its launcher is told as `kill`
    tells it (SIGTERM, taken as Ctrl-C: it cancels its units); unit processes a killed launcher
    left behind are told as it would have told them. Finished units stay; a next run goes on."""
    from collapse_hpc.store.lock import launcher_pid

    lock = store.lock()
    pid, units = launcher_pid(lock), lock.workers()
    if pid is None and not units:
        print(f"{store.root}: nothing to cancel: no launcher runs it on this host")
        return 0
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    for unit in units if pid is None else []:
        _interrupt(unit)
    deadline = time.time() + CANCEL_WAIT_S + 20
    while (launcher_pid(lock) is not None or lock.workers()) and time.time() < deadline:
        time.sleep(POLL_S)
    left = lock.workers()
    if launcher_pid(lock) is not None or left:
        raise UserError(f"{store.root}: told the run to stop (launcher {pid}, units {units}), but "
                        f"{', '.join(map(str, left)) or pid} still running after {CANCEL_WAIT_S + 20} s; kill them")
    print(f"{store.root}: cancelled the local run" + (f" (launcher pid {pid})" if pid else "")
          + f"; finished units stay (collapse-hpc verify {shlex.quote(str(store.root))}), and a next run goes on "
            f"from them")
    return 0


def _killed(signalled: dict, advice: str) -> str:
    """A unit's process that ended without a result or an error: by which signal, where its controller saw."""
    from collapse_hpc.launch import controller

    if 0 not in signalled:
        return KILLED
    pid, signum = signalled[0]
    return f"its process (pid {pid}) {controller.said(signum, advice)}"


def _kill_deaf(lock) -> None:
    """The unit processes a Ctrl-C has not ended by now: one swallowed (numba's first compile drops the
    KeyboardInterrupt raised inside llvmlite's C callback), they ran on without a launcher, holding the run
    (the same command, said to go on, was refused). Killed: their finished steps stay, their writes atomic."""
    deaf = lock.workers()
    for pid in deaf:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if deaf:
        tqdm.write(f"warning: {count(len(deaf), 'unit process')} ({' '.join(map(str, deaf))}) still running "
                   f"{CANCEL_WAIT_S} s after Ctrl-C: killed (finished steps are kept)", file=sys.stderr)
    deadline = time.time() + 5  # ended, so that the same command goes on at once
    while lock.workers() and time.time() < deadline:
        time.sleep(0.05)


def _interrupt(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:  # it ended meanwhile
        pass


def _result(sj, done) -> str:
    """What rank 0 of a finished job returned ('done', 'skipped'). submitit touches the job's folder
    (chmod) before it reads the result, which a file system remounted read-only refuses: a unit whose
    manifest was complete (done()) is done all the same; any other failed there."""
    try:
        return sj.results()[0]
    except OSError as e:
        if space.refused(e) and done():
            return "done"
        if space.refused(e):
            raise UserError(space.explain(e) + space.KEPT) from e
        raise


def refused_in(e: BaseException) -> int | None:
    """The errno of a write the file system refused (space.refused) that failed a unit: in its
    traceback (submitit's error), the launcher's own read of its result (_result), or the one line a rank
    ended on (job.refused_on_this_rank) where its result went unwritten (submitit quotes its log's tail)."""
    return space.refused(e) or (space.refused(e.__cause__) if e.__cause__ is not None else None) \
        or space.refused_in_words(str(e))


def unwritten(sj) -> str | None:
    """Why a unit ended without a result where it could not write one: submitit leaves its result's
    temporary (<result>.save_tmp) when the write fails, as on a full disk, a quota or a read-only
    remount of the logs' file system; the unit's own error went the same way. Not a kill."""
    tmp = Path(f"{sj.paths.result_pickle}.save_tmp")
    if not tmp.exists():
        return None
    with contextlib.suppress(OSError):
        tmp.unlink()
    return (f"it could not write its result in {tmp.parent}: {space.state(tmp.parent)}; free space there, "
            f"{space.AGAIN}{space.KEPT}")


class Warnings:
    """A running unit's warning lines (rank 0's log), what follows each 'warning: ', said on the console as they
    reach its log: what the unit set aside or did again (a training checkpoint it could not read, a sampling
    shard), which a local run's user would otherwise never see, and would want to see before the unit's hours
    end. Each line once; a line still being written waits for its end."""

    def __init__(self) -> None:
        self.read: dict[str, int] = {}  # log -> bytes read, up to the end of its last whole line

    def new(self, log: str) -> list[str]:
        start = self.read.get(log, 0)
        with contextlib.suppress(OSError), open(log, "rb") as f:
            f.seek(start)
            chunk = f.read()
            whole = chunk[:chunk.rfind(b"\n") + 1]
            self.read[log] = start + len(whole)
            text = whole.decode(errors="replace")
            return [m.group(1) for line in text.splitlines() if (m := UNIT_WARNING.match(line))]
        return []


def last_error(tail: str) -> str:
    """A failed unit's error in one line: bad input as its own line says it (the package's
    UserError and ConfigError unnamed, and a read the file system refused: NotRead, of any module), anything
    else with its exception's name."""
    last = tail.splitlines()[-1] if tail else ""
    return re.sub(r"^collapse_hpc\.(errors\.(User|Config)Error|[\w.]+\.NotRead): ", "", last)


def error_tail(text: str, n: int = 6) -> str:
    """The last lines of a failed job's traceback (submitit frames it between dashed lines)."""
    parts = text.split("-" * 22)
    body = parts[1] if len(parts) >= 3 else text
    lines = [ln for ln in body.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])
