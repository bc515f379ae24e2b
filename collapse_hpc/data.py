"""collapse-hpc data: prepare data sets once as Parquet under data/ (each beside a JSON card,
store/cards.py).

Each preparer lives with the experiment that reads it and is declared by it (Experiment.datasets,
Experiment.local_data); this module only looks them up.
"""
from __future__ import annotations

import contextlib
import fnmatch
import importlib
import inspect
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from collapse_hpc import experiments
from collapse_hpc.errors import NotAFormat, UserError, one_line
from collapse_hpc.store.atomic import sweep
from collapse_hpc.store.cards import intact_card, load_card
from collapse_hpc.store.layout import folder_to_make, made_folder
from collapse_hpc.store.live import listing, not_yet_made, remove_made
from collapse_hpc.store.lock import data_lock
from collapse_hpc.store.space import not_a_folder

log = logging.getLogger(__name__)


def preparers() -> dict[str, str]:
    """Every built-in data set: name -> "module:function", from the experiments that read them."""
    return {name: ref for e in experiments.names() for name, ref in experiments.get(e).datasets.items()}


def _local(source: Path) -> str | None:
    """The local_data preparer of the experiment whose local_files match a file of `source` (a file,
    or a folder searched recursively, hidden names skipped), else of the first that declares none
    (also for a PATH that does not exist: its preparer says so)."""
    offered = [experiments.get(e) for e in experiments.names() if experiments.get(e).local_data]
    names = [source.name] if source.is_file() else [
        p.name for p in source.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                      p.relative_to(source).parts)]
    for exp in offered:
        if any(fnmatch.fnmatch(n.lower(), pattern) for n in names for pattern in exp.local_files):
            return exp.local_data
    return next((exp.local_data for exp in offered if not exp.local_files), None)


def _load(ref: str):
    module, _, fn = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ModuleNotFoundError, AttributeError):
        raise UserError(f"data preparer {ref} is not available in this installation") from None


def prepare(name: str, data_dir: Path, source: str | None = None, force: bool = False) -> int:
    """Prepare one data set; two processes preparing into one data folder take turns (the second
    then finds it prepared) instead of one failing on the other's half-built folder. Holding that
    lock, it removes what a preparation of `name` killed outright left (a data set is built whole in
    a temporary beside its folder, .tmp-NAME.*, only by a preparation, which holds the lock); other
    names' are left to theirs: --data-dir may be a folder that holds other things too."""
    folder_to_make(data_dir, "--data-dir ")  # before any text is read, not as the temporary folder's failure
    if source:
        _not_a_stream(source)
        source = _opened_file(source)
    with data_lock(data_dir) as locked, _made(Path(data_dir)):
        if locked:
            sweep(data_dir, name)
        return _prepare(name, data_dir, source, force)


@contextlib.contextmanager
def _made(data_dir: Path) -> Iterator[None]:
    """--data-dir made for the preparation, or one line naming the part the file system would not make and why
    (layout.made_folder; a preparer's own mkdir said "/proc/x: No such file or directory" alone); the folders it
    made are removed again where the preparation is refused, if nothing else came in."""
    new = not_yet_made(data_dir)
    made_folder(data_dir, "--data-dir ")
    try:
        yield
    except BaseException:
        remove_made(new)
        raise


def _not_a_stream(source: str) -> None:
    """`--from /dev/stdin` or `--from <(zcat corpus.gz)` gives a pipe: prepare tells each file's format by
    its name and reads it twice (its sha256, then its text), and a pipe has no such name and is read
    once. Said so, rather than "no file of a format prepare reads"."""
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return  # not there: the preparer says so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    what = "a pipe" if stat.S_ISFIFO(mode) else "a terminal" if stat.S_ISCHR(mode) else "not a file"
    raise UserError(f"--from {source}: {what}, which prepare does not read (it tells a file's format by its name "
                    f"and reads it twice); write the text to a file first (e.g. zcat corpus.txt.gz > corpus.txt, "
                    f"or give corpus.txt.gz itself) and give that file or its folder")


