"""Read a run folder: its config and plan, every unit's manifest, and the metrics of finished units.

Only units whose manifest is there and whose files match it (presence and size, plus the
sha256 of every file the report reads: metrics.parquet and the experiment's report_files, hashed
when the run is loaded, before anything is read) count; unfinished units are listed as such, so an
in-progress run reports what it has and shows the rest as missing. A unit with a damaged file is
unfinished for every table and figure alike, as `verify` and a run see it.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from collapse_hpc.engine import plan_or_why, run_plan_or_why
from collapse_hpc.errors import NotRead, UserError, first_line, refused_read
from collapse_hpc.plotting.plots import KEYS, TAIL
from collapse_hpc.regimes import values_of
from collapse_hpc.report import longform
from collapse_hpc.store import RunStore, read_manifest, verify_unit
from collapse_hpc.store.layout import existing_run, unit_index

log = logging.getLogger("collapse_hpc.report")
METRICS = "metrics.parquet"


@dataclass
class Unit:
    experiment: str
    variant: str
    name: str  # gen_003 / part_000
    dir: Path
    manifest: dict | None
    problems: list[str] = field(default_factory=list)
    hashed: tuple[str, ...] = (METRICS,)  # the files checked by sha256 when the run was loaded

    @property
    def index(self) -> int:
        return unit_index(self.name)

    @property
    def done(self) -> bool:
        return self.manifest is not None and not self.problems

    def file(self, rel: str) -> Path | None:
        """A file of a finished unit, as its manifest vouches for it (hashed when the run was loaded: a damaged
        one left the whole unit unfinished); None where the unit is not finished or does not have it."""
        if rel not in self.hashed:  # hashed only now, it would drop a unit that earlier tables had counted
            raise ValueError(f"{self.experiment}: the report reads {rel}, which is not in its report_files")
        if not self.done or rel not in self.manifest.get("files", {}):
            return None
        return self.dir / rel


@dataclass
class VariantInfo:
    name: str
    regime: str  # its label (the folder-name token): an identity, never parsed
    seed: int
    settings: dict
    planned: int | None  # units planned by the config (None: unknown)
    shape: str = "chain"  # chain (a unit per generation) or array (parts)
    values: dict = field(default_factory=dict)  # the regime's values (plotting.plots.REGIME); {}: unknown

    @classmethod
    def of(cls, name: str, regime, seed: int, settings: dict, planned: int | None, shape: str) -> VariantInfo:
        """From a recorded regime (plan.json's, a manifest's: Regime.record()); an older manifest's bare
        label gives no values."""
        if isinstance(regime, dict):
            return cls(name, str(regime["label"]), seed, settings, planned, shape, values_of(regime))
        return cls(name, str(regime), seed, settings, planned, shape)


@dataclass
class Columns:
    """What the finished units' metrics.parquet of one experiment lack of its declared metrics, or hold besides
    them and its keys: column -> how many units, said once for the experiment (tables.column_notes), not a line
    a unit."""

    units: int = 0  # the units read
    lacking: Counter = field(default_factory=Counter)  # a declared metric the figures and tables miss
    unknown: Counter = field(default_factory=Counter)  # no metric nor key the experiment declares: not shown
    not_float: Counter = field(default_factory=Counter)  # a declared metric of another type than float64

    def read(self, columns, ids: list[str], shown: list[str], declared: dict, schema) -> None:
        """Count one unit's table: its `columns`, of which `ids` are keys and `shown` its metrics shown."""
        self.units += 1
        have = set(columns)
        self.lacking.update(m for m in schema.metrics if m not in have and m not in schema.optional)
        rest = [c for c in columns if c not in ids and c not in shown]
        self.unknown.update(c for c in rest if c not in declared)
        self.not_float.update(c for c in rest if c in declared)


@dataclass
class RunData:
    label: str
    root: Path
    config_text: str
    raw_config: dict
    variants: dict  # (experiment, variant name) -> VariantInfo
    units: list[Unit]
    generations: dict  # experiment -> planned generations (None: unknown)
    jobs: dict = field(default_factory=dict)  # job_states, read before the units were listed
    left_out: list[str] = field(default_factory=list)  # experiments of the plan left out with --only
    columns: dict = field(default_factory=dict)  # experiment -> Columns, as tidy() read its units

    def experiments(self) -> list[str]:
        """Those of its units and of its plan, but the ones it left out with --only: no section of figures
        it will never make ("left out" says them once, as status does)."""
        seen = {u.experiment for u in self.units} | {e for e, _ in self.variants if e not in self.left_out}
        return sorted(seen)

    def finished(self, experiment: str) -> list[Unit]:
        return [u for u in self.units if u.experiment == experiment and u.done]

    def variant(self, experiment: str, name: str) -> VariantInfo:
        info = self.variants.get((experiment, name))
        return info or VariantInfo(name, name, -1, {}, None)


