"""Slurm back-end: submit a planned run through submitit and return at once.

- a chain (lm, vae): one job per generation, each `afterok` on the one before, with
  kill-on-invalid-dep so a failed generation cancels the rest of its chain;
- an array experiment (gmm, gaussian): all its parts (every variant) as ONE job array;
- a final aggregation job `afterany` on everything, so the figures exist when the run ends
  (when every unit is done but the report is missing or stale, it alone is submitted again);
  what it runs is the caller's (`finish`: the report's job, report.aggregate.job).
Every job is a Checkpointable UnitJob (USR2: checkpoint, requeue, resume). What was
submitted is recorded in runs/<run>/jobs.json; submitting again skips units that are done
or whose recorded job is still queued or running (checked with squeue), so a variant never
gets two chains.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import getpass
import io
import itertools
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

from collapse_hpc import engine
from collapse_hpc.errors import UserError
from collapse_hpc.launch import profile as profiles
from collapse_hpc.launch import records
from collapse_hpc.launch.gres import check as check_gres
from collapse_hpc.launch.gres import offered
from collapse_hpc.logs import count, first_few
from collapse_hpc.store import read_manifest
from collapse_hpc.store.lock import beside_reader

# squeue states in which a job will still run (or is running) its unit
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
          "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}


# seconds a Slurm command may wait on slurmctld: one down, failing over or overloaded would hold it for ever
SLURMCTLD_WAIT = 120


class NoAnswer(UserError):
    """A Slurm command whose controller (slurmctld) did not answer within SLURMCTLD_WAIT."""


def ask(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Slurm command that asks slurmctld (`env`: settings for it beside this process's); NoAnswer, naming
    it, where it does not answer in time."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SLURMCTLD_WAIT,
                              env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired:
        raise NoAnswer(f"{unanswered(_named(cmd))}; try again once it answers") from None


def unanswered(named: str) -> str:
    """What to say of a Slurm command (`named`) that slurmctld did not answer within SLURMCTLD_WAIT."""
    return (f"{named}: slurmctld did not answer within {SLURMCTLD_WAIT:g} s (down, failing over or overloaded: "
            f"`scontrol ping` says which)")


def _named(cmd: list[str]) -> str:
    """A Slurm command as a message names it: "scontrol show node", "sbatch --test-only", "squeue"."""
    shown = cmd[cmd.index("show"):cmd.index("show") + 2] if "show" in cmd else []
    return " ".join([cmd[0], *(["--test-only"] if "--test-only" in cmd else []), *shown])


def _slurm(cmd: list[str], env: dict | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise UserError(f"{cmd[0]} not found: not a Slurm host (the dev cluster: bash slurm/dev-cluster/start.sh)")
    out = ask(cmd, env)
    if out.returncode != 0:
        raise UserError(f"{' '.join(cmd[:2])} failed: {last_error(out)}")
    return out.stdout


def last_error(out: subprocess.CompletedProcess) -> str:
    """Why a Slurm command failed: its last line on stderr, else its exit status."""
    lines = out.stderr.strip().splitlines()
    return lines[-1].strip() if lines else f"exit status {out.returncode}"


# squeue's fields: the job's name last, whole, where it holds a '|'; %S, its start time, is a pending job's
# expected start, else its begin time where that is to come (a requeued job's: slurmctld's pack_job)
FIELDS = "%i|%T|%M|%r|%u|%S|%j"


class Queued(NamedTuple):
    """A job in the queue as squeue tells it: who queued it and its name (job_name) besides its state, and its
    start time (squeue's StartTime as SLURM_TIME_FORMAT=standard prints it; N/A where none is known)."""
    state: str
    elapsed: str
    reason: str = ""
    user: str = ""
    name: str = ""
    start: str = ""


def listed(selector: list[str]) -> dict[str, Queued]:
    """job id (array tasks as 123_4) -> the queued job, of the jobs `selector` picks (["-u", user] or
    ["-j", "1,2"]); UserError when squeue is missing or fails."""
    jobs = {}
    for line in _slurm(["squeue", "-h", "-r", *selector, "-o", FIELDS], {"SLURM_TIME_FORMAT": "standard"}).splitlines():
        fields = line.strip().split("|", 6)
        if len(fields) >= 3 and fields[0]:
            state, elapsed, reason, user, start, name = (fields[1:] + [""] * 5)[:6]
            jobs[fields[0]] = Queued(state, elapsed, reason, user, name, start)
    return jobs


def squeue(selector: list[str]) -> dict[str, tuple[str, str, str]]:
    """job id -> (state, elapsed, Slurm's reason it waits or ended) of the queued jobs `selector` picks (listed)."""
    return {jid: (job.state, job.elapsed, job.reason) for jid, job in listed(selector).items()}


def queued() -> dict[str, str]:
    """job id -> state, for this user's jobs still in the queue."""
    return {jid: job[0] for jid, job in squeue(["-u", getpass.getuser()]).items()}


class RunQueue(dict):
    """recorded's job id -> state of a run's jobs still queued; `users`: job id -> who queued it; `others`:
    job id -> (what the book records it for, the job squeue gives that id now), for those ignored; `accounting`:
    what to say where sacct failed (status.slurm_view), the states of jobs that left the queue unknown;
    `controller`: where squeue got no answer (NoAnswer), the states sacct's alone; `ends`: job id -> when a job
    that has left the queue ended (sacct's End, seconds since the epoch); `begins`: job id -> the begin time a
    job waits for (squeue's StartTime, of one whose reason is BeginTime); `runs`: job id -> (seconds, runs) of a
    requeued job (it ran more than once, or ran and waits again), its runs' time summed."""

    def __init__(self, states=(), users=None, others=None, accounting=None, controller=None, ends=None,
                 begins=None, runs=None):
        super().__init__(states)
        self.users: dict[str, str] = users or {}
        self.others: dict[str, tuple[str, Queued]] = others or {}
        self.accounting: str | None = accounting
        self.controller: str | None = controller
        self.ends: dict[str, float] = ends or {}
        self.begins: dict[str, str] = begins or {}
        self.runs: dict[str, tuple[int, int]] = runs or {}


def recorded(book: dict) -> RunQueue:
    """The jobs a run's book records still in the queue, looked up by id whoever queued them (in a group's run
    folder a colleague's jobs are not in squeue -u $USER), each the run's only where its name is the one it was
    queued with (runs_unit): after the cluster's job ids were reset (a reinstalled slurmctld, FirstJobId) or
    wrapped, a recorded id may name a stranger's job, which submit took for the unit's and cancel cancelled."""
    bases = {j.split("_")[0] for j in record_names(book)}
    if not bases:
        return RunQueue()
    try:
        found = listed(["-j", ",".join(sorted(bases, key=job_order))])
    except UserError as e:
        if "Invalid job id" in str(e):  # every one of them has left the queue
            return RunQueue()
        raise
    return run_jobs(book, found)


def run_jobs(book: dict, found: dict[str, Queued]) -> RunQueue:
    """Of the jobs Slurm gives the ids a run's book records (`found`), the run's (runs_unit) and the others."""
    names = book_names(book)
    queue = RunQueue()
    for jid, job in found.items():
        entry = entry_of(names, jid)
        if entry is None:
            continue
        if runs_unit(*entry, job.name):
            queue[jid], queue.users[jid] = job.state, job.user
        else:
            queue.others[jid] = (entry[0], job)
    return queue


def record_names(book: dict) -> dict[str, tuple[str, str | None]]:
    """job id -> (the unit it was queued for, or "aggregate"; the job's name where the book records it), for
    every Slurm job the book names (records.job_ids)."""
    out = {str(e["job_id"]): (label, e.get("name")) for label, e in book["units"].items()
           if e.get("job_id") is not None and records.executor_of(book, e) == "slurm"}
    agg = book.get("aggregate") or {}
    if agg.get("job_id") is not None:
        out[str(agg["job_id"])] = ("aggregate", agg.get("name"))
    return out


def book_names(book: dict) -> dict[str, tuple[str, str | None]]:
    """record_names, and each array's own id (its base) for its tasks' entry: what entry_of looks up."""
    units = record_names(book)
    return {**{j.split("_")[0]: e for j, e in units.items()}, **units}


def entry_of(names: dict, jid: str) -> tuple[str, str | None] | None:
    """The book's (unit, name) for a job id Slurm gives (book_names), an array task's by its array's."""
    return names.get(jid) or names.get(jid.split("_")[0])


def runs_unit(label: str, name: str | None, found: str) -> bool:
    """Whether a queued job's name (`found`) is that of the job queued for `label`: the name the book records,
    or for a book of before it did, one job_name gives it (ending in the unit's label, or its experiment's for
    an array's part, or "aggregate" for the report)."""
    if name:
        return found == name
    return found.endswith((f":{label}", f":{label.split('/')[0]}"))


def others_said(queue) -> str | None:
    """What to say of jobs the run records whose ids squeue gives another job now (recorded's `others`)."""
    others = getattr(queue, "others", {})
    if not others:
        return None
    shown = first_few([f"{j} (recorded for {label}) is {job.user}'s {job.name!r}"
                       for j, (label, job) in others.items()], 3, "; ")
    verb = "now names another job" if len(others) == 1 else "now name other jobs"
    return (f"{count(len(others), 'job id')} of this run's jobs.json {verb}: {shown}; the cluster's job ids were "
            f"reset or wrapped: they are not this run's, and are left alone")


NO_LIMIT = ("UNLIMITED", "INFINITE", "NONE", "")
# sbatch --time's forms: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
# days-hours:minutes:seconds (ASCII digits only: int() would take "٣" and " 3")
TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", re.ASCII)


def _minutes(limit: str) -> float | None:
    """A Slurm time (a time limit as sbatch --time, scontrol's MaxTime and sinfo write it; an elapsed time
    as squeue and sacct do) in minutes. After "days-" the first number is hours ("1-12" is 36 h); without,
    a lone number or two are minutes[:seconds] and three hours:minutes:seconds. None: no limit
    (UNLIMITED, INFINITE, NONE) or a form this parser does not know (INVALID, Partition_Limit): sbatch
    still checks those. A zero is 0 minutes here; as a time limit Slurm reads it as none (limit_minutes)."""
    text = limit.strip()
    m = TIME.fullmatch(text)
    if text.upper() in NO_LIMIT or m is None:
        return None
    days, first, second, third = m.groups()
    if days is not None:
        h, mins, sec = int(first), int(second or 0), int(third or 0)
    elif third is not None:
        h, mins, sec = int(first), int(second), int(third)
    else:
        h, mins, sec = 0, int(first), int(second or 0)
    return (int(days or 0) * 24 + h) * 60 + mins + sec / 60


def limit_minutes(limit: str) -> float | None:
    """A time limit in minutes; None: no limit (a zero limit is none, as sbatch --time=0) or not known."""
    return _minutes(limit) or None


def partitions() -> dict[str, dict[str, str]]:
    """partition name -> its `scontrol show partition` fields."""
    out = {}
    # -a: hidden partitions too (a user allowed on one must not be refused here)
    for line in _slurm(["scontrol", "-a", "-o", "show", "partition"]).splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "PartitionName" in fields:
            out[fields["PartitionName"]] = fields
    return out


def nodes() -> list[dict[str, str]]:
    """Every node's `scontrol show node` fields (Partitions, CPUTot, RealMemory, Gres); none where
    the cluster does not list them to this user (sbatch still checks)."""
    try:
        text = _slurm(["scontrol", "-o", "show", "node"])
    except NoAnswer:  # sbatch would wait on it as long
        raise
    except UserError:
        return []
    return [f for f in (dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in text.splitlines())
            if "NodeName" in f]


def mebibytes(mem: str) -> float | None:
    """sbatch --mem's value (a number, K/M/G/T suffix, M without) in MiB; None: a form sbatch checks itself."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", mem.strip().upper())
    return float(m[1]) * 1024.0 ** " KMGT".index(m[2] or "M") / 1024 ** 2 if m else None


def report_memory_short(prof: profiles.Profile, run, chains) -> tuple[str, int] | None:
    """Where the aggregation job's memory (jobs.aggregate.mem) is below what the run's report is
    estimated to need (estimate.report_rows): the job would be killed for its memory once every unit
    has finished. Then the job's report holds the first replicates of each variant that fit (the
    page says so): what to say of it, and that number."""
    from collapse_hpc.launch import estimate

    mem = prof.resources("aggregate").mem
    have = mebibytes(mem) if mem else None
    rows = estimate.report_rows(run, chains)
    if have is None or have * 2**20 >= estimate.report_bytes(rows):
        return None
    fits = estimate.report_replicates(run, chains, 0.8 * have * 2**20)  # a fifth spare: the rate is one run's
    if fits is None:
        return None
    need = estimate.report_bytes(rows) / 2**30
    return (f"the report of every replicate needs about {need:.3g} GiB ({rows:,} metric rows), the "
            f"profile's jobs.aggregate.mem is {mem}: the aggregation job reports the first {fits} replicates of "
            f"each variant (its page says so); for all of them, raise jobs.aggregate.mem to {math.ceil(need)}G, "
            f"or run collapse-hpc aggregate RUN where that much memory is, once the jobs have ended"), fits


def gpus(gres: str) -> int:
    """GPUs a node offers, from its Gres (gpu:4, gpu:h100:4(S:0-1), several comma-separated)."""
    return offered(gres).get(("gpu", None), 0)


def _check_fits(prof: profiles.Profile, kind: str, names: list[str], members: list[dict]) -> None:
    """A job of `kind` fits one node of its partitions: sbatch refuses one that fits none ("Requested
    node configuration is not available"), after the jobs before it were queued."""
    res, where = prof.resources(kind), ",".join(names)
    need = mebibytes(res.mem) if res.mem else None
    tasks = res.gpus_per_node or res.tasks_per_node or 1
    for key, asked, have, unit in (
            ("mem", need, [float(n.get("RealMemory", 0) or 0) for n in members], "M"),
            ("cpus_per_task", res.cpus_per_task * tasks, [int(n.get("CPUTot", 0) or 0) for n in members], " CPUs"),
            ("gpus_per_node", res.gpus_per_node, [gpus(n.get("Gres", "")) for n in members], " GPUs")):
        if asked and asked > max(have) and (max(have) or key == "gpus_per_node"):  # 0 CPUs, 0 MiB: not listed
            shown = res.mem if key == "mem" else asked
            raise UserError(f"profile {prof.name}: jobs.{kind}.{key}: {shown}"
                            + (f" ({res.cpus_per_task} x {tasks} tasks)" if key == "cpus_per_task" and tasks > 1
                               else "") + f" is more than any node of partition {where} has ({max(have):g}{unit})")


def check_profile(prof: profiles.Profile, kinds) -> None:
    """Before anything is written or queued: the first of `profile_problems`, refused in one line."""
    found = profile_problems(prof, kinds, Scontrol())
    if found:
        raise UserError(found[0])


def profile_problems(prof: profiles.Profile, kinds, scontrol: Scontrol) -> list[str]:
    """Every partition the jobs of `kinds` ask for exists, takes their time limit and has a node that
    fits them and offers the gres they ask for; one line per problem, every kind's (the dry run lists
    them all). sbatch would refuse only after earlier jobs were queued, or (with EnforcePartLimits=NO)
    queue a too-long job, or one asking for a gres no node has, that then pends forever."""
    parts, listed = scontrol.partitions, nodes()
    found: list[str] = []
    for kind in kinds:
        res = prof.resources(kind)
        names = partition_of(prof, kind, parts)
        where = f"jobs.{kind}.partition" if res.partition else "partition"
        unknown = [n for n in names if n not in parts]
        if unknown:  # the kind's other checks need its partitions
            found.append(f"profile {prof.name}: {where}: no partition {unknown[0]!r} on this cluster "
                         f"(it has: {', '.join(parts)})")
            continue
        limits = [limit_minutes(parts[n].get("MaxTime", "UNLIMITED")) for n in names]
        if limits and all(m is not None and res.time_min > m for m in limits):
            found.append(f"profile {prof.name}: jobs.{kind}.time_min: {res.time_min} is over the time "
                         f"limit of partition {','.join(names)} ({max(limits):g} min)")
        members = [n for n in listed if set(n.get("Partitions", "").split(",")) & set(names)]
        if members:
            try:
                _check_fits(prof, kind, names, members)
                check_gres(prof, kind, ",".join(names), members)
            except UserError as e:
                found.append(str(e))
    return list(dict.fromkeys(found))  # kinds sharing the profile's partition: said once


def partition_of(prof: profiles.Profile, kind: str, parts: dict[str, dict[str, str]]) -> list[str]:
    """The partitions a job of `kind` asks for: its own, the profile's, else the cluster's default."""
    named = prof.resources(kind).partition or prof.partition
    default = next((n for n, f in parts.items() if f.get("Default") == "YES"), None)
    return named.split(",") if named else [default] if default else []


class Scontrol:
    """What scontrol says of the cluster, each read once per command, when first asked: a submit's checks
    (the partitions' limits), its limits on queued jobs and its submission all ask."""

    @functools.cached_property
    def config(self) -> str:
        return show_config()

    @functools.cached_property
    def partitions(self) -> dict[str, dict[str, str]]:
        return partitions()


def show_config() -> str:
    """`scontrol show config`, read once per submit (limits, quota); "" where there is no scontrol."""
    if shutil.which("scontrol") is None:
        return ""
    return ask(["scontrol", "show", "config"]).stdout


def limits(config: str) -> dict[str, int]:
    """MaxJobCount and MaxArraySize of this cluster, from `config` (show_config); {} where it is not told."""
    found = dict(re.findall(r"^(MaxJobCount|MaxArraySize)\s*=\s*(\d+)", config, re.M))
    return {k: int(v) for k, v in found.items()}


def over_job_count(jobs: int, lim: dict[str, int], queued_now: int = 0) -> str | None:
    """What MaxJobCount (slurm.conf: the jobs slurmctld holds at once, every user's together) says of
    `jobs` more beside `queued_now` of this user's already queued (array tasks one each); None within it."""
    most = lim.get("MaxJobCount")
    if most is None or jobs + queued_now <= most:
        return None
    yours = f" + {queued_now} of yours queued" if queued_now else ""
    return f"{count(jobs, 'job')}{yours} > MaxJobCount {most}"


class Pending(set):
    """pending_units' labels, and the time they were worked out (`since`): a unit finished after it had its
    job end in between (_Submission.ended_since)."""

    def __init__(self, labels, since: float):
        super().__init__(labels)
        self.since = since


def pending_units(store, run, chains) -> Pending:
    """The labels of the units a submit starts (engine.pending of every chain), worked out once per submit
    before anything is written or queued: the limits weigh them, the submission queues them, the dry run
    shows them. Once: engine.pending hashes in full the finished generations each chain's next one reads
    (an lm chain's last model, ~0.5 GB)."""
    since = time.time()
    return Pending({j.label for c in chains for j in engine.pending(store, run, c)}, since)


def jobs_to_queue(store, chains, pending: set[str], queue: dict[str, str]) -> dict[str, int]:
    """Job kind -> the jobs of that kind a submit would queue: each `pending` unit not queued (an array
    task each), and the report where _Submission.aggregate queues one (a submit that finds every unit
    done or queued, and the report's job too, queues nothing)."""
    book = records.load(store)  # a corrupt one names no unit
    todo: dict[str, int] = {}
    live = False
    for c in chains:
        labels = [j.label for j in c.jobs if j.label in pending]
        n = sum(1 for label in labels if not live_job(book, label, queue))
        todo[c.kind] = todo.get(c.kind, 0) + n
        live = live or n < len(labels)
    agg = book.get("aggregate", {}).get("job_id")
    report_live = queue.get(str(agg)) in ACTIVE
    todo["aggregate"] = int(any(todo.values()) or (not report_live and (live or _report_stale(store, chains))))
    return todo


def check_queue(store, chains, pending: set[str], prof: profiles.Profile, scontrol: Scontrol) -> None:
    """Before anything is written or queued: the jobs a submit would queue (jobs_to_queue, worked out once
    from one squeue), with the user's jobs queued now, within the cluster's MaxJobCount and the limits on
    jobs queued at once (quota), which sbatch would meet part-way, with chains half-queued."""
    slurm_here = shutil.which("squeue") is not None
    mine = queued() if slurm_here else {}  # what counts against MaxJobCount beside this submit's
    queue = recorded(records.load(store)) if slurm_here else {}
    todo = jobs_to_queue(store, chains, pending, queue)
    for said in (job_count_problem(sum(todo.values()), limits(scontrol.config), len(mine)),
                 over_submit_limit(prof, todo, scontrol)):
        if said:
            raise UserError(said)


def over_submit_limit(prof: profiles.Profile, kinds: dict[str, int], scontrol: Scontrol) -> str | None:
    """What the limits on jobs queued at once (quota) say of `kinds` (job kind -> jobs to queue), each kind
    charging the profile's account, its QOS and its partition; None within them, or where none is read."""
    from collapse_hpc.launch import quota

    if not quota.readable(scontrol.config):  # nor the partitions asked for
        return None
    parts, user = scontrol.partitions, getpass.getuser()
    by_charge: dict[tuple[quota.Charge, ...], int] = {}
    for kind, n in kinds.items():
        qos = prof.resources(kind).qos or prof.qos or ""
        # a job of several partitions: one charge each (quota.problem weighs it in each one)
        charges = tuple(quota.Charge(user, prof.account or "", qos, p, parts.get(p, {}).get("QoS", "N/A"))
                        for p in partition_of(prof, kind, parts) or [""])
        by_charge[charges] = by_charge.get(charges, 0) + n
    return quota.problem(by_charge, user, scontrol.config, {p: f.get("QoS", "N/A") for p, f in parts.items()})


def job_count_problem(jobs: int, lim: dict[str, int], queued_now: int) -> str | None:
    """The jobs a submit would queue, with this user's jobs in the queue now, within the cluster's
    MaxJobCount; past it sbatch refuses (or waits, retrying) part-way, with chains half-queued."""
    if over := over_job_count(jobs, lim, queued_now):
        return (f"the cluster holds at most {lim['MaxJobCount']} jobs at once (MaxJobCount, scontrol show config) "
                f"and this submit would pass it ({over}); nothing was queued: submit part of the run (--only "
                f"EXPERIMENT, or fewer --generations), or wait for jobs to end")
    return None


def live_job(book: dict, label: str, queue: dict[str, str]) -> str | None:
    """The Slurm job of the unit `label` in a book, where `queue` (squeue's) has it queued or running; a unit
    the local launcher ran names a process id, no job, however squeue numbers the user's jobs."""
    entry = book["units"].get(label, {})
    jid = entry.get("job_id") if records.executor_of(book, entry) == "slurm" else None
    return jid if jid and queue.get(str(jid)) in ACTIVE else None


def array_pieces(tasks: list, max_array: int | None) -> list[list]:
    """`tasks` as the job arrays sbatch takes: an array's indices run below MaxArraySize, so one of
    more than MaxArraySize tasks is refused ("Invalid job array specification"); 0 (arrays disabled):
    one task each, which submitit queues as a plain job."""
    size = len(tasks) if max_array is None else max(max_array, 1)
    return [tasks[i:i + size] for i in range(0, len(tasks), size or 1)]


SCANCEL_REFUSED = re.compile(r"job id (\S+): (.+)$", re.M)
ENDED_MEANWHILE = ("already complet", "Invalid job id")  # scancel's words for a job that ended since squeue


def cancel(job_ids: list[str]) -> dict[str, str]:
    """scancel `job_ids`; job id -> why, for those it refused (another user's: Access/permission denied), not
    those that ended meanwhile (ENDED_MEANWHILE)."""
    if not job_ids:
        return {}
    out = ask(["scancel", *job_ids])
    refused = dict(SCANCEL_REFUSED.findall(out.stderr)) if out.returncode else {}
    return {job: why for job, why in refused.items() if not any(w in why for w in ENDED_MEANWHILE)}


def live(book: dict, queue: dict[str, str] | None = None) -> list[str]:
    """The jobs of a run's book still queued or running (array tasks as 123_4), from squeue (`queue`: recorded's
    where read already), whoever queued them."""
    return sorted((j for j, state in (recorded(book) if queue is None else queue).items() if state in ACTIVE),
                  key=job_order)


def job_order(job: str) -> tuple:
    """Job ids in number order, an array's tasks by task (123_2 before 123_10), not as text."""
    return tuple(int(p) if p.isdigit() else -1 for p in job.split("_", 1))


def _by_array(job_ids) -> list[tuple[str, list[int]]]:
    """`job_ids` in job order, each (a plain job or an array's lone task, []) or (an array, its several tasks)."""
    tasks: dict[str, set[int]] = {}
    for job in job_ids:
        base, _, task = job.partition("_")
        if task.isdigit():
            tasks.setdefault(base, set()).add(int(task))
    out: dict[str, list[int]] = {}
    for job in sorted(set(job_ids), key=job_order):
        base, _, task = job.partition("_")
        several = task.isdigit() and len(tasks[base]) > 1
        out.setdefault(base if several else job, sorted(tasks[base]) if several else [])
    return list(out.items())


def scancel_args(job_ids) -> str:
    """`job_ids` for a scancel line to copy: an array's tasks in Slurm's own form, 123_[1-3,5] (quoted: a shell
    glob), every job named."""
    return " ".join(shlex.quote(f"{job}_[{_spans(tasks)}]" if tasks else job) for job, tasks in _by_array(job_ids))


def squeue_args(job_ids) -> str:
    """`job_ids` for squeue -r -j to list each of: an array by its id alone (squeue reads 123_[1-3] as task 0, and
    an array's tasks are one user's), every job named."""
    return ",".join(job for job, _ in _by_array(job_ids))


def _spans(tasks: list[int]) -> str:
    """Sorted task indices as Slurm writes them: 1-3,5."""
    runs: list[list[int]] = []
    for task in tasks:
        if runs and task == runs[-1][-1] + 1:
            runs[-1].append(task)
        else:
            runs.append([task])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def cancel_run(store) -> int:
    """scancel every job of the run (jobs.json) that is still queued or running; the finished units
    stay, and a later submit queues what is left."""
    if not (store.root / records.JOBS).is_file():
        raise UserError(f"{store.root}: no Slurm jobs recorded (no {records.JOBS}): nothing to cancel")
    book = records.load(store)
    if book.get("corrupt"):
        raise UserError(f"{book['corrupt']} is corrupt: the run's jobs are unknown, and no launcher runs it on this "
                        f"host; find its Slurm jobs with squeue --me")
    if book.get("copied_from"):
        raise UserError(f"{store.root}: its jobs.json records the jobs of {book['copied_from']}, of which this folder "
                        f"is a copy; none of them is this folder's: cancel them there")
    # no submit of this run in between; beside an aggregate reading it, which the jobs' end does not disturb
    with beside_reader(store.lock(command="cancel")):
        queue = recorded(book)
        jobs = live(book, queue)
        refused = cancel(jobs)
    if said := others_said(queue):
        print(f"note: {said}", file=sys.stderr)
    if refused:  # a shared run folder: a colleague's jobs are theirs (or an operator's) to cancel
        raise _cancel_refused(store, refused, jobs)
    if jobs:
        print(f"{store.root}: cancelled {count(len(jobs), 'queued or running job')}: {first_few(jobs, 10)}"
              f"; finished units stay (collapse-hpc status {shlex.quote(str(store.root))})")
    else:
        print(f"{store.root}: nothing to cancel: none of its jobs is queued or running")
    return 0


def _cancel_refused(store, refused: dict[str, str], jobs: list[str]) -> UserError:
    """The line for jobs scancel refused (job id -> why) of the run's live `jobs`; its squeue names every refused
    job, whose owner is the one to ask, and no other (a command is copied whole)."""
    why, ids = sorted(set(refused.values())), sorted(refused, key=job_order)
    return UserError(f"{store.root}: scancel refused {count(len(refused), 'job')} of its {len(jobs)} queued or "
                     f"running ({first_few(ids, 10)}: {'; '.join(why)}); jobs another user queued are theirs to "
                     f"cancel (squeue -r -j {squeue_args(ids)} -o %i,%u)"
                     + (f"; {count(len(jobs) - len(refused), 'other job')} cancelled" if len(jobs) > len(refused)
                        else ""))


def _sbatch(what: str, name: str, call):
    """Run a submission of the job(s) called `name`; sbatch's refusal (bad partition, account, …) becomes one
    error line (submitit also prints sbatch's stderr as it is: kept out, the line quotes it), and so does a
    slurmctld that does not answer within SLURMCTLD_WAIT (NoAnswer)."""
    from submitit.core.utils import FailedJobError

    try:
        with contextlib.redirect_stderr(io.StringIO()), _answered_within(SLURMCTLD_WAIT):
            return call()
    except (FailedJobError, _Unanswered) as e:
        if isinstance(e, _Unanswered) or isinstance(e.__cause__, _Unanswered):
            # the answer may be what was lost: slurmctld may have queued it
            raise NoAnswer(f"{unanswered(f'sbatch of {what}')}; it may have queued the job all the same, its "
                           f"answer lost: before submitting again, find it (squeue --me -n {shlex.quote(name)}) "
                           f"and cancel it, as jobs.json does not record it") from None
        limit = next((word for word in SUBMIT_LIMITS if word in str(e)), None)
        if limit:
            raise SubmitLimit(what, limit) from None
        raise _refused(what, said(str(e)) or str(e)) from None


UNREACHABLE = "Unable to contact slurm controller"  # Slurm's words where slurmctld is down or restarting


def _refused(what: str, why: str) -> UserError:
    """sbatch's failure to queue `what` for `why`: a controller it cannot reach queued nothing (its request never
    reached it), unlike one that does not answer, and is no refusal of the job's."""
    if UNREACHABLE in why:
        return UserError(f"sbatch of {what}: slurmctld cannot be reached ({why}: down or restarting, `scontrol "
                         f"ping` says when it is back), so it was not queued; submit again once it answers")
    return UserError(f"sbatch refused {what}: {why}")


class _Unanswered(Exception):
    """SIGALRM's, where sbatch waits past SLURMCTLD_WAIT (_answered_within)."""


@contextlib.contextmanager
def _answered_within(seconds: float):
    """Raise _Unanswered in the main thread once `seconds` have passed: submitit runs sbatch with no timeout,
    and kills it on an exception while it reads its output (FailedJobError, caused by this one). An alarm set
    before (pytest-timeout's) goes on after."""
    def ring(*_):
        raise _Unanswered

    handler = signal.signal(signal.SIGALRM, ring)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


# sbatch's reason where a limit on jobs queued at once (sacctmgr's MaxSubmitJobs of the association, or
# MaxSubmitPU of the QOS; GrpSubmitJobs of the account) is reached; its last line says only "Job violates
# accounting/QOS policy (job submit limit, user's size and/or time limits)", as for a size or time limit too
SUBMIT_LIMITS = ("QOSMaxSubmitJobPerUserLimit", "AssocMaxSubmitJobLimit", "QOSMaxSubmitJobPerAccountLimit",
                 "AssocGrpSubmitJobsLimit", "QOSGrpSubmitJobsLimit")


class KeptJobs(UserError):
    """scancel refused queued jobs of the run's (another user's) that a chain queued anew replaces."""

    def __init__(self, kept: dict[str, tuple[str, str, str]]):
        super().__init__(f"scancel refused {', '.join(kept)}")
        self.kept = kept  # job id -> (its unit, who queued it, scancel's words)

    def said(self, cancelled: int) -> str:
        job, (label, who, why) = next(iter(self.kept.items()))
        more = f" (and {count(len(self.kept) - 1, 'other')})" if len(self.kept) > 1 else ""
        gone = f"the {count(cancelled, 'job')} this submit had queued cancelled, " if cancelled else ""
        return (f"job {job}{more}, queued by {who or 'another user'} for {label}, waits on a generation this submit "
                f"queues anew, and scancel refused to cancel it ({why}): two jobs would run that unit; {gone}nothing "
                f"of this submit is queued: ask {who or 'its owner'} to cancel it (scancel {scancel_args(self.kept)}), "
                f"then submit again")


class SubmitLimit(UserError):
    """sbatch refused a job for a limit on the jobs a user (or account) may have queued at once."""

    def __init__(self, what: str, limit: str):
        super().__init__(f"sbatch refused {what}: {limit}")
        self.what, self.limit = what, limit

    def said(self, cancelled: int) -> str:
        were = "is" if cancelled == 1 else "are"
        gone = f"the {count(cancelled, 'job')} this submit had queued {were} cancelled, so " if cancelled else ""
        return (f"sbatch refused {self.what}: a limit on your jobs queued at once is reached ({self.limit}: sacctmgr "
                f"show assoc user=$USER format=MaxSubmitJobs, or the QOS's MaxSubmitPU); {gone}nothing of this "
                f"submit is queued: wait for jobs of yours to end (squeue --me), or submit part of the run "
                f"(--only EXPERIMENT, or fewer --generations)")


def _shell_value(v: str) -> str:
    """Double-quoted, so $USER and ${SCRATCH} in a profile's env expand in the job's shell."""
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def job_name(run_name: str, label: str, experiment: str, chain: int | None = None, unit: int | None = None) -> str:
    """squeue shows 8 characters of a name by default: they tell chain and generation apart
    (lm03g007: the lm's chain 3, generation 7; gm-array; report), the rest says which run."""
    if chain is None:
        head = f"{experiment[:2]}-array" if experiment != "aggregate" else "report"
    else:
        head = f"{experiment[:2]}{chain:02d}g{unit:03d}"
    return f"{head}-{run_name}:{label}"


# A task of a multi-rank job that exits non-zero (an error, a rank ended by its peer watch, one killed)
# ends the step's other tasks, which would otherwise wait in their next collective until its timeout:
# the peer watch sees only the ranks of its own host. A task that exits 0 ends nothing; a requeue's
# exit (submitit's rank 0, once it has requeued the job) ends tasks the requeue ends anyway.
RANKS_END_TOGETHER = ["--kill-on-bad-exit=1"]


class Submitter:
    """Builds one submitit SlurmExecutor per job kind from the profile."""

    def __init__(self, store, run, prof: profiles.Profile, dry_run: bool = False):
        import submitit

        self.store, self.run, self.prof, self.dry_run = store, run, prof, dry_run
        self.folder = store.logs / "submitit"
        self.python = self._python()
        self._submitit = submitit

    def _python(self) -> str | None:
        if getattr(self.prof.container, "image", None):
            from collapse_hpc.launch.container import slurm_python
            from collapse_hpc.launch.profile import jobs_caches

            # the caches of the jobs' environment (the profile's env, e.g. on /scratch, over this shell's):
            # where stage fetched the models and submit's check found them
            home, hub = jobs_caches(self.prof)
            return slurm_python(self.prof.container, self.store.root, self.run.data_dir,
                                hf_home=home, hub_cache=hub, dry_run=self.dry_run)
        return self.prof.python

    def executor(self, kind: str, ranks: int = 1, name: str = "collapse", dependency: str | None = None,
                 comment: str | None = None):
        prof, res = self.prof, self.prof.resources(kind)
        tasks = res.gpus_per_node or res.tasks_per_node or (ranks if kind == "gpu" else 1)
        extra = {**prof.sbatch, **res.sbatch}
        if dependency and prof.kill_on_invalid_dep:
            extra["kill-on-invalid-dep"] = "yes"
        setup = list(prof.setup) + [f"export {k}={_shell_value(str(v))}" for k, v in prof.env.items()]
        params = dict(job_name=name, time=res.time_min, nodes=res.nodes, ntasks_per_node=tasks,
                      cpus_per_task=res.cpus_per_task, gpus_per_node=res.gpus_per_node or None, mem=res.mem,
                      partition=res.partition or prof.partition, qos=res.qos or prof.qos, account=prof.account,
                      signal_delay_s=prof.signal_delay_s, array_parallelism=prof.array_parallelism,
                      dependency=dependency, comment=comment, setup=setup or None, additional_parameters=extra,
                      srun_args=RANKS_END_TOGETHER if tasks * res.nodes > 1 else None)
        make = _planned_executor if self.dry_run else self._submitit.SlurmExecutor
        ex = make(folder=self.folder, max_num_timeout=prof.max_requeues, python=self.python)
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        ex.parameters["wckey"] = prof.wckey  # None drops submitit's own --wckey=submitit
        return ex

    def script(self, kind: str, ranks: int = 1, name: str = "collapse", dependency: str | None = None,
               comment: str | None = None, tasks: int | None = None) -> str:
        """The sbatch script of one job of `kind` (of an array of `tasks`), as submitit writes it."""
        from submitit.slurm.slurm import _make_sbatch_string

        ex = self.executor(kind, ranks, name=name, dependency=dependency, comment=comment)
        params = dict(ex.parameters)
        if tasks:
            params["map_count"] = tasks
        return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **params)


