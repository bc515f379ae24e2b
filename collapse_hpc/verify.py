"""collapse-hpc verify: re-hash every artefact of a run against its manifests.

A mismatch (exit 1): a listed file changed or went missing, a corrupt manifest, or a manifest
written under another config than the run's. A file the manifest does not list is reported
(EXTRA) but does not fail: the recorded results are intact; remove it, or redo the unit.
"""
from __future__ import annotations

from pathlib import Path

from collapse_hpc import experiments
from collapse_hpc.store import RunStore, extra_files, read_manifest, verify_unit


def verify_run(run_dir: str | Path) -> int:
    store = RunStore(run_dir)
    if not store.exists():
        from collapse_hpc.errors import UserError

        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    config_hash = store.load_config(experiments.sections()).hash()
    units = store.units()
    bad, unfinished, extra = 0, 0, 0
    for unit in units:
        if read_manifest(unit) is None:
            unfinished += 1
            continue
        for p in extra_files(unit):
            extra += 1
            print(f"EXTRA {p}: not in its manifest (not verified)")
        problems = verify_unit(unit, config_hash=config_hash, inputs=True)
        if problems:
            bad += 1
            exp, variant = unit.parent.parent.name, unit.parent.name
            index = int(unit.name.split("_")[1])
            for p in problems:
                print(f"MISMATCH {p}")
            print(f"  redo with: rm {unit / 'manifest.json'} && collapse-hpc {exp} {store.config_path} "
                  f"--run {store.root} --variant {variant} --unit {index}")
    ok = len(units) - bad - unfinished
    print(f"{store.root}: {ok} units verified, {bad} with mismatches, {unfinished} unfinished"
          + (f", {extra} extra files" if extra else ""))
    return 1 if bad else 0
