"""The jobs that may be queued at once, as sacctmgr and the partitions' QOS set them. Past one sbatch refuses a
job part-way through a submit (slurm.SubmitLimit); submit reads them before anything is queued:
- the user's association (the user under an account, or its row for the job's partition where there is one):
  MaxSubmitJobs (sacctmgr shows the account's where the user's own is unset) and its own GrpSubmitJobs;
- an account's GrpSubmitJobs, for every user's jobs of it and of the accounts below it, and each account's above;
- a QOS's, the job's and its partition's (QoS= of scontrol show partition): MaxSubmitPU (the user's jobs),
  MaxSubmitPA (an account's) and GrpSubmit (everyone's). One set by the partition's QOS stands in for the job
  QOS's (unless that has the flag OverPartQOS), and a QOS's MaxSubmitPU and GrpSubmit for the association's
  MaxSubmitJobs and GrpSubmitJobs (Slurm checks the QOS's first; measured on Slurm 22.05).
A QOS counts every job under it, as the job's own QOS or as its partition's, in whichever partitions have it
(a job pending in several partitions counts for each one's QOS: slurmctld's acct_policy). An array counts a
job per task. A job to queue in several partitions (--partition=a,b) is weighed against the limits it meets
in any of them: it counts for each one's QOS from the moment it is queued, and sbatch refuses it past the limit
of any one (measured on Slurm 22.05 with EnforcePartLimits=NO: a job of debug,scavenger refused at the QOS of
debug alone, and at the job's own QOS where only debug's stands in for it); a limit met in several, once.
Where there is no sacctmgr, or slurm.conf's AccountingStorageEnforce leaves limits out, there is none to
read, and sbatch alone checks; so where sacctmgr fails or does not answer (slurmdbd down), or squeue does
(the jobs queued now unknown), which a warning says. Where PrivateData=jobs hides other users' jobs from
squeue, a limit on everyone's (or an account's) jobs is passed only where those squeue shows already pass it,
and says so."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from collapse_hpc.logs import count

# sacctmgr -n -P's fields read here: the user's associations, the accounts' own (user=), the QOS
ASSOC = ("Account", "Partition", "MaxSubmit", "GrpSubmit", "DefaultQOS")
ACCOUNT = ("Account", "ParentName", "GrpSubmit")
QOS = ("Name", "MaxSubmitPU", "MaxSubmitPA", "GrpSubmit", "Flags")


@dataclass(frozen=True)
class Charge:
    """What a job charges, as squeue -o %u|%a|%q|%P tells it of a queued one ("": the default), and its
    partition's QOS ("N/A": none; of a job queued in several partitions, theirs joined by commas)."""
    user: str
    account: str
    qos: str
    partition: str
    partition_qos: str = "N/A"


@dataclass(frozen=True)
class Limit:
    """One limit and the jobs it counts; two are the same limit where they count the same jobs (the words
    are the first finder's: a QOS met as the partition's QOS of two partitions is one limit)."""
    most: int
    where: str = field(compare=False)  # which knob sets it, and how to see it
    whose: str = field(compare=False)  # whose jobs it counts, in words
    user: str | None = None  # the jobs it counts: this user's (None: everyone's),
    accounts: frozenset[str] | None = None  # charging one of these accounts,
    qos: str | None = None  # under this QOS (their own or a partition's),
    partition: str | None = None  # in this partition (a partition's association)

    def counts(self, job: Charge) -> bool:
        under = self.qos in (None, job.qos) or self.qos in job.partition_qos.split(",")
        return (self.user in (None, job.user) and (self.accounts is None or job.account in self.accounts)
                and under and self.partition in (None, job.partition))


def enforced(config: str) -> bool:
    """Whether `scontrol show config` says limits are enforced (AccountingStorageEnforce: limits, or safe
    and all, which take it in)."""
    m = re.search(r"^AccountingStorageEnforce\s*=\s*(\S*)", config, re.M)
    return m is not None and bool({"limits", "safe", "all"} & set(m[1].lower().split(",")))


def readable(config: str) -> bool:
    """Whether there are limits to read here: `scontrol show config` says they are enforced, and sacctmgr is here
    to tell them (else sbatch alone checks)."""
    return enforced(config) and shutil.which("sacctmgr") is not None


