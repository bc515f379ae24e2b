"""A unit's attempts: one killed part-way (kill -9, preemption, a Slurm requeue) and resumed has cost the time of
every attempt, not only the last one's. Each start records itself in the unit folder (ATTEMPTS, written atomically);
the next start reads it before the unit's leftovers go, and counts the attempt before as ending at the last write
it left there: a kill leaves no end time, so a killed attempt's seconds are a lower bound."""
from __future__ import annotations

import json
from pathlib import Path

from collapse_hpc.store.atomic import write_json
from collapse_hpc.store.live import files_below

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
