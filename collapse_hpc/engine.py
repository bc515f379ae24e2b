"""The one generation loop for every experiment.

plan() expands a run into jobs (experiment x variant x unit); open_run() writes that plan into
the run folder once (plan.json: every variant with its resolved config and hash), and what
comes after (each job, status, the report) reads it there instead of planning again.
run_unit() performs one job wherever it is called (in-process, a local subprocess, a Slurm
task): skip it if its manifest verifies, otherwise clean what is left of it, hand the
experiment its inputs and folder, and write the manifest last. The launch layer decides where
and in which order jobs run.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from collapse_hpc import experiments
from collapse_hpc.config import CHAIN_KEYS, build, config_hash, diff, knobs_changed, plain
from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import UnitContext, Variant
from collapse_hpc.logs import count
from collapse_hpc.machine import cores_per_rank
from collapse_hpc.regimes import Regime, values_of
from collapse_hpc.store import RunStore, attempts, read_manifest, space, verify_unit, write_json, write_manifest
from collapse_hpc.store.layout import unit_index
from collapse_hpc.store.made import plan_json
from collapse_hpc.store.reads import NotRead
from collapse_hpc.store.live import RunRemoved, at_work, folders_made, not_yet_made, remove_made, removed
from collapse_hpc.store.lock import working
from collapse_hpc.store.manifest import (BINDING, MANIFEST, binding, files_changed, read_binding, read_once,
                                         write_binding)

log = logging.getLogger("collapse_hpc")


@dataclass(frozen=True)
class Job:
    """One unit of work: a generation of a chain or a chunk of an array."""

    experiment: str
    variant: str
    index: int
    shape: str  # chain | array
    kind: str  # gpu | gpu1 | cpu: which resources a cluster profile gives it

    @property
    def label(self) -> str:
        unit = "gen" if self.shape == "chain" else "part"
        return f"{self.experiment}/{self.variant}/{unit}_{self.index:03d}"


@dataclass
class Chain:
    """The jobs of one variant, in order. A chain's jobs depend on each other; an array's don't."""

    experiment: str
    variant: Variant
    shape: str
    kind: str
    ranks: int  # processes per unit (Experiment.ranks)
    jobs: list[Job]


def plan(run, only: list[str] | None = None) -> list[Chain]:
    chains = []
    for name in run.enabled():
        if only and name not in only:
            continue
        exp = experiments.get(name)
        for v in exp.variants(run):
            n = exp.units(run, v)
            jobs = [Job(name, v.name, i, exp.shape, exp.job) for i in range(n)]
            chains.append(Chain(name, v, exp.shape, exp.job, max(1, int(exp.ranks(run, v))), jobs))
    return chains


# ---------------------------------------------------------------- the frozen plan (plan.json)

def open_run(store: RunStore, run, only: list[str] | None = None, force: bool = False) -> list[Chain]:
    """Open the run folder (RunStore.open: a changed config is refused) and freeze its plan.
    Finished units the new plan would redo (an array part made for another generation count) are
    redone only with `force`; without it, one line says what would go. Returns the chains (of
    `only`, when given)."""
    if store.exists() and not force:
        doomed = redone_by(store, run)
        if doomed:
            unit, had = doomed[0]
            asked = experiments.get(unit.parent.parent.name).generations(run)
            raise UserError(f"{store.root}: this config would redo {len(doomed)} finished units, deleting their "
                            f"results (e.g. {unit.relative_to(store.root)}: {had} generations -> {asked}); pass "
                            f"--force to redo them, or use another --run")
    before = (_saved_plan(store) or {}).get("generations")
    store.open(run, redone=lambda: redone_partial_work(store, run))
    _note_generations(store, run, before)
    return [c for c in freeze(store, run) if not only or c.experiment in only]


def _note_generations(store: RunStore, run, before: object) -> None:
    """One line where the generation counts differ from the run's last plan: a resubmission that leaves out
    the first one's --generations (make submit without GENERATIONS=) lengthens every chain silently else."""
    if not isinstance(before, dict):
        return
    now = _generations(run)
    changed = [f"{name} {before[name]} -> {now[name]}" for name in run.enabled()
               if name in before and before[name] != now.get(name)]
    if changed:
        print(f"note: {store.root}: generations changed since its last plan ({', '.join(changed)}); to keep the "
              f"run's own: {resume_command(store, run.executor)}", file=sys.stderr)


