"""The bookkeeping commands (status, verify, cancel, submit and its dry run, what aggregate reads before it
computes, what the local launcher hashes before it starts a unit) on a paper-scale run folder, against a
small one and against an earlier revision of the package.

Workload: the run folder of a config (default configs/paper.yaml: 635 units, 20 chains of 10 LM and VAE
generations, 435 GMM and Gaussian array parts of 2050 and 1000 generations) made without computing:
open_run plans it as `run` does, then each unit that counts as finished gets small result files and
the manifest the engine writes (bound to its folder, variant and earlier generations), and jobs.json
records a Slurm job for every unit: part of each chain done, one generation RUNNING, the rest PENDING
on it; one chain FAILED, its dependents CANCELLED; most array parts done, some RUNNING or PENDING. Every
job that ran has a log (progress bars: 1.5 MB a chain's, 150 kB a part's). Fake sbatch, squeue, sacct and
scancel on PATH answer for those jobs (no cluster is asked; each call is counted). The small run is the
same config at one seed, one regime and one part per array variant (22 units). The LM and VAE read data
sets prepared in this checkout (wikivital, a tiny model, digits) so that submit's checks pass; the counts
are paper.yaml's.

Each command runs in a fresh process (its imports included, as a user waits for them), the fastest of
--repeats; the baseline is the same command with the package of --baseline (git archive), alternated with
ours, on the same folders made by that package (from the config less the keys added since, as the package
tells: a package refuses keys it does not know and the hashes it checks are its own). Recorded (2 shared
cores): status of the paper-scale run 53 lines against 842 (the small run: 33 both), in the same time
(0.46-0.81 s, ratio 0.80-1.13 over three runs: noise); every command under 1 s but submit (3.1-4.3 s, one
squeue and an sbatch per new job) and its dry run (2.0-3.7 s: imports); paper/small 1.1 to 2.4 for 29x
the units.

  python benchmarks/bookkeeping.py                    last line: ratio: <ours / baseline, status s>
  python benchmarks/bookkeeping.py --baseline ''      ours only
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_memory import REPO, _env, baseline_package, known_config  # noqa: E402  (the same unpacked revision)

BEFORE = "7ec1d28"  # the last revision before status summarised a long run

FAKES = {  # Slurm's commands as tests/launch/test_slurm_plan.py fakes them: the answers are files under $FAKE_SLURM
    "squeue": 'echo "squeue $*" >> "$FAKE_SLURM/calls.txt"; cat "$FAKE_SLURM/squeue.txt" 2>/dev/null; true\n',
    "sacct": 'echo "sacct $*" >> "$FAKE_SLURM/calls.txt"; cat "$FAKE_SLURM/sacct.txt" 2>/dev/null; true\n',
    "scancel": 'echo "scancel $*" >> "$FAKE_SLURM/calls.txt"\n',
    "sbatch": 'echo "sbatch $*" >> "$FAKE_SLURM/calls.txt"\n'
              '[ "$1" = --test-only ] && { echo "sbatch: Job 1 to start at 2026-01-01T00:00:00" >&2; exit 0; }\n'
              'n=$(( $(cat "$FAKE_SLURM/counter" 2>/dev/null || echo 5000) + 1 )); echo $n > "$FAKE_SLURM/counter"\n'
              'echo "Submitted batch job $n"\n',
    "srun": "true\n",
    "sinfo": 'printf "%s\\n" "debug*|1:00:00|(null)"\n',
    "scontrol": '[[ "$*" == *"show partition"* ]] && echo "PartitionName=debug Default=YES MaxTime=UNLIMITED"; true\n',
}


def _fake_slurm(where: Path) -> dict:
    (where / "bin").mkdir(parents=True, exist_ok=True)
    for name, body in FAKES.items():
        p = where / "bin" / name
        p.write_text("#!/bin/bash\n" + body)
        p.chmod(0o755)
    return {"FAKE_SLURM": str(where), "PATH": f"{where / 'bin'}:{os.environ['PATH']}"}


def _finish(store, run, chain, job, started: float, job_id: str, weights: int = 0) -> None:
    """The files and the manifest a finished unit has (engine._run_unit's, small results; a chain unit
    also `weights` bytes of model weights, random, where given)."""
    import numpy as np
    import pyarrow as pa

    from collapse_hpc import engine
    from collapse_hpc.config import config_hash
    from collapse_hpc.store import write_manifest, write_parquet
    from collapse_hpc.store.manifest import binding

    v = chain.variant
    unit = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    unit.mkdir(parents=True, exist_ok=True)
    rows = 64
    write_parquet(unit / "metrics.parquet", pa.table({"generation": np.arange(rows), "value": np.random.rand(rows)}))
    (unit / "facts.json").write_text(json.dumps({"unit": job.label}))
    if weights and job.shape == "chain":
        (unit / "model").mkdir(exist_ok=True)
        with open(unit / "model" / "model.safetensors", "wb") as f:
            for left in range(weights, 0, -2**24):
                f.write(os.urandom(min(left, 2**24)))
    exp = __import__("collapse_hpc.experiments", fromlist=["get"]).get(job.experiment)
    write_manifest(unit, config_hash=engine.saved_hash(store), started=started,
                   extra={**binding(unit, config_hash(v.config(run))), "regime": v.regime.record(), "seed": v.seed,
                          "settings": v.settings, "config": v.config(run), "generations": exp.generations(run),
                          "world_size": 1, "resources": {"gpus": 0, "cpus": 1}, "job_id": job_id},
                   root=store.root)


def _log(label: str, lines: int) -> str:
    bar = "".join(f"\repoch 1/5: {i:3d}%|{'#' * (i // 10):<10}| {i}/100 [00:01<00:01, 65.1it/s]"
                  for i in range(0, 101, 5))
    return f"{label}: start\n" + "".join(f"{bar}\rstep {n}: loss 3.2\n" for n in range(lines // 20))


def build(root: Path, config: Path, overrides: list[str], fake: Path, weights: int = 0) -> int:
    """A mid-run snapshot of `config`'s run in `root` (`weights`: bytes of each finished chain unit's
    model); returns its number of units."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.store import RunStore

    run = experiments.load_config(str(config), ["executor=slurm", *overrides])
    store = RunStore(root)
    chains = engine.open_run(store, run)
    book: dict = {"executor": "slurm", "profile": str(REPO / "slurm" / "example-cluster.yaml"), "cluster": "example",
                  "folder": records.identity(store), "units": {}}
    sacct, squeue, jid, now = [], [], 1000, time.time()
    arrays: dict[str, int] = {}  # an experiment's parts are the tasks of one array job
    for n, chain in enumerate(chains):
        array = chain.shape == "array"
        if array and chain.experiment not in arrays:
            jid += 1
            arrays[chain.experiment], task = jid, 0
        reached = -1 if array else n % len(chain.jobs)
        failed = not array and n == 1
        prev = None
        for job in chain.jobs:
            if array:
                label_id, task = f"{arrays[chain.experiment]}_{task}", task + 1
            else:
                jid += 1
                label_id = str(jid)
            dep = None if array or prev is None else f"afterok:{prev}"
            if (array and job.index % 5 != 4) or job.index < reached:
                _finish(store, run, chain, job, now - 60, label_id, weights)
                state = "COMPLETED"
            elif array:
                state = "RUNNING" if job.index % 10 == 4 else "PENDING"
            elif job.index == reached:
                state = "FAILED" if failed else "RUNNING"
            else:
                state = "CANCELLED" if failed else "PENDING"
            log = root / "logs" / "submitit" / f"{label_id}_0_log.err"
            if state in ("COMPLETED", "RUNNING", "FAILED"):  # a job's log: a chain's progress bars fill more
                log.write_text(_log(job.label, 2000 if array else 20000))
            if state == "FAILED":
                with log.open("a") as f:
                    f.write("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
            records.record(book, job.label, job_id=label_id, log=str(log), dependency=dep, kind=chain.kind,
                           submitted=now)
            sacct.append(f"{label_id}|{state}|00:01:00")
            if state in ("RUNNING", "PENDING"):
                squeue.append(f"{label_id}|{state}|1:00|{'None' if state == 'RUNNING' else 'Dependency'}")
            prev = label_id
    book["aggregate"] = {"job_id": str(jid + 1), "log": None, "dependency": "afterany:1001"}
    squeue.append(f"{jid + 1}|PENDING|0:00|Dependency")
    records.save(store, book)
    (fake / "sacct.txt").write_text("\n".join(sacct) + "\n")
    (fake / "squeue.txt").write_text("\n".join(squeue) + "\n")
    return sum(len(c.jobs) for c in chains)


def timed(package: Path, argv: list[str], env: dict) -> tuple[float, str, int]:
    """(seconds, stdout, Slurm commands called) of `python ARGV` with `package` in a fresh process."""
    calls = Path(env["FAKE_SLURM"]) / "calls.txt"
    calls.unlink(missing_ok=True)
    t = time.perf_counter()
    # run from the fake's folder: `python -m` puts its working folder first on sys.path, before PYTHONPATH
    proc = subprocess.run([sys.executable, *argv], cwd=env["FAKE_SLURM"], capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(package), "PYTHONWARNINGS": "ignore"})
    took = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        sys.exit(f"error: {' '.join(argv)} with {package} failed:\n{proc.stderr[-3000:]}")
    return took, proc.stdout, len(calls.read_text().splitlines()) if calls.exists() else 0


