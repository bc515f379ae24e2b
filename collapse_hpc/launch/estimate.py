"""What a planned run will cost on a cluster, from the per-generation rates the README documents
("What it costs on a GPU": each experiment's gpu_seconds, e.g. lm/cost.py), for `submit --dry-run`.
An experiment or setting without a measured rate is named as not estimated, never guessed. A
generation holds `ranks` GPUs throughout; how much faster more ranks run was not measured, so the
wall time is counted as one GPU's.

Also the most memory one unit holds (the experiments' memory()), or that it is unknown, e.g. for
a hub model with no config.json on this machine and no size in its name (gpt2 uncached).

A plan estimated over LARGE_GPU_HOURS (check) needs --force, as one over engine.LARGE_UNITS units
does: e.g. a typo in --generations or max_train_blocks on the paper's model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from collapse_hpc import experiments
from collapse_hpc.errors import UserError
from collapse_hpc.logs import count, first_few

LARGE_GPU_HOURS = 100.0  # a plan estimated over this needs --force (paper.yaml: 7.5 GPU-hours)
# the report (collect.tidy) holds every metric of every replicate and generation as one long row, ~34 bytes
# (report.longform); its peak (benchmarks/report_memory.py --replicates 2000) was 3.06 GiB for 52.8M rows of
# the Gaussian's 11 metrics, 55.5 bytes a row above a report of one replicate (was ~440: 4.60 GiB for 10.6M
# rows); the base: the imports (up to half a GiB: torch, for lm and vae) and a row group of metrics.parquet
# in writing (~0.1 GiB; 0.4 GiB before report.longform.write took a row group's strings by code)
REPORT_BYTES_PER_ROW = 60
REPORT_BASE_BYTES = 2**30
# on disk, the report's metrics.parquet: 7.0 bytes a row measured (the demo's gaussian, gmm and vae, 4.6M rows;
# the value's float64 split and compressed, the other columns repeat and compress away)
REPORT_DISK_BYTES_PER_ROW = 8


@dataclass
class Estimate:
    gpu_hours: float = 0.0
    wall_hours: float = 0.0  # the longest chain, generations one after another (chains side by side)
    disk_gb: float = 0.0  # every unit's disk() that is known, with or without a measured rate
    disk_of: dict[str, float] = field(default_factory=dict)  # experiment -> GB of its units
    disk_unknown: list[str] = field(default_factory=list)  # experiments with a unit whose disk() is None
    not_estimated: list[str] = field(default_factory=list)
    rated: int = 0  # units with a measured rate: with none, the zeros above would read as an estimate
    memory_bytes: int = 0  # the most one unit holds (per rank), from the experiments' memory()
    memory_of: str = ""  # experiment/variant of that unit
    memory_unknown: list[str] = field(default_factory=list)  # experiment/variant whose memory() is None
    report_rows: int = 0  # the long rows of the run's report (metrics x generations x replicates)

    def add_memory(self, unit: str, need: int | None) -> None:
        if need is None:
            self.memory_unknown.append(unit)
        elif need > self.memory_bytes or not self.memory_of:
            self.memory_bytes, self.memory_of = need, unit

    def wall(self) -> str:
        return f"{self.wall_hours:.1f} h" if self.wall_hours >= 1 else f"{self.wall_hours * 60:.0f} min"

    def lines(self) -> list[str]:
        h = self.gpu_hours
        gpu = f"{h:.1f}" if h >= 1 else f"{h:.2f} ({h * 60:.0f} min)"
        out = [f"GPU-hours: {gpu}", f"wall time: {self.wall()} (the longest chain; without queue waits)"] \
            if self.rated else [f"GPU-hours, wall time{'' if self.disk_of else ', disk'}: not estimated (no unit of "
                                f"this plan has a measured rate)"]
        if self.disk_of:
            out.append(self.disk_line())
        if self.memory_of:
            out.append(f"memory: {self.memory_bytes / 2**30:.3g} GiB at least for the largest unit, per rank "
                       f"({self.memory_of})")
        if self.memory_unknown:
            out.append(f"memory: unknown for {first_few(self.memory_unknown, 3, ', ')} (nothing here states the size "
                       f"of the model they hold)")
        if self.report_rows:
            out.append(f"report: {self.report_bytes / 2**30:.3g} GiB of memory for the aggregation job "
                       f"({self.report_rows:,} metric rows: every metric of every replicate and generation)")
        if self.not_estimated:
            out.append("not estimated (no measured rate): " + "; ".join(self.not_estimated))
        return out

    def disk_line(self) -> str:
        """e.g. disk: 60.2 GB (lm 50.0, gaussian 4.2, ...: model weights and result tables; the report's long
        table 5.8)."""
        report = report_disk_bytes(self.report_rows) / 1e9
        parts = ", ".join(f"{name} {gb:.1f}" for name, gb in sorted(self.disk_of.items(), key=lambda kv: -kv[1]))
        return (f"disk: {self.disk_gb + report:.1f} GB ({parts}: model weights and result tables; the report's "
                f"long table {report:.1f})")

    @property
    def report_bytes(self) -> int:
        return report_bytes(self.report_rows)


def _report_variants(run, chains):
    """Per variant: its report rows per replicate (metrics x generations) and its replicates (None
    where its rows are not per replicate)."""
    seen = set()
    for chain in chains:
        if (chain.experiment, chain.variant.name) in seen:  # an array's parts share their variant
            continue
        seen.add((chain.experiment, chain.variant.name))
        exp, section = experiments.get(chain.experiment), chain.variant.section(run)
        schema = exp.metrics_schema(section)
        yield exp.generations(run) * len(schema.shown), (getattr(section, "replicates", None) if schema.per_replicate
                                                           else None)


def report_bytes(rows: int) -> int:
    """The memory a report of `rows` long rows holds at its peak."""
    return REPORT_BASE_BYTES + REPORT_BYTES_PER_ROW * rows


def report_disk_bytes(rows: int) -> int:
    """The bytes of the report's metrics.parquet of `rows` long rows."""
    return REPORT_DISK_BYTES_PER_ROW * rows


