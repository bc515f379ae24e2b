"""A user's own text for `data prepare NAME --from PATH`: which files are read, the split each
keeps, and their rows.

Formats, by extension (any case); the line formats and the JSON and CSV ones also compressed
(.gz, .bz2, .xz, .zst on top, e.g. corpus.txt.gz, The Pile's .jsonl.zst):
  .txt .text .tokens .raw   one row per non-empty line, ended by \\n, \\r\\n or \\r (WikiText ships
                            wiki.train.tokens / .raw)
  .jsonl .ndjson .json      JSON lines (datasets' to_json) or one array, of objects; field `text`
  .csv .tsv                 a header row, then rows; column `text` (quoted fields may span lines;
                            their \\r\\n read as \\n)
  .parquet                  column `text` (datasets' to_parquet, the hub's shards)
  .arrow                    column `text` (datasets' save_to_disk)
Null and blank texts of the structured formats (a JSON NaN too: pandas' null) are dropped, with a
warning that counts them. Their line endings are read as \\n, as a .txt file's; their NUL characters
(a JSON "\\u0000", a Parquet column's) are removed, with a warning (a .txt file of NUL bytes is binary).
Two files of one folder whose names differ in their format or compression alone (train.txt, train.jsonl) are
refused: one text twice, each row read twice.
A Git LFS pointer, or a link to a git-annex or DVC object not fetched, is refused: it stands in for the text.
A JSON escape of half a UTF-16 pair alone ("\\ud83d") becomes U+FFFD, with a warning.
A .json file that is one JSON object without a field `text` (README.json, dataset_info.json, a
metadata file) describes the data and holds no records of text: skipped with a warning naming it. One whose
field holds the records ({"data": [{"text": …}, …]}) is refused, with the jq line that gives them as JSON lines.

API:
- FORMATS, ACCEPTED                      the extensions read, and their one-line description
- listed(names) -> str                   the first three names, and how many more
- source_files(source, exclude) -> [Path]   the readable files of a file or folder
- describes(path) -> bool                a .json file of one object without a field text: not corpus
- file_split(path, source) -> split | None  the split a file's name (or its folder's) gives it; two: UserError
- check_split_layout(source, named)      all files named for splits, all three there, else a UserError
- read_rows(path) -> [str]               one file's rows
- warnings_by_kind()                     a context: each kind of warning about the files read said once
"""
from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import errno
import gzip
import io
import itertools
import json
import logging
import lzma
import math
import os
import re
import shlex
import sys
import zlib
from pathlib import Path

from collapse_hpc.errors import NotAFormat, UserError
from collapse_hpc.experiments.lm.corpus import SPLITS, read_parquet
from collapse_hpc.logs import count, first_few
from collapse_hpc.store.reads import NotRead, refusals

LINES = (".txt", ".text", ".tokens", ".raw")
JSON = (".jsonl", ".ndjson", ".json")
TABLES = (".csv", ".tsv")
COLUMNAR = (".parquet", ".arrow")
FORMATS = LINES + JSON + TABLES + COLUMNAR


class _Zstd:
    """A .zst file (The Pile's, Dolma's .jsonl.zst) read through pyarrow's zstd codec, as gzip.open reads
    a .gz: read(n) in pieces of 16 MiB (one read of n would allocate n bytes at once)."""

    def __init__(self, path: Path, mode: str = "rb"):
        import pyarrow as pa

        self._file = open(path, mode)  # an open file, not a path: pyarrow takes only UTF-8 paths
        self._stream = pa.input_stream(self._file, compression="zstd")

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            piece = self._stream.read(1 << 24 if n < 0 else min(1 << 24, n - len(out)))
            if not piece:
                break
            out += piece
        return bytes(out)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()
        self._file.close()


COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": _Zstd}
MAGIC = {".gz": re.compile(b"\x1f\x8b"), ".bz2": re.compile(b"BZh[1-9]1AY&SY"), ".xz": re.compile(b"\xfd7zXZ\x00"),
         ".zst": re.compile(re.escape(b"\x28\xb5\x2f\xfd"))}
ACCEPTED = ("text (.txt, .tokens, .raw: a row per line), JSON lines (.jsonl, .json), .csv or .tsv "
            "with a column text, .parquet or .arrow with a column text; the first three also as .gz, "
            ".bz2, .xz or .zst")
# datasets' save_to_disk writes these beside its .arrow files: metadata, not corpus text
DATASETS_METADATA = {"dataset_info.json", "state.json", "dataset_dict.json"}
ARCHIVES = {".zip": "unzip {p} -d DIR", ".tar": "tar xf {p} -C DIR", ".tgz": "tar xzf {p} -C DIR",
            ".7z": "7z x {p} -oDIR"}
# a split's word as a word of its own in a name, between its start or end and . _ - or a space: wiki.test,
# train-00000 (the hub's shards), test_data; not inside another word (contest, latest, devices)
SPLIT_WORD = re.compile(r"(?<![^._\- ])(train|training|validation|valid|val|dev|test)(?![^._\- ])")
ALIASES = {"training": "train", "valid": "validation", "val": "validation", "dev": "validation"}
MAX_ROW_CHARS = 1 << 20  # a row is one article or paragraph (WikiText-2's longest: under 4,000 characters)
MAX_SOURCE_BYTES = 4 << 30  # one source file (WikiText-103 is 0.5 GB); reading it takes several times that
HEAD_BYTES = 1 << 16  # what is read of a .json file to tell records from a description
MAX_DESCRIPTION_BYTES = 1 << 24  # a larger file of one JSON object is no description: read_rows says what it is

