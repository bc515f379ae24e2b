"""Listing the folders of a live run: other processes make and remove what is listed meanwhile (a unit's
temporaries and scratch, the register .units as its last unit leaves, a local job's rank records as the launcher
tidies them, a redo's reset of a unit). Path.glob and Path.rglob look at a folder, then list it, and raised
FileNotFoundError where it went in between ("error: RUN/.units: No such file or directory"): here what is gone
meanwhile is simply not listed.

API: listing(folder), files_below(folder).
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # a file removed meanwhile, or a link to nothing (Path.is_file's)


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
