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