def resume_command(store: RunStore, executor: str | None) -> str:
    """The command that queues (or runs) what is left of the run: its own saved config, so the generations
    it was submitted with (--generations) and its earlier submit's profile hold without retyping them."""
    verb = "submit" if executor == "slurm" else "run"
    return shlex.join(["collapse-hpc", verb, str(store.config_path), "--run", str(store.root)])


def redone_by(store: RunStore, run) -> list[tuple[Path, object]]:
    """The finished array parts that `run` would redo (and what generation count each holds): a
    part runs every generation in memory, so another count redoes it whole."""
    out = []
    for name in run.enabled():
        exp = experiments.get(name)
        if exp.shape != "array":
            continue
        for unit in sorted(p for p in (store.root / name).glob("*/part_*") if p.is_dir()):
            had = (read_manifest(unit) or {}).get("generations")
            if had is not None and had != exp.generations(run):
                out.append((unit, had))
    return out


def freeze(store: RunStore, run) -> list[Chain]:
    """Write the plan of `run` (its saved config) as plan.json, unless it holds this very plan
    already: once per config (a changed generation count plans anew)."""
    chains = plan(run)
    doc = json.loads(json.dumps({"config_hash": run.hash(), "generations": _generations(run),
                                 "chains": [_record(run, c) for c in chains]}))
    if _saved_plan(store) != doc:
        write_json(store.plan_path, doc)
    return chains


def _generations(run) -> dict:
    return {name: experiments.get(name).generations(run) for name in run.sections}


def _record(run, chain: Chain) -> dict:
    """One variant of the plan as values: what a job, status and the report need of it."""
    v = chain.variant
    unit_config = v.config(run)
    return {"experiment": chain.experiment, "variant": v.name, "shape": chain.shape, "kind": chain.kind,
            "ranks": chain.ranks, "units": len(chain.jobs),
            "regime": {**v.regime.record(), "overrides": plain(v.overrides)},
            "seed": v.seed, "setting": [list(kv) for kv in v.setting], "settings": v.settings,
            "config": unit_config, "variant_hash": config_hash(unit_config)}


def _saved_plan(store: RunStore) -> dict | None:
    """plan.json as a mapping of chains; None when it is missing or not one."""
    try:  # a read refused is NotRead (plan_json)
        doc = plan_json(store.plan_path)
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("chains"), list) else None


# what plan.json holds (_record writes it), by the kind of JSON value: the report's part of each chain,
# then what a launch reads of it besides (an older version's plan may lack the latter, not the former)
PLAN_KEYS = {"config_hash": str, "generations": dict, "chains": list}
REPORTED = {"experiment": str, "variant": str, "units": int, "regime": dict, "seed": int, "settings": dict}
LAUNCHED = {"shape": str, "kind": str, "ranks": int, "setting": list, "config": dict}
REGIME_REPORTED = ("label", "keep_fraction", "verifier_quantile")  # what the report reads of a chain's regime
JSON_KINDS = {dict: "a mapping", list: "a list", str: "text", int: "a whole number", float: "a number",
              bool: "true or false", type(None): "null"}


def _misshapen(value, keys: dict, what: str) -> str | None:
    """What of `value` (`what`, as the error says it) is not the mapping `keys` describes: a missing key or
    one of another kind; None where it is."""
    if not isinstance(value, dict):
        return f"{what} is {JSON_KINDS.get(type(value), 'a value')}, not a mapping"
    for key, kind in keys.items():
        if key not in value:
            return f"{what} has no {key!r}"
        if not isinstance(value[key], kind) or (kind is int and isinstance(value[key], bool)):
            return f"{what}'s {key!r} is {JSON_KINDS.get(type(value[key]), 'a value')}, not {JSON_KINDS[kind]}"
    return None


def _unreadable_plan(store: RunStore, problem: str) -> UserError:
    return UserError(f"{store.plan_path}: not a plan this version reads ({problem}); run or submit the run's "
                     f"config again to plan it anew")


def read_plan(store: RunStore) -> dict:
    """plan.json as written (values only: the report reads it without the experiments' code), its shape
    checked (a damaged one is one line, never a Python error's name)."""
    doc = plan_or_why(store)
    if isinstance(doc, UserError):
        raise doc
    return doc