log = logging.getLogger("collapse_hpc")


def not_read(path: Path, e: OSError) -> NotRead:
    """A source file's read the file system refused (permissions, an I/O error): one line naming it, before
    anything is prepared, never taken for a file that is not there, or damaged."""
    return NotRead(f"source file {path}", e, "nothing is prepared; it is prepared", path)


def reading(path: Path):
    """Reads of a source file, a refused one said as such (not_read)."""
    return refusals(path, refused=not_read)


def kind(path: Path) -> tuple[str, str | None]:
    """(format extension, compression extension or None) of a file name."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED:
        return (suffixes[0] if len(suffixes) == 2 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def stem(path: Path) -> str:
    """A file's name without its format and compression extensions: corpus.txt.gz -> corpus."""
    fmt, packed = kind(path)
    return path.name[:len(path.name) - len(fmt) - len(packed or "")]


def readable(path: Path) -> bool:
    fmt, packed = kind(path)
    return fmt in FORMATS and not (packed and fmt in COLUMNAR) and path.name not in DATASETS_METADATA


def source_files(source: Path, exclude: Path | None = None) -> list[Path]:
    """The readable files of a file or folder, hidden ones skipped: editors' and notebooks' copies
    (.ipynb_checkpoints/), macOS' ._ files and .git are not corpus text. Nothing under `exclude`
    (the data dir, e.g. for --from .) is read: it is earlier output. Other files in a folder are
    skipped with a warning naming them; a lone file or folder of none is one error line."""
    if source.is_file():
        if not readable(source):
            raise _not_readable(source)
        if describes(source):
            raise UserError(f"--from {source}: {DESCRIPTION}, not records of text; give the text's files "
                            f"(JSON lines, or one array of objects, each with a field text)")
        _check_fetched(source, [source])
        return [source]
    skip = Path(os.path.realpath(exclude)) if exclude is not None else None
    found = sorted(p for p in _walk(source) if not (skip and Path(os.path.realpath(p)).is_relative_to(skip)))
    _check_fetched(source, [p for p in found if readable(p)])
    found = [p for p in found if p.is_file()]
    files = _without_caches(source, [p for p in found if readable(p)])
    described = [p for p in files if describes(p)]
    files = [p for p in files if p not in described]
    _refuse_twice(source, files)
    other = [str(p.relative_to(source)) for p in found if not readable(p) and p.name not in DATASETS_METADATA]
    if not files:
        raise _none_read(source, found, other + [str(p.relative_to(source)) for p in described])
    if other:
        log.warning("warning: --from %s: %s of other formats skipped (%s); prepare reads %s", source,
                    count(len(other), "file"), listed(other), ACCEPTED)
    if described:
        log.warning("warning: --from %s: %s skipped (%s): %s, not records of text", source,
                    count(len(described), "JSON file"), listed([str(p.relative_to(source)) for p in described]),
                    "each " + DESCRIPTION if len(described) > 1 else DESCRIPTION)
    return files


def _refuse_twice(source: Path, files: list[Path]) -> None:
    """Files of one folder whose names differ in their format or compression alone (train.txt beside
    train.txt.gz, corpus.txt.gz beside corpus.jsonl.gz, wiki.train.tokens beside wiki.train.raw): one text in
    two forms, each of its rows read twice. Refused naming them, and the other names that are so."""
    forms: dict[Path, list[str]] = {}
    for p in files:
        forms.setdefault(p.parent / stem(p), []).append(p.name)
    twice = [(name, names) for name, names in forms.items() if len(names) > 1]
    if twice:
        (name, names), more = twice[0], [f"{n.relative_to(source)}.*" for n, _ in twice[1:]]
        raise UserError(f"--from {source}: {name.parent.relative_to(source) / names[0]} beside {', '.join(names[1:])}"
                        + (f" (also {listed(more)})" if more else "")
                        + f": the same text {'twice' if len(names) == 2 else f'{len(names)} times'}? give one of "
                        f"them (move the other{'s' if len(names) > 2 else ''} out of the folder)")


def _none_read(source: Path, found: list[Path], names: list[str]) -> UserError:
    """A folder of no file read, naming those found. NotAFormat (data prepare adds what the vae reads) unless
    they are all text's (Markdown, datasets' or other descriptions): no help to a folder of Markdown notes."""
    text = found and all(p.suffix.lower() in PLAIN_TEXT or p.name in DATASETS_METADATA or describes(p) for p in found)
    return (UserError if text else NotAFormat)(f"--from {source}: no file of a format prepare reads ({ACCEPTED})"
                                               + (f"; found {listed(names)}" if names else "")
                                               + _as_text(source, found))


CACHE_FILE = re.compile(r"cache-[0-9a-f]{16}\.arrow")  # datasets' name for a map's or filter's result


def _datasets_cache(p: Path) -> bool:
    """An .arrow file datasets wrote beside a data set's own as a map's or filter's result: one a save_to_disk
    folder's state.json does not list, or one named CACHE_FILE beside the dataset_info.json of datasets' own
    cache (~/.cache/huggingface/datasets/…: wikitext-train.arrow, …)."""
    if kind(p)[0] != ".arrow":
        return False
    state = p.parent / "state.json"
    if not state.is_file():
        return (p.parent / "dataset_info.json").is_file() and CACHE_FILE.fullmatch(p.name) is not None
    try:
        with reading(state):
            return p.name not in {f.get("filename") for f in json.loads(state.read_bytes()).get("_data_files", [])}
    except (ValueError, AttributeError, TypeError):
        return False  # not datasets' state: its files are read as any


