"""A run one may only read (a colleague's, or one on read-only storage): status, verify and
aggregate --out elsewhere work; aggregate into the run itself is refused in one line naming --out.
Root writes anywhere, so the commands run in a child process that has become user `nobody`."""
import io
import os
import pwd
import shutil
import tempfile
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from collapse_hpc import cli, engine
from collapse_hpc.launch import debug
from tests.helpers import become, nobody, toy_run


def _as(user: pwd.struct_passwd, argv: list[str], stdout: bool = False) -> tuple[int, str]:
    """cli.main(argv) in a forked child running as `user`: (exit status, stderr, or stdout)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read)
            become(user)
            err, out = io.StringIO(), io.StringIO()
            with redirect_stderr(err), redirect_stdout(out):
                code = cli.main(argv)
            os.write(write, (out if stdout else err).getvalue().encode())
        except Exception:  # not lost with the child: the test shows it
            os.write(write, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        err = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


@pytest.fixture
def theirs():
    """A finished run with its report, owned by root, readable by all (a colleague's)."""
    user = nobody()
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-theirs-"))
    try:
        top.chmod(0o755)
        store, run = toy_run(top, generations=2)
        debug.execute(store, run, engine.plan(run))
        assert cli.main(["aggregate", str(store.root)]) == 0
        for path in [store.root, *store.root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield user, store.root
    finally:
        shutil.rmtree(top)


def test_status_verify_and_a_report_elsewhere_work_on_a_run_one_may_only_read(theirs):
    user, run = theirs
    mine = Path(tempfile.mkdtemp(prefix="collapse-hpc-mine-"))
    os.chown(mine, user.pw_uid, user.pw_gid)
    try:
        for argv in (["status", str(run)], ["verify", str(run)], ["aggregate", str(run), "--out", str(mine / "r")]):
            code, err = _as(user, argv)
            assert code == 0, (argv, err)
        assert (mine / "r" / "index.html").is_file()
    finally:
        shutil.rmtree(mine)


def test_a_report_into_a_run_one_may_only_read_is_refused_naming_out(theirs):
    user, run = theirs
    before = sorted(p.name for p in (run / "report").iterdir())
    code, err = _as(user, ["aggregate", str(run)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == (f"error: {run / 'report'}: not writable by you (a run you may only read); write its "
                        f"report elsewhere with --out DIR")
    assert sorted(p.name for p in (run / "report").iterdir()) == before


def test_a_report_elsewhere_of_a_run_one_may_only_read_is_refused_while_its_launcher_runs(theirs):
    """aggregate takes the run's lock as its writers do; in a run it may not write it can take none, yet a
    live holder's (the colleague's launcher) still refuses it: it read the run as the units were written."""
    import json
    import socket

    from collapse_hpc.store.lock import folder_id

    user, run = theirs
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0,
                                           "folder": folder_id(run), "command": "run", "launcher": True}))
    mine = Path(tempfile.mkdtemp(prefix="collapse-hpc-mine-"))
    os.chown(mine, user.pw_uid, user.pw_gid)
    try:
        code, err = _as(user, ["aggregate", str(run), "--out", str(mine / "r")])
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"run is locked by pid {os.getpid()}" in err and "collapse-hpc run" in err, err
        assert not (mine / "r").exists()
        (run / ".lock").unlink()
        code, err = _as(user, ["aggregate", str(run), "--out", str(mine / "r")])  # nobody holds it: read as is
        assert code == 0 and (mine / "r" / "index.html").is_file(), err
    finally:
        shutil.rmtree(mine)


def test_verify_names_a_file_it_may_not_read_and_goes_on_to_the_other_units(theirs):
    """verify stopped at the first file it could not read ('error: …: Permission denied', exit 2),
    leaving every later unit unchecked; it now names that unit's file and verifies the rest. It then gave the unit's
    redo command, which refuses the same unread file ("the unit is kept as it is (not redone)"): the unit is kept."""
    user, run = theirs
    first = sorted(run.glob("toy/*/gen_000"))[0]
    (first / "metrics.parquet").chmod(0o000)
    code, out = _as(user, ["verify", str(run)], stdout=True)
    assert code == 1, out
    assert f"MISMATCH {first / 'metrics.parquet'}: not readable (Permission denied)" in out, out
    assert "  the unit is kept as it is (not redone) once the file reads again (its permissions, the file system): " \
           "run the same command again\n" in out and "redo with:" not in out, out
    assert ": 1 unit verified, 1 with mismatches, 0 unfinished" in out, out


@pytest.fixture
def on_read_only_mount():
    """A finished run with its report, seen through a read-only bind mount (storage mounted so: even its
    owner, root here, may not write there)."""
    import subprocess

    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-ro-"))
    seen = top / "seen"
    try:
        store, run = toy_run(top, generations=2)
        debug.execute(store, run, engine.plan(run))
        assert cli.main(["aggregate", str(store.root)]) == 0
        seen.mkdir()
        if subprocess.run(["mount", "--bind", str(store.root), str(seen)], capture_output=True).returncode:
            pytest.skip("needs mount (root, in a namespace that allows it) for a read-only file system")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(seen)], check=True, capture_output=True)
            yield seen
        finally:
            subprocess.run(["umount", str(seen)], check=True)
    finally:
        shutil.rmtree(top)


