"""The peer watch on real processes: a peer stopped (SIGSTOP) longer than the grace is ended and
named; one continued in time, or stopped together with the watching rank (a suspended job), is not."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from collapse_hpc.launch import peers
from tests import helpers


@pytest.fixture
def peer(tmp_path):
    """Rank 1 of 2, a real process of this host, recorded running; rank 0 is this process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    where = tmp_path / "ranks"
    peers._record(where, 0, "running")
    peers._record(where, 1, "running", pid=proc.pid)
    yield proc, where
    proc.kill()
    proc.wait()


def _stopped(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while not peers._stopped(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert peers._stopped(pid)


def _watch(frozen, where, seconds: float):
    """Poll as the watch thread does for `seconds`; what it found."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := frozen.peer(where, 0):
            return found
        time.sleep(0.05)
    return None


def test_a_peer_stopped_past_the_grace_is_ended_and_named(peer, monkeypatch):
    proc, where = peer
    monkeypatch.setattr(peers, "STOPPED_GRACE_S", 0.5)
    frozen = peers._Frozen()
    _stopped(proc.pid)
    found = _watch(frozen, where, 5)
    assert found and found.startswith(f"rank 1 (pid {proc.pid}) was stopped (SIGSTOP) for "), found
    assert proc.wait(timeout=5) == -signal.SIGKILL  # a stopped process would hold the unit's end for ever
    rank, line = peers.culprit(where)
    assert rank == 1 and line.startswith(f"rank 1 of 2 (pid {proc.pid}) was stopped (SIGSTOP) for ")
    assert line.endswith("s and not continued: ended by rank 0"), line
    assert peers._lost_peer(where, 2, lambda: True) == ("stopped", found)  # a third rank of the host stops on it


def test_a_peer_continued_within_the_grace_goes_on(peer, monkeypatch):
    proc, where = peer
    monkeypatch.setattr(peers, "STOPPED_GRACE_S", 1.5)
    frozen = peers._Frozen()
    _stopped(proc.pid)
    assert _watch(frozen, where, 1.0) is None
    os.kill(proc.pid, signal.SIGCONT)
    assert _watch(frozen, where, 1.0) is None  # its time stopped starts over at its next stop
    _stopped(proc.pid)
    assert _watch(frozen, where, 1.0) is None
    assert proc.poll() is None and peers.culprit(where) is None


def test_a_late_poll_starts_over(peer, monkeypatch):
    """A whole job suspended (scontrol suspend stops every rank): the watching rank's next poll comes
    late, and a peer not yet continued then is not counted as stopped since before."""
    proc, where = peer
    monkeypatch.setattr(peers, "STOPPED_GRACE_S", 1.0)
    frozen = peers._Frozen()
    _stopped(proc.pid)
    assert frozen.peer(where, 0) is None
    frozen.polled -= peers.POLL_S + peers.LATE_POLL_S + 1  # this rank was stopped meanwhile
    frozen.since[1] -= 60
    assert frozen.peer(where, 0) is None
    assert proc.poll() is None


def test_the_state_is_read_after_the_command_name():
    """A process may name itself anything (its comm): a name holding ") T " reads as its own state, not T."""
    proc = subprocess.Popen([sys.executable, "-c", "open('/proc/self/comm', 'w').write('a) T (b'); "
                                                   "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 5
        while "a) T (b" not in open(f"/proc/{proc.pid}/stat").read() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not peers._stopped(proc.pid)
        _stopped(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not peers._stopped(proc.pid)  # gone


# one rank of a real 2-rank gloo group in a watched job: rank 1 hangs (sleeps), rank 0 all-reduces
# (on a group made as DeepSpeed makes its own, new_group without a timeout)
GLOO_RANK = """import os, sys, time
import torch, torch.distributed as dist
from collapse_hpc.experiments.lm import distributed
from collapse_hpc.launch import peers
from tests import helpers
rank, _, _ = distributed.init(timeout_s=3)
group = dist.new_group([0, 1])
with peers.watching(sys.argv[1], rank, 2):
    if rank == 1:
        time.sleep(60)
    dist.all_reduce(torch.ones(3), group=group)
"""


def test_a_peer_alive_but_hung_ends_the_group_at_the_collective_timeout_and_is_named(tmp_path):
    """A rank that neither dies nor stops (a deadlock) held its peers in their collective until DeepSpeed's
    30 min timeout (its groups took torch's default, whatever the world group's), and the FAILED line named
    the rank that waited (its RuntimeError), not the hung one."""
    import socket

    from collapse_hpc.machine import free_port

    env = {**os.environ, "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "7", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    ranks = [subprocess.Popen([sys.executable, "-c", GLOO_RANK, str(tmp_path)], text=True, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    started = time.monotonic()
    try:
        (_, err0), (_, err1) = (r.communicate(timeout=50) for r in ranks)
    finally:
        for r in ranks:
            r.kill()
    assert time.monotonic() - started < 40  # not the hung rank's 60 s
    assert ranks[0].returncode == 1 and "Timed out waiting 3000ms" in err0, err0[-2000:]
    assert ranks[1].returncode == peers.STOPPED, err1[-2000:]
    assert ("error: rank 1: rank 0 waited 3 s in a collective for its peers (collective_timeout_s), and this "
            "rank never came (hung); this rank stops too") in err1, err1
    rank, line = peers.culprit(peers.folder(tmp_path, "7"))
    assert rank == 1 and line.startswith(f"rank 1 of 2 (pid {ranks[1].pid} on {socket.gethostname()}) hung: rank 0 "
                                         "waited 3 s in a collective for its peers (collective_timeout_s) and it "
                                         "never came"), line


def test_ranks_that_never_said_they_came_are_named_together(tmp_path):
    """No rank recorded itself hung (those that never came ran on another host, ended by Slurm): the ranks that
    neither waited in the collective nor finished are named, "one of" them where there are several; one that
    was in the collective when a peer's timed out is not among them."""
    where = tmp_path / "ranks"
    peers._record(where, 0, peers.WAITED, "waited 3 s in a collective for its peers (collective_timeout_s)")
    peers._record(where, 1, peers.WAITED, "was in the collective too when rank 0's timed out")
    for rank in (2, 3):
        peers._record(where, rank, "running", pid=2**22 + rank)
    assert peers.culprit(where) == (2, "one of ranks 2, 3 of 4 hung (none of them said it came): rank 0 waited 3 s "
                                       "in a collective for its peers (collective_timeout_s) and it never came (what "
                                       "the unit finished stays: the same command resumes it)")


def test_a_rank_told_to_stop_records_why(tmp_path, monkeypatch):
    """A rank that stops as Slurm ends its job (scancel, a requeue) left its record 'running': status named
    it 'killed (a signal, the OOM killer)' under the job's CANCELLED."""
    from collapse_hpc.launch.job import Ending

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    said = "job 77 is ending (Slurm: CANCELLED): the unit stops here (what it finished stays for a resume)"
    with pytest.raises(Ending), peers.watching(tmp_path, 0, 2):
        raise Ending(said)
    assert peers.culprit(peers.folder(tmp_path, "77-r0")) == (0, f"rank 0 of 1 (pid {os.getpid()}) stopped: {said}")


def _launched_rank(monkeypatch, tmp_path, rank: int) -> None:
    """This process as rank `rank` of 2 of a launch outside a job, its records under tmp_path."""
    for name in ("SUBMITIT_EXECUTOR", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(peers.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(peers, "CAUSE_WAIT_S", 0.1)


def test_a_launched_rank_whose_peer_closed_the_connection_says_so_in_one_line(monkeypatch, tmp_path):
    """No record of the host explains it (the peer ran on another host): said without gloo's text."""
    _launched_rank(monkeypatch, tmp_path, 1)
    with pytest.raises(peers.PeerStopped) as stopped, peers.launched_ranks():
        raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.3]:36278. ...")
    assert str(stopped.value) == ("rank 1: a peer rank stopped (its connection closed): see its log for why; "
                                  "this rank stops too")
    assert stopped.value.exit_code == peers.STOPPED


def test_a_launched_rank_keeps_its_own_error_and_leaves_no_record_once_done(monkeypatch, tmp_path):
    _launched_rank(monkeypatch, tmp_path, 0)
    with pytest.raises(ValueError), peers.launched_ranks():
        raise ValueError("its own")
    with peers.launched_ranks():
        pass
    assert not list(tmp_path.rglob("*.json"))


def test_a_rank_records_itself_while_another_launchs_records_come_and_go(tmp_path, monkeypatch):
    """A rank records its state in its job's folder (logs/ranks/<job>) while a local launcher tidies another job's
    records, and logs/ranks with them once empty: mkdir made logs/ranks, then failed on the job's folder in it as
    it went, and the rank's record was lost (its end then named by none). The other job comes and goes here in a
    loop, in another process; this one's record and folders are removed each time too, as a launcher does."""
    where = peers.folder(tmp_path, "8")
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the race is in making the folder: more tries meet it
    with helpers.churning(tmp_path, "logs/ranks/7"):
        deadline = time.time() + 3
        while time.time() < deadline:
            peers._write(where, 0, "running")  # failed within a few hundred records, or so
            peers._remove(where)
            for folder in (where.parent, where.parent.parent):
                with contextlib.suppress(OSError):  # the other launch's in it, or gone
                    folder.rmdir()
