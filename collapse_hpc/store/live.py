"""Listing the folders of a live run: other processes make and remove what is listed meanwhile (a unit's
temporaries and scratch, the register .units as its last unit leaves, a local job's rank records as the launcher
tidies them, a redo's reset of a unit). Path.glob and Path.rglob look at a folder, then list it, and raised
FileNotFoundError where it went in between ("error: RUN/.units: No such file or directory"): here what is gone
meanwhile is simply not listed. Making a folder there meets the same: Path.mkdir(parents=True, exist_ok=True) made a
parent, then failed on the folder in it as another process removed that parent, empty, meanwhile (a unit refusing
beside, the register's last unit out), or found it there, then gone: here it is made again.

A run folder removed by hand while its units run (rm -rf RUN) is not made again by their writes (made): each
mkdir(parents=True) on the way made an orphan skeleton (RUN/.units, a unit's folder, jobs.json) that read as a run.

API: listing(folder), files_below(folder), folders_made(folder, then), not_yet_made(folder, below),
remove_made(made), at_work(root), made(folder), removed(root).
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Callable, Iterator

from collapse_hpc.errors import UserError

GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # a file removed meanwhile, or a link to nothing (Path.is_file's)
# each a fresh race lost, a few microseconds: a remover in a tight loop (a launcher tidying many jobs' records) can win
# several in a row; a file in the way fails them all alike (FileExistsError), at once
TRIES = 200
_AT_WORK: dict[Path, object] = {}  # the run folders this process works in (at_work): their identity then
UNKNOWN = object()  # a run folder's identity not read (stat failed, not as on one gone): not judged removed


class RunRemoved(UserError):
    """The run folder a process works in was removed (or replaced) meanwhile: nothing is written there again.
    `doing`: what worked in it; `then`: what that means of what it had not done."""

    def __init__(self, root: Path, doing: str = "the run was working in it", then: str = (
            "its units stop and nothing of it is made again there (run the config again for a new run)")):
        super().__init__(f"{root}: the run folder was removed while {doing}; {then}")


def _identity(folder: Path) -> object:
    """`folder`'s device and inode; None where it is gone, UNKNOWN where stat failed otherwise: a shared file
    system's hiccup (EIO, a soft mount's timeout) or a folder above made unsearchable is no removal."""
    try:
        st = os.stat(folder)
    except OSError as e:
        return None if e.errno in (*GONE, errno.ESTALE) else UNKNOWN  # ESTALE: removed by another NFS client
    return f"{st.st_dev}:{st.st_ino}"


@contextlib.contextmanager
def at_work(root: Path) -> Iterator[None]:
    """While the block runs, the run folder `root` is never made again once removed (made, removed)."""
    root = Path(root).absolute()
    before = _AT_WORK.get(root, ...)
    _AT_WORK[root] = _identity(root) if before is ... else before
    try:
        yield
    finally:
        if before is ...:
            _AT_WORK.pop(root, None)


def removed(root: Path) -> bool:
    """Whether the run folder `root`, worked in (at_work), is gone or another folder since."""
    root = Path(root).absolute()
    then = _AT_WORK.get(root, UNKNOWN)
    return then is not UNKNOWN and (now := _identity(root)) is not UNKNOWN and now != then


def made(folder: Path) -> None:
    """folder.mkdir(parents=True, exist_ok=True), except inside a run folder worked in (at_work) and removed since:
    RunRemoved, the run folder itself never made again; below it, each folder is made in the one above, which
    must be there."""
    folder = Path(folder)
    root = next((r for r in list(_AT_WORK) if r == folder.absolute() or r in folder.absolute().parents), None)
    if root is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    if removed(root):
        raise RunRemoved(root)
    for part in reversed([p for p in (folder.absolute(), *folder.absolute().parents) if root in p.parents]):
        try:
            part.mkdir(exist_ok=True)
        except FileNotFoundError:
            if removed(root):
                raise RunRemoved(root) from None
            raise


def listing(folder: Path) -> list[Path]:
    """The entries of `folder`, sorted; none where it is gone or is no folder."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(folder) / e.name for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def files_below(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """Every plain file under `folder` (a link to one too; a linked folder is not entered) with its stat, sorted; a
    file or folder removed while it is walked is left out."""
    out = []
    for here, _, names in os.walk(folder):  # passes over a folder gone before it is listed (onerror=None)
        for name in names:
            path = Path(here) / name
            try:
                st = path.stat()
            except OSError as e:
                if e.errno in GONE:
                    continue
                raise
            if stat.S_ISREG(st.st_mode):
                out.append((path, st))
    return sorted(out, key=lambda found: found[0])


def folders_made(folder: Path, then: Callable[[], object] = lambda: None) -> None:
    """Make `folder` and its parents where missing, then `then()` (a file written in it): both again where a folder
    on the way went meanwhile (FileNotFoundError; FileExistsError from mkdir found it, then not), up to TRIES times."""
    for _ in range(TRIES - 1):
        with contextlib.suppress(FileNotFoundError, FileExistsError):
            _in(Path(folder), then)
            return
    _in(Path(folder), then)


def _in(folder: Path, then: Callable[[], object]) -> None:
    made(folder)
    then()


def not_yet_made(folder: Path, below: Path | None = None) -> list[Path]:
    """`folder` and its parents (those inside `below` alone, where given) that do not exist yet, innermost first:
    what making it makes, for remove_made to take back."""
    return [p for p in (folder, *folder.parents) if (below is None or below in p.parents) and not p.exists()]


def remove_made(made: list[Path]) -> None:
    """Remove the folders `made` (not_yet_made, innermost first) that are empty: one gone meanwhile (another process
    took back the same) is passed, one not empty (another's made in it meanwhile) kept with those above it."""
    for folder in made:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break
