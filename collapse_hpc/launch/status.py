"""collapse-hpc status RUN, the run's state: per chain, the generation reached and each unit's job
(launch.listing prints it).

A unit's state comes from the run store first (a verified manifest: done), then from its
recorded job (runs/<run>/jobs.json): squeue and sacct on Slurm, the launcher's own record
for local runs. A failed job shows its log path and the last lines of its error.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch import controller, peers, records
from collapse_hpc.launch import profile as profiles
from collapse_hpc.store import RunStore, read_manifest, verify_unit
from collapse_hpc.store.lock import holds as lock_holder
from collapse_hpc.store.lock import pid_alive
from collapse_hpc.store.manifest import BINDING, read_once

# ended without finishing its unit; PREEMPTED: cancelled for a higher-priority job (a partition whose
# PreemptMode is CANCEL; one that requeues reads PENDING again)
BAD = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "INTERRUPTED",
       "PREEMPTED"}


# why a queued job waits, where that is news: an afterok parent still running is the chain's normal wait
ROUTINE = {"None", "Dependency", ""}
# Slurm's bare reasons that say what Slurm does, not what is wrong, in words for the listing (--json keeps
# Slurm's): a job requeued (preempted, its node failed, its time limit's USR2) waits for a begin time Slurm
# sets at the requeue (these jobs never ask for one: no --begin), the requeue's time plus the cluster's requeue
# delay and 1 s: SchedulerParameters' requeue_delay (Slurm 26.05 on), else AuthInfo's cred_expire (120 s by
# default); a job held (scontrol hold, by its user or an admin) waits until released, and what depends on it with
# it (its chain's later generations, the report's job: listing.held): no time or resubmit ends a hold
HELD = {"JobHeldUser": "held by scontrol hold", "JobHeldAdmin": "held by an administrator's scontrol hold",
        "job requeued in held state": "requeued and held by scontrol requeuehold"}
RELEASE = "until `scontrol release` of its job"
REQUEUED = "requeued: Slurm may start it again {}"  # {}: from when: squeue's begin time, where it gives one
REQUEUE_DELAY = ("once the cluster's requeue delay has passed, its SchedulerParameters' requeue_delay where set, "
                 "else its AuthInfo's cred_expire, 120 s by default")
# words for a reason alone: a single held job's line adds what waits on it and its release (listing.held)
EXPLAINED = {"BeginTime": REQUEUED.format(REQUEUE_DELAY), **HELD}
# a summary's words for a count of jobs, one or several: none that fit one job alone ("it")
COUNTED = {**EXPLAINED, "BeginTime": "requeued, to start again after the cluster's requeue delay"}


# sacct's fields: the job's name last, whole, where it holds a '|'
SACCT = "JobID,State,Elapsed,DerivedExitCode,ExitCode,Submit,End,User,JobName"
# the name sacct gives a job slurmdbd recorded before the job's own start record reached it (a job that
# ended within seconds, a busy slurmdbd): it says nothing of whose the job is, so the id stands
DBD_PLACEHOLDER = "allocation"


def slurm_states(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """job id -> (state, elapsed, why it waits) from sacct, overridden by squeue for jobs still queued."""
    return slurm_view(job_ids)[0]


def slurm_view(job_ids: list[str], book: dict | None = None) -> tuple[dict[str, tuple[str, str, str]], dict[str, int]]:
    """slurm_states, and job id -> the signal that ended the job where sacct records one. With the run's `book`,
    an id whose job Slurm names otherwise than the unit's (slurm.run_jobs: after a reset or wrapped job-id
    counter, a stranger's) is left out, as a job gone from both is; the states' `others` names them."""
    from collapse_hpc.launch.slurm import NoAnswer, RunQueue, book_names, listed, run_jobs

    bases = sorted({str(j).split("_")[0] for j in job_ids if j})
    if not bases:
        return {}, {}
    found, accounting = _sacct(bases)
    names = book_names(book) if book is not None else None
    own = {jid: _own(jid, records_, names) for jid, records_ in found.items()}
    ended = {jid: (runs[-1], mine) for jid, (runs, mine) in own.items()}
    out = {jid: (r.state, r.elapsed, "") for jid, (r, _) in ended.items()}
    signals = {jid: r.signal for jid, (r, _) in ended.items() if r.signal}
    named = {jid: r.job for jid, (r, _) in ended.items() if r.job is not None}
    queue_known, controller, queued = False, None, {}
    if shutil.which("squeue"):
        try:
            queued = listed(["-j", ",".join(bases)])
            strangers = run_jobs(book, queued).others if book is not None else {}
            out.update({j: (job.state, job.elapsed, job.reason) for j, job in queued.items() if j not in strangers})
            named.update(queued)
            queue_known = True
        except NoAnswer as e:  # sacct's states stand, where slurmdbd has them
            controller = queue_unread(str(e))
        except UserError as e:  # e.g. every job has left the queue ("Invalid job id"): sacct's states stand
            queue_known = "Invalid job id" in str(e)
            controller = None if queue_known else queue_unread(str(e))  # slurmctld down, restarting: said
    others = run_jobs(book, named).others if book is not None else {}
    for jid in others:
        if not ended.get(jid, (None, False))[1]:  # sacct holds no record of the run's own job under that id
            out.pop(jid, None)
            signals.pop(jid, None)
    if queue_known:
        out.update(_unrun_tasks([str(j) for j in job_ids if j and "_" in str(j)], out))
    ends = {j: r.end for j, (r, _) in ended.items() if r.end is not None and j in out and j not in queued}
    begins = {j: job.start for j, job in queued.items() if j in out and job.reason == "BeginTime"
              and local_time(job.start) is not None}
    runs = {j: ran for j, (records_, _) in own.items() if j in out
            and (ran := _over_runs(records_, out[j][1], j in queued))}
    states = RunQueue({j: (state, _ran_for(state, elapsed), why) for j, (state, elapsed, why) in out.items()},
                      others=others, accounting=accounting, controller=controller, ends=ends, begins=begins,
                      runs=runs)
    return states, signals


def _over_runs(runs: list[Ended], elapsed: str, queued: bool) -> tuple[int, int] | None:
    """(seconds, runs) a requeued job ran in all (sacct --duplicates keeps a record of each run): its ended
    runs' Elapsed, and the one under way's (`elapsed`, squeue's where the job is `queued`, whose record, sacct's
    End Unknown, may lag or be missing); None where it ran once (and that run is the one shown) or never."""
    now = slurm_seconds(elapsed) or 0
    times = [slurm_seconds(r.elapsed) or 0 for r in runs if r.end is not None]
    ran = [t for t in times + ([now] if queued or runs[-1].end is None else []) if t]  # 0: queued, never run
    return (sum(ran), len(ran)) if len(ran) > 1 or (ran and not now) else None


def queue_unread(why: str) -> str:
    """What to say where squeue could not read the queue (`why`): the jobs sacct holds no record of yet (queued
    while slurmdbd lagged) read UNKNOWN, the others as Slurm's accounting last heard."""
    return f"{why}: the states shown are Slurm's accounting's (sacct), which may lag behind the queue"


