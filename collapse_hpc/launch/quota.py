"""The jobs a user may have queued at once, as sacctmgr sets them: MaxSubmitJobs of the user's association
(the user under an account; sacctmgr shows the account's where the user's own is unset) and
MaxSubmitJobsPerUser of a QOS (MaxSubmitPU), which, where set, stands in for the association's (Slurm
checks the QOS's first; measured on Slurm 22.05). An array counts a job per task. Past the limit sbatch
refuses a job part-way through a submit (slurm.SubmitLimit); submit reads it before anything is queued.
Where there is no sacctmgr, or slurm.conf's AccountingStorageEnforce leaves limits out, there is none
to read, and sbatch alone checks."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from collapse_hpc.logs import count

ASSOC = ("Account", "Partition", "MaxSubmit", "DefaultQOS")  # sacctmgr show assoc's fields read here
QOS = ("Name", "MaxSubmitPU")


@dataclass(frozen=True)
class Limit:
    most: int
    where: str  # which knob sets it, and how to see it
    qos: str | None  # a QOS's limit counts the user's jobs of that QOS; an association's, of its account
    account: str

    def counts(self, account: str, qos: str) -> bool:
        return qos == self.qos if self.qos else account == self.account


def enforced(config: str) -> bool:
    """Whether `scontrol show config` says limits are enforced (AccountingStorageEnforce: limits, or safe
    and all, which take it in)."""
    m = re.search(r"^AccountingStorageEnforce\s*=\s*(\S*)", config, re.M)
    return m is not None and bool({"limits", "safe", "all"} & set(m[1].lower().split(",")))


def _number(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def parse_assocs(text: str) -> list[dict[str, str]]:
    """`sacctmgr -n -P show assoc format=Account,Partition,MaxSubmit,DefaultQOS`, a dict a line."""
    return [dict(zip(ASSOC, line.split("|"))) for line in text.splitlines() if line.count("|") == len(ASSOC) - 1]


def parse_qos(text: str) -> dict[str, int | None]:
    """`sacctmgr -n -P show qos format=Name,MaxSubmitPU`: QOS -> its MaxSubmitPU (None: none)."""
    rows = [line.split("|") for line in text.splitlines() if line.count("|") == len(QOS) - 1]
    return {name: _number(most) for name, most in rows}


def limit_for(assocs: list[dict[str, str]], qos_limits: dict[str, int | None], account: str, user: str,
              qos: str | None) -> Limit | None:
    """The limit a job charging `account` under `qos` (None: the association's default QOS) meets: its
    QOS's MaxSubmitPU, else its association's MaxSubmitJobs; None where neither is set. The association
    is the account's row for every partition (a row of one partition is a rarity, sbatch checks it)."""
    assoc = next((a for a in assocs if a["Account"] == account and not a["Partition"]), None)
    if assoc is None:
        return None
    qos = qos or assoc["DefaultQOS"] or None
    if qos and (most := qos_limits.get(qos)) is not None:
        return Limit(most, f"MaxSubmitPU of QOS {qos}: sacctmgr show qos {qos} format=Name,MaxSubmitPU", qos, account)
    if (most := _number(assoc["MaxSubmit"])) is not None:
        return Limit(most, f"MaxSubmitJobs of your association with account {account}: sacctmgr show assoc "
                           f"user={user} format=Account,MaxSubmitJobs", None, account)
    return None


def over(limit: Limit, jobs: int, queued_now: int) -> str | None:
    """What to say where `jobs` more beside `queued_now` of the user's pass `limit`; None within it."""
    if jobs + queued_now <= limit.most:
        return None
    room = max(limit.most - queued_now, 0)
    return (f"this submit would queue {count(jobs, 'job')}, and your jobs queued at once are limited to "
            f"{limit.most} ({limit.where}), {queued_now} of yours queued now, so {room} more fit: nothing was "
            f"queued; submit fewer generations at a time (--generations), or part of the run (--only "
            f"EXPERIMENT), or wait for jobs of yours to end (squeue --me)")


def _ask(cmd: list[str]) -> str | None:
    """A Slurm command's output; None where it is missing or fails (slurmdbd down): nothing to read."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout if out.returncode == 0 else None


def problem(jobs: dict[tuple[str | None, str | None], int], user: str) -> str | None:
    """Whether the jobs a submit would queue, by (account, QOS) they charge (None: the user's default),
    with the user's jobs queued now, pass a limit they meet: what `over` says of it; None within them
    or where none can be read."""
    config = _ask(["scontrol", "show", "config"])
    if config is None or not enforced(config):
        return None
    cluster = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.M)
    where = [f"cluster={cluster[1]}"] if cluster else []
    answers = [_ask(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", *where,
                     "format=" + ",".join(ASSOC)]),
               _ask(["sacctmgr", "-n", "-P", "show", "qos", "format=" + ",".join(QOS)]),
               _ask(["sacctmgr", "-n", "-P", "show", "user", user, "format=DefaultAccount"]),
               _ask(["squeue", "-h", "-r", "-u", user, "-o", "%a|%q"])]
    if None in answers:
        return None
    assocs, qos, default, queue = (a or "" for a in answers)
    rows, qos_limits = parse_assocs(assocs), parse_qos(qos)
    mine = [tuple(line.split("|", 1)) for line in queue.splitlines() if "|" in line]
    met: dict[Limit, int] = {}
    for (account, q), n in jobs.items():
        limit = limit_for(rows, qos_limits, account or default.strip(), user, q)
        if limit is not None:
            met[limit] = met.get(limit, 0) + n
    found = (over(limit, n, sum(limit.counts(a, q) for a, q in mine)) for limit, n in met.items())
    return next((said for said in found if said), None)