def _number(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def parse(text: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """`sacctmgr -n -P show … format=<fields>`, a dict a line (other lines, e.g. warnings, left out)."""
    return [dict(zip(fields, line.split("|"))) for line in text.splitlines() if line.count("|") == len(fields) - 1]


def _qos_limits(qos: dict[str, dict[str, str]], job: Charge) -> dict[str, Limit]:
    """The QOS's limits a job meets, by knob: each set by its partition's QOS, else by its own QOS."""
    order = [q for q in (job.partition_qos, job.qos) if q in qos]
    if job.qos in qos and "OverPartQOS" in qos[job.qos]["Flags"]:
        order.reverse()
    whose = {"MaxSubmitPU": ("your jobs", job.user, None), "MaxSubmitPA": (
        f"the jobs of account {job.account}, every user's,", None, frozenset([job.account])),
        "GrpSubmit": ("the jobs of every user", None, None)}
    found = {}
    for knob, (words, user, accounts) in whose.items():
        for q in order:
            if (most := _number(qos[q][knob])) is not None:
                own = q == job.qos
                words += "" if own else f" under QOS {q}"
                found[knob] = Limit(most, f"{knob} of QOS {q}" + ("" if own else f", partition {job.partition}'s")
                                    + f": sacctmgr show qos {q} format=Name,{knob}", words, user, accounts, q)
                break
    return found


def _account_limits(accounts: list[dict[str, str]], account: str) -> list[Limit]:
    """GrpSubmitJobs of `account` and of each account above it: the jobs of it and the accounts below it."""
    parent = {a["Account"]: a["ParentName"] for a in accounts}
    found, seen, at = [], set(), account
    while at in parent and at not in seen:
        seen.add(at)
        below, grew = {at}, True
        while grew:
            more = {a for a, p in parent.items() if p in below} - below
            below, grew = below | more, bool(more)
        row = next(a for a in accounts if a["Account"] == at)
        if (most := _number(row["GrpSubmit"])) is not None:
            found.append(Limit(most, f"GrpSubmitJobs of account {at}: sacctmgr show assoc account={at} user= "
                                     f"format=Account,GrpSubmitJobs",
                               f"the jobs of account {at}" + (" and those below it" if len(below) > 1 else "")
                               + ", every user's,", accounts=frozenset(below)))
        at = parent[at]
    return found


def limits_for(assocs: list[dict[str, str]], accounts: list[dict[str, str]], qos: dict[str, dict[str, str]],
               job: Charge) -> list[Limit]:
    """Every limit on jobs queued at once a job charging `job` meets ([]: no association of the user's with
    its account: sbatch refuses it, and says why)."""
    rows = [a for a in assocs if a["Account"] == job.account]
    general = next((a for a in rows if not a["Partition"]), None)
    assoc = next((a for a in rows if job.partition and a["Partition"] == job.partition), general)
    if assoc is None:
        return []
    job = replace(job, qos=job.qos or assoc["DefaultQOS"] or (general or assoc)["DefaultQOS"])
    found = _qos_limits(qos, job)
    part = assoc["Partition"] or None
    mine = (f"your association with account {job.account}" + (f" and partition {part}" if part else "")
            + f": sacctmgr show assoc user={job.user} format=Account,Partition,")
    if "MaxSubmitPU" not in found and (most := _number(assoc["MaxSubmit"])) is not None:
        found["MaxSubmit"] = Limit(most, f"MaxSubmitJobs of {mine}MaxSubmitJobs", "your jobs", job.user,
                                   frozenset([job.account]), None, part)
    if "GrpSubmit" in found:
        return list(found.values())
    if (most := _number(assoc["GrpSubmit"])) is not None:
        found["GrpSubmit"] = Limit(most, f"GrpSubmitJobs of {mine}GrpSubmitJobs", "your jobs", job.user,
                                   frozenset([job.account]), None, part)
    return list(found.values()) + _account_limits(accounts, job.account)


def over(limit: Limit, jobs: int, queued_now: int, hidden: bool = False) -> str | None:
    """What to say where `jobs` more beside `queued_now` that `limit` counts pass it; None within it.
    `hidden`: squeue hides other users' jobs that the limit counts (PrivateData=jobs): `queued_now` is
    what it shows, the least there are."""
    if jobs + queued_now <= limit.most:
        return None
    room = max(limit.most - queued_now, 0)
    yours = " of yours" if limit.user else ""
    now = (f"{queued_now} queued now that squeue shows you (PrivateData=jobs hides other users' jobs), so at most "
           f"{room} more fit" if hidden else f"{queued_now}{yours} queued now, so {room} more fit")
    return (f"this submit would queue {count(jobs, 'job')}, and {limit.whose} queued at once are limited to "
            f"{limit.most} ({limit.where}), {now}: nothing was queued; submit fewer generations at a time "
            f"(--generations), or part of the run (--only EXPERIMENT), or wait for jobs{yours} to end (squeue"
            + (" --me)" if limit.user else ")"))


def hides_jobs(config: str) -> bool:
    """Whether `scontrol show config` says squeue shows users their own jobs only (PrivateData=jobs)."""
    m = re.search(r"^PrivateData\s*=\s*(\S*)", config, re.M)
    return m is not None and "jobs" in m[1].lower().split(",")


SACCTMGR_WAIT = 30  # seconds: sacctmgr asks slurmdbd, which may be down or (a busy cluster's) slow


class Unread(Exception):
    """sacctmgr did not tell the limits, or squeue the jobs they count: which read, and why."""


def _sacctmgr(*show: str) -> str:
    """`sacctmgr -n -P show …`'s output; Unread where it fails (its last error line) or does not answer in time."""
    from collapse_hpc.launch.slurm import last_error

    try:
        out = subprocess.run(["sacctmgr", "-n", "-P", "show", *show], capture_output=True, text=True,
                             timeout=SACCTMGR_WAIT)
    except subprocess.TimeoutExpired:
        raise Unread(f"sacctmgr show {show[0]}: no answer within {SACCTMGR_WAIT:g} s") from None
    if out.returncode:
        raise Unread(f"sacctmgr show {show[0]} failed: {last_error(out)}")
    return out.stdout


def _accounting(user: str, config: str) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, dict[str, str]],
                                                 str]:
    """What sacctmgr tells of `user`: their associations, the accounts' own rows, the QOS by name, their default
    account; Unread at the first read that fails."""
    cluster = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.M)
    where = [f"cluster={cluster[1]}"] if cluster else []
    assocs = parse(_sacctmgr("assoc", "where", f"user={user}", *where, "format=" + ",".join(ASSOC)), ASSOC)
    accounts = parse(_sacctmgr("assoc", "where", "user=", *where, "format=" + ",".join(ACCOUNT)), ACCOUNT)
    qos = {q["Name"]: q for q in parse(_sacctmgr("qos", "format=" + ",".join(QOS)), QOS)}
    return assocs, accounts, qos, _sacctmgr("user", user, "format=DefaultAccount").strip()