def plan_or_why(store: RunStore) -> dict | UserError:
    """read_plan's plan, or the error saying why there is none this version reads (missing, corrupt, of another
    shape), for a reader that goes on without one; a read the file system refuses is NotRead, raised."""
    try:
        doc = plan_json(store.plan_path)
    except FileNotFoundError:
        return UserError(f"{store.plan_path}: missing (a run folder of an older version); run or submit the run's "
                         f"config again to plan it")
    except ValueError:
        return UserError(f"{store.plan_path}: not a plan (corrupt); run or submit the run's config again to plan "
                         f"it")
    problem = _misshapen(doc, PLAN_KEYS, "the file")
    for n, rec in enumerate([] if problem else doc["chains"], 1):
        problem = problem or _misshapen(rec, REPORTED, f"chain {n}") or next(
            (f"chain {n}'s regime has no {key!r}" for key in REGIME_REPORTED if key not in rec["regime"]), None)
    return _unreadable_plan(store, problem) if problem else doc


def run_plan_or_why(store: RunStore, made: dict | None = None) -> list[Chain] | UserError:
    """The chains of the run's frozen plan under its saved config (load_plan; `made`: the config as saved() read
    it, not read again), or the error saying why there are none to go by (no plan, one of another config, a run
    of an older version, a config edited since), for a reader that goes on without them (verify, the report). A
    read the file system refuses says nothing of the plan: NotRead, raised."""
    try:
        return load_plan(store, store.load_config(experiments.sections(), made))
    except NotRead:
        raise
    except UserError as e:
        return e


def load_plan(store: RunStore, run) -> list[Chain]:
    """The chains of the run's frozen plan; `run` is its saved config (RunStore.load_config)."""
    doc = read_plan(store)
    # else the saved config's (read only then): a run folder of an older version, not resumed
    made_for = doc["config_hash"] == run.hash() or doc["config_hash"] == saved_hash(store)
    if not made_for or doc["generations"] != _generations(run):
        raise UserError(f"{store.plan_path}: made for another config than {store.config_path}; run or submit "
                        f"the run's config again to plan it anew")
    chains = []
    for n, rec in enumerate(doc["chains"], 1):
        if problem := _misshapen(rec, LAUNCHED, f"chain {n}"):
            raise _unreadable_plan(store, problem)
        try:
            chains.append(_chain(run, rec, str(store.plan_path)))
        except KeyError as e:
            raise _unreadable_plan(store, f"chain {n} ({rec['experiment']}/{rec['variant']}) lacks {e}") from None
        except ValueError as e:  # a regime's value out of range, a variant that reads back as another
            raise _unreadable_plan(store, f"chain {n} ({rec['experiment']}/{rec['variant']}): {e}") from None
        except (TypeError, AttributeError):  # Python's words for it name no key: ours name the chain
            raise _unreadable_plan(store, f"chain {n} ({rec['experiment']}/{rec['variant']}) holds a value of "
                                         f"another kind than this version writes") from None
    return chains


def _chain(run, rec: dict, file: str) -> Chain:
    """A chain of plan.json; its variant rebuilt from the recorded values, a regime's overrides
    typed by the experiment's section class (as the config typed them)."""
    name, r = rec["experiment"], rec["regime"]
    overrides = {}
    if r["overrides"]:
        base = {k: x for k, x in rec["config"][name].items() if k not in CHAIN_KEYS}
        section = build(type(run.section(name)), base, file, prefix=f"{name}.")
        overrides = {name: {k: getattr(section, k) for k in r["overrides"]}}
    values = values_of(r)
    regime = Regime(values["kind"], values["keep_fraction"], values["verifier_quantile"], overrides)
    v = Variant(name, regime, rec["seed"], tuple((k, x) for k, x in rec["setting"]))
    if v.name != rec["variant"]:
        raise ValueError(f"variant {rec['variant']} reads back as {v.name}")
    jobs = [Job(name, v.name, i, rec["shape"], rec["kind"]) for i in range(rec["units"])]
    return Chain(name, v, rec["shape"], rec["kind"], rec["ranks"], jobs)


MAX_UNITS = 100_000  # the paper's config plans a few hundred; each unit is a folder and a job
MAX_UNIT_GIB = 64  # what one array task may hold in memory (replicates x generations, pools)


LARGE_UNITS = 2_000  # a plan beyond this many units (the paper's config plans 635) needs --force