class Ended(NamedTuple):
    """One sacct record of a job: its state, elapsed time, the signal that ended it, when it was queued, who
    queued it under what name (slurm.Queued; None where sacct does not say), and when it ended (seconds since
    the epoch; None while it runs)."""
    state: str
    elapsed: str
    signal: int | None
    submit: str
    job: object = None
    end: float | None = None


def _sacct(bases: list[str]) -> tuple[dict[str, list[Ended]], str | None]:
    """sacct's job id -> its records (--duplicates: a requeued job's earlier ones, and after a reset or
    wrapped job-id counter every job that had the id) of the jobs `bases`, none where sacct is missing; and
    what to say where sacct failed (slurmdbd down or unreachable), which would read every ended job UNKNOWN."""
    from collapse_hpc.launch.slurm import last_error

    if not shutil.which("sacct"):
        return {}, None
    try:
        # its times in one form whatever the user's SLURM_TIME_FORMAT: Submit sorts as text, End is read
        res = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-o", SACCT, "-j", ",".join(bases)],
                             capture_output=True, text=True, timeout=SACCT_WAIT,
                             env={**os.environ, "SLURM_TIME_FORMAT": "standard"})
    except subprocess.TimeoutExpired:
        return {}, unanswered(f"no answer within {SACCT_WAIT} s")
    return _sacct_records(res.stdout), unanswered(last_error(res)) if res.returncode else None


SACCT_WAIT = 60  # seconds: sacct waits on slurmdbd, which a busy cluster's may take long to answer


def unanswered(why: str) -> str:
    """What a failed sacct (`why`: its last error line) means for the states status and the report show."""
    return (f"sacct failed ({why}): the states of jobs that have left the queue are unknown until Slurm's "
            "accounting (slurmdbd) answers; those of queued jobs are squeue's")


def _sacct_records(text: str) -> dict[str, list[Ended]]:
    """sacct -P's lines (SACCT's fields) by job id."""
    from collapse_hpc.launch.slurm import Queued

    found: dict[str, list[Ended]] = {}
    for line in text.splitlines():
        parts = line.split("|", 8)  # the name last, whole, where it holds a '|'
        if len(parts) < 3:
            continue
        state = parts[1].split()[0]  # "CANCELLED by 0" -> CANCELLED
        job = Queued(state, parts[2], "", parts[7], parts[8]) if len(parts) == 9 else None
        submit = parts[5] if len(parts) > 5 else ""
        end = local_time(parts[6]) if len(parts) > 6 else None
        found.setdefault(parts[0], []).append(Ended(state, parts[2], signal_of(parts[3:5]), submit, job, end))
    return found