def _opened_file(source: str) -> str:
    """`--from /dev/stdin < corpus.txt` (or /dev/fd/N, /proc/self/fd/N) names a file the shell opened: it was
    read as a file named "stdin", of no format prepare reads. The file itself is read instead, by its own
    name; one no longer there under that name (deleted since it was opened) is refused."""
    path = source
    for _ in range(8):  # /dev/stdin -> /proc/self/fd/0 -> the file; a loop of links ends here too
        if re.fullmatch(r"/(proc/[^/]+|dev)/fd/\d+", os.path.normpath(path)):
            real = os.path.realpath(path)
            if not os.path.isfile(real):
                raise UserError(f"--from {source}: an open file no longer there under its name ({real}); "
                                f"give the file itself as --from PATH")
            log.info("--from %s: reading %s, the file it stands for", source, real)
            return real
        if not os.path.islink(path):
            return source
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return source


def _prepare(name: str, data_dir: Path, source: str | None, force: bool) -> int:
    known = preparers()
    if source and name in known:
        fn = _load(known[name])
        if "source" in inspect.signature(fn).parameters:  # e.g. mnist's IDX files in a folder
            return fn(data_dir, force=force, source=Path(source)) or 0
        # the built-in preparer and its readers own that folder
        raise UserError(f"data set name {name!r} is a built-in data set; give your files another name")
    if source:
        local = _local(Path(source))
        if local is None:
            raise UserError("no experiment prepares data sets from local files in this installation")
        try:
            return _load(local)(name, Path(source), data_dir, force=force) or 0
        except NotAFormat as e:  # the preparer it went to names its own formats only
            others = [f"for the {exp.name}, {exp.local_about}" for exp in map(experiments.get, experiments.names())
                      if exp.local_about and exp.local_data != local]
            raise UserError(f"{e}; or, {'; or, '.join(others)}" if others else str(e)) from None
    if name not in known:
        return _prepared_from_files(name, Path(data_dir), force)
    return _load(known[name])(data_dir, force=force) or 0


def _prepared_from_files(name: str, data_dir: Path, force: bool) -> int:
    """`data prepare NAME` of a name no experiment prepares itself: one prepared from the user's files
    is said so (the lines that find it changed or unreadable tell this command), else it is unknown."""
    card_file = data_dir / name / "card.json"
    if not card_file.is_file():
        raise UserError(f"unknown data set {name!r}; known: {', '.join(preparers())} "
                        f"(or give local files with --from PATH)")
    card = intact_card(card_file.parent)
    if card is None:  # what it was made from is on that card: only the user can say it again
        raise UserError(f"{card_file}: card is not a JSON mapping, so the files {name} was prepared from are "
                        f"unknown; prepare it again from them: collapse-hpc data prepare {name} --from PATH "
                        f"--data-dir {data_dir}")
    source = one_line(card.get("source", "your own files"))  # an older card's "\\udce9" too
    if force:  # only the user has those files: prepare reads them again from where they say
        raise UserError(f"{data_dir / name}: prepared from {source}; to prepare it again give them: "
                        f"collapse-hpc data prepare {name} --from PATH --force")
    print(f"{data_dir / name}: already prepared from {source} (to redo: --from PATH --force)")
    return 0


def _cards(data_dir: Path) -> list[tuple[Path, dict]]:
    """The cards of the data sets prepared in `data_dir`, read, while a preparation may run beside: its temporary
    folder, or one it set aside (their names begin with '.': atomic), is none, and one swapped out between the
    listing and the read (prepare --force) is left out."""
    out = []
    for folder in listing(data_dir):
        card = folder / "card.json"
        if folder.name.startswith(".") or not card.is_file():
            continue
        try:
            out.append((card, load_card(card)))
        except FileNotFoundError:
            continue
    return out


def list_prepared(data_dir: Path) -> int:
    if not Path(data_dir).is_dir():  # a typo of --data-dir read as "nothing prepared" (exit 0)
        blocked = not_a_folder(data_dir) or f"{data_dir}: no such folder"
        raise UserError(f"--data-dir {blocked} (data sets are prepared under data/ by default)")
    cards = _cards(Path(data_dir))
    if not cards:
        print(f"no prepared data sets under {data_dir}/ (collapse-hpc data prepare NAME)")
    rows = []
    for c, card in cards:
        sizes = card.get("splits")
        splits = ", ".join(f"{k}: {v}" for k, v in sizes.items()) if isinstance(sizes, dict) else ""
        rows.append((one_line(c.parent.name), f"{one_line(card.get('source', ''))}  [{splits}]"))
    width = max(12, *(len(name) for name, _ in rows)) if rows else 12  # a --from name may be longer than 12
    for name, rest in rows:
        print(f"{name:{width}s} {rest}")
    return 0
