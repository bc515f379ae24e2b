"""The records of a launch outside a job (`collapse-hpc lm` under torchrun, srun or by hand) in the host's temporary
files: each user's in a folder of their own, and a launch's gone once no rank of it lives. Root's permission bits
bind no one: another user's launch is root's here, and this user's ranks are child processes that became nobody."""
import io
import json
import os
import pwd
import select
import shutil
import socket
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


def test_a_launch_removes_this_users_ended_launches_from_the_folder_all_users_shared(tmp_path, monkeypatch):
    """Earlier versions recorded every user's launches in one folder, collapse-hpc-ranks, which no launch cleaned
    since: the records of its ended launches stayed for good. Those of a launch that may go on stay."""
    dead = _dead_pid()
    _launched_rank(monkeypatch, tmp_path, 0)
    shared = tmp_path / peers.SHARED
    gone, launcher_lives, rank_lives = (shared / f"{port}-{launcher}" for port, launcher in
                                        ((29400, dead), (29401, os.getpid()), (29402, dead)))
    peers._record(gone, 1, "failed", "its own", pid=dead)
    peers._record(launcher_lives, 0, "failed", "its own", pid=dead)
    peers._record(rank_lives, 0, "running")  # this process stands for the rank
    with peers.launched_ranks():
        pass
    assert sorted(p.name for p in shared.iterdir()) == sorted([launcher_lives.name, rank_lives.name])
    peers._record(rank_lives, 0, "running", pid=dead)
    shutil.rmtree(launcher_lives)
    with peers.launched_ranks():
        pass
    assert not shared.exists()  # emptied, and this user's


def _made_as(user, path: Path, mode: int, record: dict | None = None) -> Path:
    """A folder (or with `record`, a rank's record in it) that `user` made."""
    if record is None:
        path.mkdir(mode=mode)
    else:
        path.write_text(json.dumps(record))
    path.chmod(mode)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def test_in_the_shared_folder_a_launch_removes_only_what_is_its_users(host_tmp, monkeypatch):
    """The shared folder may be writable by every user (made with umask 0): another user's ended launch (this user's
    records in it too), their records in this user's, and a link of theirs to a folder of this user's stay; one this
    user may not read is passed over, unsaid."""
    user, root, dead = nobody(), pwd.getpwuid(0), _dead_pid()
    ended_rank = {"rank": 0, "pid": dead, "host": socket.gethostname(), "state": "failed", "cause": "its own"}
    _launched_rank(monkeypatch, host_tmp, 0)
    shared = _made_as(root, host_tmp / peers.SHARED, 0o777)
    theirs = _made_as(root, shared / f"29400-{dead}", 0o777)
    _made_as(user, theirs / "0.json", 0o644, ended_rank)  # this user's rank recorded itself in their folder
    _made_as(root, shared / f"29401-{dead}", 0o700)  # unreadable to this user
    _made_as(root, shared / f"29405-{'9' * 30}", 0o777)  # no process's pid
    elsewhere = _made_as(user, host_tmp / "elsewhere", 0o755)  # a folder of this user's, not of launches
    _made_as(user, elsewhere / "0.json", 0o644, ended_rank)
    (shared / f"29402-{dead}").symlink_to(elsewhere)
    mine, shared_mine = (_made_as(user, shared / f"{port}-{dead}", 0o755) for port in (29403, 29404))
    _made_as(user, mine / "0.json", 0o644, ended_rank)
    _made_as(user, shared_mine / "0.json", 0o644, ended_rank)
    _made_as(root, shared_mine / "1.json", 0o666, ended_rank | {"rank": 1})
    said = json.loads(ended(forked_as(user, lambda: _rank(0, lambda: None))))
    assert said == {"error": "", "stderr": ""}
    assert sorted(p.name for p in shared.iterdir()) == [f"{port}-{dead}" for port in (29400, 29401, 29402, 29404)] + [
        f"29405-{'9' * 30}"]
    assert [p.name for p in theirs.iterdir()] == ["0.json"] and [p.name for p in shared_mine.iterdir()] == ["1.json"]
    assert (elsewhere / "0.json").exists()
