"""The bookkeeping commands (status, verify, cancel, submit, the launchers' choice of what to start)
on a paper-scale run folder, against a small one and against an earlier revision of the package.

Workload: the run folder of a config (default configs/paper.yaml: 635 units, 20 chains of 10 LM and VAE
generations, 435 GMM and Gaussian array parts of 2050 and 1000 generations) made without computing:
open_run plans it as `run` does, then each unit that counts as finished gets small result files and
the manifest the engine writes (bound to its folder, variant and earlier generations), and jobs.json
records a Slurm job for every unit: part of each chain done, one generation RUNNING, the rest PENDING
on it; one chain FAILED, its dependents CANCELLED; most array parts done, some RUNNING or PENDING.
Fake sacct/squeue/scancel on PATH answer for those jobs (no cluster is asked). The small run is the
same config at one seed, one regime and one part per variant.

Each command runs in a fresh process (its imports included, as a user waits for them), the
fastest of --repeats; the baseline is the same command with the package of --baseline (git archive),
on the same folder, alternated with ours.

  python benchmarks/bookkeeping.py                    last line: ratio: <ours / baseline, status s>
  python benchmarks/bookkeeping.py --baseline ''      ours only
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "7ec1d28"  # the last revision before status summarised and read each manifest once

FAKES = {  # Slurm's commands as the tests fake them: the answers are files under $FAKE_SLURM
    "squeue": 'echo "$*" >> "$FAKE_SLURM/calls.txt"; cat "$FAKE_SLURM/squeue.txt" 2>/dev/null; true\n',
    "sacct": 'echo "$*" >> "$FAKE_SLURM/calls.txt"; cat "$FAKE_SLURM/sacct.txt" 2>/dev/null; true\n',
    "scancel": 'echo "$*" >> "$FAKE_SLURM/scancel.txt"\n',
}


def _fake_slurm(where: Path) -> dict:
    (where / "bin").mkdir(parents=True, exist_ok=True)
    for name, body in FAKES.items():
        p = where / "bin" / name
        p.write_text("#!/bin/bash\n" + body)
        p.chmod(0o755)
    return {"FAKE_SLURM": str(where), "PATH": f"{where / 'bin'}:{os.environ['PATH']}"}


def _finish(store, run, chain, job, started: float, job_id: str) -> None:
    """The files and the manifest a finished unit has (engine._run_unit's, small results)."""
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
    exp = __import__("collapse_hpc.experiments", fromlist=["get"]).get(job.experiment)
    write_manifest(unit, config_hash=engine.saved_hash(store), started=started,
                   extra={**binding(unit, config_hash(v.config(run))), "regime": v.regime.record(), "seed": v.seed,
                          "settings": v.settings, "config": v.config(run), "generations": exp.generations(run),
                          "world_size": 1, "resources": {"gpus": 0, "cpus": 1}, "job_id": job_id},
                   root=store.root)


def build(root: Path, config: Path, overrides: list[str], fake: Path) -> int:
    """A mid-run snapshot of `config`'s run in `root`; returns its number of units."""
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
                _finish(store, run, chain, job, now - 60, label_id)
                state = "COMPLETED"
            elif array:
                state = "RUNNING" if job.index % 10 == 4 else "PENDING"
            elif job.index == reached:
                state = "FAILED" if failed else "RUNNING"
            else:
                state = "CANCELLED" if failed else "PENDING"
            log = root / "logs" / "submitit" / f"{label_id}_0_log.err"
            if state == "FAILED":
                log.write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
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


def timed(package: Path, argv: list[str], env: dict, cwd: Path) -> tuple[float, str, int]:
    """(seconds, stdout, squeue/sacct calls) of `collapse-hpc ARGV` with `package` in a fresh process."""
    calls = Path(env["FAKE_SLURM"]) / "calls.txt"
    calls.unlink(missing_ok=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", *argv], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(package), "PYTHONWARNINGS": "ignore"})
    took = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        sys.exit(f"error: collapse-hpc {' '.join(argv)} with {package} failed:\n{proc.stderr[-3000:]}")
    return took, proc.stdout, len(calls.read_text().splitlines()) if calls.exists() else 0


def _baseline(rev: str, where: Path) -> Path | None:
    if not rev:
        return None
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "collapse_hpc"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


COMMANDS = {"status": ["status"], "status --json": ["status", "--json"], "verify": ["verify"],
            "cancel": ["cancel"]}


def measure(runs: dict, packages: dict, env: dict, repeats: int, cwd: Path) -> dict:
    """(run, command, package) -> (fastest seconds, output lines, squeue/sacct calls); packages alternated."""
    best: dict = {}
    for _ in range(repeats):
        for run_name, root in runs.items():
            for what, argv in COMMANDS.items():
                for pkg_name, pkg in packages.items():
                    took, out, calls = timed(pkg, [*argv, str(root)], env, cwd)
                    key = (run_name, what, pkg_name)
                    lines = len(out.splitlines()) if what != "status --json" else len(out)
                    best[key] = min(best.get(key, (took, lines, calls)), (took, lines, calls))
    return best


SMALL = ["seeds=[0]", "regimes=[{name: replace, keep_fraction: 0.0}]", "gmm.replicates=8",
         "gaussian.replicates=250", "gaussian.samples=[100]", "gmm.regimes=[replace]", "gaussian.regimes=[replace]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "paper.yaml"))
    ap.add_argument("--baseline", default=BEFORE, help="git revision to compare with ('' for none)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = _fake_slurm(tmp / "fake")
        os.environ.update(env)
        units = {"paper": build(tmp / "paper", Path(args.config), [], tmp / "fake")}
        paper_fake = {n: (tmp / "fake" / n).read_text() for n in ("sacct.txt", "squeue.txt")}
        (tmp / "fake-small").mkdir()
        units["small"] = build(tmp / "small", Path(args.config), SMALL, tmp / "fake-small")
        for n, text in paper_fake.items():  # one queue holds both runs' jobs
            (tmp / "fake" / n).write_text(text + (tmp / "fake-small" / n).read_text())
        packages = {"ours": REPO}
        if (old := _baseline(args.baseline, tmp / "baseline")) is not None:
            packages["baseline"] = old
        best = measure({"paper": tmp / "paper", "small": tmp / "small"}, packages, env, args.repeats, tmp)
    print(f"units: paper {units['paper']}, small {units['small']}")
    for (run_name, what, pkg), (took, lines, calls) in sorted(best.items()):
        size = "chars" if what == "status --json" else "lines"
        print(f"{run_name:<5} {what:<14} {pkg:<8} {took:7.2f} s  {lines:>7} {size}  {calls} squeue/sacct calls")
    for pkg in packages:
        print(f"paper/small status {pkg}: {best[('paper', 'status', pkg)][0] / best[('small', 'status', pkg)][0]:.2f}")
    if "baseline" in packages:
        print(f"ratio: {best[('paper', 'status', 'ours')][0] / best[('paper', 'status', 'baseline')][0]:.3f}")


if __name__ == "__main__":
    main()
