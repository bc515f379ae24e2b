"""A write the file system refused: a full disk (ENOSPC), a used-up quota (EDQUOT), a read-only
mount (EROFS, also a scratch disk remounted so after an error) or a file past the process's file-size
limit (EFBIG: `ulimit -f`, which a Slurm job inherits from the submitting shell). Said as such, with the file system
and what to do, in the one error line: scratch filling up mid-run is an everyday event on a
cluster, and the run goes on from its finished units once there is room again."""
from __future__ import annotations

import enum
import errno
import os
import re
from pathlib import Path
from typing import overload

from collapse_hpc.errors import RERUN, said_errno
from collapse_hpc.store.live import files_below

REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
AGAIN = f"then {RERUN}"
KEPT = " (finished units are kept)"  # said of a run: it goes on from them
FULL_BELOW = 1 << 20  # bytes free under which a file system reads as full to state()


def refused(e: BaseException) -> int | None:
    """ENOSPC, EDQUOT, EROFS or EFBIG where `e` is, or says it comes from, such a refusal; else None."""
    number = said_errno(e)
    return number if number in REFUSED else None


def refused_in_words(text: str) -> int | None:
    """The refusal a line of explain()'s names in its words ('<file>: No space left on device: …'): a unit's
    rank that ends on such an error writes that line alone to its log, no errno for refused() to read."""
    return next((n for n in REFUSED if re.search(rf"(?:^|: ){re.escape(os.strerror(n))}: ", text, re.M)), None)


@overload
def named(e: OSError, path: str | os.PathLike | None) -> OSError: ...
@overload
def named(e: BaseException, path: str | os.PathLike | None) -> BaseException: ...


def named(e: BaseException, path: str | os.PathLike | None) -> BaseException:
    """`e` as an OSError naming `path` (None: the file `e` names, if any) where it is a refusal of the
    file system, worded plainly, not in a library's words, or an OSError naming no file (a write
    names none); else `e` itself."""
    number = refused(e)
    if number is not None:
        return OSError(number, os.strerror(number), getattr(e, "filename", None) if path is None else str(path))
    if isinstance(e, OSError) and e.filename is None and path is not None:
        return OSError(e.errno, e.strerror or str(e), str(path))
    return e


def explain(e: OSError) -> str:
    """'<file>: <strerror>: <what it means here>; <what to do>' for a refusal (refused(e))."""
    where = e.filename
    strerror = os.strerror(e.errno) if e.errno is not None else str(e)
    if where is None:
        return f"{strerror}: a file system this command writes to refused the write; free space, {AGAIN}"
    mount = mount_point(where)
    if e.errno == errno.EDQUOT:
        what = (f"your disk quota on {mount} is used up (`quota -s`, or `lfs quota -u $USER {mount}` on Lustre, "
                f"shows it); free space there or write elsewhere")
    elif e.errno == errno.EFBIG:
        what = (f"it would be larger than {_file_limit()} or than the file system at {mount} takes; "
                f"raise the limit (`ulimit -f unlimited`; a Slurm job inherits the submitting shell's) or write "
                f"elsewhere")
    elif e.errno == errno.EROFS:
        what = (f"{mount} is mounted read-only (or was remounted so after a disk error); write elsewhere, or "
                f"wait until it is writable again")
    else:
        # usage now: the command's temporaries, the failed write's among them, are gone by the time it is said
        what = (f"the file system at {mount} has no room left for it ({usage(mount)} now); free space there or "
                f"write elsewhere")
    return f"{where}: {strerror}: {what}, {AGAIN}"


