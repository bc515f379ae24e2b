"""Run store: atomic writes, manifests and verification, config checks, the run lock."""
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc import experiments
from collapse_hpc.errors import UserError
from collapse_hpc.store import RunStore, atomic, verify_unit, write_manifest
from collapse_hpc.store.lock import RunLock, beside_reader, reading, working
from tests import helpers


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            pq.write_table(pa.table({"a": [1, 2]}), tmp)
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_where_a_written_file_goes_is_named_to_move_away_and_kept(tmp_path):
    """A folder at a file's name (a report's figure, made by hand or a stray tool) stopped aggregate on the rename's
    raw "<temporary> -> <file>: Is a directory". Now one line names the file, the folder kept, no temporary left."""
    target = tmp_path / "figures" / "gmm_l2.png"
    target.mkdir(parents=True)
    (target / "notes").write_text("kept")
    with pytest.raises(UserError) as said:
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"png")
    assert str(said.value) == (f"{target}: a folder where a file goes, and none is written over a folder; move it "
                               f"away (nothing the run did not write is deleted), then run the same command again")
    assert (target / "notes").read_text() == "kept" and [p.name for p in target.parent.iterdir()] == ["gmm_l2.png"]


def test_killed_writer_leaves_only_a_temporary(tmp_path):
    """A process killed inside the write leaves at most a .tmp- file, never the final name."""
    target = tmp_path / "big.parquet"
    code = ("import time, pyarrow as pa, pyarrow.parquet as pq\n"
            "from collapse_hpc.store import atomic\n"
            f"with atomic.atomic_path({str(target)!r}) as tmp:\n"
            "    pq.write_table(pa.table({'a': list(range(1000))}), tmp)\n"
            "    time.sleep(30)\n")
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 30
    while not any(tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert not target.exists()
    assert all(atomic.is_temporary(f) for f in tmp_path.iterdir())
    RunStore(tmp_path).reset_unit(tmp_path)  # a redo cleans the leftover
    assert list(tmp_path.iterdir()) == []


def test_measured_floats_take_under_8_bytes_each_and_read_back_as_written(tmp_path):
    """A metrics table as a part writes it (a float64 column a metric, nearly every value distinct) took 9.4
    bytes a value in a dictionary; without one, split by byte and compressed, it takes under 8 (sigma_hat
    of n = 100 draws: 6.8 measured); the other columns keep their dictionary."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = 200 * 250
    table = pa.table({"generation": pa.array(np.repeat(np.arange(200, dtype=np.int32), 250)),
                      "regime": ["replace"] * rows,
                      **{f"m{i}": 1 + 0.1 * rng.standard_normal(rows).cumsum() / 100 for i in range(4)}})
    p = atomic.write_parquet(tmp_path / "metrics.parquet", table, metadata={"experiment": "gaussian"})
    assert pq.read_table(p).equals(table) and atomic.read_parquet_metadata(p) == {"experiment": "gaussian"}
    floats = sum(pq.ParquetFile(p).metadata.row_group(0).column(i).total_compressed_size for i in range(2, 6))
    assert floats / (4 * rows) < 8
    chunks = pq.ParquetFile(p).metadata.row_group(0)
    assert "RLE_DICTIONARY" in chunks.column(1).encodings
    assert [c for i in range(2, 6) for c in chunks.column(i).encodings if "DICT" in c] == []


def test_a_table_without_floats_keeps_its_dictionaries(tmp_path):
    p = atomic.write_parquet(tmp_path / "t.parquet", {"text": ["a", "b"] * 10, "n": list(range(20))})
    chunks = pq.ParquetFile(p).metadata.row_group(0)
    assert all("RLE_DICTIONARY" in chunks.column(i).encodings for i in range(2))


def test_parquet_metadata_round_trip(tmp_path):
    p = atomic.write_parquet(tmp_path / "x.parquet", {"a": [1]}, metadata={"decoding": {"beams": 5}})
    assert atomic.read_parquet_metadata(p) == {"decoding": {"beams": 5}}


def test_manifest_and_flipped_byte(tmp_path):
    unit = tmp_path / "gen_000"
    atomic.write_parquet(unit / "metrics.parquet", {"generation": [0, 0], "v": [1.0, 2.0]})
    atomic.write_text(unit / "note.txt", "hello")
    m = write_manifest(unit, config_hash="abc", started=time.time())
    assert m["files"]["metrics.parquet"]["rows"] == 2
    assert set(m["files"]) == {"metrics.parquet", "note.txt"}
    assert verify_unit(unit) == []
    data = bytearray((unit / "metrics.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (unit / "metrics.parquet").write_bytes(bytes(data))
    problems = verify_unit(unit)
    assert len(problems) == 1 and "metrics.parquet" in problems[0] and "sha256" in problems[0]


def test_run_config_mismatch_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open(experiments.config_from_dict({"toy": {"rows": 3}}))
    store.open(experiments.config_from_dict({"generations": 9, "toy": {"rows": 3}}))  # more generations: fine
    assert store.load_config(experiments.sections()).generations == 9
    shutil.rmtree(store.logs)
    with pytest.raises(UserError, match=r"toy.rows: 3 -> 4.*another --run"):
        store.open(experiments.config_from_dict({"toy": {"rows": 4}}))
    assert not store.logs.exists()  # refused with nothing made (it made logs/ first)


def test_opening_a_run_again_reads_and_parses_its_config_once(tmp_path, monkeypatch):
    """RunStore.open of a run folder read config.yaml twice and parsed it three times (saved, its own parse of
    the text, config_hashes): one read, one parse."""
    from collapse_hpc import yamlfile

    store = RunStore(tmp_path / "run")
    config = experiments.config_from_dict({"toy": {"rows": 3}})
    store.open(config)
    reads, parses, read, loads = [], [], yamlfile.read, yamlfile.loads
    monkeypatch.setattr(yamlfile, "read", lambda path, *a: reads.append(path) or read(path, *a))
    monkeypatch.setattr(yamlfile, "loads", lambda text, source: parses.append(source) or loads(text, source))
    assert store.open(config) == config
    assert len(reads) == 1 and len(parses) == 1, (reads, parses)


def test_a_config_changed_in_more_keys_than_the_line_names_says_how_many_more(tmp_path):
    """Four keys changed, given or edited into config.yaml: the line named three and '… (4 in all)'."""
    store = RunStore(tmp_path / "run")
    config = experiments.config_from_dict({"toy": {"rows": 3}})
    store.open(config)
    shown = "seeds: [0] -> [5]; toy.fail_at: -1 -> 2; toy.rows: 3 -> 4 and 1 more"
    with pytest.raises(UserError, match=f"made with a different config \\({re.escape(shown)}\\); use another"):
        store.open(experiments.config_from_dict({"seeds": [5], "toy": {"rows": 4, "fail_at": 2, "sleep_s": 1.0}}))
    text = store.config_path.read_text()
    for old, new in (("rows: 3", "rows: 4"), ("fail_at: -1", "fail_at: 2"), ("sleep_s: 0.0", "sleep_s: 1.0"),
                     ("- 0\n", "- 5\n")):
        text = text.replace(old, new)
    store.config_path.write_text(text)
    with pytest.raises(UserError, match=f"was edited after the run was made \\({re.escape(shown)}\\): its values"):
        store.open(config)


@pytest.mark.parametrize("damage", ['{"config_hash": "', "[]", '{"earlier": ["0123456789abcdef"]}',
                                    '{"config_hash": "HASH", "earlier": "0123456789abcdef"}'],
                         ids=["cut-short", "a-list", "no-hash", "earlier-not-a-list"])
def test_a_damaged_run_record_is_refused_not_written_anew_without_its_earlier_hashes(tmp_path, damage):
    """run.json garbage (not JSON, or JSON of another shape) beside an unedited config.yaml was written anew by
    the next run, without the hashes of the configs the run was made under before (`earlier`): verify then
    judged the units made under them another config's. It is one line, as a damaged jobs.json or plan.json
    is, and the file stays as it is; removed, the run goes on without them."""
    store = RunStore(tmp_path / "run")
    config = experiments.config_from_dict({"toy": {"rows": 3}})
    store.open(config)
    record = store.root / "run.json"
    kept = json.loads(record.read_text()) | {"earlier": ["0123456789abcdef"]}  # as a knob changed since writes it
    record.write_text(json.dumps(kept))
    assert "0123456789abcdef" in store.config_hashes(experiments.sections())
    damage = damage.replace("HASH", kept["config_hash"])  # the record's own: only `earlier` is misshapen
    record.write_text(damage)
    said = f"{record}: not a run record (cut short or damaged), and it keeps the hashes of the configs"
    for read in (lambda: store.open(config), lambda: store.config_hashes(experiments.sections())):
        with pytest.raises(UserError, match=f"^{re.escape(said)}.*restore it, or remove it"):
            read()
    assert record.read_text() == damage
    record.unlink()  # the user's choice: config.yaml's first line, without the earlier hashes
    assert store.open(config) == config and "earlier" not in json.loads(record.read_text())


def _hold_lock(path, ready, release):
    with RunLock(path):
        ready.set()
        release.wait(30)


def test_lock_contention_between_processes(tmp_path):
    path = tmp_path / ".lock"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(path, ready, release))
    p.start()
    assert ready.wait(30)
    with pytest.raises(UserError, match=f"locked by pid {p.pid}"):
        RunLock(path).acquire()
    release.set()
    p.join(30)
    with RunLock(path):  # free again
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


@pytest.mark.parametrize("holder, said", [
    ({"command": "submit", "launcher": False},
     "run is locked by pid {pid} on {host}, collapse-hpc submit ({path}), which holds it only while it queues or "
     "cancels Slurm jobs: wait a moment and try again"),
    ({"command": "aggregate", "launcher": False},
     "run is locked by pid {pid} on {host}, collapse-hpc aggregate ({path}), which holds it while it reads the run "
     "for a report: wait for it to end and try again"),
    ({"command": "lm", "launcher": True},
     "run is locked by pid {pid} on {host}, collapse-hpc lm ({path}), a launcher running its units: wait for it to "
     "end, or stop it: collapse-hpc cancel {run}"),
    ({"command": "run", "launcher": True, "host": "node7"},  # its pid cannot be judged here
     "run is locked by pid {pid} on node7, collapse-hpc run ({path}), a launcher running its units: wait for it to "
     "end, or stop it on node7: collapse-hpc cancel {run}; if pid {pid} is gone from node7, remove the file"),
    ({}, "run is locked by pid {pid} on {host} ({path}); wait for it, or remove the file if that process is gone"),
])
def test_a_locked_run_is_refused_naming_the_holders_command_and_what_to_do(tmp_path, holder, said):
    """A lock without the command (an older version's) reads as before."""
    import socket

    path = tmp_path / "my run" / ".lock"
    path.parent.mkdir()
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0, **holder}))
    with pytest.raises(UserError) as refused:
        RunLock(path, command="run", launcher=True).acquire()
    assert str(refused.value) == said.format(pid=os.getpid(), host=holder.get("host", socket.gethostname()),
                                             path=path, run=f"'{path.parent}'")