def report_rows(run, chains) -> int:
    """The rows of the report's long table once every unit has finished: each variant's metrics (its
    metrics_schema's, derived ones included) at every generation, for every replicate where rows are per
    replicate."""
    return sum(rows * (n or 1) for rows, n in _report_variants(run, chains))


def report_replicates(run, chains, memory_bytes: float) -> int | None:
    """The most replicates per variant whose report fits in `memory_bytes` (aggregate --replicates),
    at least 1; None where every replicate fits."""
    fixed = per = most = 0
    for rows, n in _report_variants(run, chains):
        if n is None:
            fixed += rows
        else:
            per, most = per + rows, max(most, n)
    room = (memory_bytes - REPORT_BASE_BYTES) / REPORT_BYTES_PER_ROW - fixed
    fits = int(room // per) if per else most
    return None if fits >= most else max(fits, 1)


def estimate(run, chains) -> Estimate:
    est = Estimate(report_rows=report_rows(run, chains))
    skipped: dict[str, int] = {}
    for chain in chains:
        exp = experiments.get(chain.experiment)
        est.add_memory(f"{chain.experiment}/{chain.variant.name}", exp.memory(run, chain.variant))
        _add_disk(est, run, chain, exp)
        seconds = exp.gpu_seconds(run, chain.variant)
        if seconds is None:
            skipped[chain.experiment] = skipped.get(chain.experiment, 0) + len(chain.jobs)
            continue
        est.rated += len(chain.jobs)
        hours = seconds * len(chain.jobs) / 3600
        est.gpu_hours += hours * chain.ranks
        est.wall_hours = max(est.wall_hours, hours)
    est.not_estimated += [f"{count(n, 'unit')} of {name}" for name, n in skipped.items()]
    if est.disk_of:  # else the line "GPU-hours, wall time, disk: not estimated" says so
        est.not_estimated += [f"disk of {name}" for name in est.disk_unknown]
    return est


def _add_disk(est: Estimate, run, chain, exp) -> None:
    """The bytes the chain's units leave (exp.disk), known from the config alone, rate or none."""
    disks = [exp.disk(run, chain.variant, job.index) for job in chain.jobs]
    if None in disks:
        if chain.experiment not in est.disk_unknown:
            est.disk_unknown.append(chain.experiment)
        return
    est.disk_gb += sum(disks) / 1e9
    est.disk_of[chain.experiment] = est.disk_of.get(chain.experiment, 0.0) + sum(disks) / 1e9


def check(run, chains, file: str = "<config>", force: bool = False) -> None:
    """Before anything is written: a plan estimated over LARGE_GPU_HOURS runs only with `force`;
    the line prints the estimate. Units without a measured rate count for nothing here (the unit
    limit, engine.check, holds them)."""
    est = estimate(run, chains)
    if est.gpu_hours > LARGE_GPU_HOURS and not force:
        raise UserError(f"{file}: the plan is estimated at {est.gpu_hours:,.0f} GPU-hours (wall time {est.wall()}, "
                        f"the longest chain), more than {LARGE_GPU_HOURS:.0f} (the paper's config: 7.5); check the "
                        f"counts (generations, seeds, regimes, max_train_blocks, epochs), or pass --force to run it")
