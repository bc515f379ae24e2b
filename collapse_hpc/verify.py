"""collapse-hpc verify: re-hash every artefact of a run against its manifests.

A mismatch (exit 1): a listed file changed or went missing, a corrupt manifest, a manifest
written under another config than the run's, or one bound to another folder, variant or content of
the earlier generations (store.manifest.binding), a plain file where a unit's, variant's or
experiment's folder goes (named once, as run and status name it). Each comes with the command that redoes the
unit. A file the manifest does not list is reported
(EXTRA) but does not fail: the recorded results are intact; remove it, or redo the unit.
Finished generations past a chain's planned count (a run shortened with --generations) are not the
plan's, as status does not show them: one line says how many, and they are neither verified nor counted.
"""
from __future__ import annotations

import sys
from pathlib import Path

from collapse_hpc import engine, experiments
from collapse_hpc.config import config_hash
from collapse_hpc.errors import AGAIN, UserError, one_line
from collapse_hpc.logs import count
from collapse_hpc.store import RunStore, extra_files, read_manifest, verify_unit
from collapse_hpc.store.layout import existing_run, unit_index
from collapse_hpc.store.live import RunRemoved, at_work, removed
from collapse_hpc.store.manifest import file_in_the_way, file_on_the_way, read_once, upstream
from collapse_hpc.store.reads import NotRead


def verify_run(run_dir: str | Path) -> int:
    with read_once():  # a unit's binding, state and inputs each ask for its manifest
        store = existing_run(run_dir)
        with at_work(store.root):  # removed meanwhile (rm -rf): the units not reached are not unfinished
            try:
                return _verify(store)
            except Exception as e:  # what failed in a run folder removed since (a file gone with it) is that
                _still_there(store.root, e)
                raise


def _still_there(root: Path, cause: Exception | None = None) -> None:
    """UserError where the run folder `root` (at_work) was removed or replaced since verify began reading it."""
    if removed(root):
        raise RunRemoved(root, "verify read it",
                         "the units it had not reached are not verified (nothing of the run is made again)") from cause


def _verify(store: RunStore) -> int:
    made = store.saved_config(experiments.sections())  # config.yaml read once: the hashes and the plan
    # as made: also a run of an older version, or before a knob changed
    config_hashes = store.config_hashes(made)
    hashes = engine.planned_hashes(store)
    now = config_hash(made)
    planned, beyond = _planned(store, made)
    units = sorted((set(store.units()) - set(beyond)) | planned)
    bad, unfinished, extra, earlier = 0, 0, 0, 0
    in_the_way: set[Path] = set()
    for unit in units:
        _still_there(store.root)
        if not unit.is_dir() and (stray := file_on_the_way(unit, below=store.root)) is not None:
            bad += 1  # no run makes this unit until the file is moved: a problem found, named once
            if stray not in in_the_way:
                in_the_way.add(stray)
                print(f"MISMATCH {one_line(file_in_the_way(stray))}")
            continue
        if not unit.is_dir() or read_manifest(unit) is None:
            unfinished += 1
            continue
        for p in extra_files(unit):
            extra += 1
            print(f"EXTRA {one_line(p)}: not in its manifest (not verified)")
        exp, variant = unit.parent.parent.name, unit.parent.name
        unread = False
        try:
            want, config = hashes.get((exp, variant), (None, None))
            problems = verify_unit(unit, config_hash=config_hashes, inputs=True,
                                   variant_hash=engine.unit_hash(unit, want, config))
        except (OSError, NotRead) as e:  # a file one may not read: this unit is not vouched for; the others still are
            problems, unread = [f"{e.filename or unit}: not readable ({e.strerror or e})"], True
        if problems:
            _still_there(store.root)  # its files gone with the folder: no mismatch of the unit
            bad += 1
            for p in problems:
                print(f"MISMATCH {one_line(p)}")
            if unread:  # not known to be damaged: a redo would replace what may be whole (a chmod slip)
                print(f"  the unit is kept as it is (not redone) {AGAIN}")
                continue
            # built on a generation left unfinished: that one first (a unit by hand is refused before it)
            index = None if "" in upstream(unit).values() else unit_index(unit.name)
            print(f"  redo with: {one_line(engine.redo_command(store, exp, variant, index))}")
        elif (read_manifest(unit) or {}).get("config_hash") != now:
            earlier += 1
    _still_there(store.root)
    ok = len(units) - bad - unfinished
    print(f"{one_line(store.root)}: {count(ok, 'unit')} verified, {bad} with mismatches, {unfinished} unfinished"
          + (f", {extra} extra files" if extra else "")
          + (f"; {earlier} made under an earlier config of the run (how they ran: their manifests' config)"
             if earlier else ""))
    if line := _beyond_line(beyond):
        print(line)
    return 1 if bad else 0


def _planned(store: RunStore, made: dict) -> tuple[set[Path], dict[Path, tuple[str, int]]]:
    """The folders of every unit the run's plan holds of the experiments it launched: a generation whose
    job never started (its chain stopped before it) has none yet, and counts as unfinished, not as
    absent; an experiment left out with --only is not the run's. Beside them the generations past the
    end of a planned chain (a run made with more generations than its config now asks for), each with
    its experiment and the plan's count: not the plan's, as status does not show them. `made`: the run's
    config as saved_config read it."""
    from collapse_hpc.launch import records, status

    chains = engine.run_plan_or_why(store, made)  # a read refused: NotRead, not one to verify without
    if isinstance(chains, UserError):  # no plan, one of another config, a run of an older version: the folders are all
        if store.plan_path.exists():  # damaged, or of an edited config: which units are unfinished is unknown
            print(f"note: {one_line(chains)}; verifying the unit folders there are (unfinished units not "
                  f"counted)", file=sys.stderr)
        return set(), {}
    started = status.launched(store, chains, records.load(store))
    planned = {store.unit_dir(j.experiment, j.variant, j.shape, j.index) for c in chains for j in c.jobs
               if c.experiment in started}
    size = {(c.experiment, c.variant.name): len(c.jobs) for c in chains if c.shape == "chain"}
    beyond = {}
    for unit in store.units():
        n = size.get((unit.parent.parent.name, unit.parent.name))
        if n is not None and unit_index(unit.name) >= n:
            beyond[unit] = (unit.parent.parent.name, n)
    return planned, beyond


def _beyond_line(beyond: dict[Path, tuple[str, int]]) -> str | None:
    """One line for the finished generations past the plan's end: how many, of which experiment, past
    which count."""
    finished: dict[tuple[str, int], int] = {}
    for unit, key in beyond.items():
        if read_manifest(unit) is not None:
            finished[key] = finished.get(key, 0) + 1
    if not finished:
        return None
    parts = [f"{n} of {exp} (past its {planned})" for (exp, planned), n in sorted(finished.items())]
    return (f"{count(sum(finished.values()), 'finished generation')} beyond the plan, left from a run with more "
            f"generations: {', '.join(parts)}; not verified or counted above (a run with more --generations "
            f"takes them up again)")
