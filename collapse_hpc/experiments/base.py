"""What every experiment offers the engine, and what the engine hands each unit of work.

An experiment is `shape = "chain"` (one unit per generation, each reading the generations
before it: lm, vae) or `shape = "array"` (independent chunks, e.g. of replicates, each running
every generation in memory: gmm, gaussian). Either way a unit writes its artefacts into its own
folder through the UnitContext; the engine writes the manifest after the unit returns. An
experiment never knows where it runs (in-process, a local subprocess, a Slurm job).
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from collapse_hpc.config import plain
from collapse_hpc.errors import UserError
from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.machine import cores_per_rank
from collapse_hpc.regimes import Regime, pooled
from collapse_hpc.store import atomic
from collapse_hpc.store.manifest import bind_data


@dataclass(frozen=True)
class Variant:
    """One independent line of work of an experiment: regime x seed x setting."""

    experiment: str
    regime: Regime  # scoped to the experiment: its own overrides only (Regime.scoped)
    seed: int
    setting: tuple[tuple[str, Any], ...] = ()  # e.g. (("samples", 100),)

    @property
    def overrides(self) -> dict:
        """The regime's overrides of this experiment's config keys, e.g. {"epochs": 10}."""
        return self.regime.overrides_of(self.experiment)

    @property
    def name(self) -> str:
        """e.g. replace-p0.1-s0, replace-p0.1-epochs10-s0 (an override), replace-p0-samples100-s0."""
        extra = "".join(f"-{k}{_token(v)}" for k, v in sorted(self.overrides.items()))
        extra += "".join(f"-{k}{v}" for k, v in self.setting)
        return f"{self.regime.label}{extra}-s{self.seed}"

    @property
    def settings(self) -> dict:
        """What tells this variant apart besides regime and seed (the report's columns)."""
        return {**{k: _token(v) if isinstance(v, (list, dict)) else v for k, v in self.overrides.items()},
                **dict(self.setting)}

    def section(self, run):
        """The experiment's config section as this variant's units see it (overrides applied)."""
        return run.section_for(self.experiment, self.regime)

    def config(self, run) -> dict:
        """What this variant computes, as recorded (and hashed) in each of its units' manifests."""
        return {"experiment": self.experiment, "regime": plain(self.regime), "seed": self.seed,
                "setting": dict(self.setting), self.experiment: plain(self.section(run))}


def _token(value) -> str:
    """A folder-safe rendering of a setting's value: 10, 0.1, true, opt-125m -> opt_125m, [1, 2] -> 1_2."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(_token(v) for v in value)
    if isinstance(value, dict):
        return "_".join(f"{k}{_token(v)}" for k, v in sorted(value.items()))
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(value))


def default_variants(experiment: str, run, extra=None) -> list[Variant]:
    """regimes x seeds (x each dict of `extra` settings: a list, or a function of the variant's
    config section giving one). Regimes that differ only in other experiments' overrides give
    this experiment one variant, not two."""
    out: dict[str, Variant] = {}
    regimes = [r.scoped(experiment) for r in run.regimes_of(experiment)]
    settings = {id(r): (extra(run.section_for(experiment, r)) if callable(extra) else extra) or [{}]
                for r in regimes}
    order = list(dict.fromkeys(tuple(s.items()) for r in regimes for s in settings[id(r)]))
    for setting in order:
        for regime in regimes:
            if setting not in [tuple(s.items()) for s in settings[id(regime)]]:
                continue
            for seed in run.seeds_of(experiment):
                v = Variant(experiment, regime, seed, setting)
                if out.setdefault(v.name, v) != v:  # e.g. keep fractions 0.1 and 0.1000001
                    raise UserError(f"{experiment}: two different variants are both named {v.name} and would "
                                    f"share its folders; make them differ in what the name shows")
    return list(out.values())


def sections_seen(experiment: str, run) -> list:
    """The experiment's section as each of its regimes sees it (a regime may override any key, the
    data set or model included), without repeats: what Experiment.check must check."""
    return [section for section, _ in sections_placed(experiment, run)]


def sections_placed(experiment: str, run) -> list[tuple[Any, Callable[[str], str]]]:
    """sections_seen's sections, each with where its keys are written in the config file: a key its
    regime overrides as `regimes[1].lm.dataset` (or `lm.regimes[1].lm.dataset`), any other as
    `lm.dataset`; so a check's line names the value the user must change."""
    listed = "regimes" if run.section(experiment).regimes is None else f"{experiment}.regimes"
    seen: list = []
    for i, regime in enumerate(run.regimes_of(experiment)):
        section = run.section_for(experiment, regime)
        if all(section != s for s, _ in seen):
            own = regime.overrides_of(experiment)
            seen.append((section, lambda key, own=own, i=i:
                         f"{listed}[{i}].{experiment}.{key}" if key in own else f"{experiment}.{key}"))
    return seen