def try_requests(store, run, prof: profiles.Profile, kinds: dict[str, int]) -> None:
    """`sbatch --test-only` with one job of each kind (kind -> its ranks), before anything is written or
    queued: what sbatch refuses beyond the checks above (an account or QOS the user may not charge, a
    --mem it cannot read, an unknown extra option) it would refuse only once earlier jobs were queued.
    Nodes unavailable now (WAITS) are no refusal: the jobs wait, and status says why."""
    import tempfile

    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: not a Slurm host (the dev cluster: bash slurm/dev-cluster/start.sh)")
    sub = Submitter(store, run, prof, dry_run=True)
    for kind, ranks in kinds.items():
        with tempfile.NamedTemporaryFile("w", prefix="collapse-test-only-", suffix=".sh") as f:
            f.write(sub.script(kind, ranks, name=f"test-only-{kind}"))
            f.flush()
            out = ask(["sbatch", "--test-only", f.name])
        why = said(out.stderr) or f"exit status {out.returncode}"
        if out.returncode != 0 and not any(w in why for w in WAITS):
            shared = [k for k in ("sbatch", "account", "qos") if getattr(prof, k)]  # what every kind's jobs get
            verb = "apply" if len(shared) > 1 else "applies"
            raise UserError(f"profile {prof.name}: sbatch refuses its {kind} jobs: {why} (" + (
                refused_key(prof, kind, why) or f"jobs.{kind} sets this kind's requests"
                + (f"; {', '.join(shared)} {verb} to every kind" if shared else "")) + ")")


