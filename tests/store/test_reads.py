"""Which errors are the file system's refusal of a read, said by any library, and which the bytes'."""
import errno
import os
import re
import time

import pytest

from collapse_hpc import experiments
from collapse_hpc.store import RunStore, atomic, read_manifest, write_manifest
from collapse_hpc.store.cards import intact_card
from collapse_hpc.store.layout import RUN_JSON
from collapse_hpc.store.manifest import MANIFEST
from collapse_hpc.errors import UserError
from collapse_hpc.store.reads import NotRead, refused_read
from tests.helpers import refuse_reads


@pytest.mark.parametrize("error, number", [
    (PermissionError(errno.EACCES, "Permission denied"), errno.EACCES),
    (OSError(errno.ESTALE, "Stale file handle"), errno.ESTALE),
    (OSError("Input/output error (os error 5)"), errno.EIO),  # safetensors past its open: the text alone
    (FileNotFoundError("No such file or directory: m.safetensors"), errno.ENOENT),  # safetensors' open
    (OSError("[Errno 13] Permission denied"), errno.EACCES),  # pyarrow's
    (OSError(errno.EINVAL, "Invalid argument"), None),  # a seek to a garbage offset: the bytes
    (OSError("failed finding central directory"), None),
    (ValueError("Expecting value: line 1 column 1 (char 0)"), None),
], ids=["EACCES", "ESTALE", "safetensors EIO", "safetensors open", "pyarrow EACCES", "EINVAL", "no errno",
        "bad JSON"])
def test_a_refused_read_is_told_from_damaged_bytes(error, number):
    assert refused_read(error) == number


REFUSALS = pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
AGAIN = "once the file reads again (its permissions, the file system): run the same command again"


def _said(path, refusal, then: str, what: str) -> str:
    return f"{what} {path}: not read ({os.strerror(refusal)}): {then} {AGAIN}"


