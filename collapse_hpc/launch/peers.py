"""The ranks of one unit watch each other on their host.

A rank that dies (SIGKILL, the OOM killer) or fails (a save refused on its disk only) left the
others in their next collective until its timeout (30 min), holding every GPU of the job. Each rank
records itself in RUN/logs/ranks/<job>/<rank>.json (pid, host, state: running, done, failed with
its cause, stopped); a thread of every rank reads its peers' records twice a second, and once a
peer of this host failed or is gone without finishing, says so in one line and ends this rank at
once (a rank blocked in a collective cannot be interrupted otherwise). A peer stopped (SIGSTOP)
and not continued within STOPPED_GRACE_S is ended too, recorded as frozen: the others would wait
for it until the collective's timeout. What the unit finished (checkpoints, shards) stays for the
redo. The launcher reads the records to name the rank and its cause in the unit's FAILED line.
Peers on other hosts are not seen: Slurm ends those.

A peer alive but hung (a deadlock, a wait on a dead file system) shows nothing here: the others wait in
their next collective until its timeout (the process group's, e.g. lm.collective_timeout_s). A rank whose
collective timed out is recorded as having waited. Each peer of this host sees that and ends, first
telling whether it came: its main thread is in torch.distributed (or just left it with an error), so it
waited too; else it is the one that never came, recorded hung. With any number of ranks the FAILED line
names the hung one (its pid and host); where none of a host recorded itself (a peer on another host,
ended by Slurm), it names those that never said they came, "one of" them where there are several.

A launch outside a job (`collapse-hpc lm` by the reference's flags, under torchrun, srun or by hand) records
its ranks the same way, in a folder of this user's in the host's temporary files, unwatched (launched_ranks): a
rank whose collective broke or timed out says in one line the rank that ended or hung (PeerStopped), not gloo's
traceback. The records go once no rank of the launch lives: at the last rank's end, else at a later launch's start,
which also removes this user's ended launches from the one folder all users shared before (collapse-hpc-ranks).

API: watching(run_dir, rank, world_size), launched_ranks(), PeerStopped, culprit(folder),
folder(run_dir, job_id).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.store import atomic
from collapse_hpc.store.live import folders_made
from collapse_hpc.store.lock import pid_alive, unregister

POLL_S = 0.5
CAUSE_WAIT_S = 1.0
STOPPED = 3  # the exit status of a rank ended because a peer ended
KILLED = "was killed (it ended without finishing or an error: a signal, the OOM killer)"
WAITED = "waited"  # the state of a rank whose collective timed out, its peers not all there, or that was in it
HUNG = "hung"  # the state of a rank outside any collective when a peer's timed out: the one that never came
TORCH_DISTRIBUTED = os.path.join("torch", "distributed", "")  # where a rank in a collective waits
# a peer stopped alone this long is a fault, not a pause: every other rank of the unit waits for it
STOPPED_GRACE_S = 60.0
# a poll this late means this rank was stopped too (a whole job suspended and resumed): it starts over
LATE_POLL_S = 5.0


def folder(run_dir: str | Path, job_id: str) -> Path:
    return Path(run_dir) / "logs" / "ranks" / job_id


def _job_id() -> str | None:
    """This job attempt's id: local, the controller's pid (new on every start); Slurm, the job's
    id and its restart count (a requeued attempt must not read the last one's dead ranks)."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return os.environ.get("SUBMITIT_LOCAL_JOB_ID")
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        job = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}" if task else os.environ["SLURM_JOB_ID"]
        return f"{job}-r{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    return None


def _record(where: Path, rank: int, state: str, cause: str = "", pid: int | None = None) -> None:
    with contextlib.suppress(OSError):  # a full disk: the ranks still end (on the collective's timeout)
        _write(where, rank, state, cause, pid)


def _write(where: Path, rank: int, state: str, cause: str = "", pid: int | None = None) -> None:
    record = {"rank": rank, "pid": os.getpid() if pid is None else pid, "host": socket.gethostname(),
              "state": state, "cause": cause}
    # a launch's last rank removes the folder meanwhile (_leave)
    folders_made(where, lambda: atomic.write_json(where / f"{rank}.json", record))