def local_time(stamp: str) -> float | None:
    """Seconds since the epoch of a time sacct prints (SLURM_TIME_FORMAT=standard: 2026-12-07T16:20:31, this
    host's local time, no zone); None for its Unknown or None (a job not ended) or anything else."""
    try:
        return datetime.datetime.fromisoformat(stamp.strip()).timestamp()
    except ValueError:
        return None


def _own(jid: str, found: list[Ended], names: dict | None) -> tuple[list[Ended], bool]:
    """Of an id's sacct records, oldest first, those of one job (a requeued job's runs): the ones the run's book
    (slurm.book_names) names it for (slurm.runs_unit; slurmdbd's placeholder name counts), else the newest's
    (its user and name); and whether they are the run's: after the id was reused, the run's own job keeps its
    state, and another job's runs are not its."""
    from collapse_hpc.launch.slurm import entry_of, runs_unit

    newest = [_unnamed(r) for r in sorted(found, key=lambda r: r.submit)]  # stable: sacct's order within a second
    entry = entry_of(names, jid) if names is not None else None
    own = [r for r in newest if entry is not None and (r.job is None or runs_unit(*entry, r.job.name))]
    if own:
        return own, True
    last = newest[-1].job
    return [r for r in newest if None in (r.job, last) or (r.job.user, r.job.name) == (last.user, last.name)], \
        entry is None


def _unnamed(record: Ended) -> Ended:
    """A record whose name is slurmdbd's placeholder, without it: it says nothing of whose the job is."""
    return record._replace(job=None) if record.job is not None and record.job.name == DBD_PLACEHOLDER else record


def _ran_for(state: str, elapsed: str) -> str:
    """A job's elapsed time as status shows it: none for a queued job that never started (squeue says 0:00),
    which read 0:00:00 as if it had run for no time."""
    seconds = slurm_seconds(elapsed)
    return "" if state == "PENDING" and not seconds else _clock(seconds)


def signal_of(codes: list[str]) -> int | None:
    """The signal in sacct's exit codes (CODE:SIGNAL): DerivedExitCode, its steps' worst end (a rank the
    kernel killed: 0:9), first, then ExitCode, the batch script's."""
    for code in codes:
        found = re.fullmatch(r"\d+:(\d+)", code.strip())
        if found and int(found[1]):
            return int(found[1])
    return None


def _unrun_tasks(tasks: list[str], known: dict) -> dict[str, tuple[str, str, str]]:
    """Array tasks that left the queue without running, which sacct lists not by their own id: tasks
    cancelled while queued are one record of the array (123_[0-2%3] or 123, CANCELLED), or none where
    their siblings ran. They read UNKNOWN; they are that record's state, or CANCELLED."""
    found = {}
    for task in (t for t in tasks if t not in known):
        base, index = task.split("_", 1)
        ranges = {j: known[j] for j in known if j == base or j.startswith(f"{base}_[")}
        covering = [state for j, state in ranges.items() if j == base or _in_range(j, index)]
        if covering:
            found[task] = (covering[0][0], "", "")
        elif not ranges and any(j.startswith(f"{base}_") for j in known):  # its siblings ran
            found[task] = ("CANCELLED", "", "")
    return found


def _in_range(record: str, index: str) -> bool:
    """Whether sacct's record of array tasks (123_[0-2,5%3]) takes in task `index`."""
    spec = record.partition("[")[2].rstrip("]").split("%")[0]
    for part in spec.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and index.isdigit() and int(low) <= int(index) <= int(high or low):
            return True
    return False


def slurm_seconds(elapsed: str) -> int | None:
    """Seconds of Slurm's elapsed time ([D-]HH:MM:SS, MM:SS, M:SS as squeue and sacct print it), so
    that a status shows every time in one form; None where it is none of these. The clock is read as
    slurm._minutes reads a time limit's; a lone number, there minutes, is no elapsed time."""
    from collapse_hpc.launch.slurm import _minutes

    clock = elapsed.strip()
    if not 2 <= len(clock.rpartition("-")[2].split(":")) <= 3:
        return None
    minutes = _minutes(clock)
    return None if minutes is None else round(minutes * 60)


def _clock(seconds) -> str:
    return str(datetime.timedelta(seconds=round(seconds))) if seconds is not None else ""


