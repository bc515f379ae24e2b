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


def hashed_bytes(store, run, chains, check) -> int:
    """Bytes sha256_file reads during one check."""
    from collapse_hpc.store import manifest

    real, seen = manifest.sha256_file, []
    manifest.sha256_file = lambda p: seen.append(Path(p).stat().st_size) or real(p)
    try:
        check(store, run, chains)
    finally:
        manifest.sha256_file = real
    return sum(seen)


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
            print(f"{name:<18} {best[name]:7.2f} s  {hashed_bytes(store, run, chains, check) / 2**30:6.2f} GiB hashed"
                  f"  {len(started[name])} units to start")
    print(f"ratio: {best['shared check'] / best['every unit hashed']:.3f}")


if __name__ == "__main__":
    main()