def test_the_lock_records_who_takes_it(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.lock(command="submit"):
        with store.lock():  # nested (submit's own): the outer taker stays recorded
            assert json.loads((store.root / ".lock").read_text())["command"] == "submit"
        assert json.loads((store.root / ".lock").read_text())["launcher"] is False
    with store.lock():  # a taker that names none records none
        assert "command" not in json.loads((store.root / ".lock").read_text())


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    messages = []
    with RunLock(path, log=messages.append):
        pass
    assert messages and "stale" in messages[0]


@pytest.mark.parametrize("text", ["a: [\n", "- a\n- list\n", ""])
def test_corrupt_saved_config_is_one_user_error(tmp_path, text):
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.config_path.write_text(text)
    with pytest.raises(UserError) as e:
        store.open(experiments.config_from_dict({"toy": {"rows": 3}}))
    assert str(store.config_path) in str(e.value) and "\n" not in str(e.value)
    assert store.config_path.read_text() == text


def test_lock_nests_within_one_store(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.lock():
        with store.lock():  # e.g. the CLI holds it and slurm's submit takes it again
            pass
        assert (store.root / ".lock").exists()  # only the outer release frees it
    assert not (store.root / ".lock").exists()
    with pytest.raises(UserError, match="locked by pid"):  # another holder is still refused
        with store.lock(), RunLock(store.root / ".lock"):
            pass


def test_manifest_without_files_is_corrupt_not_a_crash(tmp_path):
    unit = tmp_path / "gen_000"
    unit.mkdir()
    for text in ('{"config_hash": "x"}', "[]", '{"files": {"a.txt": 3}}'):
        (unit / "manifest.json").write_text(text)
        problems = verify_unit(unit)
        assert "corrupt" in problems[0] and "manifest.json" in problems[0]  # then: bound to no folder
        assert not RunStore(tmp_path).is_done(unit)


def test_a_folder_in_place_of_the_manifest_is_a_unit_to_redo_not_a_stopped_run(tmp_path):
    # verify and run stopped on it with "Is a directory": the run could not heal itself
    unit = tmp_path / "lm" / "v" / "gen_000"
    atomic.write_bytes(unit / "metrics.json", b"m")
    (unit / "manifest.json").mkdir()
    assert "corrupt" in verify_unit(unit)[0]
    assert not RunStore(tmp_path).is_done(unit)
    RunStore(tmp_path).reset_unit(unit)
    assert not (unit / "manifest.json").exists() and not (unit / "metrics.json").exists()


def test_config_hash_and_extra_files(tmp_path):
    from collapse_hpc.store import extra_files

    unit = tmp_path / "gen_000"
    atomic.write_text(unit / "note.txt", "hello")
    write_manifest(unit, config_hash="abc", started=time.time())
    assert verify_unit(unit, config_hash="abc") == [] and extra_files(unit) == []
    problems = verify_unit(unit, config_hash="def")
    assert len(problems) == 1 and "abc" in problems[0] and "def" in problems[0]
    (unit / "stray.txt").write_text("?")
    atomic.write_text(unit / ".tmp-x", "")  # temporaries are not artefacts
    assert extra_files(unit) == [unit / "stray.txt"]


def test_a_finished_units_files_are_listed_while_a_redo_makes_and_removes_its_scratch(tmp_path):
    """verify reads a finished unit while a launcher redoes it (its reset, then its run, make and remove its
    checkpoints); Path.rglob listed a sub-folder after it was gone and verify stopped on "No such file or
    directory"."""
    from collapse_hpc.store import extra_files

    unit = tmp_path / "gen_000"
    atomic.write_text(unit / "note.txt", "hello")
    write_manifest(unit, config_hash="abc", started=time.time())
    scratch = unit / "checkpoints" / "step1" / "host-1"  # the churn's file: extra while it is there
    with helpers.churning(unit, "checkpoints/step1"):
        deadline = time.time() + 3
        while time.time() < deadline:
            assert extra_files(unit) in ([], [scratch])


def test_units_are_only_unit_folders(tmp_path):
    store = RunStore(tmp_path)
    for name in ("gen_000", "part_001", "partial", "gen_x", "generated"):
        (tmp_path / "exp" / "v" / name).mkdir(parents=True)
    assert [p.name for p in store.units()] == ["gen_000", "part_001"]


def _swap_killed_between_its_renames(target) -> None:
    """atomic_dir(target) over a complete folder, its process killed (SIGKILL) once the old folder is
    moved aside and before the new one is renamed in: what a kill at that moment leaves."""
    import subprocess
    import sys

    code = ("import os, time\n"
            "from collapse_hpc.store import atomic\n"
            "real = os.replace\n"
            "def replace(a, b):\n"
            "    real(a, b)\n"
            "    if os.path.basename(b).startswith(atomic.OLD_PREFIX):\n"
            "        time.sleep(30)\n"
            "os.replace = replace\n"
            f"with atomic.atomic_dir({str(target)!r}) as tmp:\n"
            "    (tmp / 'w').write_text('new')\n")
    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 30
    while not target.with_name(f".old-{target.name}").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.kill()
    p.wait()


def test_a_folder_swap_killed_midway_is_put_back_by_the_next_writer(tmp_path):
    """A swap killed after it moved the old folder aside (.old-NAME) and before the new one arrived left
    no NAME, the only complete copy aside for ever: only a next swap of that name cleaned it, by
    removing it. The next writer's sweep under the same lock puts it back; one left after a finished
    swap (.old-NAME beside NAME, or the LM data set's .NAME.replaced) goes; other names' stay."""
    model = tmp_path / "model"
    with atomic.atomic_dir(model) as d:
        (d / "w").write_text("old")
    _swap_killed_between_its_renames(model)
    assert not model.exists() and (tmp_path / ".old-model" / "w").read_text() == "old"
    atomic.sweep(tmp_path, "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (model / "w").read_text() == "old"

    for left in (".old-model", ".model.replaced", ".old-other"):
        (tmp_path / left).mkdir()
        (tmp_path / left / "w").write_text("stale")
    atomic.sweep(tmp_path, "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".old-other", "model"]
    assert (model / "w").read_text() == "old"


def test_a_kept_folder_whose_swap_was_killed_is_put_back_when_its_unit_is_redone(tmp_path):
    """The LM's best model (checkpoints/best) and published model (model/) are swapped in whole: a kill
    between the renames left the only complete copy as .old-NAME, which the redo then removed."""
    unit = tmp_path / "lm" / "v" / "gen_000"
    for folder in (unit / "model", unit / "checkpoints" / "best"):
        atomic.write_bytes(folder / "model.safetensors", b"weights")
        os.replace(folder, folder.with_name(f".old-{folder.name}"))
    RunStore(tmp_path).reset_unit(unit, keep=("checkpoints", "model"))
    assert sorted(p.relative_to(unit).as_posix() for p in unit.rglob("*")) == [
        "checkpoints", "checkpoints/best", "checkpoints/best/model.safetensors", "model", "model/model.safetensors"]


def test_a_redo_removes_temporary_folders_in_kept_folders_as_it_removes_temporary_files(tmp_path):
    """A folder swap (atomic_dir: the LM's checkpoints/best) killed before its rename left its
    .tmp-best.XXXX/ whole, the size of a model; the redo removed only temporary files inside kept
    folders, so it stayed for good. Both kinds go now; the complete files and folders stay."""
    import tempfile

    unit = tmp_path / "lm" / "v" / "gen_000"
    ckpt = unit / "checkpoints"
    atomic.write_bytes(ckpt / "best" / "model.safetensors", b"weights")
    atomic.write_text(ckpt / "step00000003" / "complete.json", "{}")
    for where in (ckpt, ckpt / "step00000003"):  # where atomic_dir puts its temporary: beside the folder
        swapping = tempfile.mkdtemp(prefix=atomic.TMP_PREFIX + "best.", dir=where)
        os.makedirs(os.path.join(swapping, "sub"))
        for name in ("model.safetensors", "sub/config.json"):
            with open(os.path.join(swapping, name), "wb") as f:
                f.write(b"partly written")
    (unit / "shards").mkdir()
    (unit / "shards" / ".tmp-part-000-00001.parquet.x1").write_bytes(b"half")
    RunStore(tmp_path).reset_unit(unit, keep=("checkpoints", "shards"))
    assert sorted(p.relative_to(unit).as_posix() for p in unit.rglob("*")) == [
        "checkpoints", "checkpoints/best", "checkpoints/best/model.safetensors", "checkpoints/step00000003",
        "checkpoints/step00000003/complete.json", "shards"]


def test_redo_of_a_corrupted_finished_unit_drops_its_bad_resumable_folder(tmp_path):
    # a finished unit whose kept sub-folder (lm: shards/, model/) went bad must not reuse it on redo
    unit = tmp_path / "lm" / "v" / "gen_000"
    atomic.write_bytes(unit / "shards" / "part-000-00000.bin", b"good shard")
    atomic.write_bytes(unit / "shards" / "part-000-00001.bin", b"good shard too")
    atomic.write_bytes(unit / "model" / "model.safetensors", b"weights")
    atomic.write_bytes(unit / "metrics.json", b"m")
    write_manifest(unit, config_hash="h", started=time.time())
    (unit / "shards" / "part-000-00001.bin").write_bytes(b"garbage!!!!!!!")  # same size
    RunStore(tmp_path).reset_unit(unit, keep=("shards", "model"))
    assert not (unit / "shards").exists()
    assert (unit / "model" / "model.safetensors").read_bytes() == b"weights"  # intact: kept
    assert not (unit / "metrics.json").exists() and not (unit / "manifest.json").exists()


@pytest.mark.parametrize("prepared_again", [False, True])
def test_redo_of_a_finished_unit_keeps_nothing_built_on_data_prepared_again(tmp_path, prepared_again):
    """A data set prepared again (--force, other text) redoes the finished lm generations that read it; the
    redo kept their model/ and shards/ (the manifest vouched for every file of theirs), so it skipped
    training and sampling on the new text and stopped on a token id of the old tokenizer, or, where
    the ids fitted, published the old model as built on the new data."""
    data, unit = tmp_path / "data", tmp_path / "run" / "lm" / "v" / "gen_000"
    atomic.write_bytes(data / "mine" / "train.bin", b"old text")
    atomic.write_bytes(unit / "model" / "model.safetensors", b"weights")
    atomic.write_bytes(unit / "shards" / "part-000-00000.bin", b"shard")
    write_manifest(unit, config_hash="h", started=time.time(), inputs=[data / "mine" / "train.bin"],
                   root=tmp_path / "run", data_dir=data)
    if prepared_again:
        atomic.write_bytes(data / "mine" / "train.bin", b"new text")  # the same size: hashed
    RunStore(tmp_path / "run").reset_unit(unit, keep=("shards", "model"))
    assert sorted(p.name for p in unit.iterdir()) == ([] if prepared_again else ["model", "shards"])


@pytest.mark.parametrize("text", ["", "garbage"])
def test_old_unreadable_lock_is_taken_over(tmp_path, text):
    # a launcher killed between creating the lock and writing its pid leaves an empty file
    path = tmp_path / ".lock"
    path.write_text(text)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    with RunLock(path, log=lambda *_: None):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    fresh = tmp_path / "fresh.lock"
    fresh.write_text(text)  # maybe being written right now: not taken
    with pytest.raises(UserError, match="remove"):
        RunLock(fresh, log=lambda *_: None).acquire()


def test_a_lock_the_full_disk_would_not_take_is_not_left_empty(tmp_path, monkeypatch):
    """Creating the lock takes no room, writing its owner does: on a full disk it stayed behind
    empty, and once there was room again every run was refused for a minute ('it is unreadable;
    remove it') as if a launcher were writing it."""
    import errno

    from collapse_hpc.store import lock as lockmod

    path = tmp_path / ".lock"

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lockmod.json, "dump", full)
    with pytest.raises(OSError) as e:
        RunLock(path, log=lambda *_: None).acquire()
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path)) and not path.exists()
    monkeypatch.undo()  # room again: the next run takes the lock at once
    with RunLock(path, log=lambda *_: None):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_lock_on_a_file_system_remounted_read_only_is_left_to_the_next_launcher(tmp_path, monkeypatch):
    """Its removal failed as the run ended, and that error (RUN/.lock: Read-only file system) took the
    place of the one that had stopped the run; the next launcher takes a dead owner's lock over."""
    import errno
    import pathlib

    path = tmp_path / ".lock"
    unlink = pathlib.Path.unlink

    def read_only(self, *args, **kwargs):
        if self == path:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return unlink(self, *args, **kwargs)

    lock = RunLock(path, log=lambda *_: None).acquire()
    monkeypatch.setattr(pathlib.Path, "unlink", read_only)
    lock.release()
    assert not lock.held and path.exists()


def test_lock_of_dead_launcher_is_kept_while_its_unit_processes_run(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / ".lock"
    with RunLock(path, log=lambda *_: None) as lock:
        lock.record_helpers([os.getpid()])
        assert json.loads(path.read_text())["helpers"] == [os.getpid()]
    owner = {"pid": dead.pid, "host": socket.gethostname(), "started": 0, "helpers": [os.getpid()]}
    path.write_text(json.dumps(owner))
    with pytest.raises(UserError, match="still run"):
        RunLock(path, log=lambda *_: None).acquire()
    path.write_text(json.dumps({**owner, "helpers": [dead.pid]}))  # helpers gone too: stale
    with RunLock(path, log=lambda *_: None):
        pass


def test_stale_lock_take_over_is_race_free(tmp_path, monkeypatch):
    """Two launchers find the same stale lock (its pid is dead). B judges it stale, then A takes
    it over and holds it; when B goes on it must see A's lock, not remove it and take its own."""
    import json
    import socket
    import threading

    from collapse_hpc.errors import UserError
    from collapse_hpc.store import lock as lockmod

    path = tmp_path / "run" / ".lock"
    path.parent.mkdir()
    dead = 999_999_999
    path.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": 0}))
    a_holds, b_judging = threading.Event(), threading.Event()
    real_alive = lockmod.pid_alive

    def alive(pid):
        if pid == dead and threading.current_thread().name == "B" and not a_holds.is_set():
            b_judging.set()
            a_holds.wait(10)  # B has read the stale owner; A takes over meanwhile
            return False
        return False if pid == dead else real_alive(pid)

    monkeypatch.setattr(lockmod, "pid_alive", alive)
    result = {}

    def b():
        try:
            result["b"] = lockmod.RunLock(path, log=lambda m: None).acquire().held
        except UserError as e:
            result["b"] = str(e)

    t = threading.Thread(target=b, name="B")
    t.start()
    assert b_judging.wait(10)
    a = lockmod.RunLock(path, log=lambda m: None).acquire()
    a_holds.set()
    t.join(10)
    assert a.held and path.is_file()
    assert result["b"] is not True, "both launchers hold the run lock"
    assert "locked by pid" in result["b"]


def test_atomic_writes_sync_the_folder_after_the_rename(tmp_path, monkeypatch):
    """The rename is on disk too: the folder holding the new name is fsynced after os.replace."""
    import os

    from collapse_hpc.store import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_text(tmp_path / "a" / "f.txt", "x")
    with atomic.atomic_dir(tmp_path / "b" / "model") as d:
        (d / "w").write_text("y")
    for target in (tmp_path / "a" / "f.txt", tmp_path / "b" / "model"):
        after = events[events.index(("replace", str(target))) + 1:]
        assert ("fsync", str(target.parent)) in after, events


def test_an_orphaned_unit_process_holds_the_run_though_its_launcher_recorded_only_its_wrapper(tmp_path):
    """The unit process registers itself (lock.working): a launcher killed with only a wrapper's
    pid in its lock, or with the lock removed by hand, cannot free the run while the unit writes."""
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code = ("import sys, time; from collapse_hpc.store.lock import working\n"
            "with working(sys.argv[1]):\n    print('in', flush=True); time.sleep(60)\n")
    unit = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert unit.stdout.readline().strip() == "in"
        path = tmp_path / ".lock"
        path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0,
                                    "helpers": [dead.pid]}))  # the wrapper, gone with the launcher
        with pytest.raises(UserError, match=f"unit processes {unit.pid} still run"):
            RunLock(path, log=lambda *_: None).acquire()
        path.unlink()
        with pytest.raises(UserError, match=f"unit processes {unit.pid} still running without a launcher"):
            RunLock(path, log=lambda *_: None).acquire()
        assert not path.exists()
    finally:
        unit.kill()
        unit.wait()
    with RunLock(tmp_path / ".lock", log=lambda *_: None):  # the orphan gone: the run is free
        pass