def took(seconds) -> str:
    """A time the run measured itself (a manifest's compute seconds, a local process's elapsed): under a minute
    to a tenth of a second ("1.4 s", which whole seconds read 0:00:01, and rounded down 0:00:00), else H:MM:SS
    to the nearest second as Slurm's times read."""
    return f"{seconds:.1f} s" if seconds is not None and seconds < 59.95 else _clock(seconds)


def log_lines(log: str | None, why: str | None) -> list[str]:
    if log and Path(log).is_file():
        return [f"      log: {log}"]
    return ["      never started, no log" + (f" ({why})" if why else "")]  # cancelled while queued: no log


def unrun(said: dict) -> dict:
    """No elapsed time for a job that never started (status's `never_started`): sacct's 00:00:00 read as if it had
    run for no time, as a queued job's 0:00 did (_ran_for)."""
    return {"elapsed": ""} if said.get("never_started") and said.get("elapsed") == _clock(0) else {}


def never_started(dependency: str | None, slurm: dict) -> str:
    """Why a job that left the queue unrun did: a job it waited on ended badly (kill-on-invalid-dep
    cancels it), else it was cancelled by hand (scancel, collapse-hpc cancel)."""
    parents = [p for p in (dependency or "").split(":")[1:] if p]
    ended = [(p, slurm.get(p, ("UNKNOWN", "", ""))[0]) for p in parents]
    bad = [f"job {p} ended {state}" for p, state in ended if state in BAD]
    if bad:
        return f"waited on {dependency}: {', '.join(bad)}"
    return "cancelled while queued: scancel or collapse-hpc cancel"


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


def rank_that_ended(run_dir: Path, job_id, log: str | None, signum: int | None = None) -> tuple[str, str | None] | None:
    """A multi-rank Slurm job's rank that ended it, as its ranks recorded (launch.peers), from its last
    attempt: (the line naming the rank and its cause, that rank's log where it is there), or None.
    Rank 0's log alone says only that a peer went (gloo's reset, srun's kill). `signum`: the signal
    sacct says ended the job, which a rank gone without a word of its own was killed by."""
    attempts = sorted(Path(run_dir, "logs", "ranks").glob(f"{job_id}-r*"),
                      key=lambda p: int(p.name.rpartition("-r")[2]) if p.name.rpartition("-r")[2].isdigit() else -1)
    killed = {int(p.stem): controller.said(signum) for p in attempts[-1].glob("*.json") if p.stem.isdigit()} \
        if attempts and signum else None
    found = peers.culprit(attempts[-1], killed) if attempts and job_id else None
    if found is None:
        return None
    rank, line = found
    theirs = log[: -len("_0_log.err")] + f"_{rank}_log.err" if log and log.endswith("_0_log.err") else None
    return line, theirs if theirs and Path(theirs).is_file() else log


def out_of_time(error: list[str], kind: str | None, profile: str | None) -> str | None:
    """What to change when a job reached its time limit once more than the profile's max_requeues allow
    (submitit's 'timed-out too many times', under Slurm's 'CANCELLED … DUE TO JOB REQUEUE')."""
    if not any("timed-out too many times" in ln for ln in error):
        return None
    return (f"it reached its time limit more often than max_requeues allows: raise jobs.{kind or 'KIND'}.time_min "
            f"(or max_requeues) in {profile or 'the profile'} and submit again (what it finished is kept)")


def killed_by(signum: int | None, error: list[str]) -> str | None:
    """The signal sacct says ended a job, in words (SIGKILL: its usual cause), unless its error says it."""
    name = controller.name(signum) if signum else None
    if name is None or any(name in ln for ln in error):
        return None
    return f"sacct: a process of the job on its node {controller.said(signum)}"


# how Slurm says it killed a job for its memory, where its state does not (OUT_OF_MEMORY, cgroup's kill): the
# step killed by jobacct_gather's OverMemoryKill (the job then ends FAILED), cgroup's OOM event line
MEMORY_KILLS = ("exceeded memory limit", "Exceeded job memory limit", "oom-kill event")


def out_of_memory(state: str, error: list[str], kind: str, profile: str | None) -> str | None:
    """What to change when Slurm killed a job for using more memory than it asked for: the kind's mem
    knob in the profile (its value, where the profile still reads)."""
    if state != "OUT_OF_MEMORY" and not any(word in ln for ln in error for word in MEMORY_KILLS):
        return None
    asked = None
    with contextlib.suppress(UserError, OSError, ValueError):
        asked = profiles.load(profile).resources(kind).mem if profile else None
    knob = f"jobs.{kind}.mem"
    now = f"{knob} is {asked}" if asked else f"{knob} is not set: the cluster's default memory per CPU applied"
    return (f"Slurm killed it for using more memory than its job asked for ({now}): raise {knob} in "
            f"{profile or 'the profile'} and submit again (what it finished is kept)")


