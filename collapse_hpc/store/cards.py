"""A prepared data set's card (data/<name>/card.json: its source, licence, split sizes and the
sha256 of each split), and the check that a split is still the file its card recorded.

Written by each experiment's preparer (collapse-hpc data prepare), read by its units.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.store.atomic import sha256_file, write_json
from collapse_hpc.store.reads import NotRead, read_text, sha256

_HASHED: dict[tuple, str] = {}  # (path, size, mtime, inode) -> sha256, per process


def check_against_card(path: Path, card: dict, redo: str = "") -> None:
    """A prepared split must still be the file its card recorded (card keys files_sha256 or
    sha256, {file name: sha256}); a data set edited after preparation would change every result
    silently. Hashed once per process and version of the file: a unit reads a split once or a few
    times, and sha256 of 50 MB (MNIST's size) took 0.13 s on a loaded 2-core machine: small beside
    any training. verify re-hashes every file anyway."""
    names = [card.get(k) for k in ("files_sha256", "sha256")]
    expected = next((n[path.name] for n in names if isinstance(n, dict) and path.name in n), None)
    if expected is None:  # a card from before the hashes were recorded
        return
    st = path.stat()
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHED:
        kind, then = _kept(redo)
        _HASHED[key] = sha256(path, f"{kind} file", then)
    if _HASHED[key] != expected:
        raise UserError(f"{path}: not the file its card.json recorded (sha256 {_HASHED[key][:12]}… != "
                        f"{str(expected)[:12]}…); " + (redo or f"prepare it again: collapse-hpc data prepare "
                                                      f"{path.parent.name} --force"))


def source_name(path: Path) -> str:
    """A source folder's or file's name as a card records it: strict JSON holds no lone surrogate (what
    Python makes of a name's bytes that are not UTF-8, b'caf\\xe9'), so such a name is written with
    U+FFFD for them and its bytes in hex after it. json.loads still reads older cards' "\\udce9"."""
    name = Path(path).resolve().name
    try:
        name.encode()
    except UnicodeEncodeError:
        raw = os.fsencode(name)
        return f"{raw.decode(errors='replace')} (bytes {raw.hex()})"
    return name


def read_card(folder: Path, redo: str = "") -> dict | None:
    """A prepared data set's (or sealed cache's) card, or None when there is none yet (being prepared)."""
    path = Path(folder) / "card.json"
    return load_card(path, redo) if path.is_file() else None


def load_card(path: Path, redo: str = "") -> dict:
    """A card.json as a mapping, or one error line saying how to build its folder again: `redo`, else
    the command that prepares its data set again (one that does not read counts as not prepared)."""
    card = _card_json(path, redo, kept=(FileNotFoundError,))
    if not isinstance(card, dict):
        raise UserError(f"{path}: card is not a JSON mapping; " + (redo or (
            f"prepare the data set again: collapse-hpc data prepare {path.parent.name} --data-dir "
            f"{path.parent.parent} (with --from PATH, the files it was made from, for one of your own)")))
    return card


def _card_json(path: Path, redo: str, kept: tuple[type[OSError], ...] = ()):
    """A card's JSON, None where it is not JSON. A read refused (permissions, an I/O error) is NotRead: the
    data set, or the cache (`redo` says how to build it), is kept, not made again."""
    kind, then = _kept(redo)
    try:
        return json.loads(read_text(path, f"{kind} card", then, kept=kept))
    except ValueError:  # not JSON, or not UTF-8
        return None


def _kept(redo: str) -> tuple[str, str]:
    """What holds a file the file system would not read (a cache where `redo` says how to build it again,
    else a data set), and that it is kept."""
    if redo:
        return "cache", "the cache is kept as it is (not built again)"
    return "data set", "the data set is kept as it is (not prepared again)"


def intact_card(folder: Path) -> dict | None:
    """A folder's card.json as a mapping; None where there is none or it does not read as one (cut short
    by a crash, edited by hand): such a data set counts as not prepared, and preparing it builds it again. One
    the file system would not read (NotRead) is no such card: said, the data set kept."""
    try:
        return read_card(folder)
    except NotRead:
        raise
    except (UserError, OSError):
        return None


def seal(folder: Path) -> None:
    """Give a cache folder under data/ (built once, reused by every later run: the tiny base model)
    its card: the sha256 of each file, so a reuse can check it (sealed_files)."""
    folder = Path(folder)
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "card.json"}
    write_json(folder / "card.json", {"files_sha256": files})


def sealed_files(folder: Path) -> list[Path] | None:
    """A sealed cache folder's files, each checked against its card (hashed once per process);
    None when the folder has no card (unfinished, or from before cards: build it again). A file
    changed since is one error line naming it."""
    card = read_card(folder, redo=f"remove {folder} to build it again")  # a cache, not a data set
    listed = card.get("files_sha256") if card else None
    if not isinstance(listed, dict):
        return None
    paths = [Path(folder) / name for name in sorted(listed)]
    for path in paths:
        if not path.is_file() or path.is_symlink():
            raise UserError(f"{path}: missing from the cache its card.json lists; remove {folder} to build it again")
        check_against_card(path, card or {}, redo=f"remove {folder} to build it again")
    extra = sorted(p.name for p in Path(folder).iterdir() if p.name not in listed and p.name != "card.json")
    if extra:  # e.g. a tokenizer's added_tokens.json: read by the loader, so as binding as a listed file
        raise UserError(f"{Path(folder) / extra[0]}: not on the card.json of its cache; remove {folder} to build "
                        f"it again")
    return paths


def file_card(path: Path) -> Path:
    """The card of one cached file: <name>.card.json beside it."""
    return path.with_name(path.name + ".card.json")


def seal_file(path: Path) -> None:
    """Give one cached file (a split's token blocks) its own card, {"files_sha256": {name: sha256}}.
    One card per file, not per folder: processes building other files of the folder at once never
    rewrite each other's card."""
    write_json(file_card(path), {"files_sha256": {path.name: sha256_file(path)}})


def sealed_file(path: Path) -> bool:
    """Whether a cached file may be reused: False when it or its card is missing (build it, again:
    unfinished, or from before cards); True when it is the file its card recorded (hashed once per
    process); otherwise one error line naming it."""
    redo = f"remove {path} to build it again"
    card_path = file_card(path)
    if not path.is_file() or not card_path.is_file():
        return False
    if path.is_symlink():
        raise UserError(f"{path}: a link, not the cached file its card recorded; {redo}")
    card = _card_json(card_path, redo)
    if not isinstance(card, dict) or not isinstance(card.get("files_sha256"), dict) \
            or path.name not in card["files_sha256"]:
        raise UserError(f"{card_path}: not the card of {path.name}; {redo}")
    check_against_card(path, card, redo=redo)
    return True
