"""collapse-hpc data: prepare data sets once as Parquet under data/ (each beside a JSON card).

Each preparer lives with the experiment that reads it; this module only names them.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from collapse_hpc.errors import UserError

PREPARERS = {
    "wikivital": "collapse_hpc.experiments.lm.data:prepare_wikivital",
    "wikitext2": "collapse_hpc.experiments.lm.data:prepare_wikitext2",
    "digits": "collapse_hpc.experiments.vae.data:prepare_digits",
    "mnist": "collapse_hpc.experiments.vae.data:prepare_mnist",
}
LOCAL = "collapse_hpc.experiments.lm.data:prepare_local"


def _load(ref: str):
    module, _, fn = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ModuleNotFoundError, AttributeError):
        raise UserError(f"data preparer {ref} is not available in this installation") from None


def prepare(name: str, data_dir: Path, source: str | None = None, force: bool = False) -> int:
    if source and name == "mnist":  # IDX files in a folder
        return _load(PREPARERS["mnist"])(data_dir, force=force, source=Path(source)) or 0
    if source and name in PREPARERS:  # the built-in preparer and its readers own that folder
        raise UserError(f"data set name {name!r} is a built-in data set; give your files another name")
    if source:
        return _load(LOCAL)(name, Path(source), data_dir, force=force) or 0
    if name not in PREPARERS:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(PREPARERS)} "
                        f"(or give local files with --from PATH)")
    return _load(PREPARERS[name])(data_dir, force=force) or 0


def _card(path: Path) -> dict:
    try:
        card = json.loads(path.read_text())
    except ValueError:
        card = None
    if not isinstance(card, dict):
        raise UserError(f"{path}: card is not a JSON mapping; prepare the data set again "
                        f"(collapse-hpc data prepare {path.parent.name} --force)")
    return card


def list_prepared(data_dir: Path) -> int:
    cards = sorted(Path(data_dir).glob("*/card.json"))
    if not cards:
        print(f"no prepared data sets under {data_dir}/ (collapse-hpc data prepare NAME)")
    for c in cards:
        card = _card(c)
        sizes = card.get("splits")
        splits = ", ".join(f"{k}: {v}" for k, v in sizes.items()) if isinstance(sizes, dict) else ""
        print(f"{c.parent.name:12s} {card.get('source', '')}  [{splits}]")
    return 0
