"""A published model's training summary (model/training.json, train.train_generation's result) read back
by a redo of its generation, which then skips training: what the later steps read of it must be there.

It is written whole and renamed, so one that does not read as such (cut short by a node's crash before its
data reached the disk, edited by hand) is damage: the caller trains the generation again. A read the file
system refuses is no damage (NotRead: the model kept).

API:
- read_summary(path, then) -> (summary, None) | (None, why it is damaged)
"""
from __future__ import annotations

import json
from pathlib import Path

from collapse_hpc.errors import first_line
from collapse_hpc.store.reads import read_text


def read_summary(path: Path, then: str) -> tuple[dict | None, str | None]:
    """The summary at `path`, or why it is damaged; a refused read is NotRead, `then` what goes on from
    the model once it reads."""
    try:
        summary = json.loads(read_text(path, "model file", then))
    except ValueError as e:  # not JSON, or not UTF-8
        return None, f"does not read ({first_line(e)})"
    why = _fault(summary)
    return (None, why) if why else (summary, None)


def _fault(summary) -> str | None:
    """What of the summary the generation's later steps read is missing or of the wrong kind: the epochs
    (which weights sampled and were scored), the timings and loss (metrics.parquet), the curve
    (training_curve.parquet; absent from summaries written before curves were recorded)."""
    from collapse_hpc.experiments.lm.train import CURVE

    if not isinstance(summary, dict):
        return "not a JSON mapping"
    wrong = [k for k in ("best_epoch", "epochs") if type(summary.get(k)) is not int]
    wrong += [k for k in ("seconds", "best_val_loss") if k in summary and not _number(summary[k])]
    curve = summary.get("curve")
    if curve is not None and not (isinstance(curve, dict) and all(
            isinstance(curve.get(k), list) and all(map(_number, curve[k])) for k in CURVE)
            and len({len(curve[k]) for k in CURVE}) == 1):
        wrong.append("curve")
    return f"{', '.join(wrong)} missing or not numbers" if wrong else None


def _number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