@REFUSALS
def test_a_manifest_the_file_system_will_not_read_is_said_not_taken_for_a_unit_to_redo(tmp_path, monkeypatch, refusal):
    """A manifest read refused (a permissions slip, an I/O error) went up as a raw OSError; absent is still an
    unfinished unit, and corrupt bytes still a unit to redo."""
    unit = tmp_path / "lm" / "v" / "gen_000"
    atomic.write_text(unit / "note.txt", "hello")
    write_manifest(unit, config_hash="abc", started=time.time())
    refuse_reads(monkeypatch, unit / MANIFEST, refusal)
    said = re.escape(_said(unit / MANIFEST, refusal, "the unit is kept as it is (not redone)", "manifest"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        read_manifest(unit)
    with pytest.raises(NotRead):
        RunStore(tmp_path).is_done(unit)
    monkeypatch.undo()
    assert RunStore(tmp_path).is_done(unit)
    (unit / MANIFEST).write_text("{")
    assert read_manifest(unit) == {"corrupt": "not valid JSON"}
    (unit / MANIFEST).unlink()
    assert read_manifest(unit) is None


@REFUSALS
def test_a_run_record_the_file_system_will_not_read_is_said_not_taken_for_none(tmp_path, monkeypatch, refusal):
    """run.json read refused counted as none: the run's config was judged by config.yaml's first line alone,
    and run.json written anew without the hashes it kept (`earlier`). Absent still counts as none."""
    store = RunStore(tmp_path / "run")
    config = experiments.config_from_dict({"toy": {"rows": 3}})
    store.open(config)
    record = store.root / RUN_JSON
    before = record.read_bytes()
    refuse_reads(monkeypatch, record, refusal)
    said = re.escape(_said(record, refusal, "the run is kept as it is", "run record"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        store.open(config)
    with pytest.raises(NotRead, match=f"^{said}$"):
        store.config_hashes(experiments.sections())
    monkeypatch.undo()
    assert record.read_bytes() == before
    record.unlink()  # an older version's run: config.yaml's first line
    assert store.open(config) == config and record.is_file()


@REFUSALS
def test_a_data_set_card_the_file_system_will_not_read_is_said_not_prepared_again(tmp_path, monkeypatch, capsys,
                                                                                 refusal):
    """A card read refused counted as a data set not prepared: `data prepare` prepared it again over the files
    a run had read. A card absent or cut short is still prepared again."""
    from collapse_hpc.cli import main
    from collapse_hpc.experiments.vae import data

    data.prepare_digits(tmp_path)
    card = tmp_path / "digits" / "card.json"
    kept = {p: (p.stat().st_ino, p.read_bytes()) for p in card.parent.iterdir()}
    refuse_reads(monkeypatch, card, refusal)
    said = _said(card, refusal, "the data set is kept as it is (not prepared again)", "data set card")
    with pytest.raises(NotRead, match=f"^{re.escape(said)}$"):
        intact_card(card.parent)
    assert main(["data", "prepare", "digits", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {said}\n"
    monkeypatch.undo()
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in card.parent.iterdir()} == kept
    card.write_text("{")  # cut short by a crash
    assert intact_card(card.parent) is None
    card.unlink()
    assert intact_card(card.parent) is None


@REFUSALS
@pytest.mark.parametrize("per", ["file", "folder"])
def test_a_cache_card_the_file_system_will_not_read_is_said_and_the_cache_kept(tmp_path, monkeypatch, refusal, per):
    """The card of a cached file (<name>.card.json: a split's token blocks) read refused went up as an unnamed
    OSError, and a folder's (a tokenizer, the tiny base) was said as a data set's, not prepared again. Each
    is one line naming it; once it reads, the cache is reused as it was."""
    from collapse_hpc.store.cards import file_card, seal, seal_file, sealed_file, sealed_files

    cached = tmp_path / "blocks" / "train.parquet"
    atomic.write_text(cached, "blocks")
    seal_file(cached) if per == "file" else seal(cached.parent)
    card, check = (file_card(cached), sealed_file) if per == "file" else (cached.parent / "card.json", sealed_files)
    refuse_reads(monkeypatch, card, refusal)
    said = re.escape(_said(card, refusal, "the cache is kept as it is (not built again)", "cache card"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        check(cached if per == "file" else cached.parent)
    monkeypatch.undo()
    assert check(cached if per == "file" else cached.parent) in (True, [cached])


@REFUSALS
@pytest.mark.parametrize("held", ["cache", "data set"])
def test_a_cached_or_prepared_file_the_file_system_will_not_read_is_said_not_hashed_as_an_error(tmp_path, monkeypatch,
                                                                                               refusal, held):
    """Checking a cached file (token blocks) or a prepared split against its card hashes it: a refused read
    went up as a raw OSError. It is one line naming the file; once it reads, it checks as before."""
    from collapse_hpc.store.cards import check_against_card, seal_file, sealed_file

    path = tmp_path / held.replace(" ", "_") / "train.parquet"
    atomic.write_text(path, "rows")
    seal_file(path)
    card = {"files_sha256": {path.name: atomic.sha256_file(path)}}
    refuse_reads(monkeypatch, path, refusal)
    kept = "the cache is kept as it is (not built again)" if held == "cache" else \
        "the data set is kept as it is (not prepared again)"
    with pytest.raises(NotRead, match=f"^{re.escape(_said(path, refusal, kept, f'{held} file'))}$"):
        sealed_file(path) if held == "cache" else check_against_card(path, card)
    monkeypatch.undo()
    assert sealed_file(path) if held == "cache" else check_against_card(path, card) is None


class CheckpointNotRead(NotRead):
    """A caller's own NotRead, made from the path and the error alone (the language model's checkpoint's)."""

    def __init__(self, path, e):
        super().__init__(f"checkpoint {path}", e, "kept")


@REFUSALS
def test_a_refused_read_is_the_callers_own_not_read_where_it_gives_one(tmp_path, monkeypatch, refusal):
    """A caller with its own NotRead (a checkpoint's marker) had to copy read_text to raise it; a file absent is
    still the FileNotFoundError the caller asked to keep."""
    from collapse_hpc.store.reads import read_text

    marker = tmp_path / "complete.json"
    marker.write_text("{}")
    refuse_reads(monkeypatch, marker, refusal)
    with pytest.raises(CheckpointNotRead, match=f"^checkpoint {marker}: not read \\({os.strerror(refusal)}\\): kept"):
        read_text(marker, refused=CheckpointNotRead)
    monkeypatch.undo()
    assert read_text(marker, refused=CheckpointNotRead) == "{}"
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "none.json", refused=CheckpointNotRead, kept=(FileNotFoundError,))


@REFUSALS
def test_a_listed_file_the_file_system_will_not_read_is_said_not_hashed_as_an_error(tmp_path, monkeypatch, refusal):
    """verify_unit hashes the files a manifest lists: a refused read went up as a raw OSError naming no unit. It
    is one line naming the file, the unit kept; once it reads, the unit verifies, and changed bytes still do not."""
    from collapse_hpc.store import verify_unit

    unit = tmp_path / "lm" / "v" / "gen_000"
    atomic.write_text(unit / "note.txt", "hello")
    write_manifest(unit, config_hash="abc", started=time.time())
    refuse_reads(monkeypatch, unit / "note.txt", refusal)
    said = re.escape(_said(unit / "note.txt", refusal, "the unit is kept as it is (not redone)", "listed file"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        verify_unit(unit)
    assert verify_unit(unit, deep=False) == []  # sizes alone read no byte
    monkeypatch.undo()
    assert verify_unit(unit) == []
    (unit / "note.txt").write_text("HELLO")
    assert verify_unit(unit) == [f"{unit / 'note.txt'}: sha256 mismatch"]


@REFUSALS
def test_a_binding_file_the_file_system_will_not_read_is_said_not_taken_for_none(tmp_path, monkeypatch, refusal):
    """An unfinished unit's .binding.json read refused counted as none: its redo kept the leftovers, whatever
    binding they were made for, and the data it read went unrecorded. It is one line, the unit kept whole; once
    it reads, the redo keeps what the binding allows. One cut short still counts as none."""
    from collapse_hpc.store.manifest import BINDING, bind_data, binding, read_binding, write_binding

    store = RunStore(tmp_path / "run")
    unit = store.root / "lm" / "v" / "gen_001"
    write_binding(unit, binding(unit))
    atomic.write_text(unit / "checkpoints" / "step1" / "model.pt", "weights")
    atomic.write_text(tmp_path / "data" / "train.parquet", "rows")
    kept = {p: p.read_bytes() for p in unit.rglob("*") if p.is_file()}
    refuse_reads(monkeypatch, unit / BINDING, refusal)
    said = re.escape(_said(unit / BINDING, refusal, "the unit is kept as it is (not redone)", "binding file"))
    for reads in (lambda: store.reset_unit(unit, keep=("checkpoints",), expected=binding(unit)),
                  lambda: bind_data(unit, tmp_path / "data" / "train.parquet", tmp_path / "data")):
        with pytest.raises(NotRead, match=f"^{said}$"):
            reads()
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in unit.rglob("*") if p.is_file()} == kept
    store.reset_unit(unit, keep=("checkpoints",), expected=binding(unit))
    assert (unit / "checkpoints" / "step1" / "model.pt").is_file()
    (unit / BINDING).write_text("{")
    assert read_binding(unit) is None


@REFUSALS
def test_a_run_lock_the_file_system_will_not_read_is_said_not_taken_over(tmp_path, monkeypatch, refusal):
    """The run lock's owner record read refused went up as a raw OSError; a unit's registration beside it read
    refused counted as gone, so a launcher took the run while that unit wrote into it. Each is one line naming
    the file, the lock and the run kept as they are."""
    import json
    import socket

    from collapse_hpc.store.lock import WORKERS, RunLock, _registration

    lock = RunLock(tmp_path / ".lock", log=lambda _: None)
    lock.path.write_text(json.dumps({"pid": 2 ** 22 + 7, "host": socket.gethostname(), "started": 0}))  # dead
    refuse_reads(monkeypatch, lock.path, refusal)
    said = re.escape(_said(lock.path, refusal, "the run and its lock are kept as they are (not taken over)",
                           "run lock"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        lock.acquire()
    monkeypatch.undo()
    assert json.loads(lock.path.read_text())["pid"] == 2 ** 22 + 7
    lock.path.unlink()
    unit = tmp_path / WORKERS / f"{socket.gethostname()}-{os.getppid()}"  # a live process's registration
    atomic.write_text(unit, _registration(tmp_path))
    refuse_reads(monkeypatch, unit, refusal)
    said = re.escape(_said(unit, refusal, "the run and its lock are kept as they are (not taken over)",
                           "unit registration"))
    with pytest.raises(NotRead, match=f"^{said}$"):
        lock.acquire()
    monkeypatch.undo()
    assert not lock.path.exists() and unit.is_file()
    with pytest.raises(UserError, match="still running without a launcher"):
        lock.acquire()


@REFUSALS
@pytest.mark.parametrize("command", ["aggregate", "verify", "status", "run", "run older"])
def test_a_runs_saved_config_the_file_system_will_not_read_is_said_not_called_damaged(tmp_path, monkeypatch, capsys,
                                                                                     refusal, command):
    """The run's config.yaml read refused went up as a raw OSError (an EIO's line named no file), and where the
    run's saved config is read (saved_config) it would be said as damaged, to restore. It is one line naming the
    file; nothing is written, and once it reads each command goes on as before. In a run folder of an older
    version (`run older`: no run.json, the config's hash on config.yaml's first line) run read that line with a
    bare open: its refusal was a raw OSError still."""
    from collapse_hpc.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("name: r\ngenerations: 2\nseeds: [0]\nexecutor: debug\ntoy: {rows: 2}\n")
    root = tmp_path / "run"
    assert main(["run", str(config), "--run", str(root)]) == 0
    if command == "run older":
        (root / "run.json").unlink()
        command = "run"
    saved = root / "config.yaml"
    kept = _files(root)
    argv = ["run", str(config), "--run", str(root)] if command == "run" else [command, str(root)]
    capsys.readouterr()
    refuse_reads(monkeypatch, saved, refusal)
    assert main(argv) == 2
    said = _said(saved, refusal, "the run is kept as it is", "the run's saved config")
    assert capsys.readouterr().err == f"error: {said}\n"
    monkeypatch.undo()
    assert _files(root) == kept
    assert main(argv) == 0


def _files(root) -> dict:
    """A run folder's files, each's inode and bytes (its logs, and the lock each command takes, left out)."""
    return {p: (p.stat().st_ino, p.read_bytes()) for p in root.rglob("*")
            if p.is_file() and "logs" not in p.parts and p.name != ".lock"}