def _file_limit() -> str:
    """This process's file-size limit, as `ulimit -f` sets it."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "this process may write (no file-size limit)" if soft == resource.RLIM_INFINITY else \
        f"the file-size limit of this process ({size(soft)}, `ulimit -f`)"


def state(folder: str | os.PathLike) -> str:
    """What the file system of `folder` is like now, for a write that failed without a word (a unit
    whose result could not be written): read-only, full, or how much it has left."""
    mount = mount_point(folder)
    try:
        st = os.statvfs(mount)
    except OSError:
        return f"the file system at {mount} refused it"
    if st.f_flag & os.ST_RDONLY:
        return f"{mount} is mounted read-only"
    if st.f_bavail * st.f_frsize < FULL_BELOW:
        return f"the file system at {mount} is full ({usage(mount)})"
    return f"the file system at {mount} refused it (a full disk since freed, or a quota: {usage(mount)} now)"


def short_of_room(folder: str | os.PathLike, need: float) -> str | None:
    """Where `need` bytes are more than the file system of `folder` (made or not) has free now: the two,
    said as a clause; else None. Bytes already under `folder` count as written (a resumed run)."""
    here = nearest_folder(folder)
    try:
        st = os.statvfs(here)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if need <= free:  # the common case: the run folder is not walked
        return None
    written = sum(st.st_size for _, st in files_below(Path(folder)))  # a live run's: its units write meanwhile
    if need - written <= free:
        return None
    return f"about {size(need - written)} still to write, more than the {usage(here)} at {mount_point(here)}"


def nearest_folder(path: str | os.PathLike) -> Path:
    """`path` where it is a folder, else the nearest folder above it that exists (as given: a relative
    path stays relative, "." at the top): where a path not made yet would be made."""
    here = Path(path)
    while not here.is_dir() and here != here.parent:
        here = here.parent
    return here


def not_a_folder(path: str | os.PathLike) -> str | None:
    """Why no folder can be made at `path`: the first part of it that is there but is no folder (a file, or a
    symbolic link to nothing), said so; None where none is. mkdir's own word was a bare 'File exists'."""
    path = Path(path)
    for part in [*reversed(path.parents), path]:
        if part.is_dir():
            continue
        if part.is_symlink():
            what = "no folder" if part.exists() else "not there"
            return f"{part}: a symbolic link to {os.readlink(part)}, which is {what}"
        return f"{part}: a file, not a folder" if part.exists() else None
    return None


def writable(folder: str | os.PathLike) -> bool:
    """Whether this user may make files in `folder` (root too is refused by a read-only mount or chattr +i)."""
    return os.access(folder, os.W_OK | os.X_OK)


class Unwritable(enum.Enum):
    """Why no file can be made in a folder: its mount is read-only (no owner can change that), or this
    user lacks the permission (a colleague's folder). Each caller words it for its own line."""

    READ_ONLY = "read-only mount"
    PERMISSION = "no permission"


def unwritable(folder: str | os.PathLike) -> Unwritable | None:
    """Why no file can be made in `folder` (Unwritable); None where it is writable."""
    if writable(folder):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return Unwritable.READ_ONLY if read_only else Unwritable.PERMISSION


def not_writable(folder: str | os.PathLike) -> str | None:
    """Why this user can make (or remove) no file in `folder`, as a line's start naming it; None where one can."""
    why = unwritable(folder)
    if why is None:
        return None
    if why is Unwritable.READ_ONLY:  # no owner's permission to ask for
        return f"{folder}: on a read-only file system (mounted read-only at {mount_point(folder)})"
    return f"{folder}: not writable by you (no permission to make or remove files in it)"


MOUNTINFO = Path("/proc/self/mountinfo")


def mounts(mountinfo: str | os.PathLike = MOUNTINFO) -> list[str]:
    """Every mount point the kernel lists (field 5 of mountinfo, its octal escapes undone); [] where
    there is no such file."""
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return []
    return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
            for line in lines if line.count(" ") >= 4]


def mount_point(path: str | os.PathLike, mountinfo: str | os.PathLike = MOUNTINFO) -> Path:
    """The mount point of the file system `path` is (or would be) on: the innermost the kernel lists,
    as a bind mount (a container's `--bind src:dst:ro`) shares its device with the mount above it, so
    os.path.ismount does not see it (its read-only flag is its own); else the nearest ismount."""
    here = nearest_folder(os.path.abspath(path))
    real = os.path.realpath(here)
    listed = [m for m in mounts(mountinfo) if real == m or real.startswith(m.rstrip("/") + "/")]
    if listed:
        return Path(max(listed, key=len))
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def usage(path: str | os.PathLike) -> str:
    """'12 KiB free of 2.0 MiB' (free to this user, of the file system's size)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return "free space unknown"
    return f"{size(st.f_bavail * st.f_frsize)} free of {size(st.f_blocks * st.f_frsize)}"


def size(n: float) -> str:
    """'0 bytes', '12 KiB', '2.0 MiB', '1.5 TiB'."""
    unit = "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit in ("bytes", "KiB") else f"{n:.1f} {unit}"
