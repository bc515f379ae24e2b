"""A run folder two users of a host share (their group's) on a file system without flock: host_lock falls back to a
file in the host's temporary folder, which must exclude the processes of both users. Root's permission bits bind no
one, so the second user's process is a child that became nobody."""
import contextlib
import errno
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from collapse_hpc.store import lock
from tests.helpers import ended, forked_as, nobody


@pytest.fixture
def shared(monkeypatch):
    """(nobody, a run folder of root's that nobody's group may write, set-group-ID as a group's shared folder), the
    temporary folder sticky and every user's as /tmp; flock refused in the run folder (ENOLCK, as some NFS mounts)."""
    user = nobody()
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-users-"))
    top.chmod(0o755)
    tmp, run = top / "tmp", top / "run"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    run.mkdir()
    os.chown(run, 0, user.pw_gid)
    run.chmod(0o2775)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    real = fcntl.flock

    def flock(f, operation):
        fd = f if isinstance(f, int) else f.fileno()
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(run) + os.sep):
            raise OSError(errno.ENOLCK, "No locks available")
        return real(f, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    yield user, run
    shutil.rmtree(top, ignore_errors=True)


def _stale(run: Path) -> Path:
    """The run's lock, left by a launcher of this host that was killed."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    return run / ".lock"


def _takes_over(path: Path) -> str:
    with lock.RunLock(path, log=lambda _: None) as held:
        return f"held: {held.held}"


@contextlib.contextmanager
def _umask(mask: int):
    """The block's files made under `mask`, as by a user of that umask."""
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def test_a_second_user_takes_over_a_stale_run_lock(shared):
    """Taking over a stale run lock is serialised by host_lock. Users of a shared group folder (umask 002) can open
    each other's lock in it, but the file in the temporary folder the first user made (0664, of their own group)
    refused the second (opened for appending): "Permission denied", the run not taken."""
    user, run = shared
    with _umask(0o002):
        assert _takes_over(_stale(run)) == "held: True"  # the first user: root
    stale = _stale(run)
    assert ended(forked_as(user, lambda: _takes_over(stale))) == "held: True"


def test_the_temporary_folder_lock_excludes_another_users_process(shared):
    """The first user's umask (077) made its lock files theirs alone: the second could not open them to wait."""
    user, run = shared
    path = run / ".lock.takeover"

    def waits():
        with lock.host_lock(path):
            return "in"

    with _umask(0o077), lock.host_lock(path):  # root's, its files made first
        child = forked_as(user, waits)
        assert not select.select([child[1]], [], [], 0.5)[0]  # nobody waits for root
    assert ended(child) == "in"
