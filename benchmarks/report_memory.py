"""Peak memory of `collapse-hpc aggregate` per row of the report's long table, against the code of an
earlier revision (by default the last one before the table was held compactly), in the same run.

Workload: a single-Gaussian run made here by `collapse-hpc run` (local executor): G generations, R
replicates, n in {100, 1000}, replace and accumulate, seeds 0 and 1 (8 variants of 11 metrics: 88 R G
rows). Its report is made twice, of its first replicate and of all R (aggregate --replicates), each in a
fresh process whose peak resident memory the kernel reports (ru_maxrss: what an aggregation job is
killed at): bytes a row = the difference of the two peaks over the difference of their rows (the
imports and the page, alike in both, cancel). The baseline makes the same two reports with the package
of --baseline (git archive of this repository), the same interpreter and packages.

Ours holds the table at ~34 bytes a row and peaks at ~56-59 (summarising a metric's rows at a time);
writing metrics.parquet a row group (1Mi rows) at a time costs a fixed ~0.4 GiB, which the figure
includes spread over the rows: 72.7 at the default size (baseline 437), 55.5 at --replicates 2000.

  python benchmarks/report_memory.py                      last line: ratio: <ours / baseline bytes a row>
  python benchmarks/report_memory.py --replicates 2000 --baseline ''   ours only (the baseline: ~25 GB)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "96f33fe"  # the last revision whose report held the long table as strings (Python's or Arrow's)

CONFIG = """name: report-memory
seeds: [0, 1]
regimes: [{{name: replace, keep_fraction: 0.0}}]
executor: local
gaussian: {{generations: {generations}, samples: [100, 1000], estimator: mle, replicates: {replicates},
            chunk_replicates: {chunk}, regimes: [replace, accumulate]}}
"""

# one report in this process; prints its peak resident memory (bytes) and the rows of its long table
REPORT = """import resource, sys
from collapse_hpc.report import aggregate
aggregate.build([sys.argv[1]], sys.argv[2], int(sys.argv[3]))
import pyarrow.parquet as pq
rows = pq.ParquetFile(sys.argv[2] + "/metrics.parquet").metadata.num_rows
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rows)
"""


def _env(package: Path) -> dict:
    """Imports from `package`'s folder first (the process starts elsewhere: '' on sys.path is its cwd)."""
    return {**os.environ, "PYTHONPATH": str(package), "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}


def peak(package: Path, run: Path, out: Path, replicates: int) -> tuple[int, int]:
    """(peak resident bytes, rows) of one report of the first `replicates` replicates, in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", REPORT, str(run), str(out), str(replicates)], cwd=out.parent,
                          env=_env(package), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the report with {package} failed:\n{proc.stderr[-3000:]}")
    rss, rows = proc.stdout.split()[-2:]
    return int(rss), int(rows)


def per_row(package: Path, run: Path, tmp: Path, name: str, replicates: int) -> tuple[float, float, int, int]:
    """(bytes a row, the peak less them, peak of the whole report, its rows) of the package's reports."""
    small = peak(package, run, tmp / f"{name}-small", 1)
    whole = peak(package, run, tmp / f"{name}-whole", replicates)
    slope = (whole[0] - small[0]) / (whole[1] - small[1])
    return slope, whole[0] - slope * whole[1], whole[0], whole[1]


def baseline_package(rev: str, tmp: Path) -> Path:
    """The collapse_hpc package of revision `rev` of this repository, unpacked under tmp."""
    where = tmp / "baseline"
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "collapse_hpc"], capture_output=True)
    if archive.returncode:
        sys.exit(f"error: --baseline {rev}: {archive.stderr.decode().strip() or 'git archive failed'}")
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


# the keys a package knows: the run level's ("") and each experiment section's
KEYS = ("import dataclasses, json; from collapse_hpc import config, experiments; "
        "print(json.dumps({'': [f.name for f in dataclasses.fields(config.RunConfig)], "
        "**{n: [f.name for f in dataclasses.fields(s)] for n, s in experiments.sections().items()}}))")


def known_config(package: Path, config: Path, out: Path) -> list[str]:
    """Writes to `out` the config file `config` as `package` reads it: the keys the package does not know
    (added since its revision, as the package itself tells) left out; returns those keys, dotted."""
    import yaml

    proc = subprocess.run([sys.executable, "-c", KEYS], cwd=out.parent, env=_env(package), capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"error: the config keys of {package} unknown:\n{proc.stderr[-3000:]}")
    known, dropped = json.loads(proc.stdout), []
    kept = {}
    for key, value in (yaml.safe_load(config.read_text()) or {}).items():
        if key not in known[""] and key not in known:
            dropped.append(key)
            continue
        if key in known and isinstance(value, dict):
            dropped += [f"{key}.{k}" for k in value if k not in known[key]]
            value = {k: v for k, v in value.items() if k in known[key]}
        kept[key] = value
    out.write_text(yaml.safe_dump(kept, sort_keys=False))
    return dropped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=300, help="G (over 255: generations are not small ints)")
    p.add_argument("--replicates", type=int, default=400, help="R per variant (the whole report's)")
    p.add_argument("--baseline", default=BEFORE, help="git revision of the baseline; '' for ours only")
    args = p.parse_args()
    if args.replicates < 2 or args.generations < 1:
        sys.exit("error: --replicates must be at least 2 and --generations at least 1")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        config, run = tmp / "report-memory.yaml", tmp / "run"
        config.write_text(CONFIG.format(generations=args.generations, replicates=args.replicates,
                                        chunk=-(-args.replicates // 2)))
        proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(config), "--run", str(run)],
                              cwd=tmp, env=_env(REPO), capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: the run failed:\n{proc.stderr[-3000:]}")
        ours = per_row(REPO, run, tmp, "ours", args.replicates)
        base = per_row(baseline_package(args.baseline, tmp), run, tmp, "base", args.replicates) if args.baseline \
            else None
    import pandas as pd
    import pyarrow

    print(f"pandas {pd.__version__}, pyarrow {pyarrow.__version__}, python {sys.version.split()[0]}; "
          f"{ours[3]:,} rows (G={args.generations}, R={args.replicates}, 8 variants of 11 metrics)")
    for name, (slope, fixed, whole, rows) in [("ours", ours)] + ([(f"baseline {args.baseline}", base)] if base else []):
        print(f"  {name:18s} peak {whole / 2**30:6.2f} GiB: {slope:6.1f} bytes a row + {fixed / 2**30:.2f} GiB")
    print(f"bytes_per_row: {ours[0]:.1f}")
    if base:
        print(f"ratio: {ours[0] / base[0]:.3f}")


if __name__ == "__main__":
    main()