def unit_state(store: RunStore, run, job, entry: dict, slurm: dict, local: bool) -> tuple[str, str, dict | None]:
    """(state, elapsed, the manifest of a done unit) of one unit."""
    unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    manifest = read_manifest(unit_dir)
    if manifest is not None and engine.job_done(store, run, job):
        return "done", took(manifest.get("seconds")), manifest
    jid = entry.get("job_id")
    if jid is None and manifest is not None:  # no job on record (a copy, jobs.json removed), yet it completed
        return "COMPLETED", took(manifest.get("seconds")), None  # its manifest is written last: say what is missing
    if local and jid is None and unit_dir.is_dir():  # begun in-process (debug, by hand), which records no job
        return "unfinished", "", None  # as the report says it: its folder holds no manifest yet
    if jid is not None and begun_again(unit_dir, job_end(entry, slurm, local)):  # its job's end did not leave it so
        return "unfinished", "", None
    if local:
        return local_state(entry), took(entry.get("elapsed")), None
    if jid is None:
        return "not submitted", "", None
    state, elapsed, _ = slurm.get(str(jid), ("UNKNOWN", "", ""))
    return state, elapsed, None


def begun_again(unit_dir: Path, ended: float | None) -> bool:
    """Whether an unfinished unit was begun again after its recorded job ended (`ended`: job_end): its binding,
    written as an attempt starts and removed as it finishes, is newer than that end. A redo by hand (verify's
    redo command, an in-process run) writes no job to jobs.json, so the job's state is not the unit's story."""
    if ended is None:  # running, or an older version's entry
        return False
    try:
        return (unit_dir / BINDING).stat().st_mtime > ended
    except OSError:  # no attempt under way
        return False


def job_end(entry: dict, slurm: dict, local: bool) -> float | None:
    """When a unit's recorded job ended (seconds since the epoch): a local one's record, a Slurm one's sacct End
    (slurm_view; whole seconds, so the end's second counts as before it); None while it runs or where unknown."""
    if not local:
        end = getattr(slurm, "ends", {}).get(str(entry.get("job_id")))
        return None if end is None else end + 1
    started, elapsed = entry.get("started"), entry.get("elapsed")
    return started + elapsed if all(isinstance(t, (int, float)) for t in (started, elapsed)) else None


def begun_again_words(entry: dict, slurm: dict, local: bool) -> str:
    """What status says of a unit begun_again: the redo, not the earlier job, is why it is unfinished (it may
    still run, or have been stopped)."""
    if not local:
        state = slurm.get(str(entry["job_id"]), ("ENDED",))[0]
        return f"begun again by hand after Slurm job {entry['job_id']} {state}, and not finished since"
    ended = str(entry.get("state") or "ended").lower().replace("_", " ")
    return f"begun again by hand after local pid {entry['job_id']} {ended}, and not finished since"


def made_by(manifest: dict, entry: dict, local: bool) -> tuple[str | None, str | None]:
    """(job id, host of a run by hand) of what wrote a done unit's manifest. jobs.json keeps the job
    that ran the unit before a redo by hand (verify's `collapse-hpc EXPERIMENT … --unit N`), so the
    manifest decides: the Slurm job it records; else the local launcher's job where the manifest was
    begun before that job ended; else the run by hand."""
    if manifest.get("job_id"):
        return str(manifest["job_id"]), None
    jid = entry.get("job_id")
    if local and jid is not None and not _begun_after(manifest, entry):
        return str(jid), None
    return None, str(manifest.get("host") or "?")


def _begun_after(manifest: dict, entry: dict) -> bool:
    """Whether the unit's manifest was begun after its recorded local job had ended (unknown: no)."""
    begun, started, elapsed = manifest.get("started"), entry.get("started"), entry.get("elapsed")
    return None not in (begun, started, elapsed) and begun > started + elapsed


def local_state(entry: dict) -> str:
    """A local unit's state as jobs.json records it, except that a RUNNING one whose process is gone
    is INTERRUPTED: the launcher died with the job (killed, out of memory, the machine restarted)
    and never wrote its end."""
    jid = entry.get("job_id")
    state = entry.get("state") or ("not run" if jid is None else "?")
    if state == "RUNNING" and not (str(jid).isdigit() and pid_alive(int(jid))):
        return "INTERRUPTED"
    return state


FOR_A_CORE = "for a free core"  # a live local launcher starts a unit once its ranks fit in the free cores