def _squeue(user: str, everyone: bool) -> str:
    """squeue's %u|%a|%q|%P of the user's queued jobs (every user's, `everyone`); Unread where it is missing, fails
    or gets no answer (slurm.ask): counted as none, the jobs queued now would pass a submit that sbatch refuses."""
    from collapse_hpc.launch.slurm import SLURMCTLD_WAIT, NoAnswer, ask, last_error

    if shutil.which("squeue") is None:
        raise Unread("squeue not found")
    try:
        out = ask(["squeue", "-h", "-r", *([] if everyone else ["-u", user]), "-o", "%u|%a|%q|%P"])
    except NoAnswer:
        raise Unread(f"squeue: no answer within {SLURMCTLD_WAIT:g} s") from None
    if out.returncode:
        raise Unread(f"squeue failed: {last_error(out)}")
    return out.stdout


def _queued_now(met: dict[Limit, int], user: str, partition_qos: Mapping[str, str]) -> list[Charge]:
    """The queued jobs the limits `met` may count: the user's, or every user's where one counts theirs."""
    everyone = any(limit.user is None for limit in met)
    return [_queued(line, partition_qos) for line in _squeue(user, everyone).splitlines() if line.count("|") == 3]


def problem(jobs: dict[tuple[Charge, ...], int], user: str, config: str,
            partition_qos: Mapping[str, str]) -> str | None:
    """Whether the jobs a submit would queue, by what they charge (account "": the user's default; one charge
    per partition of a job of several), with the jobs queued now, pass a limit they meet: what `over` says of
    it; None within them or where none can be read (where sacctmgr or squeue fails, a warning says so).
    `config`: scontrol show config's text; `partition_qos`: partition -> its QOS (scontrol show partition's
    QoS=)."""
    if not readable(config):
        return None
    try:
        met = weighed(jobs, *_accounting(user, config))
        queued = _queued_now(met, user, partition_qos) if met else []
    except Unread as e:  # sbatch still refuses past a limit: part-way, which submit's SubmitLimit undoes
        print(f"warning: the limits on jobs queued at once are not checked ({e}): sbatch checks them itself; past "
              f"one it refuses a job part-way through the submit, and this submit's jobs are cancelled",
              file=sys.stderr)
        return None
    hidden = hides_jobs(config)
    found = (over(limit, n, sum(limit.counts(job) for job in queued), hidden and limit.user is None)
             for limit, n in met.items())
    return next((said for said in found if said), None)


def weighed(jobs: dict[tuple[Charge, ...], int], assocs: list[dict[str, str]], accounts: list[dict[str, str]],
            qos: dict[str, dict[str, str]], default: str) -> dict[Limit, int]:
    """Every limit the jobs to queue meet (`jobs`: as `problem` takes them; account "": `default`), each with
    how many of them it counts: a job of several partitions, those it meets in any of them, each once."""
    met: dict[Limit, int] = {}
    for charges, n in jobs.items():
        found = [lim for c in charges
                 for lim in limits_for(assocs, accounts, qos, replace(c, account=c.account or default))]
        for limit in dict.fromkeys(found):
            met[limit] = met.get(limit, 0) + n
    return met


def _queued(line: str, partition_qos: Mapping[str, str]) -> Charge:
    """A line of squeue -o %u|%a|%q|%P as a Charge, with its partitions' QOS."""
    user, account, qos, partitions = line.split("|")
    return Charge(user, account, qos, partitions, ",".join(partition_qos.get(p, "N/A") for p in partitions.split(",")))