def _nothing_enabled(run, file: str) -> str:
    """Why a config runs nothing: its sections are disabled, and an experiment without a section does not run
    (lm and vae disabled read as 'every experiment is disabled' where gmm and gaussian were only left out)."""
    left_out = [name for name in experiments.names() if name not in run.sections]
    return (f"{file}: every experiment it has a section for is disabled ({', '.join(run.sections)}: enabled: false)"
            + (f", and one without a section does not run ({', '.join(left_out)} here)" if left_out else "")
            + f"; enable one, e.g. --set {(left_out or list(run.sections))[0]}.enabled=true")


def check(run, file: str = "<config>", force: bool = False, memory: int | None = None,
          gpus_here: bool = False, sizes: bool = True) -> int | None:
    """Before anything is written: an experiment is enabled and each enabled one plans a chain (an
    empty seeds or regimes list would make a run folder that plans nothing), every variant has its own
    name (its own folders), and the plan is one a machine can hold: at most MAX_UNITS units, no unit
    estimated over MAX_UNIT_GIB, nor over `memory` (the bytes of the machine that runs every unit: a local
    run's, where a larger unit is killed, unit after unit; a GPU unit's estimate is its GPU's where
    `gpus_here`); over LARGE_UNITS units (e.g. a typo in --generations) only with `force`.

    Counted with integers from each experiment's units() and memory(): nothing is built, so a
    count typed as 1e20 is one line now instead of a MemoryError after the run folder exists. Returns the
    largest estimate of a unit held in this machine's memory (None: none known). `sizes` False leaves
    the memory to check_sizes, e.g. once the inputs are checked (a misspelt hub model's name states a size)."""
    total = 0
    if not run.enabled():  # a run folder with an empty plan would look like a finished run
        raise UserError(_nothing_enabled(run, file))
    for name in run.enabled():
        exp = experiments.get(name)
        try:
            variants = exp.variants(run)
        except UserError as e:
            raise UserError(f"{file}: {e}") from None
        if not variants:
            empty = [f"{k}: []" for k, v in (("seeds", run.seeds_of(name)), ("regimes", run.regimes_of(name))) if not v]
            raise UserError(f"{file}: {name} plans no chains ({', '.join(empty) or 'an empty list of settings'}); "
                            f"list at least one, or set {name}.enabled: false")
        seen: set[str] = set()
        for v in variants:
            if v.name in seen:
                raise UserError(f"{file}: {name}: two variants are both named {v.name} and would share its "
                                f"folders; list each seed, regime and setting once")
            seen.add(v.name)
            total += exp.units(run, v)
            if total > MAX_UNITS:
                raise UserError(f"{file}: plans more than {MAX_UNITS} units ({name} alone reaches {total}); "
                                f"lower the counts (seeds, regimes, replicates, generations)")
    if total > LARGE_UNITS and not force:
        raise UserError(f"{file}: plans {total} units, more than {LARGE_UNITS} (the paper's config plans 635: "
                        f"one job each on a cluster); check the counts (generations, seeds, regimes, replicates), "
                        f"or pass --force to run it")
    return check_sizes(run, file, memory, gpus_here) if sizes else None


def check_sizes(run, file: str = "<config>", memory: int | None = None, gpus_here: bool = False) -> int | None:
    """check's memory part: no unit estimated over MAX_UNIT_GIB, nor over `memory` where this machine
    holds it. Returns the largest estimate of a unit held in this machine's memory (None: none known)."""
    largest = None
    for name in run.enabled():
        exp = experiments.get(name)
        for v in exp.variants(run):
            need = exp.memory(run, v)
            held_here = not (gpus_here and exp.job != "cpu")  # a GPU unit's estimate is its GPU's
            if need is not None:
                _refuse_too_large(file, name, exp, run, v, need, memory if held_here else None)
                largest = max(largest or 0, need) if held_here else largest
    return largest


def _refuse_too_large(file: str, name: str, exp, run, variant, need: int, here: int | None) -> None:
    """One line where a unit's memory estimate passes MAX_UNIT_GIB or `here`, the machine that holds it."""
    if need <= min(MAX_UNIT_GIB * 2**30, here or MAX_UNIT_GIB * 2**30):
        return
    advice = exp.memory_advice(run, variant)
    limit = (f"this machine's {here / 2**30:.3g} GiB, where the {run.executor} executor runs it"
             if here and here < MAX_UNIT_GIB * 2**30 else f"{MAX_UNIT_GIB} GiB")
    raise UserError(f"{file}: {name}: one task of {variant.name} would hold about {need / 2**30:.3g} GiB "
                    f"in memory, more than {limit}" + (f"; {advice}" if advice else ""))


