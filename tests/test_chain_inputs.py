"""What a chain unit checks before it starts: the earlier generations it reads, hashed in full;
the others through their manifests (sizes and the digests each records of the ones before it),
so the check of generation g does not grow with g under replace."""
import os

import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.regimes import Regime, pooled
from collapse_hpc.store import RunStore, manifest
from tests.helpers import flip, hashed

GENS = 6


def _run(tmp_path, regime: str):
    run = experiments.config_from_dict({"name": "t", "generations": GENS, "seeds": [0], "executor": "debug",
                                        "regimes": [regime], "toy": {"rows": 2000}})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    return store, engine.plan(run)[0].variant.name


def _earlier(seen, unit) -> set[str]:
    return {p.parent.name for p in seen if p.parent.parent == unit.parent and p.parent.name < unit.name}


@pytest.mark.parametrize("regime,grows", [("replace", False), ("accumulate", True)])
def test_the_earlier_generations_hashed_are_the_ones_read(tmp_path, monkeypatch, regime, grows):
    store, variant = _run(tmp_path, regime)
    read = {}
    for g in range(GENS):
        seen = hashed(monkeypatch)
        assert engine.run_unit(store.root, "toy", variant, g) == "done"
        unit = store.unit_dir("toy", variant, "chain", g)
        read[g] = _earlier(seen, unit)
        assert read[g] == {f"gen_{i:03d}" for i in {0, g - 1, *pooled(Regime(regime), g)} if 0 <= i < g}
    sizes = [len(read[g]) for g in range(2, GENS)]
    assert (sizes[-1] > sizes[0]) == grows  # replace: generation 0 and the previous one, whatever g


def test_a_corrupt_file_the_unit_reads_is_refused_one_it_does_not_read_is_not(tmp_path):
    store, variant = _run(tmp_path, "replace")
    for g in range(4):
        engine.run_unit(store.root, "toy", variant, g)
    gens = [store.unit_dir("toy", variant, "chain", g) for g in range(5)]
    flip(gens[3] / "metrics.parquet")  # generation 4 reads generation 3's values
    with pytest.raises(UserError, match=f"{gens[3]}: an earlier generation is unfinished or does not verify "
                                        f"\\(.*metrics.parquet: sha256 mismatch\\)"):
        engine.run_unit(store.root, "toy", variant, 4)
    assert not gens[4].joinpath("manifest.json").exists()
    engine.run_unit(store.root, "toy", variant, 3)  # the repair (deterministic: the same bytes)
    kept = (gens[1] / "metrics.parquet").stat().st_mtime_ns
    flip(gens[1] / "metrics.parquet")  # read by nothing generation 4 reads; verify still names it
    os.utime(gens[1] / "metrics.parquet", ns=(kept, kept))  # its time kept (a copy's): changed since, it is hashed
    assert engine.run_unit(store.root, "toy", variant, 4) == "done"
    (gens[1] / "metrics.parquet").write_bytes(b"shorter")  # a size that differs: caught without hashing
    (gens[4] / "manifest.json").unlink()
    with pytest.raises(UserError, match=f"{gens[1]}: an earlier generation .*size 7 !="):
        engine.run_unit(store.root, "toy", variant, 4)


def test_each_earlier_manifest_is_read_once_per_check(tmp_path, monkeypatch):
    # every earlier generation's binding names all generations before it: read, they are g² manifests
    store, variant = _run(tmp_path, "replace")
    for g in range(GENS - 1):
        engine.run_unit(store.root, "toy", variant, g)
    manifest._digest_of.cache_clear()  # as in a fresh job process
    reads, real = [], manifest.read_manifest
    monkeypatch.setattr(manifest, "read_manifest", lambda d: reads.append(d.name) or real(d))
    assert engine.run_unit(store.root, "toy", variant, GENS - 1) == "done"
    # a fixed few times each (the engine, verify, the digest), not once per later generation as well
    assert all(reads.count(f"gen_{g:03d}") <= 3 for g in range(GENS - 1)), reads