def _recorded(units: list[Unit], variants: dict) -> None:
    """Variants the plan does not list (a run folder without plan.json), from what their finished
    units' manifests record: regime, seed and settings (names are never parsed back)."""
    for u in units:
        m = u.manifest or {}
        if (u.experiment, u.variant) not in variants and "regime" in m and isinstance(m.get("settings"), dict):
            variants[(u.experiment, u.variant)] = VariantInfo.of(u.variant, m["regime"], int(m.get("seed", -1)),
                                                                 m["settings"], None,
                                                                 "chain" if u.name.startswith("gen_") else "array")


def _planned(store: RunStore, raw: dict) -> tuple[dict, dict]:
    """Variants and generation counts of the run's plan (plan.json, written when the run was
    started; values only, so no experiment's code is needed), else from the units' manifests
    alone (_recorded) and the config's generation counts."""
    plan = plan_or_why(store)  # a read refused: NotRead, the report not made without it
    if isinstance(plan, UserError):  # an older run folder, or a damaged plan
        log.warning("%s: no usable plan (%s); reading the manifests only", store.root, plan)
        return {}, {k: raw[k].get("generations") or raw.get("generations") for k in raw if isinstance(raw.get(k), dict)}
    variants = {(c["experiment"], c["variant"]): VariantInfo.of(c["variant"], c["regime"], c["seed"], c["settings"],
                                                                c["units"], c.get("shape", "chain"))
                for c in plan["chains"]}
    return variants, dict(plan["generations"])


def load_run(path: str | Path, label: str | None = None) -> RunData:
    store = existing_run(path)
    from collapse_hpc import experiments
    from collapse_hpc.launch import records

    # as written, and as the run made it: an edit is refused, but one of how-it-runs knobs (read as made until
    # the next run)
    text, raw = store.saved(experiments.sections())
    variants, generations = _planned(store, raw)
    # the job records first: a unit that finishes meanwhile is then found done, never "its job
    # completed, but manifest.json is missing" (records newer than the listing of the units)
    with records.read_once():  # jobs.json: one read for both
        jobs, absent = job_states(store.root), left_out(store, raw)
    units = [unit for d in store.units() if d.parent.parent.name != "report"  # unit folders only
             for unit in [_checked(d)]]
    _recorded(units, variants)
    return RunData(label or store.root.name, store.root, text, raw, variants, units, generations, jobs, absent)


def left_out(store: RunStore, made: dict) -> list[str]:
    """The experiments of the run's plan that no launch ran (--only), as status and verify tell them: not
    unfinished chains of the run. Empty where the plan is not one of the run's config (nothing to tell by);
    `made`: that config, as saved() read it."""
    from collapse_hpc.launch import records, status

    chains = run_plan_or_why(store, made)
    return [] if isinstance(chains, UserError) else sorted(status.left_out(store, chains, records.load(store)))


def _checked(d: Path) -> Unit:
    """A unit folder as the report counts it: every file's size and the sha256 of each the report reads, all
    before anything is read (checked later, one would drop the unit after its metrics were counted)."""
    from collapse_hpc import experiments

    experiment, variant = d.parent.parent.name, d.parent.name
    hashed = (METRICS, *experiments.describe(experiment).report_files)
    manifest = read_manifest(d)
    problems = verify_unit(d, deep=hashed) if manifest is not None else []
    if manifest is not None and not manifest.get("corrupt") and METRICS not in manifest["files"]:
        problems.append(f"{d}: finished unit has no {METRICS}")
    if problems:
        log.warning("%s: %s", d, problems[0])
    return Unit(experiment, variant, d.name, d, manifest, problems, hashed)


def job_states(root: Path) -> dict:
    """jobs.json's record of each unit (experiment/variant/unit -> entry); {} when there is none. A Slurm
    run's entries get their job's state from sacct and squeue (where this host has them), and a failed
    job the last line of its error: jobs.json holds no state of a Slurm job."""
    from collapse_hpc.launch import records, status

    book = records.load(RunStore(root))
    units = book.get("units") or {}
    slurm = {label for label, e in units.items() if records.executor_of(book, e) == "slurm"}
    out = {label: _local_job(root, label, e) for label, e in units.items() if label not in slurm}
    # a recorded id whose job has another name now (a reset job-id counter: a stranger's) reads as gone
    states = status.slurm_view([units[label].get("job_id") for label in slurm], book)[0] if slurm else {}
    accounting = getattr(states, "accounting", None)  # sacct failed: ended jobs' states unknown
    for said in (accounting, getattr(states, "controller", None)):
        if said:
            log.warning(said)
    for label in slurm:
        entry = units[label]
        # a job gone from the queue, where sacct failed, may have ended in any state: not "not started"
        unknown = "UNKNOWN" if accounting and entry.get("job_id") is not None else ""
        state = states.get(str(entry.get("job_id")), (unknown,))[0]
        if status.begun_again(root / label, status.job_end(entry, states, False)):  # redone by hand since
            state = "unfinished"
        # a failed job's log only: reading every job's (up to 256 KiB each) cost a paper-scale run seconds
        said = [ln for ln in status.error_lines(entry.get("log")) if not ln.startswith("srun: ")] \
            if state in status.BAD else []
        out[label] = {**entry, "state": state} | ({"error": said[-1]} if said else {})
    return out


