"""The records of a launch outside a job (`collapse-hpc lm` under torchrun, srun or by hand) in the host's temporary
files: each user's in a folder of their own, and a launch's gone once no rank of it lives. Root's permission bits
bind no one: another user's launch is root's here, and this user's ranks are child processes that became nobody."""
import io
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from collapse_hpc.launch import peers
from tests.helpers import ended, forked_as, nobody
from tests.launch.test_peers import _launched_rank

CLOSED = "[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:36278. ..."


@pytest.fixture
def host_tmp():
    """A host's temporary folder, as /tmp (sticky, every user's)."""
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-tmp-"))
    top.chmod(0o1777)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def _rank(rank: int, work) -> str:
    """work() in launched_ranks as rank `rank`: its error's text (empty where none) and its stderr, as JSON."""
    os.environ["RANK"] = str(rank)
    err, said = io.StringIO(), ""
    with redirect_stderr(err):
        try:
            with peers.launched_ranks():
                work()
        except Exception as e:
            said = str(e)
    return json.dumps({"error": said, "stderr": err.getvalue()})


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_users_rank_names_its_failed_peer_where_another_user_launched_first(host_tmp, monkeypatch):
    """Another user's launch made the ranks' folder in the host's temporary files first (0755, theirs): this user's
    ranks recorded nothing there, silently, and a rank left by its failed peer said only "a peer rank stopped"."""
    user = nobody()
    _launched_rank(monkeypatch, host_tmp, 0)
    umask = os.umask(0o022)
    try:
        with pytest.raises(ValueError), peers.launched_ranks():  # root's launch, the first on this host
            raise ValueError("theirs")
    finally:
        os.umask(umask)
    ready, go = os.pipe(), os.pipe()

    def waits_for_its_peer():  # in a collective with rank 0 until rank 0 failed
        os.close(go[1])
        os.write(ready[1], b"in")
        os.read(go[0], 1)
        raise RuntimeError(CLOSED)

    def fails():
        raise ValueError("its own")

    second = forked_as(user, lambda: _rank(1, waits_for_its_peer))
    os.close(ready[1])
    try:
        assert select.select([ready[0]], [], [], 10)[0] and os.read(ready[0], 2) == b"in"
        first = json.loads(ended(forked_as(user, lambda: _rank(0, fails))))
        os.write(go[1], b"x")
    finally:
        for end in (go[1], go[0], ready[0]):
            os.close(end)
    assert first == {"error": "its own", "stderr": ""}
    assert json.loads(ended(second)) == {
        "error": "rank 1: rank 0 failed: ValueError: its own; this rank stops too", "stderr": ""}
    mine = host_tmp / f"collapse-hpc-ranks-{user.pw_uid}"
    assert mine.stat().st_uid == user.pw_uid and stat.S_IMODE(mine.stat().st_mode) == 0o700
    assert list(mine.iterdir()) == []  # the last rank out removed the launch's records


def test_a_folder_of_the_users_name_that_another_user_made_is_not_used_and_said(tmp_path, monkeypatch):
    """Its records could be planted (or read) by its maker: the rank runs on without records and says so in one
    line, not silently."""
    user = nobody()
    _launched_rank(monkeypatch, tmp_path, 1)
    theirs = peers._launch_folder().parent
    peers._record(peers._launch_folder(), 0, "failed", "planted")
    os.chown(theirs, user.pw_uid, user.pw_gid)
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(peers.PeerStopped) as stopped, peers.launched_ranks():
        raise RuntimeError(CLOSED)
    assert str(stopped.value) == ("rank 1: a peer rank stopped (its connection closed): see its log for why; "
                                  "this rank stops too")
    assert err.getvalue() == (f"warning: rank 1: cannot record itself in {theirs} (made by uid {user.pw_uid}, not "
                              f"this user): a peer's end will be said without naming it (TMPDIR sets the folder)\n")


def test_the_last_rank_of_a_launch_removes_its_records_one_before_keeps_them(tmp_path, monkeypatch):
    """A failed launch's records stayed in the temporary folder for good. Those a live peer may yet read stay."""
    _launched_rank(monkeypatch, tmp_path, 1)
    where = peers._launch_folder()
    peers._record(where, 0, "running")  # a live peer (this process stands for it)
    with pytest.raises(ValueError), peers.launched_ranks():
        raise ValueError("its own")
    assert [r["state"] for r in peers._records(where)] == ["running", "failed"]
    peers._record(where, 0, "failed", "OSError: [Errno 28] No space left on device", pid=_dead_pid())
    with pytest.raises(peers.PeerStopped) as stopped, peers.launched_ranks():
        raise RuntimeError(CLOSED)
    assert str(stopped.value) == ("rank 1: rank 0 failed: OSError: [Errno 28] No space left on device; this rank "
                                  "stops too")
    assert not where.exists()


def test_a_launch_removes_those_of_this_users_launches_that_ended(tmp_path, monkeypatch):
    """A launch whose rank was killed or hung (its launcher ended the rest) left its records for good: the next
    launch removes those of launches whose launcher and ranks are all gone, not those of one that may go on."""
    dead = _dead_pid()
    _launched_rank(monkeypatch, tmp_path, 0)
    launches = peers._launch_folder().parent
    gone, launcher_lives, rank_lives = (launches / f"29400-{dead}", launches / f"29401-{os.getpid()}",
                                        launches / f"29402-{dead}")
    peers._record(gone, 0, peers.WAITED, "waited 3 s in a collective for its peers", pid=dead)
    peers._record(gone, 1, "running", pid=dead)
    peers._record(launcher_lives, 0, "failed", "its own", pid=dead)  # its rank 1 may yet start and read it
    peers._record(rank_lives, 0, "running")  # this process stands for the rank
    with peers.launched_ranks():
        pass
    assert sorted(p.name for p in launches.iterdir()) == sorted([launcher_lives.name, rank_lives.name])