def refused_key(prof: profiles.Profile, kind: str, why: str) -> str | None:
    """The profile's key that set what sbatch's refusal names (an account, a QOS), with its value; None where
    no such key did (sbatch: extras, or a refusal of something else)."""
    said = why.lower()
    if "qos" in said and (own := prof.resources(kind).qos):
        return f"jobs.{kind}.qos is {own!r}"
    for key in ("qos", "account"):
        if key in said and getattr(prof, key):
            return f"{key} is {getattr(prof, key)!r}, for every kind"
    return None


# --test-only's answers while the nodes are drained, down or reserved (or the partition is down): sbatch
# queues such a job, which waits; a job that no node could ever fit is _check_fits' refusal
WAITS = ("Requested node configuration is not available", "Requested nodes are busy", "Required node not available",
         "configuration not available now")


# How sbatch frames its reason: a submission's "sbatch: error: Batch job submission failed: …",
# --test-only's "allocation failure: …"
FRAMING = ("sbatch: error: ", "Batch job submission failed: ", "allocation failure: ")


def said(stderr: str) -> str:
    """What sbatch says is wrong: its last line but the usage hint ('Try "sbatch --help"'), unframed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Try ")]
    why = lines[-1] if lines else ""
    for prefix in FRAMING:
        why = why.removeprefix(prefix)
    return why


def _planned_executor(**kwargs):
    """A SlurmExecutor that only writes sbatch scripts (submit --dry-run): submitit refuses to build
    one where there is no srun, e.g. a workstation reading the scripts before the cluster sees them."""
    from submitit import SlurmExecutor

    class Planned(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1

    return Planned(**kwargs)


def numbered(chains) -> list:
    """(chain, its number among its experiment's chains) for every chain-shaped one, in plan order."""
    counts: dict[str, int] = {}
    out = []
    for chain in (c for c in chains if c.shape == "chain"):
        out.append((chain, counts.setdefault(chain.experiment, 0)))
        counts[chain.experiment] += 1
    return out


def submit(store, run, chains, pending: set[str], finish=None, config: str | None = None, **_) -> dict:
    """Queue what is `pending` (pending_units, worked out before the run folder was opened) and not queued;
    `finish(run_dir)`, an importable function, runs as the final job (none without it); `config`: the
    cluster's show_config, read by the checks before (read here where not given). What is queued now is
    read again here, under the run's lock: another submit of the run may have queued jobs since."""
    from submitit.helpers import clean_env

    prof = profiles.load(run.profile)
    # One submitter at a time per run (two would queue two chains for a variant). clean_env: when
    # submitting from inside a job, its SLURM_* variables must not pass on. What got queued is
    # recorded even when a later sbatch fails.
    with store.lock(), clean_env(), contextlib.ExitStack() as on_exit:
        book = records.load(store)
        plan = _Submission(store, run, Submitter(store, run, prof), book, recorded(book), pending)
        before = copy.deepcopy(plan.book)
        plan.max_array = limits(show_config() if config is None else config).get("MaxArraySize")
        if plan.book.get("corrupt"):  # without it, what is queued is unknown: a second chain could start
            raise UserError(f"{plan.book['corrupt']} is corrupt: restore it, or cancel this run's jobs "
                            f"(squeue --me) and remove it, then submit again")
        on_exit.callback(records.save, store, plan.book)
        records.take_over(plan.book, "slurm")  # a local run's units it does not queue again stay local
        plan.book.update(profile=str(run.profile), cluster=prof.name, folder=records.identity(store))
        plan.book.pop("copied_from", None)  # a copied run's book is its own from its first submit
        try:
            short = plan.all(chains, prof, finish)
        # half a chain queued is of no use, nor one beside a job it cannot cancel: this submit's jobs go, the book
        # as it was
        except (SubmitLimit, KeptJobs) as e:
            plan.withdraw(before)
            raise UserError(e.said(len(plan.new_ids))) from None
    _print_table(store, prof, plan.rows, len(plan.new_ids), plan.done)
    for said in [others_said(plan.queue), short and short[0], *plan.warnings]:
        if said:
            print(f"warning: {said}", file=sys.stderr)
    return {"submitted": plan.new_ids, "queued": plan.live_ids, "done": plan.done}


class _Submission:
    """One `submit`: what it finds done or queued, what it queues, and the table it prints."""

    def __init__(self, store, run, sub: Submitter, book: dict, queue: dict[str, str], pending: set[str]):
        self.store, self.run, self.sub, self.book, self.queue = store, run, sub, book, queue
        self.pending = pending  # pending_units: the labels of the units to start
        self.root = str(store.root)
        self.rows, self.new_ids, self.live_ids, self.warnings = [], [], [], []
        self.stale: dict[str, str] = {}  # job id -> its unit, of queued jobs a chain queued anew replaces
        self.done = 0
        self.max_array: int | None = None  # the cluster's MaxArraySize, where scontrol tells it

    def all(self, chains, prof, finish) -> tuple[str, int] | None:
        """Queue every chain, array and the report; what report_memory_short says of the report's memory."""
        for chain, number in numbered(chains):
            self.chain(chain, number)
        arrays: dict[str, list] = {}
        for chain in [c for c in chains if c.shape == "array"]:
            arrays.setdefault(chain.experiment, []).append(chain)
        for name, group in arrays.items():
            self.array(name, group)
        stale, self.stale = self.stale, {}  # cancelled: none is left queued beside its successor
        if kept := self.cancel(list(stale)):  # another user's: it would run its unit beside the new job
            raise KeptJobs({j: (stale[j], self.owner(j), why) for j, why in kept.items()})
        short = report_memory_short(prof, self.run, chains) if finish is not None else None
        if short:  # the aggregation job (aggregate.job) reads it
            self.book["report_replicates"] = short[1]
        else:
            self.book.pop("report_replicates", None)
        if finish is not None:
            self.aggregate(chains, finish)
        return short

    def withdraw(self, book: dict) -> None:
        """Cancel the jobs this submit queued and put `book` (jobs.json before it) back."""
        self.cancel(self.new_ids)  # unanswered: the book keeps them
        self.book.clear()
        self.book.update(book)

    def cancel(self, jobs: list[str]) -> dict[str, str]:
        """cancel(`jobs`); where slurmctld does not answer, what this submit queued is said with it: recorded."""
        try:
            return cancel(jobs)
        except NoAnswer as e:
            raise NoAnswer(f"{e}; {self.queued_said([j for j in jobs if j not in self.new_ids])}") from None

    def sbatch(self, what: str, name: str, call):
        """_sbatch; where it fails part-way (slurmctld unreachable or silent, a job refused), what this submit queued
        before is said with it, recorded, and the queued jobs they replace, no longer recorded, named to cancel."""
        try:
            return _sbatch(what, name, call)
        except SubmitLimit:  # withdrawn: submit cancels what it queued and puts the book back
            raise
        except UserError as e:
            kind = NoAnswer if isinstance(e, NoAnswer) else UserError
            raise kind(f"{e}; {self.queued_said(list(self.stale))}") from None

    def queued_said(self, old: list[str]) -> str:
        """What to say of this submit's jobs where it ends part-way: queued and recorded, and the queued jobs
        `old` they replace left queued."""
        said = (f"this submit queued {count(len(self.new_ids), 'job')} ({first_few(self.new_ids, 10)}), recorded "
                f"in jobs.json (collapse-hpc status, cancel)" if self.new_ids else "this submit queued no job")
        # every one: jobs.json no longer names them, so this line is the user's only list of them
        return said + (f"; the queued jobs they replace are not cancelled: scancel {scancel_args(old)}" if old else "")

    def live(self, label: str) -> str | None:
        return live_job(self.book, label, self.queue)

    def owner(self, job: str) -> str:
        """Who queued the run's queued `job` (squeue's user; "" where not told)."""
        return getattr(self.queue, "users", {}).get(str(job), "")

    def note(self, label: str, sj, dependency: str | None, kind: str, name: str) -> None:
        records.record(self.book, label, job_id=sj.job_id, log=str(sj.paths.stderr), dependency=dependency,
                       kind=kind, submitted=time.time(), name=name)

    def chain(self, chain, number: int) -> None:
        """A chain's unfinished generations, each afterok on the one before (or on its queued job);
        `number`: the chain's place among its experiment's (in its job names)."""
        from collapse_hpc.launch.job import UnitJob

        run, ranks = self.run, chain.ranks
        prev, resubmitted, ids = None, False, []
        for job in chain.jobs:
            if job.label not in self.pending:
                self.done += 1
                prev = None
                continue
            jid = self.live(job.label)
            if not jid and not resubmitted and self.ended_since(job):  # nothing of the chain queued anew yet
                self.done += 1
                prev = None
                continue
            if jid and not resubmitted:  # queued or running already: the chain goes on after it
                prev = jid
                self.live_ids.append(jid)
                ids.append(f"{jid}(queued)")
                continue
            if jid:  # waits on a job we are replacing: never two chains for one variant
                self.stale[jid] = job.label
            dep = f"afterok:{prev}" if prev else None
            name = job_name(run.name, job.label, chain.experiment, number, job.index)
            ex = self.sub.executor(chain.kind, ranks, name=name, dependency=dep,
                                   comment=f"{job.label}" + (f" {dep}" if dep else ""))
            unit = functools.partial(ex.submit, UnitJob(), self.root, job.experiment, job.variant, job.index)
            sj = self.sbatch(job.label, name, unit)
            self.note(job.label, sj, dep, chain.kind, name)
            prev, resubmitted = sj.job_id, True
            self.new_ids.append(sj.job_id)
            ids.append(sj.job_id)
        self.rows.append((f"{chain.experiment}/{chain.variant.name}", "chain", len(chain.jobs),
                          chain_ids(ids) or "all done"))

    def ended_since(self, job) -> bool:
        """Whether a chain's generation finished after `pending` was worked out: its job ended between that and
        the read of the queue (running when looked at, gone from the queue then). Queued again, it would be
        redone, and its successor, queued and live, cancelled as stale. A generation redone for a mismatch
        (engine.pending: its files no longer match, or one before it changed) had finished before: it stays."""
        since = getattr(self.pending, "since", None)
        manifest = read_manifest(self.store.unit_dir(job.experiment, job.variant, job.shape, job.index)) or {}
        finished = manifest.get("finished")
        return (since is not None and isinstance(finished, (int, float)) and finished > since
                and engine.job_done(self.store, self.run, job))

    def array(self, name: str, group: list) -> None:
        """One job array for every unfinished, unqueued part of every variant of an experiment."""
        from collapse_hpc.launch.job import UnitJob

        todo, queued_parts, planned = [], [], 0
        for chain in group:
            for job in chain.jobs:
                planned += 1
                if job.label not in self.pending:
                    self.done += 1
                elif jid := self.live(job.label):
                    queued_parts.append(jid)
                elif engine.job_done(self.store, self.run, job):  # its job ended since `pending` was worked out
                    self.done += 1
                else:
                    todo.append((job, chain.kind))
        self.live_ids += queued_parts
        arrays = []
        if todo:
            called = job_name(self.run.name, name, name)
            ex = self.sub.executor(group[0].kind, 1, name=called, comment=f"{name} array")

            def array(piece):
                with ex.batch():  # one sbatch --array for every part of every variant (up to MaxArraySize)
                    return [(job, kind, ex.submit(UnitJob(), self.root, job.experiment, job.variant, job.index))
                            for job, kind in piece]

            for piece in array_pieces(todo, self.max_array):
                jobs = self.sbatch(f"the {name} array", called, lambda piece=piece: array(piece))
                for job, kind, sj in jobs:
                    self.note(job.label, sj, None, kind, called)
                array_id = jobs[0][2].job_id.split("_")[0]
                self.new_ids.append(array_id)
                # submitit queues a lone task as a plain job: it has no task 0 to name
                arrays.append(f"{array_id}_[0-{len(jobs) - 1}]" if len(jobs) > 1 else array_id)
        if queued_parts:
            arrays.append(f"{len(queued_parts)} queued")
        self.rows.append((name, "array", planned, " + ".join(arrays) or "all done"))

    def aggregate(self, chains, finish) -> None:
        """The report job, afterany on everything queued; again at once if the last one failed."""
        agg = self.book.get("aggregate", {})
        agg_live = agg.get("job_id") if self.queue.get(str(agg.get("job_id"))) in ACTIVE else None
        # every unit done but no (current) report: the aggregation job failed; it runs again, at once
        redo_report = not (self.new_ids or self.live_ids or agg_live) and _report_stale(self.store, chains)
        theirs = bool(agg_live) and self.owner(agg_live) not in ("", getpass.getuser())
        if self.new_ids or (self.live_ids and not agg_live) or redo_report:
            # another user's is cancelled first (an operator may): scancel refuses a colleague's, and a second
            # report job would run beside it
            if theirs and self.report_kept(agg_live):
                self.rows.append(("aggregate", "job", 1, f"{agg_live}(queued, {self.owner(agg_live)}'s)"))
                return
            waits = sorted({str(j).split("_")[0] for j in self.new_ids + self.live_ids})
            dep = "afterany:" + ":".join(waits) if waits else None
            called = job_name(self.run.name, "aggregate", "aggregate")
            ex = self.sub.executor("aggregate", 1, name=called, dependency=dep,
                                   comment="aggregate" + (f" {dep}" if dep else ""))
            sj = self.sbatch("the aggregation job", called, lambda: ex.submit(finish, self.root))
            self.book["aggregate"] = {"job_id": sj.job_id, "log": str(sj.paths.stderr), "dependency": dep,
                                      "name": called,
                                      "submitted": time.time(), "history": agg.get("history", []) + (
                                          [agg["job_id"]] if agg.get("job_id") else [])}
            self.new_ids.append(sj.job_id)
            self.rows.append(("aggregate", "job", 1, f"{sj.job_id} " + ("(afterany)" if dep else "(report missing)")))
            if agg_live and not theirs:  # it would run before the new jobs end; once its successor is queued and
                self.cancel([agg_live])  # recorded (an sbatch refusal keeps it)
        elif agg_live:
            self.rows.append(("aggregate", "job", 1, f"{agg_live}(queued)"))

    def report_kept(self, job: str) -> bool:
        """Whether scancel refused the run's report job `job`, another user's: it stays the run's one, said."""
        refused = self.cancel([job])
        if refused:
            who = self.owner(job)
            self.warnings.append(
                f"the run's report job {job} is {who}'s and scancel refused to cancel it ({refused[job]}): no second "
                f"one is queued; it reports once the jobs it waits on end, before this submit's: for a report of "
                f"every unit, submit again once these have ended, or ask {who} to cancel it (scancel {job}) first")
        return bool(refused)


def chain_ids(ids: list[str]) -> str:
    """A chain's job ids in order, a run of more than 3 alike (new, or queued before) as its first and
    last: paper.yaml's 10 generations made a line of 190 characters, a longer chain one of thousands."""
    out: list[str] = []
    for _, alike in itertools.groupby(ids, key=lambda i: i.endswith("(queued)")):
        run = list(alike)
        out += run if len(run) <= 3 else [run[0], f"({len(run) - 2} more)", run[-1]]
    return " -> ".join(out)


def _report_stale(store, chains) -> bool:
    """No report, or one older than a unit's manifest (index.html is written last)."""
    index = store.root / "report" / "index.html"
    if not index.is_file():
        return True
    made = index.stat().st_mtime
    for job in (j for c in chains for j in c.jobs):
        manifest = store.unit_dir(job.experiment, job.variant, job.shape, job.index) / "manifest.json"
        with contextlib.suppress(FileNotFoundError):
            if manifest.stat().st_mtime > made:
                return True
    return False


def _print_table(store, prof, rows, n_new: int, done: int) -> None:
    width = max([len(r[0]) for r in rows] + [5])
    print(f"{'chain':<{width}}  {'shape':<5}  {'units':>5}  jobs")
    for name, shape, units, ids in rows:
        print(f"{name:<{width}}  {shape:<5}  {units:>5}  {ids}")
    if n_new:
        print(f"submitted {count(n_new, 'job')} to {prof.name}; {count(done, 'unit')} already done; "
              f"jobs in {store.root / records.JOBS}; follow with: collapse-hpc status {shlex.quote(str(store.root))}")
    else:
        print(f"nothing to submit: {count(done, 'unit')} done, the rest already queued or running", file=sys.stdout)
