"""A run-level lock: one launcher drives a run at a time; a dead owner's lock is taken over."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import shlex
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from collapse_hpc.errors import UserError
from collapse_hpc.store import atomic, space
from collapse_hpc.store.live import folders_made, listing
from collapse_hpc.store.reads import NotRead, read_text

SLURM_HELD = "slurm job"  # a worker file's text: the unit runs in this Slurm job
FOLDER = "folder"  # or the run folder it works in (folder_id): a copy's registrations are not its units
WORKERS = ".units"  # beside the lock: one file <host>-<pid> per running unit process (empty, or SLURM_HELD)
ABANDONED_S = 60  # a lock is written microseconds after it is created; leaves room for clock skew
ORPHANS_STOP_S = 30  # a killed launcher's unit processes stop at their next check (within a sampling chunk)
KEPT = "the run and its lock are kept as they are (not taken over)"  # a lock's or unit's record read refused


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """An exclusive flock on `path` (created) while the block runs; yields False, unlocked, on a
    file system without flock (some NFS and Lustre mounts refuse it). For work that is safe
    without it (deterministic results written atomically): a race then only repeats the work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(_lock_file(path), "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock_file(path: Path) -> int:
    """The lock file `path` opened for flock, made where missing. The users of a host share a lock (a run folder's,
    host_lock's in the temporary folder): to all but its maker it is another user's file, which flock needs only to
    read. One that exists is opened without O_CREAT: a sticky folder (/tmp) refuses that on another user's file
    (fs.protected_regular)."""
    for _ in range(3):
        try:
            return _opened(path)
        except FileNotFoundError:
            pass
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process: opened as theirs
            return _made(path)
    return _opened(path)


def _opened(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR)  # flock over NFS locks only a file open for writing
    except PermissionError:  # another user's
        return os.open(path, os.O_RDONLY)


def _made(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    with contextlib.suppress(OSError):  # readable by the host's other users whatever this one's umask (077)
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o444)
    return fd


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive flock on a folder itself (its nearest existing ancestor when it does not exist
    yet): serialises writers of a shared folder without writing a file into it. Yields False,
    unlocked, where the file system has no flock (as file_lock)."""
    fd = os.open(space.nearest_folder(Path(folder).absolute()), os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            locked = False
        else:
            locked = True
        yield locked
    finally:
        os.close(fd)  # releases the flock


def data_lock(data_dir: Path):
    """The lock of a data folder (data/) that every preparation of a data set in it holds: on the
    folder's parent, as data/ itself may not exist yet and a refused preparation must not create it.
    Yields whether it is held (folder_lock)."""
    return folder_lock(Path(data_dir).absolute().parent)


@contextlib.contextmanager
def host_lock(path: Path) -> Iterator[None]:
    """file_lock, and where the file system has no flock the same lock in this host's temporary
    folder instead (keyed by the path): mutual exclusion between the processes of one host, whichever
    user's (the file made by the first is opened by the others: _lock_file)."""
    with file_lock(path) as locked:
        if locked:
            yield
            return
    key = hashlib.sha256(str(Path(path).absolute()).encode()).hexdigest()[:16]
    with file_lock(Path(tempfile.gettempdir()) / f"collapse-hpc-{key}.lock") as locked:
        if not locked:
            raise UserError(f"cannot lock {path} nor a file in {tempfile.gettempdir()}: no flock there")
        yield


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host is running (an unreaped zombie is not)."""
    try:
        os.kill(pid, 0)
    except OverflowError:  # a hand-edited record's pid past any process's
        return False
    except OSError as e:
        return e.errno == errno.EPERM
    try:  # an exited child nobody reaped (a container's pid 1 may not) is no owner
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid(owner: dict) -> int:
    try:
        return int(owner.get("pid", -1))
    except (TypeError, ValueError):  # hand-edited: read as a missing pid (never taken over)
        return -1


def folder_id(folder: Path) -> str | None:
    """The run folder's identity (device and inode): the same through a rename or another path to it,
    another for a copy, whose lock and unit registrations name the original's live processes."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def _registration(folder: Path) -> str:
    """A local unit's registration text in the run folder `folder` (FOLDER and its folder_id)."""
    return f"{FOLDER} {folder_id(folder)}"


def _of_a_copy(record: dict, folder: Path) -> bool:
    """Whether a lock record of this host was copied from another run folder. Another host's is never
    judged (a shared file system's device number differs from host to host), nor a record without a
    folder (an older version's)."""
    made_in = record.get("folder")
    return (record.get("host") == socket.gethostname() and isinstance(made_in, str)
            and made_in != folder_id(folder))


def held_by(owner: dict, path: Path) -> str:
    """The refusal of a run whose lock at `path` a live `owner` holds: who (its command, where the lock
    records one: an older version's does not) and what to do about it."""
    pid, host, command = owner.get("pid"), owner.get("host"), owner.get("command")
    if not isinstance(command, str):
        return f"run is locked by pid {pid} on {host} ({path}); wait for it, or remove the file if that process is gone"
    # only a process of this host is judged alive or dead (the lock of a dead one is taken over)
    there, gone = ("", "") if host == socket.gethostname() else (
        f" on {host}", f"; if pid {pid} is gone from {host}, remove the file")
    held = f"run is locked by pid {pid} on {host}, collapse-hpc {command} ({path})"
    if owner.get("launcher"):  # cancel stops a launcher of its own host only (launcher_pid)
        return (f"{held}, a launcher running its units: wait for it to end, or stop it{there}: collapse-hpc cancel "
                f"{shlex.quote(str(Path(path).parent))}{gone}")
    return f"{held}, which holds it {HOLDS.get(command, HOLDS[None])}{gone}"


# how long a holder that runs no units holds the run, by its command (held_by): else while it queues or cancels
HOLDS = {None: "only while it queues or cancels Slurm jobs: wait a moment and try again",
         "aggregate": "while it reads the run for a report: wait for it to end and try again"}


class RunLock:
    """O_EXCL lock file holding {pid, host, started, command, launcher}. Stale = same host and the pid is gone.

    Re-entrant per object: the CLI takes the lock before it opens the run folder, and a back-end
    given the same store (slurm's submit) takes it again inside; only the outermost release frees it.
    `command` (run, submit, cancel, an experiment's name) and `launcher` (whether it runs units here,
    which `collapse-hpc cancel` stops) are recorded for the refusal of another process (held_by).
    """

    def __init__(self, path: Path, log=print, wait_s: float = 0, command: str | None = None, launcher: bool = False,
                 reads: bool = False):
        self.path = Path(path)
        self.log = log
        self.wait_s = wait_s  # how long a dead owner's unit processes are waited for (else refused at once)
        self.command, self.launcher = command, launcher
        self.reads = reads  # a reader's (reading): a cancel may run beside it (beside_reader)
        self.held = False
        self.depth = 0

    def acquire(self) -> "RunLock":
        if self.held:
            self.depth += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = self._record()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._judge(me["host"])  # returns where the lock may be free now: look again
                continue
            except PermissionError:  # a colleague's run, or one made read-only: said so, not "Permission denied"
                said = space.not_writable(self.path.parent)
                if said is None:
                    raise
                raise UserError(f"{said}, so its run lock {self.path.name} cannot be made; give yourself write "
                                f"permission there, or work in a copy you may write to (cp -r); nothing was "
                                f"written") from None
            self._write(fd, me)
            self._refuse_beside()
            self._drop_dead_workers()
            self.held, self.depth = True, 1
            return self
        raise UserError(self._unread())

    def _unread(self) -> str:
        """The refusal of a lock file with no owner record (its content is the only evidence of one: no process
        holds it otherwise): empty, or not a record, and not yet unchanged long enough to be judged stale."""
        try:
            what = "empty" if self.path.stat().st_size == 0 else "not a lock record"
            left = max(1, math.ceil(ABANDONED_S - (time.time() - self.path.stat().st_mtime)))
        except OSError:  # gone or changed meanwhile: another process is taking the run
            return f"could not take the run lock {self.path}: another process is taking it; try again"
        return (f"could not take the run lock {self.path}: it is {what}, as a launcher killed while making it "
                f"leaves it (one starting now writes it at once); it is taken over as stale once unchanged for "
                f"{ABANDONED_S} s, in {left} s: run the command again then, or remove the file now if no "
                f"collapse-hpc command works on this run")

    def _record(self) -> dict:
        """What the lock file says of its holder (held_by reads it in another process's refusal)."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "folder": folder_id(self.path.parent)}
        if self.command:
            me.update(command=self.command, launcher=self.launcher)
        if self.reads:
            me["reads"] = True
        return me

    def _judge(self, host: str) -> None:
        """The lock file another made: taken over where it is abandoned, a copy's or a dead owner's of this
        `host`; UserError where its owner holds the run (or a dead one's unit processes still write)."""
        owner = self.owner()
        if owner is None:  # being written or unreadable: look again
            if self._abandoned() and self._take_over(None):
                self.log(f"took over stale lock {self.path}, empty or not a lock record (unchanged for over "
                         f"{ABANDONED_S} s: its maker was killed while making it)")
            else:
                time.sleep(0.2)
            return
        if _of_a_copy(owner, self.path.parent):  # its owner runs the original, never this copy
            if self._take_over(owner):
                self.log(f"took over lock {self.path}: copied with the folder from the run of pid {owner.get('pid')}")
            return
        if owner.get("host") != host or pid_alive(_pid(owner)):
            raise UserError(held_by(owner, self.path))
        self._take_over_dead(owner)

    def _take_over_dead(self, owner: dict) -> None:
        """The lock of a dead owner of this host: taken over once its unit processes ended (waited for up to
        wait_s); UserError while they still run."""
        helpers = self._helpers(owner)
        if helpers:
            helpers = self._outlive(owner, helpers)
        if helpers:  # a launcher killed alone leaves its unit processes writing into the run
            raise UserError(f"run is locked by dead pid {owner.get('pid')}, whose unit processes "
                            f"{', '.join(map(str, helpers))} still run ({self.path}); wait for them or kill them")
        if self._take_over(owner):
            self.log(f"took over stale lock {self.path} of dead process {owner.get('pid')}")

    def _write(self, fd: int, me: dict) -> None:
        """Write the new lock file's record; on failure (a full disk) removed, since left empty it would
        refuse every run for ABANDONED_S."""
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as e:
            self.path.unlink(missing_ok=True)
            raise OSError(e.errno, e.strerror, str(self.path)) from e

    def _refuse_beside(self) -> None:
        """Give the new lock up (raised) where it is not the run's after all (_others), or where a record it
        reads for that is refused: the lock made is not left behind."""
        try:
            refused = self._others()
        except NotRead as e:
            refused = e
        if refused is not None:
            self.path.unlink(missing_ok=True)
            raise refused

    def _others(self) -> UserError | None:
        """Why the lock just made is not the run's after all: unit processes still write without a launcher, or
        a cancel runs beside a reader; None where neither."""
        orphans = self.workers()
        if orphans:  # no launcher holds the run (its lock removed by hand), but its units still write
            return UserError(f"run has unit processes {', '.join(map(str, orphans))} still running without "
                             f"a launcher ({self.path.with_name(WORKERS)}); wait for them or kill them")
        guest = None if self.reads else _guest(self.path)  # a cancel begun beside a reader that is gone since
        return None if guest is None else UserError(held_by(guest, guest_path(self.path)))

    def _helpers(self, owner: dict) -> list[int]:
        """The live unit processes of the lock's owner: those it named, and those registered in the run."""
        helpers = [h for h in owner.get("helpers") or [] if isinstance(h, int) and pid_alive(h)]
        return helpers + [h for h in self.workers() if h not in helpers]

    def _outlive(self, owner: dict, helpers: list[int]) -> list[int]:
        """Wait up to wait_s for the unit processes of a dead owner to end: they stop on their own once
        they see their launcher gone (job.py), at their next check. Those still running then."""
        if self.wait_s <= 0:
            return helpers
        self.log(f"run is locked by dead pid {owner.get('pid')}, whose unit processes {', '.join(map(str, helpers))} "
                 f"are stopping; waiting up to {self.wait_s:g} s for them")
        deadline = time.time() + self.wait_s
        while helpers and time.time() < deadline:
            time.sleep(0.2)
            helpers = self._helpers(owner)
        return helpers

    def _take_over(self, judged: dict | None) -> bool:
        """Remove the lock judged stale (judged: its owner record; None: unreadable and abandoned),
        only if it is still that lock. Takers of a stale lock all run on its owner's host (only there
        can its pid be judged dead), so a host-local flock serialises them: without it two takers
        could both judge it stale, one remove it and create its own, and the other remove that one.
        The caller then creates the lock with O_EXCL as usual; whoever loses that sees a live owner."""
        with host_lock(self.path.with_name(self.path.name + ".takeover")):
            current = self.owner()
            still = current == judged if judged is not None else (
                current is None and self.path.exists() and self._abandoned())
            if still:
                self.path.unlink(missing_ok=True)
            return still

    def record_helpers(self, pids: list[int]) -> None:
        """Name the processes working for the holder (local unit jobs) in the lock: while any of
        them lives the lock is not stale, even if the holder itself was killed."""
        owner = self.owner()
        if not self.held or not owner or owner.get("pid") != os.getpid():
            return
        owner["helpers"] = sorted(pids)
        atomic.write_json(self.path, owner)

    def _registered(self) -> list[tuple[Path, int]]:
        """(registration, pid) of this host's unit processes registered in the run (working()),
        but those of Slurm jobs, which Slurm holds."""
        host, out, ours = socket.gethostname(), [], _registration(self.path.parent)
        for p in _register(self.path.parent):
            name, _, pid = p.name.rpartition("-")
            if name == host and pid.isdigit() and _text(p) in ("", ours):  # not Slurm's, nor a copy's
                out.append((p, int(pid)))
        return out

    def workers(self) -> list[int]:
        """The live unit processes of this host that registered in the run (working()), whoever
        launched them: a killed launcher's orphans still hold the run."""
        return [pid for _, pid in self._registered() if pid != os.getpid() and pid_alive(pid)]

    def _drop_dead_workers(self) -> None:
        """Registrations of this host's unit processes that were killed outright (SIGKILL cannot
        unregister): left, they stay for good, and a reused pid would read as a running unit."""
        ours = _registration(self.path.parent)
        for p, pid in self._registered():
            if not pid_alive(pid):
                p.unlink(missing_ok=True)
        for p in _register(self.path.parent, f"{socket.gethostname()}-"):  # copied with the folder
            text = _text(p)
            if text is not None and text.startswith(FOLDER) and text != ours:
                p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # empty: gone, as the last unit out leaves it
            self.path.with_name(WORKERS).rmdir()

    def _abandoned(self) -> bool:
        """Unreadable and untouched for a while: its writer died between creating and writing it."""
        try:
            return time.time() - self.path.stat().st_mtime > ABANDONED_S
        except FileNotFoundError:
            return False

    def owner(self) -> dict | None:
        """The lock's owner record; None where there is none or it is being written. A read the file system
        refuses is NotRead: its owner may live, so the lock is neither taken over nor removed."""
        try:
            owner = json.loads(read_text(self.path, "run lock", KEPT, kept=(FileNotFoundError,)))
        except (FileNotFoundError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def release(self) -> None:
        if self.depth > 1:
            self.depth -= 1
            return
        if self.held:
            owner = self.owner()
            if owner and owner.get("pid") == os.getpid():
                try:
                    self.path.unlink(missing_ok=True)
                except OSError:  # remounted read-only: the next launcher takes this dead one's lock over
                    pass
            self.held, self.depth = False, 0

    def __enter__(self):
        return self.acquire()

    def __exit__(self, kind, error, trace):
        if error is None:
            self.release()
            return
        try:
            self.release()
        except (UserError, OSError) as e:  # the block's own error is the one the user is shown
            self.held, self.depth = False, 0
            self.log(f"warning: run lock {self.path} left as it is: {e}")


@contextlib.contextmanager
def reading(folder: Path, command: str, log=print) -> Iterator[None]:
    """The run lock of a command that only reads the run's units (aggregate): the writers' own, so that one
    of them refuses while it reads, naming it, and it refuses while one holds the run. Where this user can
    make no file in the folder (a read-only mount, a colleague's run), or the disk has no room for one, it takes
    none: a live holder's lock still refuses it, else it reads as is."""
    lock = RunLock(Path(folder) / ".lock", log=log, command=command, reads=True)
    if space.unwritable(folder) is None and _taken(lock):
        with contextlib.ExitStack() as held:
            held.push(lock)  # released as a with-block releases it: never in place of the error in flight
            yield
        return
    owner = lock.owner()
    if owner is not None and holds(owner, lock.path.parent):
        raise UserError(held_by(owner, lock.path))
    yield


def _taken(lock: RunLock) -> bool:
    """Whether a reader took `lock`: False where the disk has no room for its few bytes (a full scratch, a used-up
    quota), where it reads the run as from a read-only mount, so that its report may go elsewhere (--out)."""
    try:
        lock.acquire()
    except OSError as e:
        if space.refused(e) in (errno.ENOSPC, errno.EDQUOT):
            return False
        raise
    return True


def guest_path(lock_path: Path) -> Path:
    """Where a cancel beside a reader records itself (beside_reader)."""
    return Path(lock_path).with_name(Path(lock_path).name + ".beside")


def _guest(lock_path: Path) -> dict | None:
    """The record of a cancel running beside a reader, where its process may still run; a dead one's is removed."""
    path = guest_path(lock_path)
    try:
        guest = json.loads(read_text(path, "run lock", KEPT, kept=(FileNotFoundError,)))
    except FileNotFoundError:
        return None
    except ValueError:  # being written, or its writer died in between (then left for ABANDONED_S, as the lock)
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > ABANDONED_S:
                path.unlink()
                return None
        return {"pid": "?", "host": "?", "command": "cancel"}
    if isinstance(guest, dict) and holds(guest, path.parent):
        return guest
    path.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def beside_reader(lock: RunLock) -> Iterator[None]:
    """The run lock for a command that writes nothing a reader reads (cancel: it only ends Slurm jobs, whose
    units record their own end, as they do while aggregate reads anyway): the lock itself, or, while a reader
    (reading) holds it, a record beside it, which a writer that takes the lock once the reader is done
    refuses on while its process runs."""
    while True:
        try:
            lock.acquire()
        except UserError:
            if not _read_by(lock):
                raise
        else:
            with contextlib.ExitStack() as held:
                held.push(lock)  # released as a with-block releases it (__exit__)
                yield
            return
        with _beside(lock) as still_read:
            if still_read:
                yield
                return
        # the reader is done, or a writer holds the lock now: take it as usual


def _read_by(lock: RunLock) -> bool:
    """Whether a reader (reading) that may still run holds the lock."""
    owner = lock.owner()
    return owner is not None and bool(owner.get("reads")) and holds(owner, lock.path.parent)


@contextlib.contextmanager
def _beside(lock: RunLock) -> Iterator[bool]:
    """This process recorded beside the lock while the block runs; yields whether a reader still holds the lock.
    The record is made before the lock is looked at, a writer's lock before it looks for the record (RunLock):
    one of the two sees the other."""
    path = guest_path(lock.path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
          "folder": folder_id(lock.path.parent), "command": lock.command, "launcher": False}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        other = _guest(lock.path)  # a dead one's is removed: the caller tries again
        if other is not None:
            raise UserError(held_by(other, path)) from None
        yield False
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        yield _read_by(lock)
    finally:
        path.unlink(missing_ok=True)


def holds(owner: dict, folder: Path) -> bool:
    """Whether a lock's owner may still hold the run: a live process of this host (not a copy's record), or
    one of another host, which cannot be judged from here."""
    if owner.get("host") != socket.gethostname():
        return True
    return not _of_a_copy(owner, folder) and pid_alive(_pid(owner))


def launcher_pid(lock: RunLock) -> int | None:
    """The pid of the live collapse-hpc process of this host that holds the run's lock, else None
    (no lock, a dead or other-host owner, or a pid reused by another program)."""
    owner = lock.owner()
    if not owner or _of_a_copy(owner, lock.path.parent) or owner.get("launcher") is False:  # aggregate's: no units
        return None
    if owner.get("host") != socket.gethostname():
        raise UserError(f"{lock.path.parent}: run by pid {owner.get('pid')} on {owner.get('host')}; cancel it there")
    pid = _pid(owner)
    if pid <= 0 or not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"collapse" in cmdline else None


def _text(worker: Path) -> str | None:
    """A unit's registration: SLURM_HELD for a unit of a Slurm job (Slurm, not a launcher here, holds
    it, and squeue tells whether it lives: submit skips it, cancel ends it; on a node that is also the
    login host it must not lock those two out), else FOLDER and the run folder's folder_id (empty:
    an older version's). None where it is gone; NotRead where the file system refuses the read (taken for
    gone, its live unit would not hold the run)."""
    try:
        return read_text(worker, "unit registration", KEPT, kept=(FileNotFoundError, IsADirectoryError))
    except OSError:
        return None


def _register(run_root: Path, prefix: str = "") -> list[Path]:
    """The registrations (working()) in the run's register whose names begin with `prefix`, sorted. The last unit
    out removes the register, maybe while it is read (a launcher's Ctrl-C ended in "error: RUN/.units: No such file
    or directory"): gone is empty (listing)."""
    return [p for p in listing(Path(run_root) / WORKERS) if p.name.startswith(prefix)]


def _me(run_root: Path) -> Path:
    return Path(run_root) / WORKERS / f"{socket.gethostname()}-{os.getpid()}"


def unregister(run_root: Path) -> None:
    """Drop this process's registration (working()) now: for a unit process about to end by
    os._exit, which runs no finally block."""
    _me(run_root).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        _me(run_root).parent.rmdir()


@contextlib.contextmanager
def working(run_root: Path) -> Iterator[None]:
    """Register this process as a unit process of the run while the block runs (RunLock.workers):
    recorded by the unit itself, so it holds the run even when its launcher is gone."""
    folder, me = Path(run_root) / WORKERS, _me(run_root)
    # submitit's Slurm job script exports SUBMITIT_EXECUTOR=slurm; its local executor, local
    slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
    text = f"{SLURM_HELD} {os.environ.get('SLURM_JOB_ID', '')}" if slurm else _registration(Path(run_root))
    folders_made(folder, lambda: me.write_text(text))  # another unit, ending, removes the empty register meanwhile
    try:
        yield
    finally:
        me.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the last unit out leaves no empty register behind
            folder.rmdir()
