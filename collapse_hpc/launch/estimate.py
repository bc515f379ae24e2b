"""What a planned run will cost on a cluster, from the per-generation rates the README documents
("What it costs on a GPU"), for `submit --dry-run`. An experiment or setting without a measured
rate is named as not estimated, never guessed.

The LM rate, measured on one H200 for an OPT-125M-shaped generation of 8192 training blocks of 64
tokens: ~15 s start-up, then per 8192 blocks 3.5 s per epoch of training, 20.5 s of sampling (the
paper's beam search) and 9 s of evaluation. A generation holds `ranks` GPUs throughout; how much
faster more ranks run was not measured, so the wall time is counted as one GPU's.

A plan estimated over LARGE_GPU_HOURS (check) needs --force, as one over engine.LARGE_UNITS units
does: e.g. a typo in --generations or max_train_blocks on the paper's model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from collapse_hpc.errors import UserError

STARTUP_S = 15.0
PER_8192_BLOCKS_S = {"epoch": 3.5, "sample": 20.5, "evaluate": 9.0}
MEASURED_BLOCK = 64  # tokens per block of the measurement
# real training blocks of 64 tokens of the data sets estimated (WikiText-2's train split: ~2.4M OPT tokens)
TRAIN_BLOCKS = {"wikitext2": 37_700}
# the models measured, and their parameters (fp32 weights: 4 bytes each, saved once per generation, twice
# with sample_from: last)
PARAMETERS = {"facebook/opt-125m": 125_239_296}
LARGE_GPU_HOURS = 100.0  # a plan estimated over this needs --force (paper.yaml: 7.5 GPU-hours)


@dataclass
class Estimate:
    gpu_hours: float = 0.0
    wall_hours: float = 0.0  # the longest chain, generations one after another (chains side by side)
    disk_gb: float = 0.0
    not_estimated: list[str] = field(default_factory=list)

    def wall(self) -> str:
        return f"{self.wall_hours:.1f} h" if self.wall_hours >= 1 else f"{self.wall_hours * 60:.0f} min"

    def lines(self) -> list[str]:
        h = self.gpu_hours
        gpu = f"{h:.1f}" if h >= 1 else f"{h:.2f} ({h * 60:.0f} min)"
        out = [f"GPU-hours: {gpu}", f"wall time: {self.wall()} (the longest chain; without queue waits)",
               f"disk: {self.disk_gb:.1f} GB (model weights)"]
        if self.not_estimated:
            out.append("not estimated (no measured rate): " + "; ".join(self.not_estimated))
        return out


def lm_generation_s(section) -> float | None:
    """Seconds of one LM generation on one GPU, or None outside what was measured."""
    blocks = getattr(section, "max_train_blocks", 0) or TRAIN_BLOCKS.get(getattr(section, "dataset", ""))
    if not blocks or getattr(section, "model", None) not in PARAMETERS:
        return None
    blocks *= getattr(section, "block_size", MEASURED_BLOCK) / MEASURED_BLOCK  # tokens, as measured
    r = PER_8192_BLOCKS_S
    return STARTUP_S + blocks / 8192 * (r["epoch"] * section.epochs + r["sample"] + r["evaluate"])


def lm_generation_gb(section) -> float:
    copies = 2 if getattr(section, "sample_from", "best") == "last" else 1
    return PARAMETERS[section.model] * 4 * copies / 1e9


def estimate(run, chains) -> Estimate:
    est = Estimate()
    skipped: dict[str, int] = {}
    for chain in chains:
        section = chain.variant.section(run)
        seconds = lm_generation_s(section) if chain.experiment == "lm" else None
        if seconds is None:
            skipped[chain.experiment] = skipped.get(chain.experiment, 0) + len(chain.jobs)
            continue
        hours = seconds * len(chain.jobs) / 3600
        est.gpu_hours += hours * chain.ranks
        est.wall_hours = max(est.wall_hours, hours)
        est.disk_gb += lm_generation_gb(section) * len(chain.jobs)
    est.not_estimated = [f"{n} units of {name}" for name, n in skipped.items()]
    return est


def check(run, chains, file: str = "<config>", force: bool = False) -> None:
    """Before anything is written: a plan estimated over LARGE_GPU_HOURS runs only with `force`;
    the line prints the estimate. Units without a measured rate count for nothing here (the unit
    limit, engine.check, holds them)."""
    est = estimate(run, chains)
    if est.gpu_hours > LARGE_GPU_HOURS and not force:
        raise UserError(f"{file}: the plan is estimated at {est.gpu_hours:,.0f} GPU-hours (wall time {est.wall()}, "
                        f"the longest chain), more than {LARGE_GPU_HOURS:.0f} (the paper's config: 7.5); check the "
                        f"counts (generations, seeds, regimes, max_train_blocks, epochs), or pass --force to run it")