def test_a_run_again_right_after_a_killed_launcher_waits_for_its_stopping_units(tmp_path):
    """The units of a launcher killed outright stop on their own within seconds; a run again meanwhile
    was refused ('wait for them or kill them'). Given wait_s it waits, says so once, then goes on; units
    that outlive wait_s are refused as before."""
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code = ("import sys, time; from collapse_hpc.store.lock import working\n"
            "with working(sys.argv[1]):\n    print('in', flush=True); time.sleep(float(sys.argv[2]))\n")
    path = tmp_path / ".lock"
    for stays, wait_s in ((1.0, 20), (60.0, 0.5)):
        unit = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(stays)], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert unit.stdout.readline().strip() == "in"
            path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
            said: list[str] = []
            lock = RunLock(path, log=said.append, wait_s=wait_s)
            if stays < wait_s:
                with lock:
                    assert lock.held and lock.workers() == []  # its unit ended first
            else:
                with pytest.raises(UserError, match=f"unit processes {unit.pid} still run"):
                    lock.acquire()
            assert said[0] == (f"run is locked by dead pid {dead.pid}, whose unit processes {unit.pid} are stopping; "
                               f"waiting up to {wait_s:g} s for them")
        finally:
            unit.kill()
            unit.wait()


def test_a_slurm_jobs_unit_process_leaves_the_run_to_submit_and_cancel(tmp_path):
    """On a node that is also the login host (a single-node cluster), a running Slurm job's unit
    registered like a local orphan: submit (to queue the rest) and cancel (to end it) were refused
    with 'unit processes … still running without a launcher'. Slurm holds it; squeue tells."""
    import os
    import subprocess
    import sys

    code = ("import sys, time; from collapse_hpc.store.lock import working\n"
            "with working(sys.argv[1]):\n    print('in', flush=True); time.sleep(60)\n")
    env = dict(os.environ, SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="4242")
    unit = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert unit.stdout.readline().strip() == "in"
        assert [p.read_text() for p in (tmp_path / ".units").iterdir()] == ["slurm job 4242"]
        with RunLock(tmp_path / ".lock", log=lambda *_: None) as lock:
            assert lock.workers() == []
    finally:
        unit.kill()
        unit.wait()