def waiting(units: list[dict], launcher_runs: bool = False, stopping: str | None = None) -> None:
    """A chain's generations the local launcher has not started (none recorded) behind one it runs read
    waiting, each `after` the one before it, as a Slurm chain's afterok says, not 'not run', which says the
    chain stopped (those it stops are NOT_RUN). Where its launcher runs now (launcher_runs), the first it has
    not started waits for a free core, and each behind it after the one before; where that launcher starts no
    further unit (`stopping`: why, records.STOPPING), they read NOT_RUN, as it records them when it ends."""
    after = None
    for u in units:
        if u["state"] == "not run" and stopping:
            u["state"], u["reason"] = "NOT_RUN", f"{stopping}; no further unit starts"
        elif u["state"] == "RUNNING":
            after = u["index"]
        elif u["state"] == "not run" and after is not None:
            u["state"], u["after"], after = "waiting", after, u["index"]
        elif u["state"] == "not run" and launcher_runs:
            u["state"], u["reason"], after = "waiting", FOR_A_CORE, u["index"]
        else:
            after = None


def launcher_runs(store: RunStore, book: dict) -> bool:
    """Whether the local launcher runs the run now (its book's executor is local, and a launcher holds the
    run's lock): the units it has not started wait for it, rather than read 'not run'."""
    if book.get("executor") != "local" or book.get("copied_from"):
        return False
    owner = store.lock().owner()
    return owner is not None and owner.get("launcher") is not False and lock_holder(owner, store.root)


def waits_on(slurm: dict, job_id) -> str | None:
    """Slurm's reason a pending job waits (a drained node, a QOS limit, a dependency never satisfied),
    unless it only waits for its chain's previous generation."""
    state, _, reason = slurm.get(str(job_id), ("", "", ""))
    return reason if state == "PENDING" and reason not in ROUTINE else None


def waits_on_parent(slurm: dict, job_id) -> bool:
    """Whether a pending job waits for its dependency (a chain's generation: the one before it) to end."""
    state, _, reason = slurm.get(str(job_id), ("", "", ""))
    return state == "PENDING" and reason == "Dependency"


def _book(store: RunStore) -> dict:
    """jobs.json; a corrupt one is one error line, since every unit would silently read 'not run'."""
    book = records.load(store)
    if book.get("corrupt"):
        raise UserError(f"{book['corrupt']}: jobs.json is corrupt (not a JSON mapping of units), so job "
                        f"states are unknown; restore it, or remove it to see only what the manifests say")
    return book


COMPLETED = {"COMPLETED"}  # the job said it finished (Slurm's state, the local launcher's record)


def why_not_done(store: RunStore, run, job) -> str:
    """Why a unit whose job completed does not count as done: the missing or mismatching artefact."""
    unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    rel = unit_dir.relative_to(store.root).as_posix()
    manifest = read_manifest(unit_dir)
    if manifest is None and not unit_dir.is_dir():  # its job made it: removed since (by hand, a scratch purge)
        return f"{rel} is gone: its folder was removed after its job completed"
    if manifest is None:
        return f"{rel}/manifest.json is missing (the job ended before the unit's results were recorded)"
    problems = verify_unit(unit_dir, deep=False)
    if problems:
        return problems[0].replace(str(store.root) + os.sep, "")
    asked = experiments.get(job.experiment).generations(run)
    if job.shape == "array" and manifest.get("generations") != asked:
        return f"{rel} holds {manifest.get('generations')} generations, the config asks for {asked}"
    return f"{rel} does not verify"


def unrecorded(book: dict, label: str, recorded: bool) -> tuple[str | None, str | None]:
    """(job id, where none is) of a unit this folder's book records no job for, though it completed: a
    copy's original job (its book keeps that folder's), else which file lacks it (`recorded`: jobs.json is
    there)."""
    jid = book.get(records.COPIED, {}).get(label, {}).get("job_id")
    if jid is not None:
        return str(jid), None
    return None, "none in jobs.json" if recorded else "record missing (no jobs.json)"


def redo_command(store: RunStore, job, executor: str) -> str:
    """The command that redoes the unit (finished units are kept, so it reruns only what is missing)."""
    return engine.resume_command(store, executor) + " " + shlex.join(["--only", job.experiment])


def launched(store: RunStore, chains, book: dict) -> set[str]:
    """The experiments the run has launched: an experiment none of whose units has a job or a folder was
    left out of it (--only). A copy's: those of the original when copied, and its own since."""
    jobs = {**book.get(records.COPIED, {}), **book["units"]}
    return {label.split("/", 1)[0] for label in jobs} | set(book.get(records.EXPERIMENTS) or []) | {
        c.experiment for c in chains for j in c.jobs
        if store.unit_dir(j.experiment, j.variant, j.shape, j.index).exists()}


def left_out(store: RunStore, chains, book: dict) -> set[str]:
    """The plan's experiments the run left out with --only; none where nothing tells what it launched (no
    launch recorded, nor a unit folder)."""
    started = launched(store, chains, book)
    if not (book.get("executor") or started):
        return set()
    return {c.experiment for c in chains} - started


