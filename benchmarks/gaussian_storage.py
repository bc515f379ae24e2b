"""Bytes a single-Gaussian part stores, this code against an earlier revision's (by default the last one
whose parts stored var_hat, log_var_hat and w2_squared beside sigma_hat and w2), and the report of each.

Workload: one array part of paper.yaml's shape (1000 generations, 250 replicates, n = 100, the unbiased
estimator, replace), made by `collapse-hpc run --executor debug` in a fresh process with each package
(the baseline's: git archive of --baseline, the same interpreter and packages). Both parts come from the
same seed. Then `collapse-hpc aggregate` of this code reports each run folder (an old one must still
report), alternated, the fastest of --repeats: the long tables, summary.csv and every figure's PNG must
be equal byte for byte (exit 1 otherwise), and the seconds of each report are printed (deriving the
three where they are read costs the report of a new folder that much). The bytes of metrics.parquet
are scaled to paper.yaml's 240 parts. Recorded (2026-12-06, 2 loaded cores): 11.06 MiB against 15.95
a part (2.78 GB against 4.02 for paper.yaml's), the reports equal, 24.2 s against 29.1 s (noise).

  python benchmarks/gaussian_storage.py            last line: ratio: <ours / baseline bytes of a part>
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_memory import REPO, _env, baseline_package, known_config  # noqa: E402  (the same unpacked revision)

BEFORE = "84078ab"  # the last revision whose gaussian parts stored the three derived metrics
PAPER_PARTS = 240  # paper.yaml: 4 sample sizes x 3 regimes x 5 seeds x 1000 replicates in parts of 250

CONFIG = """name: gaussian-storage
seeds: [0]
regimes: [replace]
executor: debug
gaussian: {{generations: {generations}, samples: [100], replicates: {replicates}, chunk_replicates: {replicates}}}
"""


def make(package: Path, config: Path, run: Path) -> int:
    """The part made with `package`; the bytes of its metrics.parquet."""
    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(config), "--run", str(run)],
                          cwd=run.parent, env=_env(package), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the run with {package} failed:\n{proc.stderr[-3000:]}")
    (part,) = run.glob("gaussian/*/part_000/metrics.parquet")
    return part.stat().st_size


def report(run: Path) -> float:
    """Seconds of this code's aggregate of the run folder (into run/report)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "aggregate", str(run)], cwd=run.parent,
                          env=_env(REPO), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the report of {run} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def differences(a: Path, b: Path) -> list[str]:
    """Files of report a that report b lacks or holds otherwise (the long table by its values)."""
    import pandas as pd

    out = []
    if not pd.read_parquet(a / "metrics.parquet").equals(pd.read_parquet(b / "metrics.parquet")):
        out.append("metrics.parquet")
    for p in [a / "summary.csv", *sorted((a / "figures").glob("*.png"))]:
        q = b / p.relative_to(a)
        if not q.is_file() or q.read_bytes() != p.read_bytes():
            out.append(str(p.relative_to(a)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=1000)
    p.add_argument("--replicates", type=int, default=250)
    p.add_argument("--baseline", default=BEFORE, help="git revision of the baseline")
    p.add_argument("--repeats", type=int, default=2, help="reports of each folder, alternated")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        config = tmp / "gaussian-storage.yaml"
        config.write_text(CONFIG.format(generations=args.generations, replicates=args.replicates))
        runs = {"ours": tmp / "ours" / "run", "baseline": tmp / "base" / "run"}
        packages = {"ours": REPO, "baseline": baseline_package(args.baseline, tmp)}
        sizes, seconds = {}, dict.fromkeys(runs, float("inf"))
        for name, run in runs.items():
            run.parent.mkdir()
            read = config if name == "ours" else run.parent / config.name  # keys added since: refused there
            if read != config and (dropped := known_config(packages[name], config, read)):
                print(f"{name}: {config.name} without the keys it does not know: {', '.join(dropped)}")
            sizes[name] = make(packages[name], read, run)
        for _ in range(args.repeats):  # alternated, the fastest counts
            for name, run in runs.items():
                seconds[name] = min(seconds[name], report(run))
        differ = differences(runs["ours"] / "report", runs["baseline"] / "report")
    values = args.generations * args.replicates
    for name in runs:
        print(f"{name:9s} part {sizes[name] / 2**20:7.2f} MiB ({sizes[name] / values:5.1f} bytes a replicate and "
              f"generation; paper.yaml's {PAPER_PARTS} parts at this shape: {sizes[name] * PAPER_PARTS / 1e9:.2f} GB)"
              f"  report {seconds[name]:5.1f} s")
    if differ:
        sys.exit(f"error: the reports differ: {', '.join(differ)}")
    print("the two reports are equal: long table, summary.csv and every figure")
    print(f"ratio: {sizes['ours'] / sizes['baseline']:.3f}")


if __name__ == "__main__":
    main()
