"""collapse-hpc verify: re-hash every artefact of a run against its manifests."""
from __future__ import annotations

from pathlib import Path

from collapse_hpc.store import RunStore, read_manifest, verify_unit


def verify_run(run_dir: str | Path) -> int:
    store = RunStore(run_dir)
    if not store.exists():
        from collapse_hpc.errors import UserError

        raise UserError(f"{run_dir}: not a run folder (no config.yaml)")
    units = store.units()
    bad, unfinished = 0, 0
    for unit in units:
        if read_manifest(unit) is None:
            unfinished += 1
            continue
        problems = verify_unit(unit)
        if problems:
            bad += 1
            exp, variant = unit.parent.parent.name, unit.parent.name
            index = int(unit.name.split("_")[1])
            for p in problems:
                print(f"MISMATCH {p}")
            print(f"  redo with: rm {unit / 'manifest.json'} && collapse-hpc {exp} {store.config_path} "
                  f"--run {store.root} --variant {variant} --unit {index}")
    ok = len(units) - bad - unfinished
    print(f"{store.root}: {ok} units verified, {bad} with mismatches, {unfinished} unfinished")
    return 1 if bad else 0