# what a built-in data set not prepared says to run: `data prepare` for a run here; `stage` for Slurm jobs (staged_by)
_STAGE: ContextVar[str | None] = ContextVar("stage", default=None)


@contextmanager
def staged_by(command: str | None):
    """Within it, a built-in data set not prepared (check_prepared) says to run `command` (a submit's checks:
    `collapse-hpc stage CONFIG --profile P`, which prepares it where the profile's jobs look), not `data prepare`."""
    token = _STAGE.set(command)
    try:
        yield
    finally:
        _STAGE.reset(token)


def check_prepared(experiment: str, run, splits, section=None, key: str | None = None, builtin=()) -> None:
    """The experiment's prepared data set (section key `dataset`; of `section` when given, else the
    run's) exists under the run's data_dir, with its card and every split; else one line saying how
    to prepare it (for Experiment.check), naming the config key `key` (default `<experiment>.dataset`).
    A name not among `builtin` (the experiment's own data sets) is prepared from the user's files."""
    name, data_dir = (section or run.section(experiment)).dataset, Path(run.data_dir)
    key, out = key or f"{experiment}.dataset", data_dir / name
    missing = [s for s in splits if not (out / f"{s}.parquet").is_file()]
    if (out / "card.json").is_file() and missing:  # prepared, for another experiment (images, not text)
        raise UserError(f"{key}: {out} has no {missing[0]} split: it is not a data set the "
                        f"{experiment} reads ({', '.join(splits)})")
    if missing or not (out / "card.json").is_file():
        own = "" if name in builtin else " --from PATH"  # prepare knows no such name without the user's files
        # a run folder copied from another machine (or made before data_dir was saved absolute, then run
        # from another folder) names a data folder this machine lacks: preparing there makes a second copy
        where = "" if data_dir.is_dir() else (f" (there is no folder {data_dir} here; where the data sets are "
                                              f"elsewhere, give it: --set data_dir=PATH)")
        stage = _STAGE.get() if name in builtin else None
        raise UserError(f"{key}: {out} is not prepared; run: "
                        + (stage or f"collapse-hpc data prepare {name}{own} --data-dir {data_dir}") + where)


METRICS = "metrics.parquet"  # each unit's table of metrics (MetricsSchema), written by UnitContext.write_metrics

# what the store and the engine write into every manifest (a unit's facts go beside them)
MANIFEST_KEYS = frozenset({"files", "inputs", "config_hash", "packages", "git_commit", "host", "job_id", "started",
                           "finished", "seconds", "experiment", "variant", "unit", "regime", "seed", "settings",
                           "config", "variant_hash", "generations", "world_size", "resources",
                           "upstream", "data", "data_dir", "volatile"})