def _variant(store: RunStore, run, experiment: str, name: str) -> Variant:
    for chain in load_plan(store, run):
        if chain.experiment == experiment and chain.variant.name == name:
            return chain.variant
    raise UserError(f"{experiment}: no variant {name!r} in this run's plan")


def _dist_env() -> tuple[int, int, int]:
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def _wait_for_manifest(unit_dir: Path, timeout: float = 600.0) -> None:
    """Ranks > 0 return only once rank 0 has written the manifest, so the next unit sees it."""
    deadline = time.time() + timeout
    while not (unit_dir / "manifest.json").exists():
        if time.time() > deadline:
            raise UserError(f"{unit_dir}: rank 0 did not finish the unit in {timeout:.0f} s")
        time.sleep(0.2)


def run_unit(run_dir: str | Path, experiment: str, variant: str, index: int, inputs: bool = False) -> str:
    """Perform one unit (all ranks call this). Returns 'done', 'skipped'. A write the disk refused
    (full, a quota, read-only) ends it in one line naming the file system and what to do, as its
    FAILED line and status show it, not a library's own words. inputs: a finished unit counts only where the
    run's files it used verify too (a unit named by hand: verify's redo command for a damaged one). Its run folder
    removed meanwhile (rm -rf RUN) ends it in RunRemoved's line, nothing of the run made again."""
    with at_work(Path(run_dir)):  # removed by hand meanwhile: not made again by its writes
        try:
            return _run_unit(run_dir, experiment, variant, index, inputs)
        except UserError:
            raise
        except Exception as e:
            if removed(Path(run_dir)):  # what failed in it since (a file gone with it) is that
                raise RunRemoved(Path(run_dir).absolute()) from e
            _refusal(e, run_dir)


def _refusal(e: Exception, run_dir: str | Path) -> NoReturn:
    """A unit's error `e` (in flight) raised again, as one line where the disk refused a write (run_unit)."""
    said = space.named(e, getattr(e, "filename", None) or run_dir)
    if not isinstance(said, OSError) or not space.refused(said):
        raise e
    raise UserError(space.explain(said) + space.KEPT) from e