def _records(where: Path) -> list[dict]:
    out = []
    for path in sorted(where.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


def culprit(where: Path, signalled: dict[int, str] | None = None) -> tuple[int, str] | None:
    """The rank that ended the unit, and why, in one line: one that failed (its error), else one
    gone without finishing (killed; by which signal, in words, where `signalled` says). None where the
    records name none."""
    records = [r for r in _records(where) if isinstance(r, dict) and isinstance(r.get("rank"), int)]
    world = len(records)
    for r in records:
        if r.get("state") == "failed":
            return r["rank"], f"rank {r['rank']} of {world} (pid {r.get('pid')}) failed: {r.get('cause')}"
    for r in records:
        if r.get("state") == "frozen":
            return r["rank"], f"rank {r['rank']} of {world} (pid {r.get('pid')}) {r.get('cause')}"
    if hung := _hung(records):
        return hung
    here = socket.gethostname()
    for r in records:
        if r.get("state") == "running" and r.get("host") == here and not pid_alive(int(r.get("pid", -1))):
            return r["rank"], f"rank {r['rank']} of {world} (pid {r.get('pid')}) " \
                + (signalled or {}).get(r["rank"], KILLED)
    for r in records:  # a peer's end that none of the records explains (a peer on another host)
        if r.get("state") == "stopped":
            return r["rank"], f"rank {r['rank']} of {world} (pid {r.get('pid')}) stopped: {r.get('cause')}"
    return None


def _hung(records: list[dict]) -> tuple[int, str] | None:
    """Where a rank's collective timed out: the rank that recorded itself hung (outside any collective then),
    else those that neither said they were in it nor finished (a peer on another host), which the others
    waited for."""
    waited = [r for r in records if r.get("state") == WAITED]
    absent = [r for r in records if r.get("state") == HUNG] or \
        [r for r in records if r.get("state") not in (WAITED, "done")]
    if not waited or not absent:
        return None
    said = next((r for r in waited if str(r.get("cause")).startswith("waited ")), waited[0])
    who = (f"rank {absent[0]['rank']} of {len(records)} (pid {absent[0].get('pid')} on {absent[0].get('host')}) hung"
           if len(absent) == 1 else f"one of ranks {', '.join(str(r['rank']) for r in absent)} of {len(records)} "
                                    f"hung (none of them said it came)")
    return absent[0]["rank"], (f"{who}: rank {said['rank']} {said.get('cause')} and it never came (what the unit "
                               f"finished stays: the same command resumes it)")


def timed_out(e: BaseException) -> str | None:
    """A collective's timeout (gloo's "Timed out waiting 600000ms for recv"), said as what the rank did;
    None for any other error."""
    text = str(e)
    if not isinstance(e, RuntimeError) or "timed out" not in text.lower():
        return None
    found = re.search(r"(\d+)\s*ms", text)
    waited = f"{int(found[1]) / 1000:g} s" if found else "its timeout"
    return f"waited {waited} in a collective for its peers (collective_timeout_s)"


def _lost_peer(where: Path, rank: int, came) -> tuple[str, str] | None:
    """The first peer of this host that ended the unit: (the state this rank records, what happened).
    `came()` tells, once a peer's collective timed out, whether this rank was in it."""
    here = socket.gethostname()
    for r in _records(where):
        if r.get("rank") == rank or r.get("host") != here:
            continue
        if r.get("state") == "failed":
            return "stopped", f"rank {r['rank']} failed: {r.get('cause')}"
        if r.get("state") == "frozen":
            return "stopped", f"rank {r['rank']} (pid {r.get('pid')}) {r.get('cause')}"
        if r.get("state") == WAITED and str(r.get("cause")).startswith("waited "):
            return (WAITED, f"was in the collective too when rank {r['rank']}'s timed out") if came() else \
                (HUNG, f"rank {r['rank']} {r.get('cause')}, and this rank never came (hung)")
        if r.get("state") in ("running", "stopped") and not pid_alive(int(r.get("pid", -1))):
            return "stopped", (f"rank {r['rank']} (pid {r.get('pid')}) {KILLED}" if r["state"] == "running" else
                               f"rank {r['rank']} stopped: {r.get('cause')}")
    return None


def _after_a_peer(where: Path, rank: int) -> tuple[str, str] | None:
    """Whether this rank's error followed a peer's end (gloo's "Connection closed by peer"): the peer is
    the cause. A killed peer's sockets close before its process is seen gone: it is given a moment. An
    error came out of this rank's work: it was not the one hung."""
    deadline = time.monotonic() + CAUSE_WAIT_S
    while (lost := _lost_peer(where, rank, lambda: True)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return lost


def _in_collective() -> bool:
    """Whether this process's main thread is in torch.distributed now (a collective, a barrier)."""
    frame = sys._current_frames().get(threading.main_thread().ident or -1)
    while frame is not None:
        if TORCH_DISTRIBUTED in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _came(finished: threading.Event) -> bool:
    """Whether this rank came to the collective a peer's timed out in: its main thread is in one, or leaves
    the watched block with an error (the collective broke as that peer left) within a moment."""
    deadline = time.monotonic() + CAUSE_WAIT_S
    while not (finished.is_set() or _in_collective()):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stopped(pid: int) -> bool:
    """Whether `pid` is stopped by a signal (state T). A debugger's stop (t) is no fault."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()  # after the command's name, which may hold spaces and ')'
    return bool(fields) and fields[0] == "T"


class _Frozen:
    """Since when each peer of this host has been seen stopped, over this rank's polls."""

    def __init__(self) -> None:
        self.since: dict[int, float] = {}
        self.polled = time.monotonic()

    def peer(self, where: Path, rank: int) -> str | None:
        """A peer stopped for longer than the grace: recorded frozen and ended (SIGKILL, the one signal a
        stopped process takes at once: left stopped, it would hold the unit's end for ever); what
        happened, or None."""
        now = time.monotonic()
        if now - self.polled > POLL_S + LATE_POLL_S:
            self.since.clear()
        self.polled = now
        here = socket.gethostname()
        for r in _records(where):
            if r.get("rank") == rank or r.get("host") != here or r.get("state") != "running":
                continue
            pid = int(r.get("pid", -1))
            if not _stopped(pid):
                self.since.pop(r["rank"], None)
                continue
            held = now - self.since.setdefault(r["rank"], now)
            if held > STOPPED_GRACE_S:
                cause = f"was stopped (SIGSTOP) for {held:.0f} s and not continued: ended by rank {rank}"
                _record(where, r["rank"], "frozen", cause, pid=pid)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                return f"rank {r['rank']} (pid {pid}) {cause}"
        return None


def _watch(run_dir: Path, where: Path, rank: int, finished: threading.Event) -> None:
    frozen = _Frozen()
    while not finished.wait(POLL_S):
        lost = _lost_peer(where, rank, lambda: _came(finished)) or \
            (("stopped", found) if (found := frozen.peer(where, rank)) else None)
        if lost is None or finished.is_set():
            continue
        state, said = lost
        line = f"rank {rank}: {said}; this rank stops too (what the unit finished stays for a resume)"
        _record(where, rank, state, said)
        with contextlib.suppress(OSError):
            unregister(run_dir)
        print(f"error: {line}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(STOPPED)  # the main thread may be blocked in a collective: no exception reaches it


def cause_of(e: BaseException) -> str:
    """An error in one line: bad input (UserError) as its message says it, anything else by its name."""
    from collapse_hpc.errors import UserError

    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text if isinstance(e, UserError) else f"{type(e).__name__}: {text}".rstrip(": ")


@contextlib.contextmanager
def watching(run_dir: str | Path, rank: int, world_size: int):
    """Record this rank and watch its peers while the block runs (a no-op for a single rank or
    outside a submitit job)."""
    job = _job_id()
    if world_size < 2 or job is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    where, finished = folder(run_dir, job), threading.Event()
    _record(where, rank, "running")
    threading.Thread(target=_watch, args=(Path(run_dir), where, rank, finished), name="peer-watch", daemon=True).start()
    with _recorded(where, rank, finished):
        yield


@contextlib.contextmanager
def _recorded(where: Path, rank: int, finished: threading.Event):
    """This rank's end recorded: done, or its error's cause (a peer's end where one explains it)."""
    try:
        yield
    except BaseException as e:
        finished.set()
        if isinstance(e, Exception):  # its own collective's timeout first: it came, and says how long it waited
            waited = timed_out(e)
            lost = None if waited else _after_a_peer(where, rank)
            state, said = (WAITED, waited) if waited else lost or ("failed", cause_of(e))
            _record(where, rank, state, said)
        elif isinstance(e, KeyboardInterrupt):  # told to stop (Slurm ends the job, Ctrl-C): no kill to name
            _record(where, rank, "stopped", str(e) or "interrupted (SIGINT)")
        raise
    finished.set()
    _record(where, rank, "done")


class PeerStopped(UserError):
    """A rank of a launch outside a job that stopped because a peer ended or hung: said in one line."""

    exit_code = STOPPED


def _launch_folder() -> Path | None:
    """Where the ranks of a launch outside a job record themselves: the ranks of one host share their
    launcher (the parent process) and the rendezvous port. None for a single process."""
    port = os.environ.get("MASTER_PORT")
    if int(os.environ.get("WORLD_SIZE") or 1) < 2 or not port or _job_id() is not None:
        return None
    return _launches() / f"{port}-{os.getppid()}"


def _launches() -> Path:
    """This user's folder of launch records in the host's temporary files: one shared by all users was made by the
    first with their umask (0755), and refused the others' records."""
    return Path(tempfile.gettempdir()) / f"collapse-hpc-ranks-{os.getuid()}"


def _private(top: Path) -> None:
    """Make this user's folder of launch records, 0700 (a rank's pid and error are its user's). One of that name made
    by another user is refused (PermissionError): its records could be read or planted by them."""
    top.mkdir(mode=0o700, exist_ok=True)
    st = top.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(errno.EACCES, f"made by uid {st.st_uid}, not this user", str(top))


def _entered(where: Path, rank: int) -> bool:
    """This rank recorded running in its launch's folder, this user's ended launches' folders removed first. False
    where it cannot be, said in a warning line: the rank runs on, and a peer's end is said without naming it."""
    try:
        _private(where.parent)
        _drop_ended(where.parent, where)
        _drop_shared_ended()
        _write(where, rank, "running")
    except OSError as e:
        print(f"warning: rank {rank}: cannot record itself in {e.filename or where} ({e.strerror or e}): a peer's "
              f"end will be said without naming it (TMPDIR sets the folder)", file=sys.stderr, flush=True)
        return False
    return True


def _lives(record) -> bool:
    """Whether a rank's record may name a live process: one of this host that still runs, or one of another host (a
    temporary folder shared over the network), which cannot be judged from here."""
    if not isinstance(record, dict):
        return False
    pid = record.get("pid")
    return record.get("host") != socket.gethostname() or (isinstance(pid, int) and pid > 0 and pid_alive(pid))


def _drop_ended(top: Path, current: Path) -> None:
    """Remove the folders of this user's launches that ended: their launcher (the ranks' parent) is gone and none of
    their ranks lives. A rank killed or hung, or a peer still alive at a failed rank's end, left them for good."""
    with contextlib.suppress(OSError):  # left for the next launch to remove
        for launch in top.iterdir():
            launcher = launch.name.rpartition("-")[2]
            if launch != current and launcher.isdigit() and not pid_alive(int(launcher)) \
                    and not any(map(_lives, _records(launch))):
                _remove(launch)


# the folder every user's launches shared before each user had their own (_launches): no launch writes it now
SHARED = "collapse-hpc-ranks"
OPENED_AS_IS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a link is not followed, a planted pipe not waited on


def _drop_shared_ended() -> None:
    """Remove this user's ended launches (as _drop_ended judges them) from the shared folder, and it once empty and
    this user's. Nothing is said where it cannot be. Entries are opened as they are and judged by their owner then:
    the folder may be writable by another user, who could swap an entry for a link to this user's files."""
    shared = Path(tempfile.gettempdir()) / SHARED
    with contextlib.suppress(OSError):
        top = os.open(shared, OPENED_AS_IS | os.O_DIRECTORY)
        try:
            for launch in os.listdir(top):
                _drop_shared_launch(top, launch)
            if os.fstat(top).st_uid == os.getuid():
                os.rmdir(shared)  # kept while not empty
        finally:
            os.close(top)


def _drop_shared_launch(top: int, name: str) -> None:
    """One launch's folder in the shared folder gone where it is this user's and the launch ended: its records this
    user's (another user's stay, and with them the folder)."""
    launcher = name.rpartition("-")[2]
    with contextlib.suppress(OSError, OverflowError):  # OverflowError: a pid too large for any process (planted)
        if not launcher.isdigit() or pid_alive(int(launcher)):
            return
        launch = os.open(name, OPENED_AS_IS | os.O_DIRECTORY, dir_fd=top)
        try:
            if os.fstat(launch).st_uid != os.getuid() or any(map(_lives, _records_at(launch))):
                return
            for record in _names(launch):
                if os.stat(record, dir_fd=launch, follow_symlinks=False).st_uid == os.getuid():
                    os.unlink(record, dir_fd=launch)
        finally:
            os.close(launch)
        os.rmdir(name, dir_fd=top)


def _names(folder: int) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".json")]


def _records_at(folder: int) -> list:
    """The records in an opened folder, those not read left out (as _records)."""
    out = []
    for name in _names(folder):
        with contextlib.suppress(OSError, ValueError):
            with open(os.open(name, OPENED_AS_IS, dir_fd=folder)) as f:
                out.append(json.load(f))
    return out


def _leave(where: Path, rank: int) -> None:
    """This rank's end: its record goes where it is done (nothing to explain), and the launch's records once no
    other rank of it lives (none is left to read them; one not yet started records itself anew)."""
    with contextlib.suppress(OSError):
        records = _records(where)
        if any(isinstance(r, dict) and r.get("rank") == rank and r.get("state") == "done" for r in records):
            (where / f"{rank}.json").unlink()
        if not any(_lives(r) for r in records if not isinstance(r, dict) or r.get("rank") != rank):
            _remove(where)


def _remove(where: Path) -> None:
    """A launch's records and their folder (kept where a rank is writing a record in it now)."""
    for path in where.glob("*.json"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        where.rmdir()


# what a rank's collective says when a peer's process ended (gloo; NCCL's watchdog says it otherwise)
PEER_GONE = ("connection closed by peer", "connection reset by peer")


@contextlib.contextmanager
def launched_ranks():
    """The block, on a rank of a launch outside a job: its error that a peer's end or hang caused is said in one
    line (PeerStopped, exit status STOPPED) naming that peer where a record of this host does, else saying that
    a peer stopped. Peers are not watched: a peer's end reaches this rank as its collective's error."""
    where = _launch_folder()
    if where is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    rank = int(os.environ.get("RANK") or 0)
    recorded = _entered(where, rank)
    try:
        with _recorded(where, rank, threading.Event()) if recorded else contextlib.nullcontext():
            yield
    except Exception as e:
        said = _peer_line(where if recorded else None, rank, e)
        if said is None:
            raise
        raise PeerStopped(f"rank {rank}: {said}; this rank stops too") from None
    finally:
        if recorded:
            _leave(where, rank)


def _peer_line(where: Path | None, rank: int, e: Exception) -> str | None:
    """What stopped this rank where it was a peer (its record says so), else None."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    records = [r for r in (_records(where) if where else []) if isinstance(r.get("rank"), int) and r["rank"] < world]
    own = next((r for r in records if r["rank"] == rank), {})
    if own.get("state") not in ("stopped", WAITED) and not any(t in str(e).lower() for t in PEER_GONE):
        return None
    if own.get("state") == WAITED:
        found = _hung(records)
        return found[1].split(" (what the unit finished")[0] if found else own.get("cause")
    if own.get("state") == "stopped":
        return str(own.get("cause"))
    return "a peer rank stopped (its connection closed): see its log for why"
