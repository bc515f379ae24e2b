"""The one error type users see: a single line, exit status 2, no traceback; and one_line, how any
text from the input (a key, a path, a file name) is printed; and path_argument, every command's path
arguments' type.

A read the file system refused (NotRead, refused_read, refusals) is said here, on the lowest floor, so that
the config, a floor below the store, says it as the store does (store.reads gives them with its readers)."""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path


class UserError(Exception):
    """Bad input (config, file, model, run folder). The CLI prints `error: <message>` and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration problem; the message names the file and the key."""


class NotAFormat(UserError):
    """--from PATH holds no file of a format the experiment it went to reads: `data prepare` adds to the
    line what the other experiments' --from takes (the lm's text formats; the vae's IDX images)."""


def first_line(error: BaseException, limit: int | None = 120) -> str:
    """A library error's first line, at most `limit` characters (None: whole), for a UserError quoting it;
    its type's name where it has no words (torch.load of a file cut short raises a bare EOFError)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def one_line(text) -> str:
    """`text` as one line that shows what it holds: each character Python does not call printable
    written as its escape, as repr writes it. These are what would break the line or drive the terminal
    (a newline, an escape sequence's ESC or CSI, Unicode's line and paragraph separators), reorder or
    hide what is shown (a right-to-left override, a zero-width joiner), pass for a plain space (a
    no-break space) or not print at all (the surrogate an undecodable byte of a file name becomes):
    a message quoting a YAML key "a\\nb" or a path, verify naming a stray file."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def path_argument(text: str) -> str:
    """A path argument (argparse's type=) of every command, `collapse-hpc lm`'s too: an empty one (`--run
    "$RUN"` with RUN unset) was taken as the default run folder, or as the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?); give a path")
    return text


# Rust libraries (safetensors, tokenizers) raise their own types with the OS error in the text only;
# pyarrow's OSError words it in its message too
_SAID = re.compile(r"\(os error (\d+)\)|\[errno (\d+)\]", re.IGNORECASE)
RERUN = "run the same command again"  # how a refusal that may pass ends: a read refused (AGAIN), a full disk (space)
AGAIN = f"once the file reads again (its permissions, the file system): {RERUN}"
# a read that no retry mends: a folder or a file stands where the other goes (made by hand, a stray tool)
MISPLACED = {errno.EISDIR: "a folder where a file goes", errno.ENOTDIR: "a file where a folder goes, on the way to it"}
MOVE_AWAY = f"move it away (nothing the run did not write is deleted), then {RERUN}"


def said_errno(e: BaseException) -> int | None:
    """The errno `e` carries, else the one its text names (a Rust library's "(os error 13)", pyarrow's
    "[Errno 5]"), else ENOENT for a FileNotFoundError without one (safetensors says any refused open so)."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno
    said = _SAID.search(str(e))
    if said:
        return int(said.group(1) or said.group(2))
    return errno.ENOENT if isinstance(e, FileNotFoundError) else None


def refused_read(e: BaseException) -> int | None:
    """The errno where `e` is, or says it comes from, the file system's refusal of a read (EACCES, EIO,
    ENOENT in a race, ESTALE...); None where it has none, or EINVAL (a seek to a garbage offset: the bytes)."""
    number = said_errno(e)
    return None if number in (None, errno.EINVAL) else number


class NotRead(UserError):
    """A file the file system would not read now (refused_read): what it holds is kept. Its filename (`path`,
    else the error's) and strerror, as an OSError's, for a reader that lists it and goes on (verify)."""

    def __init__(self, what: str, e: BaseException, then: str, path: Path | None = None):
        number = refused_read(e)
        self.filename, self.strerror = path or getattr(e, "filename", None), os.strerror(number) if number else str(e)
        shape = MISPLACED.get(number or 0)
        super().__init__(f"{what}: {shape}: {then}; {MOVE_AWAY}" if shape else
                         f"{what}: not read ({self.strerror}): {then} {AGAIN}")


@contextlib.contextmanager
def refusals(path: Path, what: str = "", then: str = "", kept: tuple[type[OSError], ...] = (),
             refused: Callable[[Path, OSError], NotRead] | None = None) -> Iterator[None]:
    """Reads of `path` in its block: one the file system refuses (refused_read) is NotRead naming it as `what`,
    or the caller's own NotRead that `refused(path, e)` makes (a checkpoint's), but for the errors `kept` names
    (FileNotFoundError where the file's absence is the caller's answer), raised as they are."""
    try:
        yield
    except OSError as e:
        if refused_read(e) and not isinstance(e, kept):
            raise (refused(path, e) if refused else NotRead(f"{what} {path}", e, then, path)) from None
        raise