def _local_job(root: Path, label: str, entry: dict) -> dict:
    """A local unit's entry as the report reads it: a job recorded RUNNING may have died with its launcher, and
    a unit begun again by hand since its job ended is unfinished, whatever that job's state (status.begun_again)."""
    from collapse_hpc.launch import status

    if entry.get("state") == "RUNNING":
        return {**entry, "state": status.local_state(entry)}
    return {**entry, "state": "unfinished"} if status.begun_again(root / label, status.job_end(entry, {}, True)) \
        else entry


def labels(paths: list[str]) -> list[str]:
    """Short distinct labels for runs: folder names, else as many trailing parts of their paths as
    tell them apart (the run column is what keeps their rows apart: two alike would be pooled).
    Paths must name distinct folders (distinct_runs)."""
    roots = [Path(p).absolute() for p in paths]
    depth = 1
    while True:
        out = ["/".join(r.parts[-depth:]).lstrip("/") or "/" for r in roots]
        if len(set(out)) == len(out) or depth >= max(len(r.parts) for r in roots):
            return out
        depth += 1


def distinct_runs(paths: list[str]) -> None:
    """Each run folder once: a folder named twice (r1 and ./r1/, or a link to it) would count every
    value twice, doubling n and narrowing every interval."""
    seen: dict[Path, str] = {}
    for p in paths:
        real = Path(p).resolve()
        if real in seen:
            raise UserError(f"aggregate: {p} is the same run folder as {seen[real]} ({real}); name each run once")
        seen[real] = p


# ------------------------------------------------------------------ metrics to long form

def _unit_part(run: RunData, unit: Unit, replicates: int | None = None) -> longform.Part | None:
    """The unit's metrics as recorded (derived ones added); with `replicates`, only its rows of replicates
    0..replicates-1 (ids are global within a variant: a part beyond them gives none)."""
    path = unit.file(METRICS)
    table = _metrics_table(unit, path) if path is not None else None
    if table is None:
        return None
    if replicates is not None and "replicate" in table.column_names:
        import pyarrow.compute as pc

        table = table.filter(pc.less(table["replicate"], replicates))
        if not table.num_rows:
            return None
    df = table.to_pandas()
    del table
    if "generation" not in df or not pd.api.types.is_integer_dtype(df["generation"]):
        unit.problems.append(f"{path}: no integer 'generation' column")
        return None
    from collapse_hpc import experiments

    experiment = experiments.describe(unit.experiment)
    df = experiment.derive(df)  # metrics the figures need, recorded in parts
    schema = experiment.metrics_schema()
    ids = [c for c in schema.keys if c in df]  # the declared key columns
    # the experiment's own metrics only: a float column it does not declare (a hand-edit, another tool's) is none
    declared = experiment.metric_specs([c for c in df.columns if c not in ids])
    metric_cols = [c for c in df.columns if c in declared and pd.api.types.is_float_dtype(df[c])]
    run.columns.setdefault(unit.experiment, Columns()).read(df.columns, ids, metric_cols, declared, schema)
    if not metric_cols:
        # float columns it may hold, but none a metric its experiment declares (Columns names them)
        unit.problems.append(f"{path}: no metric column {unit.experiment} declares (float64)")
        return None
    return longform.Part(run.label, unit.experiment, unit.variant, run.variant(unit.experiment, unit.variant),
                         df[ids + metric_cols], ids, metric_cols)


def _metrics_table(unit: Unit, path: Path):
    """The unit's metrics table; None, the unit left out as a problem the report lists, where its bytes are no
    Parquet file though its manifest's checksum matches them (written damaged, or listed by an older version)."""
    import pyarrow as pa

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        if refused_read(e):  # says nothing of its bytes: not called damaged
            raise NotRead(f"metrics {path}", e, "kept as it is; the report is not written") from None
        said = first_line(e, None).split(f"{path}': ")[-1]  # pyarrow's own words name the file again
        unit.problems.append(f"{path}: not a readable Parquet file ({said[:120]})")
        log.warning("%s: %s; left out of the report", unit.dir, unit.problems[-1])
        return None


def tidy(runs: list[RunData], replicates: int | None = None) -> pd.DataFrame:
    """Every finished unit's metrics, long form: run, experiment, variant, regime, seed,
    settings…, replicate, generation, metric, value, sorted by them; with `replicates`, the first that many
    replicates of each variant (a report that fits in memory: estimate.report_rows). Its string columns
    are Categoricals (longform.plain gives them as strings)."""
    for run in runs:
        run.columns.clear()  # counted afresh as its units are read
    parts = [part for run in runs for unit in run.units if unit.done
             for part in [_unit_part(run, unit, replicates)] if part is not None]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            KEYS + TAIL, ["str", "str", "str", "str", "str", "float64", "float64", "int64", "int64", "int64", "str",
                          "float64"])})
    return longform.build(parts)