def _without_caches(source: Path, files: list[Path]) -> list[Path]:
    """The files but datasets' caches (_datasets_cache): read as more rows, a train split was there twice,
    once as a map changed it. They are skipped with a warning naming them."""
    caches = [p for p in files if _datasets_cache(p)]
    if caches:
        log.warning("warning: --from %s: %s skipped (%s): a datasets cache beside the data (what a map or filter "
                    "on the loaded data set wrote), not the data set (save_to_disk what it made, to prepare that)",
                    source, count(len(caches), ".arrow file"),
                    listed([str(p.relative_to(source)) for p in caches]))
    return [p for p in files if p not in caches]


def _walk(source: Path) -> list[Path]:
    """The files and file links under a folder, hidden ones skipped. A linked folder is followed (part of a
    corpus kept on another disk, linked in), each real folder once: a link back up the tree, or a second
    link to one folder, adds nothing (rglob skipped linked folders unsaid)."""
    seen, found = set(), []
    for root, folders, names in os.walk(source, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [f for f in folders if not f.startswith(".")]
        found += [p for n in names if not n.startswith(".") and ((p := Path(root, n)).is_file() or p.is_symlink())]
    return found


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _check_fetched(source: Path, files: list[Path]) -> None:
    """A data set cloned without its large files' content holds stand-ins for them: Git LFS pointers (a
    few lines of text, read as a corpus they made splits of "version https://git-lfs…" lines) and
    git-annex's or DVC's links to objects not fetched (skipped unsaid, the corpus short of them)."""
    def which(stand_ins: list[Path], one: str, more: str) -> str:
        names = [str(p.relative_to(source)) for p in stand_ins] if source.is_dir() else []
        return f"--from {source}" + (f": {listed(names)} are {more}" if len(names) > 1 else
                                     f": {names[0]} is {one}" if names else f" is {one}")

    dangling = [p for p in files if p.is_symlink() and not p.exists()]
    looped = [p for p in dangling if _loops(p)]
    if looped:
        raise UserError(which(looped, "a link in a loop (it leads back to itself)", "links in a loop (they lead "
                              "back to themselves)") + "; make each lead to a file, or remove it")
    if dangling:
        raise UserError(which(dangling, "a link to a file that is not there", "links to files that are not there")
                        + "; fetch the content (git annex get, dvc pull), then prepare again")
    pointers = [p for p in files if p.stat().st_size < 1024 and _head(p).startswith(LFS_POINTER)]
    if pointers:
        raise UserError(which(pointers, "a Git LFS pointer", "Git LFS pointers") + ", not the content (cloned "
                        "without git-lfs?); run git lfs pull in the clone, then prepare again")


def _head(path: Path) -> bytes:
    """A small file's bytes (under 1 KiB: a Git LFS pointer's size)."""
    with reading(path):
        return path.read_bytes()


def _loops(link: Path) -> bool:
    try:
        os.stat(link)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


DESCRIPTION = "one JSON object without a field 'text', which describes the data (as README.json or dataset_info.json)"


def listed(names: list[str]) -> str:
    return first_few(names, 3, ", ")


def describes(path: Path) -> bool:
    """A .json file that is one JSON object without a field `text`, on one line or several: it describes
    the data (README.json, dataset_info.json, metadata.json) and holds no records of text. JSON lines
    (one object per line, several lines) and one array of objects are records, whatever their fields:
    read_rows names a missing field there. Reads the file's start; the whole only for an object over
    several lines, at most MAX_DESCRIPTION_BYTES of it."""
    fmt, packed = kind(path)
    if fmt != ".json":
        return False
    try:
        with reading(path), (COMPRESSED[packed](path, "rb") if packed else open(path, "rb")) as f:
            head = f.read(HEAD_BYTES + 1)
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return False  # read_rows says what is wrong with it (a refused read: NotRead, here)
    text = head[:HEAD_BYTES].decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if not text.startswith("{"):
        return False
    first, _, rest = text.partition("\n")
    try:
        value = json.loads(first)  # a whole object on the first line: JSON lines, or one line only
    except RecursionError:
        return False  # nested past the reader's depth: read_rows says so
    except ValueError:
        if path.stat().st_size > MAX_DESCRIPTION_BYTES:
            return False
        try:
            value = json.loads(_raw(path).decode("utf-8-sig", errors="replace"))
        except (ValueError, RecursionError):
            return False
    else:
        if rest.strip() or len(head) > HEAD_BYTES:  # more lines: records
            return False
    return isinstance(value, dict) and "text" not in value and _wrapping(value) is None


def _wrapping(value) -> str | None:
    """The field of one JSON object that holds the records ({"data": [{"text": …}, …]}, what datasets' json
    loader reads with field="data"); None where none does."""
    fields = value.items() if isinstance(value, dict) else ()
    return next((k for k, v in fields if isinstance(v, list) and v and isinstance(v[0], dict) and "text" in v[0]),
                None)


def _not_readable(path: Path) -> UserError:
    """Why a lone file is not read. NotAFormat (data prepare adds what the vae reads) only where the file may hold
    images (an archive, a format of no text, a file compressed of what its name does not say): a datasets file,
    a compressed Parquet file or Markdown are text's, where "or, for the vae, grey images" misleads."""
    if path.name in DATASETS_METADATA:  # a .json file, refused as "not a format …", .json among those read
        folder = path.parent.parent if (path.parent.parent / "dataset_dict.json").is_file() else path.parent
        return UserError(f"--from {path}: datasets' description of the data set saved in {folder}, not its text; "
                         f"give the folder: --from {folder}")
    archive = next((how for ext, how in ARCHIVES.items() if path.name.lower().endswith((ext, ".tar" + ext))),
                   ARCHIVES[".tgz"] if path.name.lower().endswith(".tar.gz") else None)
    if archive:
        return NotAFormat(f"--from {path}: an archive; unpack it first ({archive.format(p=path)}) and give the "
                          f"folder: prepare reads {ACCEPTED}")
    fmt, packed = kind(path)
    inner = path.name[:-len(packed)] if packed else path.name
    if packed and fmt in COLUMNAR:  # a format compressed within, read in place: never packed on top
        return UserError(f"--from {path}: {packed[1:]}-compressed {fmt[1:].capitalize()}, which compresses its own "
                         f"columns: unpack it ({UNPACK[packed][0]} {shlex.quote(str(path))} > {shlex.quote(inner)}) "
                         f"and give {inner}")
    if packed and not fmt:  # corpus.gz: the format is told by the name
        return NotAFormat(f"--from {path}: {packed[1:]}-compressed, of what its name does not say: name it for the "
                          f"format inside, e.g. {inner}.txt{packed} (a row per line) or {inner}.jsonl{packed} "
                          f"(JSON lines)")
    if path.suffix.lower() in PLAIN_TEXT:
        return UserError(f"--from {path}: not a format prepare reads ({ACCEPTED}); {path.suffix} is plain text, read "
                         f"as a row per line when named .txt: cp {shlex.quote(str(path))} "
                         f"{shlex.quote(str(path.with_suffix('.txt')))}")
    return NotAFormat(f"--from {path}: not a format prepare reads; give {ACCEPTED} (convert others first, e.g. a "
                      f"text column to Parquet with pandas' to_parquet)")


# formats of plain text prepare does not read as such (a folder's README.md is no corpus): named .txt, they are
PLAIN_TEXT = (".md", ".markdown", ".rst", ".org", ".adoc")


def _as_text(folder: Path, found: list[Path]) -> str:
    """For a folder of Markdown (or other plain text) files only: how to have them read, a row per line."""
    plain = [p.suffix for p in found if p.suffix.lower() in PLAIN_TEXT]
    if not plain:
        return ""
    ext = max(set(plain), key=plain.count)
    copy = shlex.quote(f'cp "$0" "${{0%{ext}}}.txt"')
    return (f"; {ext} files are plain text, read as a row per line when named .txt: find {shlex.quote(str(folder))} "
            f"-name '*{ext}' -exec sh -c {copy} {{}} \\;")


def file_split(path: Path, source: Path | None = None) -> str | None:
    """The split a file's name gives it (train.txt, wiki.valid.tokens, dev.jsonl, Hugging Face
    shards like train-00000-of-00002.parquet), or its folders inside `source` (datasets' save_to_disk:
    train/data-00000-of-00001.arrow): a split's word as a word of its own (SPLIT_WORD). Names for two
    splits (test/train.txt, train-test.txt) are one error line: whichever won, a held-out file could
    train the model or a training file score it."""
    names = [path.name]
    if source is not None and path != source:
        names += reversed(path.relative_to(source).parts[:-1])
    given: dict[str, str] = {}  # split -> the nearest name giving it (a folder's with a /)
    for i, name in enumerate(names):
        stem = name.lower()
        while i == 0 and Path(stem).suffix in (*FORMATS, *COMPRESSED):
            stem = stem[: -len(Path(stem).suffix)]
        folder = i > 0 or path.is_dir()
        for word in SPLIT_WORD.findall(stem):
            given.setdefault(ALIASES.get(word, word), f"{name}/" if folder else name)
    if len(given) > 1:
        (a, by_a), (b, by_b) = list(given.items())[:2]
        which = f"{a} and {b}" if by_a == by_b else f"{a} ({by_a}) and {b} ({by_b})"
        raise UserError(f"--from {source}: {path.relative_to(source) if source else path} is named for two "
                        f"splits, {which}: rename the file or its folder for the one it is")
    return next(iter(given), None)


def check_split_layout(source: Path, named: dict) -> None:
    """All files named for splits, all three present: else rows would silently cross splits."""
    where = {p: str(p.relative_to(source) if p != source else p) for p in named}
    stray = [where[p] for p, s in named.items() if s is None]
    if stray:  # which names read as splits: a package's libc6-dev.txt or arch-test.txt may be unmeant
        split = [f"{where[p]} {'read ' if not i else ''}as {s}"
                 for i, (p, s) in enumerate((p, s) for p, s in named.items() if s is not None)]
        raise UserError(f"--from {source}: files named for splits (train, validation or valid or dev, test; "
                        f"{listed(split)}) beside others ({listed(stray)}): name every file (or its folder) for its "
                        f"split, or none (rows are then split 90/5/5)")
    missing = [s for s in SPLITS if s not in named.values()]
    if missing:
        given = sorted(set(named.values()))
        # save_to_disk writes an empty split as a folder without a data file: there, but no rows
        empty = [f"{d.relative_to(source)}/" for d in sorted(source.rglob("*")) if d.is_dir()
                 and file_split(d, source) in missing and not d.name.startswith(".")]
        train = [p for p, s in named.items() if s == "train"]
        raise UserError(f"--from {source}: no {' or '.join(missing)} file beside the "
                        f"{', '.join(given)} file{'s' if len(given) > 1 else ''}"
                        + (f" ({', '.join(empty)}: no data file, an empty split)" if empty else "")
                        + ": give all three splits, or " + _alone(source, train))


def _alone(source: Path, train: list[Path]) -> str:
    """How to have a train split alone (a Hugging Face data set often has no other) split 90/5/5: give
    its file or folder itself, as nothing inside a --from names a split then; else rename."""
    folders = {p.parent for p in train}
    alone = train[0] if len(train) == 1 else folders.pop() if len(folders) == 1 else source
    if alone == source:
        return "rename the files so that their rows are split 90/5/5"
    return f"the train split alone (--from {alone}: its rows are then split 90/5/5)"


@contextlib.contextmanager
def warnings_by_kind():
    """While reading a corpus' files: each kind of warning about a file (not UTF-8, null rows dropped) said
    once, for its first file, with how many others it holds for; a folder of 300 latin-1 files wrote 300.
    None where the reading is refused: its one line says what is wrong (a file of null rows was told
    "null rows dropped", then "no text"; a folder's README.md "skipped", then "no validation file")."""
    held: dict[str, list[logging.LogRecord]] = {}

    def hold(record: logging.LogRecord) -> bool:
        about_a_file = record.levelno == logging.WARNING and isinstance(record.args, tuple) and record.args \
            and isinstance(record.args[0], Path)
        if about_a_file:
            held.setdefault(str(record.msg), []).append(record)
        return not about_a_file

    log.addFilter(hold)
    try:
        yield
    except UserError:
        held.clear()
        raise
    finally:
        log.removeFilter(hold)
        for first, *more in held.values():
            if more:
                first.msg = f"{first.msg}; the same for %s (%s)"
                first.args = (*first.args, count(len(more), "other file"), listed([r.args[0].name for r in more]))
            log.handle(first)


def read_rows(path: Path) -> list[str]:
    """The rows of one source file; a file or a row too large for the tokenizer's training (one
    48 MB line needed 9.2 GB of memory) is one error line naming it."""
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise UserError(f"{path}: {size / 2**30:.1f} GiB, more than one source file may hold "
                        f"({MAX_SOURCE_BYTES >> 30} GiB); split it into several files")
    fmt, _ = kind(path)
    if fmt in LINES:
        rows = [line for line in _text_lines(_decode(path, _raw(path))) if line.strip()]
    else:
        texts = _as_lines_read(path, _records(path, fmt))
        rows = [t for t in texts if t and t.strip()]
        if len(rows) < len(texts):
            log.warning("warning: %s: %s of %d dropped (no text)", path,
                        count(len(texts) - len(rows), "null or blank row"), len(texts))
    long = next((i for i, t in enumerate(rows) if len(t) > MAX_ROW_CHARS), None)
    if long is not None:
        raise UserError(f"{path}: row {long + 1} (non-empty rows counted) has {len(rows[long])} characters, more "
                        f"than {MAX_ROW_CHARS} (one paragraph or article per row); break it into lines")
    return rows


# a line ends at \n, \r\n or a lone \r (an old Mac's), as Python reads a file's lines (newline=None); not at
# what str.splitlines also ends one at (U+2028, U+0085, a form feed, …), each one character inside a JSON row
LINE_END = re.compile(r"\r\n?")


def _text_lines(text: str) -> list[str]:
    """A text's lines, a .txt file's rows: str.splitlines made two rows of a line with a U+2028 or a form feed
    inside, one row as a JSON record's text."""
    return LINE_END.sub("\n", text).split("\n")


def _as_lines_read(path: Path, texts: list) -> list:
    """Record texts as a text file's lines are read: \\r\\n and a lone \\r as \\n (a JSON "\\r\\n", a Windows
    text in a Parquet column: a token of its own; a CSV's are read so already), and NUL characters (U+0000: a
    JSON "\\u0000", a C string's padding) removed, with one warning: they went into the Parquet shards and the
    tokenizer's training (a row of a NUL alone was a row), where a text file of NUL bytes is refused."""
    nuls = sum(t.count("\0") for t in texts if t)
    if nuls:
        log.warning("warning: %s: %s (U+0000) removed from the text", path, count(nuls, "NUL character"))
    return [LINE_END.sub("\n", t.replace("\0", "")) if t else t for t in texts]


def _records(path: Path, fmt: str) -> list:
    """Field or column `text` of every record of a file not of lines, null and blank ones included."""
    return _columnar(path) if fmt in COLUMNAR else _json_texts(path) if fmt in JSON else _table_texts(path)


def has_rows(path: Path) -> bool:
    """Whether a source file holds any line or record, blank ones included: a zero-row Parquet file or an
    empty one holds none, which 'every line or row is blank' misdescribed."""
    fmt, _ = kind(path)
    return bool(_raw(path)) if fmt in LINES else bool(_records(path, fmt))


def _raw(path: Path) -> bytes:
    """The file's bytes, decompressed where its name says so (at most MAX_SOURCE_BYTES of them)."""
    _, packed = kind(path)
    if packed is None:
        with reading(path):
            return path.read_bytes()
    try:  # a refused read is NotRead, never "not a readable gz file"
        with reading(path), COMPRESSED[packed](path, "rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise UserError(f"{path}: not a readable {packed[1:]} file ({e})" + _packed_otherwise(path, packed)) from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise UserError(f"{path}: over {MAX_SOURCE_BYTES >> 30} GiB decompressed; split it into several files")
    return raw


def _packed_otherwise(path: Path, packed: str) -> str:
    """What a file its name calls compressed, and which does not decompress so, is instead: compressed
    otherwise (a .gz that is bzip2), or not compressed at all (a browser saves a .gz download unpacked,
    its name kept); '' where neither (a file cut short)."""
    with reading(path), open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    other = next((ext for ext, magic in MAGIC.items() if magic.match(head)), None)
    inner = path.name[:-len(packed)]
    if other not in (None, packed):
        return f"; it is {other[1:]}-compressed: name it {inner}{other}"
    if other is None and head and b"\0" not in head:
        return f"; it is not compressed but text (a browser unpacks a download and keeps its name): name it {inner}"
    return ""


BOMS = (("utf-32", (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)), ("utf-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)))

# the BOM of a file joined on (cat a.jsonl b.jsonl > all.jsonl, of files a Windows editor saved): at
# a line's start it broke that JSON line, and began a text row with an invisible character
JOINED_BOM = re.compile("(?<=\n)\ufeff")


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 (a BOM dropped, also one that starts a line: JOINED_BOM); UTF-16 or UTF-32 with a BOM;
    anything else: UTF-8 with the undecodable bytes replaced by U+FFFD and a warning (a stray latin-1
    file should not stop a corpus). UTF-32's little-endian BOM begins with UTF-16's, so it is looked
    for first."""
    for codec, boms in BOMS:
        if raw.startswith(boms):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: not {codec.upper()} text despite its byte-order mark ({e.reason})") from None
    packed = next((ext for ext, magic in MAGIC.items() if magic.match(raw)), None)
    if packed:  # e.g. corpus.txt that is gzip inside
        raise UserError(f"{path}: {packed[1:]}-compressed, not text; name it {path.name}{packed}")
    if b"\0" in raw:
        raise UserError(f"{path}: binary data (NUL bytes), not text" + _utf16_hint(path, raw))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="replace")
        bad = text.count("\ufffd") - raw.count("\ufffd".encode())
        log.warning("warning: %s is not UTF-8: %s replaced by U+FFFD (to keep them, convert it first, e.g. %s)",
                    path, count(bad, "undecodable byte sequence"), _iconv(path))
    return JOINED_BOM.sub("", text)


UNPACK = {".gz": ("zcat", "gzip"), ".bz2": ("bzcat", "bzip2"), ".xz": ("xzcat", "xz"), ".zst": ("zstdcat", "zstd")}


def _iconv(path: Path, codecs: str = "-f latin1 -t utf-8") -> str:
    """The conversion of a file to UTF-8 (iconv's `codecs`), through its decompressor where it is compressed:
    iconv alone read corpus.txt.gz's compressed bytes."""
    packed = kind(path)[1]
    if packed is None:
        return f"iconv {codecs}"
    inner = Path(path.name[:-len(packed)])
    cat, pack = UNPACK[packed]
    return f"{cat} {path.name} | iconv {codecs} | {pack} > {inner.stem}.utf8{inner.suffix}{packed}"


def _utf16_hint(path: Path, raw: bytes) -> str:
    """UTF-16 without its byte-order mark (Windows tools' "Unicode") is ASCII text with a NUL after, or
    before, every character: said so, with the conversion (of a compressed file, through its decompressor),
    not as binary data alone."""
    head = raw[:4096]
    for order, zeros in (("LE", head[1::2]), ("BE", head[0::2])):
        if len(zeros) >= 8 and zeros.count(0) >= 0.9 * len(zeros):
            return (f"; UTF-16 ({order}) without a byte-order mark? convert it first: "
                    f"{_iconv(path, f'-f UTF-16{order} -t UTF-8')}")
    return ""


def _json_texts(path: Path) -> list:
    """Field `text` of JSON lines, of objects one after another over several lines each (what jq writes
    without -c), or of one JSON array of objects."""
    body = _decode(path, _raw(path))
    try:
        if body.lstrip().startswith("["):
            records = json.loads(body)
        else:
            try:
                records = [json.loads(line) for line in _text_lines(body) if line.strip()]
            except json.JSONDecodeError:
                records = _one_after_another(body)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: neither JSON lines nor one JSON array of objects ({e.msg}, line "
                        f"{e.lineno})") from None
    except RecursionError:  # [[[[…: Python's reader recurses once a level
        raise UserError(f"{path}: JSON nested deeper than {sys.getrecursionlimit()} levels; records of text are "
                        f"objects with a field text (JSON lines, or one array of them)") from None
    array = body.lstrip().startswith("[")
    return _whole_characters(path, [_text_field(path, i, r, array) for i, r in enumerate(records)])


SPACE = re.compile(r"\s*")


def _one_after_another(body: str) -> list:
    """JSON values written one after another, each over any number of lines (jq's output without -c)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        at = SPACE.match(body, at).end()
        if at >= len(body):
            return values
        value, at = decoder.raw_decode(body, at)
        values.append(value)


SURROGATE = re.compile(r"[\ud800-\udfff]")


def _whole_characters(path: Path, texts: list) -> list:
    """JSON's \\u escapes may name half of a UTF-16 pair alone ("\\ud83d": an emoji cut short by a
    scraper's truncation); such a text is no Unicode, and neither Parquet nor a hash can encode it.
    Replaced by U+FFFD with one warning, as undecodable bytes are."""
    halves = sum(len(SURROGATE.findall(t)) for t in texts if t)
    if not halves:
        return texts
    log.warning("warning: %s: %s (half a UTF-16 pair, e.g. \\ud83d, without its other half) replaced by U+FFFD",
                path, count(halves, "lone surrogate escape"))
    return [SURROGATE.sub("\ufffd", t) if t else t for t in texts]


def _text_field(path: Path, i: int, record, array: bool = False) -> str | None:
    if isinstance(record, str):  # no field to rename: each string becomes a record's text
        raise UserError(f"{path}: record {i + 1} is a string, not an object with a field text; make each one so: "
                        f"jq -c '{'.[] | ' if array else ''}{{text: .}}' {path.name} > text.jsonl")
    if (field := _wrapping(record)) is not None:  # a field's records were called "a record without text"
        jq = f".{field}[]" if field.isidentifier() else f".[{json.dumps(field)}][]"
        raise UserError(f"{path}: one JSON object whose field {field!r} holds the records of text, not JSON lines or "
                        f"an array of them; give those records as JSON lines: jq -c '{jq}' {path.name} > "
                        f"{field}.jsonl")
    if not isinstance(record, dict) or "text" not in record:
        keys = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
        field = _likely_text({str(k): [v] for k, v in record.items()}) if isinstance(record, dict) else None
        jq = "FIELD" if field is None else field if field.isidentifier() else f"[{json.dumps(field)}]"
        raise UserError(f"{path}: record {i + 1} has no field 'text' ({keys}); name the field that holds "
                        f"the text 'text' (e.g. jq -c '{'.[] | ' if array else ''}{{text: .{jq}}}' "
                        f"{shlex.quote(path.name)} > {shlex.quote(_renamed(path, '.jsonl'))})")
    text = record["text"]
    if isinstance(text, float) and math.isnan(text):  # pandas' null, as json.dumps of its records writes it
        return None
    if text is not None and not isinstance(text, str):
        columns = isinstance(text, dict) and all(str(k).isdigit() for k in list(text)[:100])  # row numbers
        raise UserError(f"{path}: record {i + 1}: field 'text' holds {type(text).__name__}, not a string"
                        + ("; the columns pandas' to_json writes by default? write records: "
                           "df.to_json(PATH, orient='records', lines=True)" if columns else ""))
    return text


def _table_texts(path: Path) -> list:
    """Column `text` of a CSV or TSV file with a header row. Its line endings are read as \\n, inside a
    quoted field too (newline=None; newline="" kept a Windows file's \\r\\n in the text), as a text file's are."""
    body = _decode(path, _raw(path))
    tab = kind(path)[0] == ".tsv"
    csv.field_size_limit(MAX_ROW_CHARS + 1)  # longer rows are refused by the row check, not csv
    try:
        reader = csv.DictReader(io.StringIO(body, newline=None), delimiter="\t" if tab else ",",
                                strict=True)
        if "text" not in (reader.fieldnames or []):
            _no_text_column(path, reader.fieldnames or [], list(itertools.islice(reader, 100)))
        return [row["text"] for row in reader]
    except csv.Error as e:
        if "field larger than field limit" in str(e):  # not a quoting fault: the row check's own line
            raise UserError(f"{path}: near line {reader.line_num + 1}: a field of more than {MAX_ROW_CHARS} "
                            f"characters (one paragraph or article per row); break it into rows") from None
        raise UserError(f"{path}: not {'TSV' if tab else 'CSV'} (near line {reader.line_num + 1}: {e}); a field "
                        f"that starts with a quote is quoted whole, its quotes doubled, as CSV writers do "
                        f"(\"\"\"Hi,\"\" she said\"), or give the text as .txt or .jsonl") from None


PIXEL = re.compile(r"(pixel|px)?_?\d+(x\d+)?", re.IGNORECASE)  # Kaggle's MNIST CSVs: pixel0…, 1x1…


def _no_text_column(path: Path, header: list[str], head: list[dict]) -> None:
    """A header without `text`, named in a few of its columns (Kaggle's MNIST CSV has 785), with the rename of
    the one whose first rows (`head`) look like text. One of a label and pixel columns is images: NotAFormat,
    so the line says what the vae reads instead."""
    named = listed(header)
    pixels = sum(bool(PIXEL.fullmatch(c.strip())) for c in header)
    if pixels >= 64 and pixels >= len(header) - 2:
        raise NotAFormat(f"{path}: {pixels} pixel columns ({named}): images, not text; prepare reads "
                         f"text with a column text")
    own = "\t" if kind(path)[0] == ".tsv" else ","
    other = next((c for c in (";", "|", "\t", ",") if c != own and len(header) == 1 and c in header[0]), None)
    if other:  # a European CSV (';'), or a TSV named .csv: one column, named by the whole header line
        fix = {"\t": "name it .tsv", ",": "name it .csv"}.get(other, f"convert it to commas (e.g. pandas' "
                                                                   f"read_csv(sep={other!r}).to_csv(index=False))")
        raise UserError(f"{path}: no column 'text' in the header row ({named}): one column, as the file is not "
                        f"separated by {'commas' if own == ',' else 'tabs'} but by {other!r}? {fix}")
    raise UserError(f"{path}: no column 'text' in the header row ({named}); name the column that holds the text "
                    f"'text'" + _rename_hint(path, _likely_text({c: [r.get(c) for r in head] for c in header})))


def _columnar(path: Path) -> list:
    """Column `text` (strings of any Arrow kind) of a Parquet file or an Arrow stream or file."""
    import pyarrow as pa

    schema = read_parquet(path, schema_only=True, refused=not_read) if kind(path)[0] == ".parquet" else None
    table = None
    if schema is None:
        table = _read_arrow(path)
        schema = table.schema
    if "text" not in schema.names:
        head = table.slice(0, 100) if table is not None else _parquet_head(path, schema)
        raise UserError(f"{path}: no column 'text' (columns: {', '.join(schema.names)}); name the column that "
                        f"holds the text 'text'" + _rename_hint(path, _likely_text(head.to_pydict())))
    column = schema.field("text").type
    if pa.types.is_dictionary(column):  # pandas categoricals
        column = column.value_type
    if not (pa.types.is_string(column) or pa.types.is_large_string(column) or str(column) == "string_view"):
        raise UserError(f"{path}: column 'text' holds {column}, not strings")
    table = table if table is not None else read_parquet(path, columns=["text"], refused=not_read)
    return table.column("text").to_pylist()


def _parquet_head(path: Path, schema):
    """The first rows of a Parquet file's string columns (to tell which holds the text), not the whole file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    with reading(path), open(path, "rb") as f:  # an open file: pyarrow takes only UTF-8 paths
        batch = next(pq.ParquetFile(f).iter_batches(batch_size=100, columns=strings), None)
    return batch if batch is not None else pa.table({})


def _likely_text(columns: dict[str, list]) -> str | None:
    """The column (or JSON field) whose values look most like text: the longest strings on average, numbers
    (an id, a label) left out; None where none holds a string."""
    def mean_length(values: list) -> float:
        texts = [v for v in values if isinstance(v, str) and v.strip() and not NUMBER.fullmatch(v.strip())]
        return sum(map(len, texts)) / len(texts) if texts else 0.0

    lengths = {name: mean_length(values) for name, values in columns.items()}
    best = max(lengths, key=lambda name: lengths[name], default=None)
    return best if best is not None and lengths[best] > 0 else None


NUMBER = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")
# pandas reads and writes each: the rename of a column, as one line to paste
RENAME = {".csv": ("read_csv({src})", "to_csv({out}, index=False)"),
          ".tsv": ("read_csv({src}, sep=\"\\t\")", "to_csv({out}, sep=\"\\t\", index=False)"),
          ".parquet": ("read_parquet({src})", "to_parquet({out})")}


def _renamed(path: Path, ext: str | None = None) -> str:
    """The name of a converted copy of a file: c.csv -> c.text.csv, j.json -> j.text.jsonl (ext)."""
    return f"{stem(path)}.text{ext or path.name[len(stem(path)):]}"


def _rename_hint(path: Path, column: str | None) -> str:
    """The line that renames `column` to text in a copy of the file (pandas; a datasets folder's, datasets),
    or '' where none is known."""
    fmt = kind(path)[0]
    if column is not None and fmt == ".arrow" and (saved := _saved_dataset(path)) is not None:
        return _rename_saved_hint(saved, column)
    if column is None or fmt not in RENAME:
        return ""
    read, write = (part.format(src=json.dumps(path.name), out=json.dumps(_renamed(path))) for part in RENAME[fmt])
    code = f"import pandas as pd; pd.{read}.rename(columns={{{json.dumps(column)}: \"text\"}}).{write}"
    return f" ({column} looks like it: python3 -c {shlex.quote(code)}, then prepare from {_renamed(path)})"


def _saved_dataset(path: Path) -> Path | None:
    """The save_to_disk folder an .arrow file is of: a DatasetDict's (dataset_dict.json, a folder per split),
    else a Dataset's (state.json beside it); None where it is of neither."""
    if (path.parent.parent / "dataset_dict.json").is_file():
        return path.parent.parent
    return path.parent if (path.parent / "state.json").is_file() else None


def _rename_saved_hint(folder: Path, column: str) -> str:
    """The line that renames `column` to text in a copy of a save_to_disk folder, every split's: its .arrow
    files hold Arrow streams no pandas line writes back, and the refusal had told a datasets user nothing."""
    out = folder.with_name(f"{folder.name}.text")
    code = (f"import datasets; datasets.load_from_disk({json.dumps(str(folder))}).rename_column("
            f"{json.dumps(column)}, \"text\").save_to_disk({json.dumps(str(out))})")
    return f" ({column} looks like it: python3 -c {shlex.quote(code)}, then prepare from {out})"


def _read_arrow(path: Path):
    """datasets' .arrow files are Arrow IPC streams; an Arrow (Feather v2) file is read too."""
    import pyarrow as pa

    with reading(path):
        raw = pa.py_buffer(path.read_bytes())  # the table's buffers stay owned by it, not by an open file
    for opener in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            return opener(pa.BufferReader(raw)).read_all()
        except (pa.ArrowInvalid, OSError):
            continue
    raise UserError(f"{path}: not a readable Arrow stream or file")