def _run_unit(run_dir: str | Path, experiment: str, variant: str, index: int, inputs: bool = False) -> str:
    store = RunStore(run_dir)
    run = store.load_config(experiments.sections())
    exp = experiments.get(experiment)
    v = _variant(store, run, experiment, variant)
    unit_dir = store.unit_dir(experiment, variant, exp.shape, index)
    store.refuse_links(unit_dir)
    rank, world, local_rank = _dist_env()
    variant_hash = config_hash(v.config(run))
    if finished(store, unit_dir, exp, run, variant_hash=unit_hash(unit_dir, variant_hash, v.config(run)),
                inputs=inputs):
        return "skipped"
    previous = []
    if exp.shape == "chain":
        previous = [store.unit_dir(experiment, variant, "chain", g) for g in range(index)]
        read = exp.reads(v, index)
        for g, p in enumerate(previous):  # built on only what verifies: hashed in full where the unit reads it
            bound = unit_hash(p, variant_hash, v.config(run))
            problems = (verify_unit(p, deep=g in read, variant_hash=bound) if read_manifest(p) is not None
                        else ["unfinished"])
            if problems:
                raise UserError(f"{p}: an earlier generation is unfinished or does not verify ({problems[0]}); "
                                f"run it first: {redo_command(store, experiment, variant, unit_index(p.name))}")
    expected = binding(unit_dir, variant_hash)
    made = not_yet_made(unit_dir, store.root)
    before = (0, 0.0)
    if rank == 0:
        before = attempts.earlier(unit_dir)  # read before the leftovers go: a killed attempt's last write
        judged, keep, redone = leftovers(unit_dir, exp, v.config(run), expected)
        for sub, why in redone.items():
            log.warning("%s/%s: redone after a how-it-runs knob changed (%s)", unit_dir, sub, why)
        if before[0]:
            log.info("%s", resumed_words(unit_dir, before, [k for k in keep if (unit_dir / k).is_dir()]))
        store.reset_unit(unit_dir, keep=keep, expected=judged)
        write_binding(unit_dir, {**expected, "config": v.config(run)})  # what a resume after a knob compares
    else:
        folders_made(unit_dir)  # as reset_unit: units refusing beside remove their empty folders (_refused)
    section = v.section(run)
    ctx = UnitContext(run=run, config=section, variant=v, index=index, dir=unit_dir,
                      previous=previous, run_dir=store.root, data_dir=Path(run.data_dir).absolute(),
                      rank=rank, world_size=world, local_rank=local_rank,
                      log=logging.getLogger(f"collapse_hpc.{experiment}"), schema=exp.metrics_schema(section))
    started = time.time()
    if rank == 0:
        attempts.begin(unit_dir, before, started)
    beat = attempts.beating(unit_dir) if rank == 0 else contextlib.nullcontext()
    with working(store.root), beat:  # holds the run against a new launcher even if ours is killed
        try:
            exp.run_unit(ctx)
        except UserError:
            if rank == 0:
                _refused(unit_dir, made)
            raise
    if rank != 0:
        _wait_for_manifest(unit_dir)
        return "done"
    for sub in exp.scratch:  # e.g. training checkpoints: not results
        import shutil

        shutil.rmtree(unit_dir / sub, ignore_errors=True)
    unit_config = v.config(run)  # the section as the unit saw it, regime overrides applied
    write_manifest(unit_dir, config_hash=saved_hash(store), started=started,  # an older version's, unresumed, too
                   extra={**ctx.facts, **expected,
                          # what the name encodes, as values, for readers without the experiment's code
                          "regime": v.regime.record(), "seed": v.seed, "settings": v.settings,
                          "config": unit_config, "generations": exp.generations(run),
                          "world_size": world, "resources": _resources(exp.job, world),
                          "attempts": before[0] + 1},
                   inputs=ctx.inputs, root=store.root, data_dir=ctx.data_dir, volatile=exp.volatile,
                   earlier=before[1])
    (unit_dir / BINDING).unlink(missing_ok=True)
    (unit_dir / attempts.ATTEMPTS).unlink(missing_ok=True)
    return "done"


def resumed_words(unit_dir: Path, before: tuple[int, float], kept: list[str]) -> str:
    """What a unit's log says as an attempt after others (killed, cancelled, requeued) starts: which one, and what
    of theirs it goes on from (`kept`: its resumable sub-folders there), or that it does all again."""
    went = f"attempt {before[0] + 1} at {unit_dir} ({count(before[0], 'attempt')} before it, " \
        f"{datetime.timedelta(seconds=round(before[1]))} in all)"
    return f"{went}: goes on from their {', '.join(f'{k}/' for k in kept)}" if kept else \
        f"{went}: none of their work is kept, it starts again from the beginning"


def _refused(unit_dir: Path, made: list[Path]) -> None:
    """A unit that refused its input (UserError, e.g. a changed cache file) and wrote nothing leaves
    nothing new: its binding goes, and the folders this attempt made. Where kept resumable leftovers
    remain, the binding stays: it vouches for them. The other units of its experiment, running beside it, may refuse
    the same input and remove the same folders, or make theirs in them, meanwhile: one gone is passed, one not empty
    kept (with those above it)."""
    if any(p.name not in (BINDING, attempts.ATTEMPTS) for p in unit_dir.iterdir()):
        return
    (unit_dir / BINDING).unlink(missing_ok=True)
    (unit_dir / attempts.ATTEMPTS).unlink(missing_ok=True)  # of an attempt that did nothing
    remove_made(made)


def redo_command(store: RunStore, experiment: str, variant: str, index: int | None) -> str:
    """The command that redoes one unit (index None: what of the variant's chain is not done), quoted
    for a shell (a path may hold `$(...)`). It needs no `rm`: a unit whose manifest no longer
    verifies is redone, and its resumable leftovers only where that manifest still vouches for them."""
    return shlex.join(["collapse-hpc", experiment, str(store.config_path), "--run", str(store.root),
                       "--variant", variant, *(["--unit", str(index)] if index is not None else [])])