def test_the_register_of_unit_processes_goes_with_the_last_one_out(tmp_path):
    """A refused first unit left an empty .units/ in the run folder; a unit still registered keeps it."""
    import os
    import socket

    from collapse_hpc.store.lock import working

    with working(tmp_path):
        assert [p.name for p in (tmp_path / ".units").iterdir()] == [f"{socket.gethostname()}-{os.getpid()}"]
    assert not (tmp_path / ".units").exists()
    other = tmp_path / ".units" / "elsewhere-1"
    other.parent.mkdir()
    other.write_text("")
    with working(tmp_path):
        pass
    assert [p.name for p in (tmp_path / ".units").iterdir()] == ["elsewhere-1"]


def test_a_full_disk_names_the_file_being_written(tmp_path, capsys):
    """ENOSPC from a write names no file; the atomic write names the one it was writing, and the
    command prints it in its one error line."""
    import errno

    from collapse_hpc import cli

    target = tmp_path / "out" / "metrics.parquet"

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        with atomic.atomic_path(target):
            full()
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    assert not target.exists() and list(target.parent.iterdir()) == []
    line = cli._os_message(e.value)
    assert line.startswith(f"{target}: No space left on device: the file system at ")
    assert line.endswith("free space there or write elsewhere, then run the same command again")