def test_a_report_into_a_run_on_a_read_only_file_system_says_so_not_permissions(on_read_only_mount, tmp_path):
    """aggregate into a run on a read-only mount said 'not writable by you (a run you may only read)': no
    permission its owner could give; it names the read-only mount, and --out still."""
    run = on_read_only_mount
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli.main(["aggregate", str(run)]) == 2
    lines = err.getvalue().strip().splitlines()
    assert lines == [f"error: {run / 'report'}: on a read-only file system (mounted read-only at {run}); write "
                     f"its report elsewhere with --out DIR"], lines
    assert cli.main(["aggregate", str(run), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()


def test_a_run_of_a_run_one_may_only_read_is_refused_in_one_line_naming_the_folder(theirs):
    """Its run lock refused: "error: RUN/.lock: Permission denied", neither whose folder nor what to do."""
    user, run = theirs
    code, err = _as(user, ["run", str(run / "config.yaml"), "--run", str(run), "--executor", "debug"])
    assert code == 2 and err.count("\n") == 1, err
    assert err == (f"error: {run}: not writable by you (no permission to make or remove files in it), so its run "
                   f"lock .lock cannot be made; give yourself write permission there, or work in a copy you may "
                   f"write to (cp -r); nothing was written\n")


@pytest.fixture
def top():
    """A folder every user may reach (pytest's own tmp_path is root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-top-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top)


def test_a_unit_to_redo_in_a_folder_one_may_not_write_is_refused_before_any_unit_starts(top):
    """A unit's folder left read-only (chmod -w): its redo failed on its first removal, in the file system's words
    ("PermissionError: [Errno 13] Permission denied: '…/metrics.parquet'"), the units before it run."""
    user = nobody()
    store, run = toy_run(top, generations=3)
    debug.execute(store, run, engine.plan(run))
    gen1 = store.unit_dir("toy", "replace-p0-s0", "chain", 1)
    (gen1 / "manifest.json").unlink()
    for path in [store.root, *store.root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    gen1.chmod(0o555)
    before = sorted(gen1.iterdir())
    code, err = _as(user, ["run", str(store.config_path), "--run", str(store.root), "--executor", "debug"])
    last = err.strip().splitlines()[-1]  # after the run's line (its plan), as any launcher's refusal
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err, err
    assert last == (f"error: {gen1}: not writable by you (no permission to make or remove files in it); "
                          f"toy/replace-p0-s0/gen_001 runs there: give yourself write permission (chmod -R u+w "
                          f"{gen1}), or run a copy you may write to (cp -r, --run COPY); no unit was started"), err
    assert sorted(gen1.iterdir()) == before


def test_a_local_run_whose_job_folder_one_may_not_write_is_refused_before_any_unit_starts(top):
    """logs/submitit left read-only: the launcher ended on "error: RUN/logs/submitit/<hex>.pkl: Permission denied",
    a temporary's name and no word of what to do."""
    user = nobody()
    store, run = toy_run(top, generations=2)
    debug.execute(store, run, engine.plan(run))
    (store.unit_dir("toy", "replace-p0-s0", "chain", 1) / "manifest.json").unlink()
    for path in [store.root, *store.root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    jobs = store.logs / "submitit"
    jobs.chmod(0o555)
    code, err = _as(user, ["run", str(store.config_path), "--run", str(store.root), "--executor", "local"])
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"error: {jobs}: not writable by you (no permission to make or remove files in it); each unit's job file and "
        f"log go there: give yourself write permission (chmod u+w {jobs}), or run a copy you may write to (cp -r, "
        f"--run COPY); no unit was started"), err
