"""jobs.json, the run's job records, as each command that reads it reads it."""
import errno
import os

import pytest

from collapse_hpc.cli import main
from collapse_hpc.launch import records
from tests.helpers import refuse_reads

AGAIN = "once the file reads again (its permissions, the file system): run the same command again"


def _snapshot(root):
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and "logs" not in p.parts and p.name != ".lock"}


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
@pytest.mark.parametrize("command", ["status", "run", "submit", "cancel", "verify", "aggregate"])
def test_job_records_the_file_system_will_not_read_are_said_not_taken_for_none(tmp_path, monkeypatch, capsys,
                                                                               refusal, command):
    """jobs.json read refused went up as a raw OSError (an EIO's line named no file); taken for none, a launch
    would book its jobs over the ones it names. Each command says it in one line naming the file, and writes
    nothing; once it reads, the command goes on as before."""
    config = tmp_path / "c.yaml"
    config.write_text("name: r\ngenerations: 2\nseeds: [0]\nexecutor: debug\ntoy: {rows: 2}\n")
    root = tmp_path / "run"
    assert main(["run", str(config), "--run", str(root)]) == 0
    book = root / records.JOBS
    assert book.is_file()
    before = _snapshot(root)
    capsys.readouterr()
    argv = [command, str(config), "--run", str(root)] if command in ("run", "submit") else [command, str(root)]
    refuse_reads(monkeypatch, book, refusal)
    assert main(argv) == 2
    said = f"job records {book}: not read ({os.strerror(refusal)}): the run and its jobs are kept as they are {AGAIN}"
    assert capsys.readouterr().err == f"error: {said}\n"
    monkeypatch.undo()
    assert _snapshot(root) == before and not (root / "report").exists()
    if command != "submit":  # which has no cluster here
        assert main(argv) == 0


def test_a_new_job_of_a_unit_drops_what_the_book_said_of_its_want_of_one(tmp_path):
    """gen_001 NOT_RUN ('gen_000 failed'); the launcher run again ran it to COMPLETED, and jobs.json kept the
    reason beside that state: a reader of the book (the report's table, status after a take-over) read it."""
    import shutil

    from collapse_hpc.store import RunStore
    from tests.launch.helpers import collapse, jobs, write_config

    config = write_config(tmp_path, executor="local", toy={"rows": 2})
    root = tmp_path / "run"
    assert collapse("run", config, "--run", root, "--executor", "debug")[0] == 0  # the folder and its plan
    for gen in root.glob("toy/*/gen_*"):  # as a launcher left it: gen_000 failed, gen_001 not run
        shutil.rmtree(gen)
    store = RunStore(root)
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    records.record(book, "toy/replace-p0-s0/gen_000", job_id="4242", state="FAILED", started=0.0, elapsed=1.0,
                   error="RuntimeError: out of memory")
    records.record(book, "toy/replace-p0-s0/gen_001", job_id=None, state="NOT_RUN",
                   reason="toy/replace-p0-s0/gen_000 failed")
    records.save(store, book)
    rc, _, err = collapse("run", config, "--run", root)
    assert rc == 0, err
    entry = jobs(root)["units"]["toy/replace-p0-s0/gen_001"]
    assert entry["state"] == "COMPLETED" and "reason" not in entry, entry
