"""The local launcher when the run's disk fills up: a unit that could not write its result is said
to be that, not killed; a launcher that cannot write its own records starts no further unit, lets
the running ones end, and says why in one line; the same command then goes on from there."""
import errno

import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.launch import local, records
from collapse_hpc.store import read_manifest
from collapse_hpc.verify import verify_run
from tests.launch.helpers import collapse, jobs, write_config
from tests.launch.toys import full_disk

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_wait_for_a_result_never_written():
    """submitit waits 15 s for a result pickle a slow file system may not show yet; here none is coming
    (the launcher runs in this process, its units have ended before their result is read)."""
    from submitit.core import core

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core.Job, "_results_timeout_s", 1)
        yield


def test_a_unit_whose_result_the_full_disk_refused_is_not_called_killed(tmp_path, monkeypatch):
    """Its manifest, its error and submitit's result pickle all went to the full disk: the launcher
    saw no result and said 'its process was killed (… the OOM killer)'."""
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4})
    run = tmp_path / "run"
    monkeypatch.setenv(full_disk.FULL_AT, "1")
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 1 and "Traceback" not in err
    failed = [ln for ln in err.splitlines() if ln.startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].startswith(
        f"FAILED ltchain/replace-p0-s0/gen_001: it could not write its result in {run}/logs/submitit: the file "
        f"system at ")
    assert "killed" not in failed[0] and "then run the same command again (finished units are kept)" in failed[0]
    assert not list((run / "logs" / "submitit").glob("*.save_tmp"))  # swept
    unit = run / "ltchain" / "replace-p0-s0"
    assert read_manifest(unit / "gen_000") is not None and read_manifest(unit / "gen_001") is None
    monkeypatch.delenv(full_disk.FULL_AT)  # room again
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "1 unit done, 1 already finished" in out, err
    assert verify_run(run) == 0


def test_a_unit_failed_for_want_of_room_stops_further_starts(tmp_path, monkeypatch):
    """Every unit started after it failed the same way (16 Gaussian parts under `ulimit -f 20`: 16
    FAILED lines); now none starts, the reason is said once, and the same command goes on later."""
    cfg = write_config(tmp_path, generations=2, seeds=[0, 1, 2], ltchain={"rows": 4})
    run = tmp_path / "run"
    monkeypatch.setattr(local, "machine_cores", lambda: 1)  # one unit at a time
    monkeypatch.setenv(full_disk.FULL_AT, "0")  # every chain's first unit finds the disk full
    rc, _, err = collapse("run", cfg, "--run", run)
    lines = err.splitlines()
    assert rc == 1 and "Traceback" not in err, err
    failed = [ln.split(":")[0].removeprefix("FAILED ") for ln in lines if ln.startswith("FAILED ")]
    assert len(failed) == 1, err
    stop = [ln for ln in lines if "no further unit starts" in ln]
    short = f"{failed[0]} failed for want of room: No space left on device"
    assert stop == [f"{short}; no further unit starts; waiting for the running ones; free space, then run the "
                    f"same command again (finished units are kept)"]
    assert "4 units not started" in lines
    units = jobs(run)["units"]
    left = {label: e.get("reason") for label, e in units.items() if e["state"] == "NOT_RUN"}
    assert len(left) == 5  # the failed chain's next generation, and the other two chains
    assert sorted(left.values()).count(short) == 4
    # status shows the reason in brackets of its own, once: it read "(… (No space left on device))"
    rc, out, _ = collapse("status", run)
    not_run = [ln for ln in out.splitlines() if "NOT_RUN" in ln and "want of room" in ln]
    assert rc == 0 and len(not_run) == 4 and all(ln.endswith(f"  ({short})") for ln in not_run), out
    monkeypatch.delenv(full_disk.FULL_AT)  # room again
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "6 units done, 0 already finished" in out, err
    assert verify_run(run) == 0


def test_a_refusal_is_found_in_a_unit_s_traceback_or_under_the_launcher_s_own_error():
    assert local.refused_in(RuntimeError("...\nOSError: [Errno 27] File too large: '/r/x'")) == errno.EFBIG
    said = UserError("/r/logs: Disk quota exceeded: ...")
    said.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded", "/r/logs")
    assert local.refused_in(said) == errno.EDQUOT
    assert local.refused_in(RuntimeError("ltchain failure at generation 0")) is None