@dataclass
class UnitContext:
    """Everything one unit of work needs. `dir` exists and holds only resumable leftovers."""

    run: Any  # RunConfig
    config: Any  # this experiment's Section
    variant: Variant
    index: int  # generation (chain) or chunk number (array)
    dir: Path
    previous: list[Path]  # chain: finished folders of generations 0..index-1; array: []
    run_dir: Path
    data_dir: Path
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("collapse_hpc"))
    schema: MetricsSchema | None = None  # the experiment's metrics_schema(config): what write_metrics checks
    inputs: list[Path] = field(default_factory=list)  # files of the run outside the unit it depends on
    facts: dict = field(default_factory=dict)  # what the unit tells its manifest besides its files

    def record(self, **facts) -> None:
        """Facts about how the unit's results came about (e.g. which weights sampled and which were
        scored) for its manifest, beside the engine's and the store's own keys."""
        taken = sorted(set(facts) & MANIFEST_KEYS)
        if taken:
            raise ValueError(f"manifest keys {', '.join(taken)} are the engine's, not a unit's")
        self.facts.update(facts)

    def uses(self, path: Path) -> None:
        """Name a file of the run outside this unit's folder that its results depend on (e.g. the
        run's shared VAE classifier): its sha256 goes into the unit's manifest, and verify checks it. A file
        of cached data goes into the unfinished unit's binding file at once: a resume on other data starts
        afresh."""
        self.inputs.append(Path(path))
        if self.is_main and Path(path).absolute().is_relative_to(Path(self.data_dir).absolute()):
            bind_data(self.dir, path, self.data_dir)

    @property
    def generation(self) -> int:
        return self.index

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def write_table(self, rel: str, table, metadata: dict | None = None) -> Path:
        return atomic.write_parquet(self.dir / rel, table, metadata)

    def write_metrics(self, table, metadata: dict | None = None) -> Path:
        """metrics.parquet (a pyarrow Table or a dict of columns), checked against the experiment's
        declared schema first: a table that breaks it raises ValueError and writes nothing."""
        import pyarrow as pa

        if self.schema is None:
            raise ValueError(f"{self.variant.experiment}: this unit was given no metrics schema to write against")
        table = table if isinstance(table, pa.Table) else pa.table(table)
        self.schema.check(self.variant.experiment, table)
        return self.write_table(METRICS, table, metadata)

    def write_json(self, rel: str, obj) -> Path:
        return atomic.write_json(self.dir / rel, obj)

    def atomic(self, rel: str):
        """`with ctx.atomic('model.safetensors') as tmp:` write to tmp; renamed on success."""
        return atomic.atomic_path(self.dir / rel)

    def seed(self, *keys: int) -> int:
        """A seed derived from the variant's seed, the unit and any further keys."""
        import numpy as np

        ss = np.random.SeedSequence([self.variant.seed, self.index, *keys])
        return int(ss.generate_state(1)[0])

    @property
    def threads(self) -> int:
        """Cores this rank may use (for torch, numba and BLAS threads)."""
        return cores_per_rank()