def test_a_folder_written_whole_is_as_readable_as_a_file(tmp_path):
    """transformers' save_pretrained writes model.safetensors 0600 (and mkdtemp makes 0700): a
    teammate reading the run (verify, the report) was refused the weights."""
    import stat

    from transformers import OPTConfig, OPTForCausalLM

    model = OPTForCausalLM(OPTConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, ffn_dim=8,
                                     num_attention_heads=2, word_embed_proj_dim=8, max_position_embeddings=16))
    old = os.umask(0o022)
    try:
        with atomic.atomic_dir(tmp_path / "model") as d:
            model.save_pretrained(str(d))
            (d / "sub").mkdir(mode=0o700)
            (d / "sub" / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(d / "sub" / "run.sh", 0o700)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes.pop("model/model.safetensors") == 0o644
    assert modes.pop("model") == modes.pop("model/sub") == modes.pop("model/sub/run.sh") == 0o755
    assert set(modes.values()) == {0o644}, modes


def test_launcher_pid_is_only_a_live_collapse_hpc_owner_of_this_host(tmp_path):
    import socket
    import subprocess

    from collapse_hpc.store.lock import launcher_pid

    path = tmp_path / ".lock"
    lock = RunLock(path)
    assert launcher_pid(lock) is None  # no lock
    other = subprocess.Popen(["sleep", "30"])  # a live pid that is not collapse-hpc (a reused pid)
    try:
        path.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": 0}))
        assert launcher_pid(lock) is None
    finally:
        other.kill()
        other.wait()
    path.write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": 0}))
    with pytest.raises(UserError, match="run by pid .* on elsewhere; cancel it there"):
        launcher_pid(lock)
    path.write_text(json.dumps({"pid": 2 ** 70, "host": socket.gethostname(), "started": 0}))  # hand-edited
    assert launcher_pid(lock) is None


def test_a_killed_units_registration_is_dropped_by_the_next_launcher(tmp_path):
    """A unit killed outright (SIGKILL) cannot unregister: its RUN/.units/ entry stayed for good, and
    once the pid was reused by any other process the run read as held by a running unit."""
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    register = tmp_path / ".units"
    register.mkdir()
    (register / f"{socket.gethostname()}-{dead.pid}").write_text("")
    (register / f"otherhost-{dead.pid}").write_text("")  # another host's: not ours to judge
    with RunLock(tmp_path / ".lock", log=lambda *_: None):
        assert [p.name for p in register.iterdir()] == [f"otherhost-{dead.pid}"]


def test_a_copy_of_a_running_run_folder_is_not_held_by_the_originals_processes(tmp_path):
    """`cp -r` of a run folder while it runs copies its lock and its units' registrations: cancel of the
    copy stopped the original's launcher and units (they were the pids the copy named), and a run of
    the copy was refused as locked by them."""
    import subprocess
    import sys

    from collapse_hpc.store.lock import launcher_pid

    original, copy = tmp_path / "run", tmp_path / "copy"
    original.mkdir()
    code = ("import sys, time; from collapse_hpc.store.lock import RunLock, working\n"
            "with RunLock(__import__('pathlib').Path(sys.argv[1]) / '.lock'), working(sys.argv[1]):\n"
            "    print('in', flush=True); time.sleep(60)\n")
    # named collapse… in its command line, as a launcher is (launcher_pid checks it)
    proc = subprocess.Popen([sys.executable, "-c", code, str(original), "collapse-hpc"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "in"
        lock = RunLock(original / ".lock")
        assert launcher_pid(lock) == proc.pid and lock.workers() == [proc.pid]  # the original's, as before
        shutil.copytree(original, copy)
        copied = RunLock(copy / ".lock", log=lambda *_: None)
        assert launcher_pid(copied) is None and copied.workers() == []
        with copied:  # taken over: the owner it names runs the original, not the copy
            assert json.loads((copy / ".lock").read_text())["pid"] == os.getpid()
            assert not (copy / ".units").exists()  # the copied registration dropped
        assert launcher_pid(lock) == proc.pid and lock.workers() == [proc.pid]  # the original untouched
        moved = tmp_path / "moved"
        original.rename(moved)  # a folder moved is the same run, still held by its launcher
        assert launcher_pid(RunLock(moved / ".lock")) == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_cache_whose_card_does_not_read_says_to_remove_the_cache(tmp_path):
    """A sealed cache (a tokenizer, the tiny base) is no data set: `data prepare tokenizer-bpe500` was
    no command that rebuilds it; removing the folder is."""
    from collapse_hpc.store.cards import seal, sealed_files

    folder = tmp_path / "zh" / "tokenizer-bpe500"
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    seal(folder)
    assert sealed_files(folder) == [folder / "tokenizer.json"]
    (folder / "card.json").write_text("{")  # cut short by a crash
    said = re.escape(f"card is not a JSON mapping; remove {folder} to build it again") + "$"
    with pytest.raises(UserError, match=said):
        sealed_files(folder)


def test_the_run_lock_reads_in_small_named_steps():
    """RunLock.acquire was one function of 60 lines (the record, judging a lock another made, taking a dead one's
    over, writing, refusing beside unit processes): each step is a function of its own, none over 40 lines."""
    from pathlib import Path

    from collapse_hpc.store import lock
    from tests.function_length import long_functions

    assert long_functions(Path(lock.__file__), 40) == []


@pytest.mark.parametrize("enter", [lambda lock: lock, beside_reader,
                                   lambda lock: reading(lock.path.parent, "aggregate", log=lock.log)],
                         ids=["with", "beside_reader", "reading"])
def test_a_refused_lock_read_at_release_never_replaces_the_error_that_stopped_the_block(tmp_path, monkeypatch, enter):
    """release reads the owner record: its refusal (NotRead) was raised from __exit__ in place of the
    error already in flight, and the user saw the lock's line, not what had stopped the run."""
    import errno

    from tests.helpers import refuse_reads

    path, said = tmp_path / ".lock", []
    lock = RunLock(path, log=said.append, command="run")
    with pytest.raises(ValueError, match="^what stopped the run$"):
        with enter(lock):
            refuse_reads(monkeypatch, path, errno.EACCES)
            raise ValueError("what stopped the run")
    assert len(said) == 1 and said[0].startswith(f"warning: run lock {path} left as it is: run lock {path}: not read")
    assert path.exists() and not lock.held  # its owner could not be read: kept for the next launcher to judge


@pytest.mark.parametrize("damage", [b"", b'{"experiment": "lm", "upstr'], ids=["zero-length", "cut-short"])
def test_a_damaged_binding_file_redoes_the_partial_work_it_no_longer_vouches_for(tmp_path, caplog, damage):
    """An unfinished unit's .binding.json cut short or zeroed (a quota, a bit rot) read as none, and its redo
    resumed the checkpoints whatever they were made for (an earlier generation since redone, say), without a
    word. They go, in one line; with no binding file at all (an older version's unit) they stay."""
    from collapse_hpc.store.manifest import BINDING, binding, write_binding

    store = RunStore(tmp_path / "run")
    unit = store.root / "lm" / "v" / "gen_001"
    write_binding(unit, binding(unit))
    atomic.write_text(unit / "checkpoints" / "step1" / "model.pt", "weights")
    (unit / BINDING).write_bytes(damage)
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        store.reset_unit(unit, keep=("checkpoints",), expected=binding(unit))
    assert not (unit / "checkpoints" / "step1" / "model.pt").exists()
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{unit / BINDING}: does not read as a binding (cut short or damaged): the unit's partial work "
                    f"is redone"]
    atomic.write_text(unit / "checkpoints" / "step1" / "model.pt", "weights")
    assert not (unit / BINDING).exists()  # gone with the leftovers
    store.reset_unit(unit, keep=("checkpoints",), expected=binding(unit))
    assert (unit / "checkpoints" / "step1" / "model.pt").is_file()


@pytest.mark.parametrize("damage", [None, b"", b"[]"], ids=["none", "zero-length", "no-mapping"])
def test_a_redo_tells_a_damaged_binding_file_by_its_one_read(tmp_path, monkeypatch, damage):
    """reset_unit read the binding file, then looked for it again (is_file) to tell a damaged one from none: two
    looks at a file that may change between them. What one read finds decides; with none there, leftovers stay."""
    from pathlib import Path

    from collapse_hpc.store.manifest import BINDING, binding

    store = RunStore(tmp_path / "run")
    unit = store.root / "lm" / "v" / "gen_001"
    atomic.write_text(unit / "checkpoints" / "step1" / "model.pt", "weights")
    if damage is not None:
        (unit / BINDING).write_bytes(damage)
    looked, is_file = [], Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: (looked.append(self.name), is_file(self))[1])
    store.reset_unit(unit, keep=("checkpoints",), expected=binding(unit))
    assert BINDING not in looked
    assert (unit / "checkpoints" / "step1" / "model.pt").is_file() == (damage is None)


def test_the_register_read_while_its_last_unit_leaves_it_is_read_as_empty(tmp_path):
    """A unit ending removes the register (.units) it leaves empty; a launcher reading it at that moment
    (its Ctrl-C handling, a lock's judgement) stopped on "error: RUN/.units: No such file or directory"
    (Path.glob looked at the folder, then listed it after it was gone). A unit enters and leaves in a loop
    here, in another process, while the lock reads the register."""
    with helpers.churning(tmp_path, ".units"), RunLock(tmp_path / ".lock", log=lambda *_: None) as lock:
        deadline = time.time() + 3
        while time.time() < deadline:
            lock.workers()  # raised FileNotFoundError within the first thousand reads, or so
            lock._drop_dead_workers()


@pytest.mark.parametrize("folder", [".units", "logs/ranks/7"], ids=["register", "rank records"])
def test_a_live_runs_units_are_listed_while_its_other_folders_come_and_go(tmp_path, folder):
    """status, verify and aggregate list a run's units while it runs: the register (.units) and a local job's rank
    records (logs/ranks/<job>) come and go beside them, and the listing (Path.glob's look at each folder, then its
    read) stopped on "No such file or directory" when one went in between."""
    store = RunStore(tmp_path / "run")
    unit = store.unit_dir("toy", "base", "chain", 0)
    unit.mkdir(parents=True)
    with helpers.churning(store.root, folder):
        deadline = time.time() + 3
        while time.time() < deadline:
            assert store.units() == [unit]


def test_a_unit_is_reset_while_the_units_beside_it_remove_their_empty_folders(tmp_path):
    """A unit of an experiment new to the run makes its folders (reset_unit) while another unit of it refuses and
    removes the folders it made (the variant's, the experiment's): mkdir made the experiment's folder, then failed on
    the variant's in it as it went, and the unit ended on "No such file or directory" or "File exists", not its run.
    The other unit comes and goes here in a loop, in another process; this one's folders are removed each time too."""
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    unit = store.unit_dir("toy", "a", "chain", 0)
    with helpers.churning(store.root, "toy/b/gen_000"):
        deadline = time.time() + 3
        while time.time() < deadline:
            store.reset_unit(unit)  # failed within a few hundred resets, or so
            for folder in (unit, unit.parent, unit.parent.parent):
                with contextlib.suppress(OSError):  # the other unit's in it, or gone
                    folder.rmdir()


def test_a_unit_registers_while_another_leaves_the_register(tmp_path):
    """A unit registers in the run (working(): .units) while another, ending, removes the register it leaves empty:
    mkdir found the register, then it was gone, and the unit ended on "File exists" before it ran. The other unit
    comes and goes here in a loop, in another process."""
    with helpers.churning(tmp_path, ".units"):
        deadline = time.time() + 3
        while time.time() < deadline:
            with working(tmp_path):  # failed within a few thousand registrations, or so
                pass


@pytest.mark.parametrize("text, said", [("", "empty"), ("garbage", "not a lock record")])
def test_a_fresh_lock_without_its_record_says_it_is_stale_when_and_what_to_do(tmp_path, text, said):
    """A launcher killed as it made the lock leaves it empty: the next one was told only 'it is unreadable;
    remove it', not that it is a killed launcher's, taken over by itself a minute on."""
    path = tmp_path / ".lock"
    path.write_text(text)
    os.utime(path, (time.time() - 20, time.time() - 20))
    with pytest.raises(UserError) as e:
        RunLock(path, log=lambda *_: None).acquire()
    assert re.fullmatch(re.escape(
        f"could not take the run lock {path}: it is {said}, as a launcher killed while making it leaves it (one "
        f"starting now writes it at once); it is taken over as stale once unchanged for 60 s, in ") + r"(39|40) s" +
        re.escape(": run the command again then, or remove the file now if no collapse-hpc command works on this run"),
        str(e.value)), e.value
    assert path.read_text() == text