def finished(store: RunStore, unit_dir: Path, exp, run, deep: bool = True, variant_hash: str | None = None,
             inputs: bool = False) -> bool:
    """Done, intact and bound to its folder and what it was built on (manifest.binding; the
    variant's hash when given), and with `inputs` the run's files it used (verify_unit); an array part must
    also hold the generations now asked for (a chain unit is one generation, so a longer chain only adds units)."""
    manifest = read_manifest(unit_dir)
    if manifest is None or verify_unit(unit_dir, deep=deep, variant_hash=variant_hash, inputs=inputs):
        return False
    if exp.shape != "array":
        return True
    return manifest.get("generations") == exp.generations(run)


def job_done(store: RunStore, run, job: Job, deep: bool = False) -> bool:
    """Whether a planned job's unit is finished (for launchers deciding what to start)."""
    unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    want, config = planned_hashes(store).get((job.experiment, job.variant), (None, None))
    return finished(store, unit_dir, experiments.get(job.experiment), run, deep=deep,
                    variant_hash=unit_hash(unit_dir, want, config))


def refuse_unwritable(store: RunStore, jobs: list[Job]) -> None:
    """The units about to run, refused before any starts where they cannot write: their folder and every folder in
    it (an unfinished unit's leftovers go as it starts), or the nearest folder above one not made yet. One started
    there failed in the file system's words ("PermissionError: [Errno 13] Permission denied: '…/snapshots.parquet'")."""
    for job in jobs:
        unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
        folders = [unit_dir, *(Path(here) for here, _, _ in os.walk(unit_dir))] if unit_dir.is_dir() \
            else [space.nearest_folder(unit_dir)]
        for folder in folders:
            said = space.not_writable(folder)
            if said is not None:
                raise UserError(f"{said}; {job.label} runs there: give yourself write permission "
                                f"(chmod -R u+w {shlex.quote(str(folder))}), or run a copy you may write to "
                                f"(cp -r, --run COPY); no unit was started")


def pending(store: RunStore, run, chain: Chain) -> list[Job]:
    """The jobs of a chain a launcher starts, local or Slurm alike: an array's unfinished parts; a
    chain's generations from its first unfinished one on, since each later one is built on it and a redo
    there unbinds them (a later generation still bound when its turn comes is skipped by run_unit).
    Finished units are checked through their manifests (sizes, bindings), not hashed: the paper's ~50 GB
    of weights took a minute before any unit started; verify hashes everything. A file written after its
    manifest (a byte changed in place keeps the size) is hashed all the same (manifest.file_problem). Only the finished
    generations the first pending one reads are hashed in full, as its unit will (run_unit): from one
    that does not verify on, the chain is pending again (redone), instead of a unit that refuses it.
    Each manifest is read once (read_once: its state, binding and hash each ask for it; nothing is written here)."""
    with read_once():
        return _pending(store, run, chain)


def _pending(store: RunStore, run, chain: Chain) -> list[Job]:
    todo: list[Job] = []
    for job in chain.jobs:
        if (todo and chain.shape == "chain") or not job_done(store, run, job):
            todo.append(job)
            _say_damaged(store, job)
    if chain.shape == "chain" and todo:
        read = experiments.get(chain.experiment).reads(chain.variant, todo[0].index)
        bad = [j.index for j in chain.jobs if j.index in read and not job_done(store, run, j, deep=True)]
        if bad:
            redo = [j for j in chain.jobs if j.index >= min(bad)]
            after = todo[0].index - min(bad) - 1  # finished ones built on it: run_unit skips those still bound
            built = f" (and the {count(after, 'finished generation')} built on it, where the redo changes it)"
            log.warning("%s: its files no longer match its manifest (collapse-hpc verify names them), and "
                        "generation %d reads them: redone%s", redo[0].label, todo[0].index, built if after else "")
            return redo
    return todo


def _say_damaged(store: RunStore, job: Job) -> None:
    """One line for a finished unit redone because its manifest no longer reads as one (not JSON, another
    shape, edited since written) or its files no longer match it (cut short, gone, a byte changed): without it
    the unit's results would go with no word of why."""
    unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
    said = (read_manifest(unit_dir) or {}).get("corrupt")
    if said:
        log.warning("%s: corrupt (%s); the unit is redone (collapse-hpc verify names every such "
                    "unit)", unit_dir / MANIFEST, said)
    elif changed := files_changed(unit_dir):
        log.warning("%s: %s; the unit is redone (collapse-hpc verify names every such file)", job.label,
                    "; ".join(changed))