# what `aggregate` reads before it computes anything, and what the local launcher hashes before it starts a unit
PLANS = {"aggregate (plan)": "from collapse_hpc.report import collect; collect.load_run({root!r})",
         "run (plan)": "from collapse_hpc import engine, experiments; from collapse_hpc.launch import local; "
                       "from collapse_hpc.store import RunStore; s = RunStore({root!r}); "
                       "r = s.load_config(experiments.sections()); local._lanes(s, r, engine.load_plan(s, r), 0)"}
# prepared in this checkout: submit's checks pass
CHECKS = ["lm.dataset=wikivital", "lm.model=tiny", "vae.dataset=digits", f"data_dir={REPO / 'data'}"]


def commands(root: Path, config: Path, overrides: list[str]) -> dict[str, list[str]]:
    cli = ["-m", "collapse_hpc"]
    sets = [a for o in overrides + CHECKS for a in ("--set", o)]
    submit = [*cli, "submit", str(config), "--run", str(root), "--profile", str(REPO / "slurm" / "local.yaml"), *sets]
    return {"status": [*cli, "status", str(root)], "status --all": [*cli, "status", str(root), "--all"],
            "status --json": [*cli, "status", str(root), "--json"], "verify": [*cli, "verify", str(root)],
            "cancel": [*cli, "cancel", str(root)], "submit --dry-run": [*submit, "--dry-run"], "submit": submit,
            **{what: ["-c", code.format(root=str(root))] for what, code in PLANS.items()}}


