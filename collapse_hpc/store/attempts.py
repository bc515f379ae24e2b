"""A unit's attempts: one killed part-way (kill -9, preemption, a Slurm requeue) and resumed has cost the time of
every attempt, not only the last one's. Each start records itself in the unit folder (ATTEMPTS, written atomically);
the next start reads it before the unit's leftovers go, and counts the attempt before as ending at the last write
it left there, the record's own touched every BEAT_S while it runs and as the attempt stops (scancel, a requeue,
Ctrl-C); a kill (kill -9, the kernel's) leaves no end time: a killed attempt's seconds are a lower bound, short by up
to BEAT_S."""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from collapse_hpc.store.atomic import write_json
from collapse_hpc.store.live import files_below

BEAT_S = 30.0
ATTEMPTS = ".attempts.json"  # an unfinished unit's attempts so far (gone once its manifest is written)


def earlier(unit_dir: Path) -> tuple[int, float]:
    """(the attempts made before this one, their seconds) from the record the last start left; none: (0, 0.0)."""
    try:
        doc = json.loads((Path(unit_dir) / ATTEMPTS).read_text())
        count, seconds, started = int(doc["attempts"]), float(doc["seconds"]), float(doc["started"])
    except (OSError, ValueError, KeyError, TypeError):  # none, or cut short: the unit's earlier time is unknown
        return 0, 0.0
    last = max((st.st_mtime for _, st in files_below(Path(unit_dir))), default=started)
    return count, seconds + max(0.0, last - started)


def begin(unit_dir: Path, before: tuple[int, float], started: float) -> None:
    """Record this attempt's start beside the attempts before it."""
    write_json(Path(unit_dir) / ATTEMPTS, {"attempts": before[0] + 1, "seconds": round(before[1], 3),
                                           "started": started})


@contextlib.contextmanager
def beating(unit_dir: Path) -> Iterator[None]:
    """The record's time of change kept current while the attempt runs: what a kill leaves as its end."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT_S):
            with contextlib.suppress(OSError):  # gone with the unit's folder: nothing left to keep current
                os.utime(Path(unit_dir) / ATTEMPTS)

    thread = threading.Thread(target=beat, name="attempt-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:  # a stop that ends the attempt through Python (scancel's or a requeue's SIGTERM, Ctrl-C) sets its end
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            os.utime(Path(unit_dir) / ATTEMPTS)