def test_the_stop_is_said_once_with_what_to_do_for_its_refusal(capsys):
    pool = object.__new__(local._Pool)
    pool.halted = pool.short = None
    pool.book = {"units": {}}
    pool.out_of_room("gaussian/replace-p0-samples100-s0/part_000", errno.EFBIG)  # `ulimit -f`
    pool.out_of_room("gaussian/replace-p0-samples100-s0/part_001", errno.EFBIG)  # running beside it
    assert capsys.readouterr().err.splitlines() == [
        "gaussian/replace-p0-samples100-s0/part_000 failed for want of room: File too large; no further unit "
        "starts; waiting for the running ones; raise the file-size limit (`ulimit -f unlimited`), then run the "
        "same command again (finished units are kept)"]
    # recorded as it stops (status says it of the units left), until it records them NOT_RUN as it ends
    assert pool.book[records.STOPPING] == ("gaussian/replace-p0-samples100-s0/part_000 failed for want of room: "
                                           "File too large")
    pool.lanes, pool.save = [], lambda: None
    pool.not_started()
    assert records.STOPPING not in pool.book


def test_a_launcher_that_cannot_write_its_records_halts_and_says_why(tmp_path, monkeypatch):
    """jobs.json on a full disk ended the launcher at once, its running units left to stop without
    it, the failures not listed, and the line said nothing of what to do."""
    cfg = write_config(tmp_path, generations=3, ltchain={"rows": 4})
    run = tmp_path / "run"
    _full_after_first(monkeypatch)
    rc, _, err = collapse("run", cfg, "--run", run)
    lines = err.splitlines()
    assert rc == 2 and "Traceback" not in err
    assert f"{run}/jobs.json: No space left on device: no further unit starts; waiting for the running ones" in lines
    assert "2 units not started" in lines
    assert lines[-1].startswith(f"error: {run}/jobs.json: No space left on device: the file system at ")
    assert lines[-1].endswith("then run the same command again (finished units are kept)")
    unit = run / "ltchain" / "replace-p0-s0"
    assert read_manifest(unit / "gen_000") is not None  # the running unit finished
    assert not (unit / "gen_001").exists()
    monkeypatch.undo()
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "2 units done, 1 already finished" in out, err
    assert "1 unit already finished (skipped)" in err  # not '1 units'
    units = jobs(run)["units"]
    # the unit that ended while jobs.json had no room too: as its manifest says
    assert [units[f"ltchain/replace-p0-s0/gen_{g:03d}"]["state"] for g in (0, 1, 2)] == ["COMPLETED"] * 3
    assert verify_run(run) == 0


def _full_after_first(monkeypatch) -> None:
    """jobs.json has room for the first unit's start, none from then on."""
    saved = []
    write_json = records.write_json

    def full_after_first(path, obj):
        saved.append(path)
        if len(saved) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_json(path, obj)

    monkeypatch.setattr(records, "write_json", full_after_first)


def test_a_unit_that_finished_while_jobs_json_had_no_room_is_recorded_by_the_next_launch(tmp_path, monkeypatch):
    """The launcher could not record the unit's end: jobs.json said RUNNING for good (status, reading
    the manifest, said done), as a next launch with nothing to start wrote nothing."""
    cfg = write_config(tmp_path, generations=1, ltchain={"rows": 4})
    run = tmp_path / "run"
    _full_after_first(monkeypatch)
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 2 and "Traceback" not in err, err
    assert read_manifest(run / "ltchain" / "replace-p0-s0" / "gen_000") is not None
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "RUNNING"  # its end unrecorded
    monkeypatch.undo()  # room again
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "0 units done, 1 already finished" in out, err
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "COMPLETED"


class _ReadOnlyFolderJob:
    """submitit's job as a read-only remount leaves it: reading the result first touches (chmod) the
    job's folder, which the file system refuses."""

    def results(self):
        raise OSError(errno.EROFS, "Read-only file system", "/scratch/run/logs/submitit")


def test_a_finished_unit_on_a_disk_remounted_read_only_is_not_failed():
    assert local._result(_ReadOnlyFolderJob(), lambda: True) == "done"  # its manifest was complete
    with pytest.raises(Exception, match=r"^/scratch/run/logs/submitit: Read-only file system: /\S* is mounted "
                                        r"read-only .*\(finished units are kept\)$"):
        local._result(_ReadOnlyFolderJob(), lambda: False)