def measure(runs: dict, packages: dict, envs: dict, repeats: int) -> dict:
    """(run, command, package) -> (fastest seconds, output lines, Slurm commands called); packages alternated,
    each on its own folders (runs: package -> run -> (root, config, overrides)). submit records the jobs it
    queues in the run's book: each one starts from the book as built."""
    best: dict = {}
    for _ in range(repeats):
        for run_name in runs["ours"]:
            for what in commands(*runs["ours"][run_name]):
                for pkg_name, pkg in packages.items():
                    root = runs[pkg_name][run_name][0]
                    argv = commands(*runs[pkg_name][run_name])[what]
                    shutil.copy(root.with_name("jobs.json"), root / "jobs.json")  # as built (submit adds jobs)
                    if pkg_name == "baseline" and what == "status --all":
                        argv = argv[:-1]  # before --all, status listed every unit
                    took, out, calls = timed(pkg, argv, envs[pkg_name])
                    key = (run_name, what, pkg_name)
                    best[key] = min(best.get(key, (took, len(out.splitlines()), calls)),
                                    (took, len(out.splitlines()), calls))
    return best


SMALL = ["seeds=[0]", "regimes=[{name: replace, keep_fraction: 0.0}]", "gmm.replicates=8",
         "gaussian.replicates=250", "gaussian.samples=[100]", "gmm.regimes=[replace]", "gaussian.regimes=[replace]"]


