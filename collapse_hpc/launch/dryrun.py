"""`submit --dry-run`: what a submission would queue, printed, with nothing written or queued.

The plan (chains, arrays, jobs by kind, the job count against the cluster's limits where
`scontrol show config` tells them), the sbatch script of each kind of job (as submitit would write
it), the estimated GPU-hours, wall time and disk (estimate.py), and every failing pre-submit
check. Exit status 2 only when a check failed.
"""
from __future__ import annotations

import shutil

from collapse_hpc.errors import UserError
from collapse_hpc.launch import estimate, records
from collapse_hpc.launch import profile as profiles
from collapse_hpc.launch.slurm import (Scontrol, Submitter, array_pieces, job_name, jobs_to_queue, limits, live_job,
                                       numbered, over_job_count, over_submit_limit, pending_units, queued,
                                       recorded, report_memory_short)
from collapse_hpc.logs import count


def _script(sub: Submitter, kind: str, ranks: int, name: str, dependency: str | None, comment: str,
            tasks: int | None = None) -> str:
    return sub.script(kind, ranks, name=name, dependency=dependency, comment=comment, tasks=tasks)


def _queue(book: dict) -> tuple[dict[str, str], dict[str, str]]:
    """This user's queued jobs, and the run's own (whoever queued them); none where squeue is missing
    or cannot reach the controller (a dry run on a machine without Slurm: the checks say what is missing)."""
    try:
        mine = queued() if shutil.which("squeue") else {}
        return mine, (recorded(book) if shutil.which("squeue") else {})
    except UserError:
        return {}, {}


def show(store, run, chains, prof: profiles.Profile, problems: list[str], scontrol: Scontrol) -> int:
    """`scontrol`: what the checks before read of the cluster (cli.resolve), read again here only where they did not."""
    sub = Submitter(store, run, prof, dry_run=True)
    # what submit would queue, worked out as it does: the units it starts but those queued already
    book = records.load(store)
    (mine, queue), pending = _queue(book), pending_units(store, run, chains)
    started = {u for u in pending if not live_job(book, u, queue)}
    folder = "exists: what is neither done nor queued is planned" if store.exists() else "not created"
    print(f"dry run: {run.name} -> {store.root} ({folder}), profile {prof.name}; nothing is written or queued")
    print("\n== plan")
    kinds: dict[str, int] = {}
    scripts: list[tuple[str, str]] = []
    width = max([len(f"{c.experiment}/{c.variant.name}") for c in chains] + [5])
    for chain, number in numbered(chains):
        todo = [j for j in chain.jobs if j.label in started]
        kinds[chain.kind] = kinds.get(chain.kind, 0) + len(todo)
        first = job_name(run.name, "…", chain.experiment, number, todo[0].index)[:8] if todo else "-"
        print(f"{chain.experiment + '/' + chain.variant.name:<{width}}  chain  {len(todo):>4} of {len(chain.jobs):>4} "
              f"generations  {chain.kind}  {first} …  afterok")
        if todo and number == 0:  # one chain per experiment shown in full: its first job and a dependent one
            for job, dep in [(todo[0], None)] + ([(todo[1], "afterok:<job id of the one before>")]
                                                  if len(todo) > 1 else []):
                name = job_name(run.name, job.label, chain.experiment, number, job.index)
                scripts.append((f"{job.label} ({chain.kind}; every generation of every {chain.experiment} chain "
                                f"alike but for name and dependency)",
                                _script(sub, chain.kind, chain.ranks, name, dep, job.label)))
    arrays: dict[str, list] = {}
    for chain in (c for c in chains if c.shape == "array"):
        arrays.setdefault(chain.experiment, []).append(chain)
    lim = limits(scontrol.config)
    for name, group in arrays.items():
        todo = [j for c in group for j in c.jobs if j.label in started]
        kinds[group[0].kind] = kinds.get(group[0].kind, 0) + len(todo)
        pieces = array_pieces(todo, lim.get("MaxArraySize"))
        print(f"{name:<{width}}  array  {len(todo):>4} of {sum(len(c.jobs) for c in group):>4} tasks        "
              f"{group[0].kind}  %{min(len(todo) or 1, prof.array_parallelism)} at once"
              + (f", as {len(pieces)} arrays (MaxArraySize {lim['MaxArraySize']})" if len(pieces) > 1 else ""))
        if todo:
            scripts.append((f"the {name} array ({count(len(pieces[0]), 'task')})",
                            _script(sub, group[0].kind, 1, job_name(run.name, name, name), None, f"{name} array",
                                    tasks=len(pieces[0]))))
    kinds["aggregate"] = jobs_to_queue(store, chains, pending, queue)["aggregate"]
    scripts.append(("the aggregation job (afterany on every job above)",
                    _script(sub, "aggregate", 1, job_name(run.name, "aggregate", "aggregate"),
                            "afterany:<every job above>", "aggregate")))
    total = sum(kinds.values())
    print(f"{'aggregate':<{width}}  job    {kinds['aggregate']:>4}")
    done = sum(len(c.jobs) for c in chains) - len(pending)
    print("jobs by kind: " + (", ".join(f"{k} {n}" for k, n in kinds.items() if n) or "none") + f"; {total} in all "
          f"(an array task counts as a job); {count(done, 'unit')} already done"
          + (f", {len(pending) - len(started)} already queued" if len(pending) > len(started) else ""))
    if lim:
        over = [o for o in [over_job_count(total, lim, len(mine))] if o]  # submit checks it too (check_queue)
        print("cluster limits (scontrol): " + ", ".join(f"{k} {v}" for k, v in lim.items())
              + ("; OVER: " + "; ".join(over) if over else "; within them"))
        problems += [f"cluster limit: {o}" for o in over]
    else:
        print("cluster limits: unknown here (no scontrol); per-user limits: sacctmgr show assoc user=$USER")
    if over_user := over_submit_limit(prof, kinds, scontrol):  # submit checks it too (check_queue)
        print(f"limits on jobs queued at once (sacctmgr): OVER: {over_user}")
        problems.append(f"a limit on jobs queued at once: {over_user}")
    for title, text in scripts:
        print(f"\n== sbatch script: {title}\n{text.rstrip()}")
    print("\n== estimate of the whole plan (per-generation rates: README, What it costs on a GPU)")
    for line in estimate.estimate(run, chains).lines():
        print(line)
    if short := report_memory_short(prof, run, chains):
        print(f"WARNING: {short[0]}")
    print("\n== checks before submitting")
    if not problems:
        print("all passed")
        return 0
    for p in problems:
        print(f"FAILED: {p}")
    print(f"{count(len(problems), 'check')} failed: submit without --dry-run once every check passes")
    return 2
