"""What a launcher checks before it starts a unit, on a paper-scale run folder whose finished chain units
hold model weights: the shared check of `run` and `submit` (engine.pending: finished units through their
manifests, in full only the generations the next unit reads) against every finished unit hashed, which
the local launcher did before (`engine.pending(..., deep=True)`, until the commit that added this script),
and the in-process one (`--executor debug`: run_unit hashed each finished unit to skip it) until it took the
shared check too (measured: every unit hashed 15.1 s, 2.81 GiB; the shared check 5.5 s, 1.06 GiB; ratio 0.36,
2 busy cores).

Workload: benchmarks/bookkeeping.py's mid-run snapshot of configs/paper.yaml (635 units; chain n has
n mod 10 generations done, 90 LM and VAE generations in all; 348 array parts done), each finished chain
unit with --weights-mib of random weights (paper.yaml's OPT-125M: ~250 MB a generation, ~50 GB in all).
Both checks run in this process on the same folder, alternated, the fastest of --repeats (the page cache
warm for both: on a cold disk hashing is slower still). Both must start the same units (exit 1 if not).
Then one `collapse-hpc submit` of the folder (fake Slurm commands, a MaxJobCount told) must hash what the
shared check hashes once (exit 1 if not): its job-count check and its submission each asked the shared
check until submit worked it out once (2 x 0.13 GiB at --weights-mib 4).

  python benchmarks/launch_check.py                   last line: ratio: <shared check / every unit hashed, s>
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bookkeeping import CHECKS, REPO, _fake_slurm, build  # noqa: E402  (the same run folder)


def every_unit_hashed(store, run, chains) -> list:
    """The local launcher's check before: every finished unit hashed in full (a chain's from its first
    unfinished generation on)."""
    from collapse_hpc import engine

    todo = []
    for chain in chains:
        chain_todo: list = []
        for job in chain.jobs:
            if (chain_todo and chain.shape == "chain") or not engine.job_done(store, run, job, deep=True):
                chain_todo.append(job)
        todo += chain_todo
    return todo


def shared_check(store, run, chains) -> list:
    from collapse_hpc import engine

    return [job for chain in chains for job in engine.pending(store, run, chain)]


def hashed_bytes(check, *args) -> int:
    """Bytes sha256_file reads during check(*args)."""
    from collapse_hpc.store import manifest

    real, seen = manifest.sha256_file, []
    manifest.sha256_file = lambda p: seen.append(Path(p).stat().st_size) or real(p)
    try:
        check(*args)
    finally:
        manifest.sha256_file = real
    return sum(seen)


def submit(root: Path, config: Path, fake: Path) -> None:
    """`collapse-hpc submit` of the run, in this process, against bookkeeping.py's fake Slurm commands;
    their scontrol tells a MaxJobCount here, as every cluster's does, so submit weighs its jobs against it."""
    import contextlib
    import io
    import os

    from collapse_hpc import cli

    env = _fake_slurm(fake)
    scontrol = fake / "bin" / "scontrol"
    scontrol.write_text(scontrol.read_text().replace(
        "\n", '\n[[ "$*" == *"show config"* ]] && { echo "MaxJobCount = 10000"; exit 0; }\n', 1))
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            rc = cli.main(["submit", str(config), "--run", str(root), "--profile", str(REPO / "slurm" / "local.yaml"),
                           *(a for o in CHECKS for a in ("--set", o))])
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if rc != 0:
        sys.exit(f"error: submit exited {rc}: {said.getvalue().strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "paper.yaml"))
    ap.add_argument("--weights-mib", type=int, default=32, help="model weights of each finished chain unit")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from collapse_hpc import engine, experiments
    from collapse_hpc.store import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        _fake_slurm(Path(tmp) / "fake")
        t = time.perf_counter()
        units = build(root, Path(args.config).absolute(), CHECKS, Path(tmp) / "fake", weights=args.weights_mib * 2**20)
        print(f"built {units} units in {time.perf_counter() - t:.1f} s")
        store = RunStore(root)
        run = store.load_config(experiments.sections())
        chains = engine.load_plan(store, run)
        best = {"every unit hashed": float("inf"), "shared check": float("inf")}
        checks = {"every unit hashed": every_unit_hashed, "shared check": shared_check}
        started = {}
        for _ in range(args.repeats):
            for name, check in checks.items():
                t = time.perf_counter()
                started[name] = [j.label for j in check(store, run, chains)]
                best[name] = min(best[name], time.perf_counter() - t)
        if started["every unit hashed"] != started["shared check"]:
            sys.exit("error: the two checks start different units")
        for name, check in checks.items():
            print(f"{name:<18} {best[name]:7.2f} s  {hashed_bytes(check, store, run, chains) / 2**30:6.2f} GiB hashed"
                  f"  {len(started[name])} units to start")
        once = hashed_bytes(shared_check, store, run, chains)
        submitted = hashed_bytes(submit, root, Path(args.config).absolute(), Path(tmp) / "fake")
        print(f"{'submit':<18} {'':>9}  {submitted / 2**30:6.2f} GiB hashed  (the shared check once: "
              f"{once / 2**30:.2f} GiB)")
        if submitted != once:
            sys.exit("error: submit hashes other than the shared check once")
    print(f"ratio: {best['shared check'] / best['every unit hashed']:.3f}")


if __name__ == "__main__":
    main()
