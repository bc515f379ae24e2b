"""Logging of the collapse_hpc loggers: to stderr, and to RUN/logs/collapse-hpc.log for a run; and
how a count, or a long list, reads in what the commands say (count, first_few, first_listed)."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from collapse_hpc.errors import UserError

_OURS = "_collapse_hpc_handler"


def count(n: int, noun: str) -> str:
    """'1 unit', '2 units', '0 units'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def first_few(items: list[str], most: int, sep: str = " ") -> str:
    """The first `most` of `items` joined by `sep`, and how many more there are: '101 102 103 and 25 more'
    (a line names a few of a submit's thousand job ids, and says they are not all)."""
    shown = first_listed(items, most)
    return " ".join([sep.join(shown[:most]), *shown[most:]])


def first_listed(items: list[str], most: int, more: str = "and {} more") -> list[str]:
    """The first `most` of `items`, and where there are others, one item more saying how many (`more`
    formatted with their count): a list cut unsaid reads as all there is."""
    rest = len(items) - most
    return items[:most] + ([more.format(rest)] if rest > 0 else [])


def for_job() -> None:
    """In a job's process: its stderr is the job's log (unless set up already)."""
    if not logging.getLogger("collapse_hpc").handlers:
        setup()


def setup(verbose: bool = False, run_dir: Path | None = None) -> None:
    """(Re)install our handlers: the stderr of this moment, and the log file of this run.

    Earlier ones are closed first, so one process driving several runs (or tests swapping stderr)
    writes neither to a stale stream nor to an earlier run's log."""
    root = logging.getLogger("collapse_hpc")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for h in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(h)
        h.close()
    handlers = [logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    if run_dir is not None:
        fh = _run_log(Path(run_dir) / "logs" / "collapse-hpc.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
        handlers.append(fh)
    for h in handlers:
        setattr(h, _OURS, True)
        root.addHandler(h)


def _run_log(path: Path) -> "RunLog":
    """The run's log file opened: UserError naming it, and what to do, where it cannot be (a folder in its place,
    no permission), before the command goes on to any unit."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return RunLog(path)
    except IsADirectoryError:
        raise UserError(f"{path}: a folder where the run keeps its log file; move it away, then run the same command "
                        f"again") from None
    except OSError as e:
        raise UserError(f"{path}: the run's log file cannot be written ({e.strerror or e}); make it writable to you "
                        f"(or move it), then run the command again") from None


def last_word(line: str) -> None:
    """A command's end as it prints it (a run's units done, the report's page), and into the run's log, which
    said only how it began."""
    print(line)
    to_run_log(line)


def to_run_log(message: str) -> None:
    """`message` into the run's log file alone: a command's last word, printed on stdout (how many units were
    done), is kept where a run's story is read afterwards."""
    root = logging.getLogger("collapse_hpc")
    record = root.makeRecord(root.name, logging.INFO, __file__, 0, message, (), None)
    for h in root.handlers:
        if isinstance(h, RunLog):
            h.handle(record)


class RunLog(logging.FileHandler):
    """The run's log file. One the disk stops taking (full, a quota, read-only) is dropped with one
    warning: logging's own answer is a traceback on the terminal at every line after it."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        root = logging.getLogger("collapse_hpc")  # a new list: the record is still going through the old one
        root.handlers = [h for h in root.handlers if h is not self]
        try:
            self.close()
        except OSError:  # its buffer cannot be flushed either
            pass
        print(f"warning: {self.baseFilename}: {error.strerror or error}; logging to the terminal only from "
              f"here", file=sys.stderr)


class Held(logging.Handler):
    """The records of a command's checks, held back (held()) and said once it goes ahead (say())."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def say(self) -> None:
        """Each held record, through the handlers installed now (the run's log file too)."""
        records, self.records = self.records, []
        for record in records:
            logging.getLogger(record.name).handle(record)


@contextmanager
def held():
    """Hold back what the collapse_hpc loggers say in the block: a command refused after its checks
    then prints its one error line alone, not the checks' notes (a first numba compile, snapshots
    beyond the run) above it. Whoever goes ahead calls say(); what is never said is dropped."""
    root = logging.getLogger("collapse_hpc")
    ours = [h for h in root.handlers if getattr(h, _OURS, False)]
    notes = Held()
    for h in ours:
        root.removeHandler(h)
    root.addHandler(notes)
    try:
        yield notes
    finally:
        root.removeHandler(notes)
        for h in ours:
            if h not in root.handlers:
                root.addHandler(h)
