"""The peer watch on real processes: a peer stopped (SIGSTOP) longer than the grace is ended and
named; one continued in time, or stopped together with the watching rank (a suspended job), is not."""
import os
import signal
import subprocess
import sys
import time

import pytest

from collapse_hpc.launch import peers


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
    assert peers._lost_peer(where, 2) == found  # a third rank of the host stops on it


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