def snapshots(where: Path, config: Path) -> dict:
    """The paper and small run folders of `config` under `where` (one fake queue holds both runs' jobs);
    their units."""
    os.environ.update(_fake_slurm(where / "fake"))
    (where / "fake-small").mkdir()
    units = {"paper": build(where / "paper" / "run", config, CHECKS, where / "fake"),
             "small": build(where / "small" / "run", config, SMALL + CHECKS, where / "fake-small")}
    for name in units:
        root = where / name / "run"
        shutil.copy(root / "jobs.json", root.with_name("jobs.json"))
    for n in ("sacct.txt", "squeue.txt"):
        with (where / "fake" / n).open("a") as f:
            f.write((where / "fake-small" / n).read_text())
    return units


# snapshots() with the package on PYTHONPATH, in a fresh process run where the user runs this script (the
# config's relative paths are the user's): sys.path's first entry, that folder, gives way to benchmarks/
MADE_BY = ("import json, sys; from pathlib import Path; sys.path[0] = {bench!r}; import bookkeeping; "
           "print(json.dumps(bookkeeping.snapshots(Path(sys.argv[1]), Path(sys.argv[2]))))")


def made_by(package: Path, where: Path, config: Path) -> tuple[dict, dict, Path]:
    """(units, fake Slurm's environment, the config file read) of the snapshots `package` makes itself under
    `where`, of `config` as the package reads it (keys added since its revision left out): the folder a
    package reads is one it wrote (its config.yaml holds the keys it knows, hashed as it hashes them), the
    same plan and job states for every package."""
    where.mkdir(parents=True)
    if package != REPO:
        dropped = known_config(package, config, where / config.name)
        config = where / config.name
        print(f"{package.name}: {config.name} without the keys it does not know: {', '.join(dropped) or 'none'}")
    proc = subprocess.run([sys.executable, "-c", MADE_BY.format(bench=str(Path(__file__).parent)), str(where),
                           str(config)], env=_env(package), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the run folders made with {package} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1]), _fake_slurm(where / "fake"), config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "paper.yaml"))
    ap.add_argument("--baseline", default=BEFORE, help="git revision to compare with ('' for none)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    config = Path(args.config).absolute()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        packages = {"ours": REPO, **({"baseline": baseline_package(args.baseline, tmp)} if args.baseline else {})}
        made = {name: made_by(pkg, tmp / "made" / name, config) for name, pkg in packages.items()}
        units = made["ours"][0]
        if any(u != units for u, _, _ in made.values()):
            sys.exit(f"error: the packages plan other units: {', '.join(f'{n} {m[0]}' for n, m in made.items())}")
        runs = {name: {"paper": (tmp / "made" / name / "paper" / "run", read, []),
                       "small": (tmp / "made" / name / "small" / "run", read, SMALL)}
                for name, (_, _, read) in made.items()}
        best = measure(runs, packages, {name: env for name, (_, env, _) in made.items()}, args.repeats)
    report(units, best, packages)


def report(units: dict, best: dict, packages: dict) -> None:
    print(f"units: paper {units['paper']}, small {units['small']}")
    print(f"{'run':<5} {'command':<17} {'package':<8} {'seconds':>8} {'lines':>7}  slurm calls")
    for (run_name, what, pkg), (took, lines, calls) in sorted(best.items()):
        print(f"{run_name:<5} {what:<17} {pkg:<8} {took:8.2f} {lines:>7}  {calls}")
    for pkg in packages:
        ratios = ", ".join(f"{what} {best[('paper', what, pkg)][0] / best[('small', what, pkg)][0]:.2f}"
                           for what in ("status", "verify", "submit", "aggregate (plan)"))
        print(f"paper/small ({units['paper'] / units['small']:.0f}x the units), {pkg}: {ratios}")
    if "baseline" in packages:
        lines = best[("paper", "status", "ours")][1], best[("paper", "status", "baseline")][1]
        print(f"status of the paper-scale run: {lines[0]} lines against {lines[1]}")
        print(f"ratio: {best[('paper', 'status', 'ours')][0] / best[('paper', 'status', 'baseline')][0]:.3f}")


if __name__ == "__main__":
    main()
