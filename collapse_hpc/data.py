"""collapse-hpc data: prepare data sets once as Parquet under data/ (each beside a JSON card).

Each preparer lives with the experiment that reads it and is declared by it (Experiment.datasets,
Experiment.local_data); this module only looks them up.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

from collapse_hpc import experiments
from collapse_hpc.errors import UserError


def preparers() -> dict[str, str]:
    """Every built-in data set: name -> "module:function", from the experiments that read them."""
    return {name: ref for e in experiments.names() for name, ref in experiments.get(e).datasets.items()}


def _local() -> str | None:
    return next((ref for e in experiments.names() if (ref := experiments.get(e).local_data)), None)


def _load(ref: str):
    module, _, fn = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ModuleNotFoundError, AttributeError):
        raise UserError(f"data preparer {ref} is not available in this installation") from None


def prepare(name: str, data_dir: Path, source: str | None = None, force: bool = False) -> int:
    known = preparers()
    if source and name in known:
        fn = _load(known[name])
        if "source" in inspect.signature(fn).parameters:  # e.g. mnist's IDX files in a folder
            return fn(data_dir, force=force, source=Path(source)) or 0
        # the built-in preparer and its readers own that folder
        raise UserError(f"data set name {name!r} is a built-in data set; give your files another name")
    if source:
        local = _local()
        if local is None:
            raise UserError("no experiment prepares data sets from local files in this installation")
        return _load(local)(name, Path(source), data_dir, force=force) or 0
    if name not in known:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(known)} "
                        f"(or give local files with --from PATH)")
    return _load(known[name])(data_dir, force=force) or 0


_HASHED: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256, per process


def check_against_card(path: Path, card: dict) -> None:
    """A prepared split must still be the file its card recorded (card keys files_sha256 or
    sha256, {file name: sha256}); a data set edited after preparation would change every result
    silently. Hashed once per process and version of the file: a unit reads a split once or a few
    times, and sha256 of 50 MB (MNIST's size) took 0.13 s on a loaded 2-core machine: small beside
    any training. verify re-hashes every file anyway."""
    names = [card.get(k) for k in ("files_sha256", "sha256")]
    expected = next((n[path.name] for n in names if isinstance(n, dict) and path.name in n), None)
    if expected is None:  # a card from before the hashes were recorded
        return
    from collapse_hpc.store.atomic import sha256_file

    st = path.stat()
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    if _HASHED[key] != expected:
        raise UserError(f"{path}: not the file its card.json recorded (sha256 {_HASHED[key][:12]}… != "
                        f"{str(expected)[:12]}…); prepare it again: collapse-hpc data prepare "
                        f"{path.parent.name} --force")


def read_card(folder: Path) -> dict | None:
    """A prepared data set's card, or None when there is none yet (being prepared)."""
    path = Path(folder) / "card.json"
    return _card(path) if path.is_file() else None


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