class Experiment:
    """What an experiment offers the engine, the launchers, the report and `collapse-hpc data`.

    Subclass it in the experiment's folder, implement the REQUIRED methods (Registration refuses an
    experiment without them) and set what differs from the defaults; the rest of the package
    iterates over experiments and never names one (experiments/__init__.py lists them).
    Everything here is cheap to import: heavy code (torch, figures) is imported by the methods.
    """

    name: str = ""
    shape: Literal["chain", "array"] = "chain"
    job: Literal["gpu", "gpu1", "cpu"] = "cpu"  # resources on a cluster: multi-GPU, one GPU, CPU only
    resumable: tuple[str, ...] = ()  # sub-folders kept when an unfinished unit is redone
    scratch: tuple[str, ...] = ()  # sub-folders removed before the manifest: not results
    # a unit's files (name patterns of the path its manifest lists) holding what the run measured (timings)
    # beside results derived from the others, which no later generation reads: a redo to the same results
    # differs there alone, so they are left out of what later generations are bound to (manifest.files_digest)
    volatile: tuple[str, ...] = ()
    # regimes.SCORED kinds it supports: it scores its pools' items and hands regimes.mix the scores
    # (the config refuses the others for this experiment)
    scored_regimes: tuple[str, ...] = ()
    # the section's keys that set what memory() counts: named where a unit would hold too much
    memory_keys: tuple[str, ...] = ()

    # the report
    title: str = ""  # section heading (default: the name)
    order: int = 100  # sections are sorted by (order, name)
    metrics: str = ""  # what the metrics mean, shown under the section heading
    # a finished unit's files its figures and texts read (Unit.file), besides metrics.parquet: the report
    # hashes them before it reads anything, so a unit with one damaged is left out of every table alike
    report_files: tuple[str, ...] = ()

    # collapse-hpc data prepare NAME: data set name -> "module:function(data_dir, force=False)";
    # a function that takes `source` also prepares from the user's files (--from PATH)
    datasets: dict[str, str] = {}
    # prepares any other NAME from the user's files: "module:function(name, source, data_dir, force=False)"
    local_data: str | None = None
    # the files its local_data reads, as name patterns (fnmatch, any case), where it shares --from with
    # other experiments: PATH goes to the experiment whose patterns match a file of it, else to one
    # that declares none (lm: text)
    local_files: tuple[str, ...] = ()
    # what its --from takes, for the line of a PATH no experiment reads: "…; or, for the vae, grey images as …"
    local_about: str = ""
    # collapse-hpc stage: the files of each hub_models repository it fetches (name patterns); None: every file
    hub_files: tuple[str, ...] | None = None

    def variants(self, run) -> list[Variant]:
        return default_variants(self.name, run)

    def redone_after(self, changed: dict[str, bool], config: dict) -> dict[str, str]:
        """The resumable sub-folders an unfinished unit redoes, each with why, after how-it-runs knobs
        changed (`changed`: knob -> exact, config.knobs_changed; `config`: the section now, as plain
        values). By default every one where a knob that changes results changed: only the experiment
        knows which of its partial work another such value leaves sound to go on from."""
        inexact = [k for k, exact in changed.items() if not exact]
        if not inexact:
            return {}
        return dict.fromkeys(self.resumable, f"made under another {' and '.join(inexact)}")

    def unmet(self, config: type) -> list[str]:
        """What of the contract this experiment (with `config`, its Section dataclass) lacks: the
        required methods it does not implement; empty when it is complete (Registration checks it)."""
        return [f"{m}()" for m in REQUIRED if getattr(type(self), m) is getattr(Experiment, m)]

    # ---- required: every experiment implements these (Registration refuses one that does not)

    def generations(self, run) -> int:
        """Generations each of its chains runs (an array part runs them all in memory); the plan,
        the manifests and the report read it from here."""
        raise NotImplementedError

    def memory(self, run, variant: Variant) -> int | None:
        """Bytes one unit of the variant holds at least, estimated from the config alone (engine.check
        refuses a plan over its bound before anything is written); None: unknown here (e.g. a model
        whose size nothing on this machine states), which the estimate says."""
        raise NotImplementedError

    def memory_advice(self, run, variant: Variant) -> str:
        """What the refusal of a unit too large for memory advises: lowering the section's memory_keys."""
        keys = " or ".join(", ".join(f"{self.name}.{k}" for k in self.memory_keys).rsplit(", ", 1))
        return f"lower {keys}" if keys else ""

    def disk(self, run, variant: Variant, index: int) -> int | None:
        """Bytes unit `index` of the variant leaves on disk, for the plan's estimate: its model weights and
        result tables (manifests, logs and images of a few KB left out); None: not estimated."""
        return None

    def gpu_seconds(self, run, variant: Variant) -> float | None:
        """Seconds one unit of the variant holds a GPU, from a rate measured on one (the README's "What it
        costs on a GPU"), for the plan's estimate; None: no measured rate, which the estimate says."""
        return None

    def metrics_schema(self, section=None) -> MetricsSchema:
        """What its metrics.parquet holds (schema.MetricsSchema), for the experiment's config section as a
        unit sees it; section None (the report, which has no section at hand): the key columns and the
        metrics that do not depend on the config."""
        raise NotImplementedError

    def run_unit(self, ctx: UnitContext) -> None:
        raise NotImplementedError

    # ---- defaults an experiment may change

    def units(self, run, variant: Variant) -> int:
        """Number of units of a variant: its generations (chain) or its chunks (array)."""
        return self.generations(run)

    def reads(self, variant: Variant, index: int) -> set[int]:
        """The earlier generations of a chain whose files generation `index` reads. The engine hashes
        these in full before the unit starts; the others it checks through their manifests (sizes,
        and the digests each records of the ones before it), so the check does not grow with the
        chain. Default: generation 0 (the model later ones start from or are measured with), the
        previous one, and the pools the regime draws from (regimes.pooled). An experiment that
        reads other generations says so here."""
        return {0, index - 1, *pooled(variant.regime, index)} if index > 0 else set()

    def ranks(self, run, variant: Variant | None = None) -> int:
        """Processes per unit: the section's `ranks` key where it has one (lm; a regime may
        override it), else 1."""
        section = variant.section(run) if variant is not None else run.section(self.name)
        return getattr(section, "ranks", None) or 1

    def check(self, run) -> None:
        """Raise UserError (one line) when an input the experiment needs is missing, e.g. an
        unprepared data set. The CLI calls it for every experiment it is about to run, before the run
        folder is created, so a run that could only fail writes nothing. Cheap; prepares nothing."""

    def data_sets(self, run) -> list[str]:
        """The prepared data sets the run's units read (`collapse-hpc stage` prepares them): the
        `dataset` key of the section under each regime, where the section has one."""
        names = [getattr(s, "dataset", None) for s in sections_seen(self.name, run)]
        return list(dict.fromkeys(n for n in names if n))

    def hub_models(self, run) -> list[str]:
        """Hub repositories (models, tokenizers) the units load (`collapse-hpc stage` downloads them)."""
        return []

    def built_models(self, run) -> list[str]:
        """Models the units build themselves (the tiny model), which `collapse-hpc stage` has nothing to fetch of."""
        return []

    def figures(self) -> list[tuple[str, str, Callable]]:
        """The experiment's own report figures: (key, title, function(Context) -> (Figure, caption) or None)."""
        return []

    def metric_specs(self, columns: list[str]) -> dict:
        """name -> plotting.metrics.Metric (display name, unit, which way collapse moves it, and whether it is
        a result, run bookkeeping or compute) of the metrics.parquet columns among `columns`: those its
        metrics_schema declares (stored or derived); the report shows no other column (it names them once)."""
        return self.metrics_schema().shown

    def heading(self, sections: list[dict]) -> str:
        """The report section's heading, given this experiment's config section of each run (raw mappings):
        the title with the data sets the runs used (from their configs, not assumed)."""
        datasets = ", ".join(sorted({str(s["dataset"]) for s in sections if s.get("dataset")}))
        base = self.title or self.name
        if not datasets:
            return base
        return base[:-1] + f" on {datasets})" if base.endswith(")") else f"{base} ({datasets})"

    def texts(self, runs) -> list[tuple[str, str, tuple]]:
        """Texts the report shows under the figures: (title, prompt, table of (header, rows)); the
        runs are report.collect's RunData. E.g. lm: each generation's continuation of the same prompts."""
        return []

    def derive(self, df):
        """A unit's metrics table (pandas) with metrics the figures need that the experiment records
        only in parts (e.g. older runs); the report calls it on every finished unit's table."""
        return df


REQUIRED = ("generations", "memory", "metrics_schema", "run_unit")  # Experiment's methods without a default


@dataclass(frozen=True)
class Registration:
    """An experiment as the registry holds it (experiments/__init__.py): its config section (a
    Section dataclass: a light import), its Experiment, and the module of its own `collapse-hpc
    NAME` command if it has one (add_arguments(parser), main(args)). A built-in's package and an
    entry point of the group `collapse_hpc.experiments` each hand the registry one."""

    config: type
    experiment: Experiment
    cli: Any = None

    def __post_init__(self) -> None:
        kind = type(self.experiment).__name__
        if not self.experiment.name:
            raise TypeError(f"{kind}: an experiment needs a name")
        unmet = self.experiment.unmet(self.config)
        if unmet:
            raise TypeError(f"experiment {self.experiment.name} ({kind}) lacks {', '.join(unmet)} "
                            f"(the contract of experiments.base.Experiment)")

    @property
    def name(self) -> str:
        return self.experiment.name
