"""A unit killed part-way and resumed: its manifest's seconds (status's time, the report's Compute section) count
every attempt, and its attempts are recorded."""
import time

import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.store import RunStore, attempts, read_manifest
from collapse_hpc.store.attempts import ATTEMPTS


class Killed(Exception):
    """Stands for the kill: the attempt ends without its manifest."""


def _chain_of_one(tmp_path):
    """(store, variant, its unit) of a run of ltchain's generation 0."""
    run = experiments.config_from_dict({"name": "t", "generations": 1, "seeds": [0], "executor": "debug",
                                        "ltchain": {}})
    store = RunStore(tmp_path / "run")
    variant = engine.open_run(store, run)[0].variant.name
    return store, variant, store.unit_dir("ltchain", variant, "chain", 0)


def _killed_after(store, variant: str, monkeypatch, seconds: float, writes: bool) -> None:
    """An attempt at the unit that ran `seconds` (its last write then, where it `writes`) and was killed."""
    def killed_part_way(ctx):
        time.sleep(seconds)
        if writes:
            (ctx.dir / "step_0.json").write_text("{}")
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(experiments.get("ltchain"), "run_unit", killed_part_way)
        with pytest.raises(Killed):
            engine.run_unit(store.root, "ltchain", variant, 0)


def test_a_resumed_unit_counts_the_seconds_of_every_attempt(tmp_path, monkeypatch):
    store, variant, unit = _chain_of_one(tmp_path)
    _killed_after(store, variant, monkeypatch, 0.6, writes=True)
    assert read_manifest(unit) is None
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(unit)
    assert manifest["seconds"] >= 0.6 + (manifest["finished"] - manifest["started"]) - 0.01
    assert manifest["attempts"] == 2
    assert not (unit / ATTEMPTS).exists() and ATTEMPTS not in manifest["files"]


def test_a_killed_attempt_that_wrote_nothing_counts_until_it_was_killed(tmp_path, monkeypatch):
    # e.g. a language model's loading: minutes with no file written, which the next start would count as none
    monkeypatch.setattr(attempts, "BEAT_S", 0.05)
    store, variant, unit = _chain_of_one(tmp_path)
    _killed_after(store, variant, monkeypatch, 0.6, writes=False)
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(unit)
    assert manifest["seconds"] >= 0.5 + (manifest["finished"] - manifest["started"])


def test_a_unit_run_once_is_one_attempt_of_its_own_seconds(tmp_path):
    store, variant, unit = _chain_of_one(tmp_path)
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(unit)
    assert manifest["attempts"] == 1
    assert manifest["seconds"] == pytest.approx(manifest["finished"] - manifest["started"], abs=0.002)


def test_a_unit_that_refused_its_input_leaves_no_folder_for_its_attempt(tmp_path, monkeypatch):
    store, variant, unit = _chain_of_one(tmp_path)

    def refuses(ctx):
        raise UserError("a changed cache file")

    monkeypatch.setattr(experiments.get("ltchain"), "run_unit", refuses)
    with pytest.raises(UserError):
        engine.run_unit(store.root, "ltchain", variant, 0)
    assert not unit.exists() and not unit.parent.exists()


def test_an_attempt_stopped_before_its_first_beat_counts_until_it_stopped(tmp_path, monkeypatch):
    """A generation scancelled (or requeued) before it wrote a file or its record's first beat (30 s) counted as no
    time (the dev cluster: "0:00:20 over 4 runs" for runs of 7, 5, 20 and 20 s): the stop, an exception through the
    unit (job.Ending), sets the attempt's end."""
    store, variant, unit = _chain_of_one(tmp_path)
    _killed_after(store, variant, monkeypatch, 0.6, writes=False)
    assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    manifest = read_manifest(unit)
    assert manifest["seconds"] >= 0.6 + (manifest["finished"] - manifest["started"]) - 0.01