def unit_hash(unit_dir: Path, want: str | None, config: dict | None) -> str | None:
    """The variant hash a finished unit must carry to count for its variant: `want` (the variant's
    `config` now), or the one its manifest records where the config recorded with it computes the
    same (config.computed): made before a how-it-runs knob changed (lm.ranks), or by an older version
    whose config lacked keys now at their defaults."""
    manifest = read_manifest(unit_dir) or {}
    return manifest["variant_hash"] if _computes_the_same(manifest, want, config) else want


def _computes_the_same(made: dict, want: str | None, config: dict | None) -> bool:
    """Whether a manifest or an unfinished unit's binding (`made`), recorded under another variant hash
    than `want`, was made under a config (its recorded `config`) that computes the same as `config`."""
    had, recorded = made.get("variant_hash"), made.get("config")
    if want is None or had in (None, want) or not isinstance(recorded, dict) or not isinstance(config, dict):
        return False
    name = str(config.get("experiment"))
    return config_hash(recorded) == had and diff(recorded, config, {name: experiments.config_class(name)}) == []


def leftovers(unit_dir: Path, exp, config: dict, expected: dict) -> tuple[dict, tuple[str, ...], dict[str, str]]:
    """What the redo of an unfinished unit keeps of its last attempt: (the binding reset_unit judges
    that attempt by, the resumable sub-folders kept, those redone with why). An attempt made before
    how-it-runs knobs changed (its recorded config computes the same as `config`, the variant's now)
    is this unit's still: its partial work stays, but what the experiment says the new values leave
    unsound to go on from (Experiment.redone_after)."""
    last = read_binding(unit_dir) or {}
    if not _computes_the_same(last, expected.get("variant_hash"), config):
        return expected, tuple(exp.resumable), {}
    name = exp.name
    changed = knobs_changed(last["config"].get(name) or {}, config.get(name) or {}, experiments.config_class(name))
    redone = exp.redone_after(changed, config.get(name) or {})
    keep = tuple(k for k in exp.resumable if k not in redone)
    return ({**expected, "variant_hash": last["variant_hash"]}, keep,
            {k: why for k, why in redone.items() if (unit_dir / k).exists()})


def redone_partial_work(store: RunStore, run) -> list[str] | None:
    """The partial work of unfinished units (relative paths, each with why) that `run`, the run's config
    with how-it-runs knobs changed, redoes; the rest of what they did is kept (leftovers). None where no
    unfinished unit holds partial work."""
    out, held = [], False
    for chain in plan(run):
        exp = experiments.get(chain.experiment)
        config = chain.variant.config(run)
        for job in chain.jobs:
            unit_dir = store.unit_dir(job.experiment, job.variant, job.shape, job.index)
            if read_manifest(unit_dir) is not None or not any((unit_dir / k).is_dir() for k in exp.resumable):
                continue
            held = True
            _, _, redone = leftovers(unit_dir, exp, config, binding(unit_dir, config_hash(config)))
            out += [f"{(unit_dir / k).relative_to(store.root)} ({why})" for k, why in redone.items()]
    return out if held else None


def saved_hash(store: RunStore) -> str:
    """The hash of the run's config as saved (an older version's, lacking keys, included)."""
    return config_hash(store.saved_config(experiments.sections()))


def planned_hashes(store: RunStore) -> dict[tuple[str, str], tuple[str, dict]]:
    """(experiment, variant) -> the variant's hash and config, as plan.json records them (read once
    per version of the file: launchers ask for every job)."""
    try:
        st = store.plan_path.stat()
    except OSError:
        return {}
    return _plan_hashes(str(store.plan_path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _plan_hashes(path: str, mtime: int, size: int) -> dict[tuple[str, str], tuple[str, dict]]:
    try:  # a read refused is NotRead (plan_json)
        doc = plan_json(Path(path))
        return {(c["experiment"], c["variant"]): (c["variant_hash"], c.get("config")) for c in doc["chains"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _resources(kind: str, world: int) -> dict:
    """What the unit held, for the report's core- and GPU-hours."""
    import sys

    torch = sys.modules.get("torch")  # a unit that held a GPU has imported torch; others skip its import
    gpus = world if torch is not None and kind != "cpu" and torch.cuda.is_available() else 0
    return {"gpus": gpus, "cpus": cores_per_rank() * world}
