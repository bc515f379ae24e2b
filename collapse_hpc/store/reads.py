"""A read the file system refused (permissions, an I/O error, a network mount's stale handle, a file gone
in a race): it says nothing of the file's bytes, so what holds them (a checkpoint, a published model, a
trained classifier) is kept, never set aside nor made again, and the unit stops in one line naming the
file and the error (NotRead); the same command goes on from it once the file reads. Only damaged bytes
(cut short, garbage, a header that lies) are what a caller sets aside or makes again.

API:
- refused_read(e) -> int | None   the errno of such a refusal that `e` is or says; None: it may be the bytes
- NotRead(what, e, then)          the one line: '<what>: not read (<strerror>): <then> once the file reads …'
- refusals(path, what, then, kept, refused)  a block whose refused reads of `path` are NotRead (but for the
                                  errors `kept` names), or the caller's own NotRead that `refused(path, e)` makes
- read_text(path, what, then, kept, refused)  the file's text, read in `refusals`
- sha256(path, what, then, refused)  the file's sha256 (atomic.sha256_file); a refused read NotRead
- safetensors_open(path)          safetensors' safe_open, a refused open said with its errno
- ReadOnce(name)                  .held(): a block within which .get(key, read) reads each key once

refused_read, NotRead and refusals live on the lowest floor (errors), for the config below the store to say a
refused read of a config file as the store does; they are given here with the readers.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Hashable
from pathlib import Path

from collapse_hpc.errors import AGAIN, NotRead, refusals, refused_read
from collapse_hpc.store.atomic import sha256_file

__all__ = ["AGAIN", "NotRead", "refused_read", "refusals", "read_text", "sha256", "safetensors_open", "ReadOnce"]


def read_text(path: Path, what: str = "", then: str = "", kept: tuple[type[OSError], ...] = (),
              refused: Callable[[Path, OSError], NotRead] | None = None) -> str:
    """`path`'s text; a read the file system refuses is NotRead (refusals)."""
    with refusals(path, what, then, kept, refused):
        return Path(path).read_text()


def sha256(path: Path, what: str = "", then: str = "",
           refused: Callable[[Path, OSError], NotRead] | None = None) -> str:
    """`path`'s sha256; a read the file system refuses is NotRead naming it as `what` (or the caller's own,
    refusals): a hash it could not take says nothing of the bytes, so what holds them is kept, never judged
    changed."""
    with refusals(path, what, then, refused=refused):
        return sha256_file(path)


def safetensors_open(path: Path, framework: str = "pt"):
    """safetensors' safe_open of `path`, the file opened here first: safetensors says any open it is refused
    "No such file or directory" (a FileNotFoundError without an errno); this names the refusal it was."""
    from safetensors import safe_open

    with open(path, "rb"):
        pass
    return safe_open(str(path), framework=framework)


class ReadOnce:
    """Files read once within a block (held) of a process that only reads them, and the same value handed out
    again to each that asks (get): one written within would be read as it was."""

    def __init__(self, name: str):
        self._read: contextvars.ContextVar[dict | None] = contextvars.ContextVar(name, default=None)

    @contextlib.contextmanager
    def held(self):
        token = self._read.set({} if self._read.get() is None else self._read.get())  # nested: the outer's reads
        try:
            yield
        finally:
            self._read.reset(token)

    def get(self, key: Hashable, read: Callable[[], object]):
        """What `read` returns, read once a `key` (a file's path as given) within held; outside it, each time."""
        done = self._read.get()
        if done is None:
            return read()
        if key not in done:
            done[key] = read()
        return done[key]
