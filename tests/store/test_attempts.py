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


def test_an_attempt_after_others_says_so_and_what_of_theirs_it_goes_on_from(tmp_path, monkeypatch, caplog):
    """A generation scancelled (or killed) and submitted again logged only "starts, job 5542 on vm": nothing told
    the researcher it resumed, nor whether from the earlier attempt's work (its steps) or from the beginning."""
    import logging

    store, variant, unit = _chain_of_one(tmp_path)

    def stepped_and_killed(ctx):
        (ctx.dir / "steps").mkdir()
        (ctx.dir / "steps" / "000.done").write_text("")
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(experiments.get("ltchain"), "run_unit", stepped_and_killed)
        with pytest.raises(Killed):
            engine.run_unit(store.root, "ltchain", variant, 0)
    with caplog.at_level(logging.INFO, logger="collapse_hpc"):
        assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    said = [r.getMessage() for r in caplog.records if "attempt 2 at" in r.getMessage()]
    assert said == [f"attempt 2 at {unit} (1 attempt before it, 0:00:00 in all): goes on from their steps/"], \
        caplog.text
    caplog.clear()
    store, variant, unit = _chain_of_one(tmp_path / "unstepped")  # killed before its first step: nothing to go on from
    _killed_after(store, variant, monkeypatch, 0.1, writes=False)
    with caplog.at_level(logging.INFO, logger="collapse_hpc"):
        assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    assert f"attempt 2 at {unit} (1 attempt before it, 0:00:00 in all): none of their work is kept, it starts " \
           "again from the beginning" in caplog.messages, caplog.text
    caplog.clear()
    store, variant, unit = _chain_of_one(tmp_path / "once")
    with caplog.at_level(logging.INFO, logger="collapse_hpc"):
        assert engine.run_unit(store.root, "ltchain", variant, 0) == "done"
    assert not [m for m in caplog.messages if "attempt" in m], caplog.text  # a first attempt says nothing more