def state_of(store: RunStore, run_dir) -> dict:
    """Everything `status` says, as plain values (--json prints it as is). It only reads the run: each
    unit's manifest once (its state, binding and maker each ask for it)."""
    with read_once():
        return _state_of(store)


def _state_of(store: RunStore) -> dict:
    from collapse_hpc.launch.slurm import others_said

    run = store.load_config(experiments.sections())
    chains = engine.load_plan(store, run)
    book = _book(store)
    view = _slurm_of(book)
    absent, here = left_out(store, chains, book), launcher_runs(store, book)
    recorded = (store.root / records.JOBS).is_file()  # removed: no launch can be told apart
    out = {"run": str(store.root), "executor": book.get("executor"), "cluster": book.get("cluster"),
           "chains": [_chain_state(store, run, chain, book, view, chain.experiment in absent, here, recorded)
                      for chain in chains],
           "copied_from": book.get("copied_from"), "resume": engine.resume_command(store, book.get("executor")),
           "launched": sorted(book.get(records.EXPERIMENTS) or []),  # in-process: what records it ran
           "recorded": recorded}
    if book.get("aggregate"):
        out["aggregate"] = _aggregate_state(book, view[0])
    if said := others_said(view[0]):  # read as gone, as a purged job is
        out["others"] = said
    if said := getattr(view[0], "accounting", None):  # sacct failed: ended jobs read UNKNOWN
        out["accounting"] = said
    if said := getattr(view[0], "controller", None):  # squeue got no answer: the states are sacct's
        out["controller"] = said
    return out


def _slurm_of(book: dict) -> tuple[dict, dict]:
    """slurm_view of the book's Slurm jobs; nothing where it names none: a Slurm run taken over by the local
    launcher keeps its own."""
    if "slurm" not in records.executors(book) | {book.get("executor")}:
        return {}, {}
    return slurm_view([e.get("job_id") for e in book["units"].values() if records.executor_of(book, e) == "slurm"]
                      + [book.get("aggregate", {}).get("job_id")], book)


def _chain_state(store: RunStore, run, chain, book: dict, view: tuple[dict, dict], absent: bool,
                 here: bool, recorded: bool) -> dict:
    """A chain's (or an array's) units, how many are done and the generation it reached. `here`: a live
    local launcher runs the run (launcher_runs); `recorded`: jobs.json is there."""
    item = {"experiment": chain.experiment, "variant": chain.variant.name, "shape": chain.shape, "units": []}
    if absent:
        item["not_in_this_run"] = True
        return item
    item["units"] = [_unit_of(store, run, job, book, view, recorded) for job in chain.jobs]
    for lane in [item["units"]] if chain.shape == "chain" else [[u] for u in item["units"]]:  # each part its own
        waiting(lane, here, book.get(records.STOPPING) if here else None)
    done = [u["state"] == "done" for u in item["units"]]
    item["done"] = sum(done)
    item["reached"] = (done + [False]).index(False) - 1 if chain.shape == "chain" else None
    return item


def _unit_of(store: RunStore, run, job, book: dict, view: tuple[dict, dict], recorded: bool) -> dict:
    """One unit as status shows it: its state, its job, and what a failed or unfinished one needs (`recorded`:
    jobs.json is there, read once for the whole run)."""
    slurm = view[0]
    entry = book["units"].get(job.label, {})
    by = records.executor_of(book, entry)
    local = by != "slurm"
    state, elapsed, manifest = unit_state(store, run, job, entry, slurm, local)
    unit = {"unit": job.label.rsplit("/", 1)[1], "index": job.index, "state": state, "elapsed": elapsed,
            "job_id": entry.get("job_id")}
    if state == "unfinished" and unit["job_id"] is not None:  # begun_again: that job no longer tells the unit
        unit["job_id"], unit["reason"] = None, begun_again_words(entry, slurm, local)
    if manifest is not None:  # done: the job that made it, which a redo by hand leaves jobs.json unaware of
        maker = entry or book.get(records.COPIED, {}).get(job.label, {})  # a copy's: the original's job
        unit["job_id"], unit["by_hand_on"] = made_by(manifest, maker, local)
        if unit["by_hand_on"] and not recorded:  # no book to tell a job from a hand
            unit["by_hand_on"], unit["unrecorded"] = None, unrecorded(book, job.label, recorded)[1]
        by = "slurm" if manifest.get("job_id") else by  # the manifest names Slurm's job alone
        if isinstance(manifest.get("attempts"), int) and manifest["attempts"] > 1:  # its seconds are theirs in all
            unit["runs"] = manifest["attempts"]
    elif state in COMPLETED and entry.get("job_id") is None:  # a copy's: the original's job ended it
        unit["job_id"], unit["unrecorded"] = unrecorded(book, job.label, recorded)
    if unit["job_id"] is not None and (by != book.get("executor") or by == "local"):
        unit["executor"] = by  # the listing's words: a local process id is no job id; the other back-end's said
    if state in COMPLETED:  # the job finished, yet the unit is not done: say what is missing
        unit["why_not_done"] = why_not_done(store, run, job)
        unit["redo"] = redo_command(store, job, book.get("executor") or "local")
    if entry.get("reason") and state == "NOT_RUN":
        unit["reason"] = records.reason(entry)
    elif state == "PENDING" and (why := waits_on(slurm, entry.get("job_id"))):  # not a done unit's requeue
        unit.update(waits_for(slurm, entry.get("job_id"), why))
    elif state == "PENDING" and job.shape == "chain" and waits_on_parent(slurm, entry.get("job_id")):
        unit["after"] = job.index - 1  # afterok on the generation before: said as a local chain's wait is
    if state == "RUNNING" and entry.get("log"):  # where to follow it (tail -f): logs are named by job id
        unit["log"] = entry["log"]
    if state in BAD:
        unit.update(_failure(store, entry, book, view, local, state))
        unit.update(unrun(unit))
    if not local and manifest is None and state != "unfinished":  # a done unit's time is its manifest's
        unit.update(over_runs(slurm, entry.get("job_id")))
    return unit


