"""Scratch fills up mid-command: one `error:` line saying which file system is full and what to do
(exit 2, no traceback), nothing half-written left looking finished, and the same command run
again once there is room goes on from what was finished. The disk is made full by making the
write fail as it fails on a full tmpfs (the library's own error, or /dev/full's ENOSPC);
docs/robustness.md keeps the steps that fill real file systems."""
import errno

import pyarrow.parquet as pq
import pytest

from collapse_hpc.store import read_manifest
from collapse_hpc.verify import verify_run
from tests.experiments.lm.conftest import corpus_lines
from tests.launch.helpers import collapse, write_config

FULL = "No space left on device: the file system at "
AGAIN = "free space there or write elsewhere, then run the same command again"


def _one_error(err: str) -> str:
    assert "Traceback" not in err and "Logging error" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_data_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """The tokenizer's save (Rust's tokenizers) raises a bare Exception on a full disk: it ended in a
    traceback and exit status 1."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    source = tmp_path / "corpus.txt"
    source.write_text("\n".join(corpus_lines(400, seed=1)))

    def full(*_, **__):
        raise Exception("No space left on device (os error 28)")  # as tokenizers raised it on a full tmpfs

    monkeypatch.setattr(TokenizersBackend, "_save_pretrained", full)
    rc, _, err = collapse("data", "prepare", "mine", "--from", source, "--data-dir", tmp_path / "data")
    line = _one_error(err)
    assert rc == 2 and line.startswith(f"error: {tmp_path / 'data'}/.tmp-mine.preparing/tokenizer-bpe8000: {FULL}")
    assert line.endswith(AGAIN)
    assert not (tmp_path / "data").exists()  # the data folder this preparation made went with it
    monkeypatch.undo()
    rc, _, err = collapse("data", "prepare", "mine", "--from", source, "--data-dir", tmp_path / "data")
    assert rc == 0, err
    assert (tmp_path / "data" / "mine" / "card.json").is_file()


def test_a_unit_on_a_full_disk_says_so_and_the_run_goes_on_afterwards(tmp_path, monkeypatch):
    """pyarrow's words for a full disk ('Error writing bytes to file. Detail: [errno 28] …') were the
    unit's line; it now says which file system, and what to do."""
    cfg = write_config(tmp_path, generations=3, toy={"rows": 4})
    run = tmp_path / "run"
    write_table = pq.write_table

    def full_at_gen_1(table, where, *args, **kwargs):
        if "gen_001" in str(where):
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_at_gen_1)
    rc, _, err = collapse("run", cfg, "--run", run, "--executor", "debug")
    unit = run / "toy" / "replace-p0-s0"
    line = _one_error(err)
    assert rc == 2 and line.startswith(f"error: {unit / 'gen_001' / 'metrics.parquet'}: {FULL}")
    assert line.endswith(f"{AGAIN} (finished units are kept)")
    assert read_manifest(unit / "gen_000") is not None and read_manifest(unit / "gen_001") is None
    assert not [p for p in run.rglob(".tmp-*")]
    monkeypatch.undo()
    rc, out, err = collapse("run", cfg, "--run", run, "--executor", "debug")
    assert rc == 0 and "2 units done, 1 already finished" in out, err
    assert verify_run(run) == 0


def test_a_run_log_the_disk_stops_taking_is_one_warning_not_a_traceback_per_line(tmp_path, capsys):
    """logging answers a failed write with '--- Logging error ---' and a traceback, at every line."""
    import logging

    from collapse_hpc import logs

    (tmp_path / "run" / "logs").mkdir(parents=True)
    (tmp_path / "run" / "logs" / "collapse-hpc.log").symlink_to("/dev/full")  # every write: ENOSPC
    try:
        logs.setup(run_dir=tmp_path / "run")
        for n in range(3):
            logging.getLogger("collapse_hpc").info("line %d", n)
    finally:
        logs.setup()
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert [ln for ln in err.splitlines() if "warning" in ln] == [
        f"warning: {tmp_path}/run/logs/collapse-hpc.log: No space left on device; logging to the terminal only "
        f"from here"]
    assert [ln.split(": ", 1)[1] for ln in err.splitlines() if "collapse_hpc: line" in ln] == [
        "line 0", "line 1", "line 2"]  # still said on the terminal


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_the_command_line_explains_each_refusal(tmp_path, monkeypatch, number):
    """A quota and a read-only remount are said as such too (EDQUOT and EROFS cannot be made here
    without root: the write raises them as the kernel does)."""
    import os

    def refused(*_, **__):
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(pq, "write_table", refused)
    rc, _, err = collapse("data", "prepare", "digits", "--data-dir", tmp_path / "data")
    line = _one_error(err)
    assert rc == 2 and line.startswith(f"error: {tmp_path}/data/digits: {os.strerror(number)}: ")  # built aside, whole
    assert line.endswith("then run the same command again")
    assert {errno.ENOSPC: "has no room left", errno.EDQUOT: "your disk quota on",
            errno.EROFS: "is mounted read-only"}[number] in line
    assert not list((tmp_path / "data").rglob("*.parquet"))


def test_a_report_elsewhere_of_a_run_whose_disk_is_full_is_made(tmp_path, monkeypatch):
    """`aggregate RUN --out ELSEWHERE` of a run on a full scratch stopped at writing the run's lock ('RUN/.lock: No
    space left on device …; free space there or write elsewhere'), though it only reads the run and was told to
    write elsewhere; it reads the run without a lock, as one on a read-only mount, and a live holder still refuses."""
    import json
    import os
    import socket

    from collapse_hpc import cli, engine
    from collapse_hpc.launch import debug
    from collapse_hpc.store.lock import folder_id
    from tests.helpers import toy_run

    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    lock, fdopen = store.root / ".lock", os.fdopen

    def full_for_the_lock(fd, *args, **kwargs):  # the lock's bytes meet a full disk (/dev/full's ENOSPC)
        if os.readlink(f"/proc/self/fd/{fd}") == str(lock):
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", full_for_the_lock)
    assert cli.main(["aggregate", str(store.root), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file() and not lock.exists()
    monkeypatch.undo()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0,
                                "folder": folder_id(store.root), "command": "run", "launcher": True}))
    monkeypatch.setattr(os, "fdopen", full_for_the_lock)
    rc, _, err = collapse("aggregate", store.root, "--out", tmp_path / "report2")
    assert rc == 2 and "locked" in _one_error(err) and not (tmp_path / "report2").exists(), err
