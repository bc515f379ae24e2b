"""Atomic writes: every artefact appears under its final name complete, or not at all."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from collapse_hpc.store import space
from collapse_hpc.store.live import made

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"  # a folder swap_in moved aside


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    made(path.parent)  # never the run folder again, removed by hand
    with _naming(path):  # a read-only file system refuses the temporary: name the file it is for
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with _naming(path):  # a full disk while writing names no file: name the one being written
            yield tmp
            with open(tmp, "rb") as f:  # data on disk before the name points at it
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared on a cluster
            _replace(tmp, path)
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _replace(tmp: Path, path: Path) -> None:
    """`tmp` renamed over the file `path`; a folder there (made by hand or a stray tool) is named in one line to
    move away, not the rename's raw "Is a directory" between two names, one a temporary's."""
    from collapse_hpc.errors import MOVE_AWAY, UserError

    try:
        os.replace(tmp, path)
    except IsADirectoryError:
        raise UserError(f"{path}: a folder where a file goes, and none is written over a folder; {MOVE_AWAY}") \
            from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it in for `path` (a folder there is replaced)
    only if the block succeeds."""
    path = Path(path)
    made(path.parent)  # never the run folder again, removed by hand
    with _naming(path):
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        with _naming(path):  # safetensors' and tokenizers' full disk: their own error types, no file named
            yield tmp
            _share(tmp)
            swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: Path, path: Path) -> None:
    """Put the complete folder `new` in place of `path`: a folder there is moved aside (.old-NAME),
    `new` renamed to `path`, then the old one removed. A kill between the two renames leaves no
    `path` and the old one aside, the only complete copy: recover() puts it back."""
    recover(path)
    old = _aside(path)[0]
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def _aside(path: Path) -> list[Path]:
    """Where a swap of `path` moves the old folder (the LM data set's own swap named it .NAME.replaced)."""
    return [path.with_name(f"{OLD_PREFIX}{path.name}"), path.with_name(f".{path.name}.replaced")]


def recover(path: str | os.PathLike) -> list[Path]:
    """What a swap of `path` killed midway left aside: put back where `path` is missing (it died
    between its two renames), else removed (it died after the swap, or while removing the old one).
    Only under the lock every writer of `path` holds. Returns what was put back or removed."""
    path = Path(path)
    found = [p for p in _aside(path) if p.is_dir() and not p.is_symlink()]
    for old in found:
        if not os.path.lexists(path):
            os.replace(old, path)
            fsync_dir(path.parent)
        else:
            shutil.rmtree(old, ignore_errors=True)
    return found


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A write refused in the block (space.named: a full disk, a quota, a read-only file system, or
    an OSError naming no file) raised as an OSError naming `path`, the file the user knows."""
    try:
        yield
    except Exception as e:
        said = space.named(e, path)
        if said is e:
            raise
        raise said from e


def _share(folder: Path) -> None:
    """A new folder and what it holds as readable as the umask lets new files be: results and data/
    are shared on a cluster, and mkdtemp makes 0700 while transformers' save_pretrained writes
    model.safetensors 0600 (a teammate's verify of the run stopped on it)."""
    mask = _umask()
    for p in [folder, *folder.rglob("*")]:
        if p.is_symlink():
            continue
        st = p.stat().st_mode
        os.chmod(p, (0o777 if p.is_dir() or st & 0o111 else 0o666) & ~mask)


def fsync_dir(folder: Path) -> None:
    """The rename itself on disk: a crash right after it must not bring back the old name's
    content (or none) while later work already trusts the new one."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a directory: the rename is all it offers
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path, table, metadata: dict | None = None, checksums: bool = False) -> Path:
    """Write a pyarrow Table (or a dict of columns) as Parquet; `metadata` goes in the schema as JSON.
    `checksums`: a CRC of every page, for a file no manifest vouches for yet that a resume reads again (a
    sampling shard): bytes changed in a zstd page decode to other values, silently, without one.

    Float columns are stored without a dictionary, their bytes split by significance (BYTE_STREAM_SPLIT),
    then zstd: a dictionary of measured values, nearly all distinct, took 9.4 bytes a float64 (the
    dictionary and an index a value), split and compressed they take 6.8 (the demo's gaussian parts;
    writing is 6x faster too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.table(table)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): json.dumps(v, sort_keys=True, default=str).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=checksums, **parquet_options(table.schema))
    return Path(path)


def parquet_options(schema) -> dict:
    """pyarrow.parquet's writer options for a table of `schema` (write_parquet's docstring says why)."""
    import pyarrow as pa

    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    others = [f.name for f in schema if f.name not in floats]
    return {"compression": "zstd", "use_dictionary": others if floats else True,
            "column_encoding": {n: "BYTE_STREAM_SPLIT" for n in floats} or None}


def read_parquet_metadata(path) -> dict:
    """The JSON metadata written by write_parquet (keys without the pyarrow internals)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in meta.items():
        if k.startswith(b"ARROW:") or k == b"pandas":
            continue
        try:
            out[k.decode()] = json.loads(v)
        except ValueError:
            out[k.decode()] = v.decode(errors="replace")
    return out


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_temporary(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


def sweep(folder: str | os.PathLike, *names: str) -> list[Path]:
    """Remove what writers killed outright (SIGKILL, the OOM killer) left in `folder`: the temporaries
    of the files or folders `names` (every temporary there when none is named), and recover() what a
    swap of a named folder left aside; nothing else removes them. Only under the lock every writer of
    those names holds: a live writer's temporary looks the same. Returns what was removed or put back."""
    folder = Path(folder)
    prefixes = tuple(f"{TMP_PREFIX}{n}." for n in names) or (TMP_PREFIX,)
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(prefixes)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return found + [p for name in names for p in recover(folder / name)]


OWNED = ".collapse-hpc"  # in a folder the tool made for its output (aggregate --out): it may write there again


def claim_folder(path: str | os.PathLike, what: str, owned: bool = False) -> Path:
    """A folder the tool may write into: new, empty, or marked as made by it (OWNED); `owned`: the
    caller's own place (a run's report/). Never a symbolic link, nor one with a linked sub-folder:
    writes would land wherever it points. Anything else is refused in one line (UserError)."""
    from collapse_hpc.errors import UserError

    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{path}: {what} is a symbolic link; the tool never writes through one: name a plain folder")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: {what} exists and is not a folder")
    if path.is_dir():
        links = [p for p in path.iterdir() if p.is_symlink()]
        if links:
            raise UserError(f"{links[0]}: a symbolic link in {what}; the tool never writes through one: remove it")
        if not owned and not (path / OWNED).is_file() and any(path.iterdir()):
            raise UserError(f"{path}: {what} holds files the tool did not write (no {OWNED} marker); name a new "
                            f"or empty folder, it never overwrites what it does not own")
    made(path)  # never a run folder removed meanwhile again (its report/)
    if not (path / OWNED).is_file():
        write_text(path / OWNED, f"made by collapse-hpc for {what}; it may write here again\n")
    return path