def waits_for(slurm: dict, job_id, why: str) -> dict:
    """Slurm's reason a pending job waits (`why`), and for one held until its begin time (a requeued job) that
    time: squeue's StartTime, which slurmctld gives as the begin time of a job that has none of its own."""
    begins = getattr(slurm, "begins", {}).get(str(job_id))
    return {"reason": why, **({"start_time": begins} if why == "BeginTime" and begins else {})}


def over_runs(slurm: dict, job_id) -> dict:
    """The time a job requeued ran in all (elapsed) and how many runs (RunQueue.runs); nothing for one run."""
    ran = getattr(slurm, "runs", {}).get(str(job_id))
    return {"elapsed": _clock(ran[0]), "runs": ran[1]} if ran else {}


def _failure(store: RunStore, entry: dict, book: dict, view: tuple[dict, dict], local: bool, state: str) -> dict:
    """A failed or cancelled unit's log, the last lines of its error and, where known, why it ended: the rank
    or the signal that ended it, never started, out of memory or time."""
    slurm, signals = view
    ran = bool(entry.get("log")) and Path(entry["log"]).is_file()  # its job began: it left a log
    said = {"log": entry.get("log"), "dependency": entry.get("dependency"),
            "never_started": never_started(entry.get("dependency"), slurm) if not (local or ran) else None,
            "error": (entry.get("error") or "").splitlines()[-5:] if local else error_lines(entry.get("log"))}
    memory = None if local else out_of_memory(state, said["error"], entry.get("kind") or "KIND", book.get("profile"))
    signum = None if local else signals.get(str(entry.get("job_id")))
    if not local and (ended := rank_that_ended(store.root, entry.get("job_id"), entry.get("log"), signum)):
        # that rank's own log and cause, as the local launcher records them in the unit's error
        said["log"] = ended[1]
        said["error"] = error_lines(ended[1], n=4) + [ended[0]]
    if signum:
        said["signal"] = controller.name(signum)
    if hint := memory or out_of_time(said["error"], entry.get("kind"), book.get("profile")) or \
            killed_by(signum, said["error"]):
        said["hint"] = hint
    return said


def _aggregate_state(book: dict, slurm: dict) -> dict:
    """The aggregation job's state (only Slurm queues one), with its error where it failed."""
    agg = book["aggregate"]
    state, elapsed, _ = slurm.get(str(agg.get("job_id")), ("UNKNOWN", "", ""))
    said = {"state": state, "elapsed": elapsed, "job_id": agg.get("job_id"), "log": agg.get("log"),
            "reason": waits_on(slurm, agg.get("job_id")), "dependency": agg.get("dependency"),
            "error": error_lines(agg.get("log")) if state in BAD else [], **over_runs(slurm, agg.get("job_id"))}
    if said["reason"]:
        said.update(waits_for(slurm, agg.get("job_id"), said["reason"]))
    if state in BAD and not (agg.get("log") and Path(agg["log"]).is_file()):
        # afterany waits out its units however they end: Slurm never cancels it for them, a user did
        said["never_started"] = never_started(None, slurm)
        said.update(unrun(said))
    if hint := out_of_memory(state, said["error"], "aggregate", book.get("profile")):
        said["hint"] = hint
    return said
