"""A unit killed part-way and resumed: its manifest's seconds (status's time, the report's Compute section) count
every attempt, and its attempts are recorded."""
import time

import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.store import RunStore, read_manifest
from collapse_hpc.store.attempts import ATTEMPTS


class Killed(Exception):
    """Stands for the kill: the attempt ends without its manifest."""


def test_a_resumed_unit_counts_the_seconds_of_every_attempt(tmp_path, monkeypatch):
    run = experiments.config_from_dict({"name": "t", "generations": 1, "seeds": [0], "executor": "debug",
                                        "ltchain": {}})
    store = RunStore(tmp_path / "run")
    variant = engine.open_run(store, run)[0].variant.name
    exp = experiments.get("ltchain")
    unit = store.unit_dir("ltchain", variant, "chain", 0)

    def killed_part_way(ctx):
        time.sleep(0.6)
        (ctx.dir / "step_0.json").write_text("{}")  # the last write the killed attempt left
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(exp, "run_unit", killed_part_way)
        with pytest.raises(Killed):
            engine.run_unit(store.root, "ltchain", variant, 0)
    assert read_manifest(unit) is None
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(unit)
    assert manifest["seconds"] >= 0.6 + (manifest["finished"] - manifest["started"]) - 0.01
    assert manifest["attempts"] == 2
    assert not (unit / ATTEMPTS).exists() and ATTEMPTS not in manifest["files"]


def test_a_unit_run_once_is_one_attempt_of_its_own_seconds(tmp_path):
    run = experiments.config_from_dict({"name": "t", "generations": 1, "seeds": [0], "executor": "debug",
                                        "ltchain": {}})
    store = RunStore(tmp_path / "run")
    variant = engine.open_run(store, run)[0].variant.name
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(store.unit_dir("ltchain", variant, "chain", 0))
    assert manifest["attempts"] == 1
    assert manifest["seconds"] == pytest.approx(manifest["finished"] - manifest["started"], abs=0.002)
