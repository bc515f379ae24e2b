"""manifest.json: the completion marker of a unit (a generation or an array chunk).

Written last, it lists every file of the unit with its sha256 and row count, so a unit
counts as done only when its manifest exists and every file still matches it.
"""
from __future__ import annotations

import fnmatch
import functools
import hashlib
import itertools
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from collapse_hpc.errors import MOVE_AWAY, UserError
from collapse_hpc.store.attempts import ATTEMPTS
from collapse_hpc.store.atomic import is_temporary, sha256_file, write_json
from collapse_hpc.store.live import files_below
from collapse_hpc.store.reads import NotRead, ReadOnce, read_text, sha256

MANIFEST = "manifest.json"
KEPT = "the unit is kept as it is (not redone)"  # a read of one of its files refused: the unit stays as it is
SELF = "manifest_sha256"  # the manifest's own checksum, in it: an edit of its bytes is caught without hashing files
BINDING = ".binding.json"  # an unfinished unit's binding (written before it starts)
VOLATILE = "volatile"  # the listed files holding what the run measured (timings) beside results: not its content
PACKAGES = ("collapse-hpc", "torch", "deepspeed", "transformers", "datasets", "tokenizers",
            "scikit-learn", "numpy", "pyarrow", "submitit", "matplotlib")


@functools.lru_cache(maxsize=None)
def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=None)
def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        commit = out.stdout.strip()
        if commit:  # results of uncommitted code say so, as the image labels do
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    # inside the container image the package is no checkout: the image records its build commit
    return commit or os.environ.get("COLLAPSE_HPC_GIT_COMMIT") or None


def job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def _rows(path: Path) -> int | None:
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def unit_files(unit_dir: Path) -> list[Path]:
    """The artefacts of a unit: every plain file except the manifest, its binding and temporaries."""
    return [p for p, _ in files_below(unit_dir) if p.name not in (MANIFEST, BINDING, ATTEMPTS) and not is_temporary(p)]


def files_digest(manifest: dict) -> str:
    """One hash of a finished unit's content (its files' sha256s): what a later unit that read it
    records, so a unit redone with other content makes every unit built on it stale. The files its
    manifest names `volatile` (Experiment.volatile: timings, read by no later unit) are left out: a redo
    to the same weights and data, only its measured seconds other, keeps the units built on it. A
    manifest naming none (an older version's) is digested whole, as it was when a later unit recorded it."""
    files, volatile = manifest.get("files"), manifest.get(VOLATILE)
    if isinstance(files, dict) and volatile:
        files = {rel: e for rel, e in files.items() if rel not in volatile}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def upstream(unit_dir: Path) -> dict[str, str]:
    """The earlier generations of a chain unit (gen_003 -> gen_000..gen_002), each with the digest
    of its manifest's files ('' when it has no manifest): what the unit is built on."""
    name = Path(unit_dir).name
    if not name.startswith("gen_"):
        return {}
    width = len(name) - 4
    out = {}
    for g in range(int(name[4:])):
        prev = f"gen_{g:0{width}d}"
        out[prev] = _digest(Path(unit_dir).parent / prev)
    return out


def _digest(unit_dir: Path) -> str:
    """files_digest of a unit's manifest, read once per process and version of the file: checking
    generation g reads the bindings of every earlier one, each naming all before it."""
    try:
        st = (unit_dir / MANIFEST).stat()
    except OSError:
        return ""
    return _digest_of(str(unit_dir), st.st_mtime_ns, st.st_size, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _digest_of(unit_dir: str, mtime: int, size: int, inode: int) -> str:
    m = read_manifest(Path(unit_dir))
    return files_digest(m) if m and not m.get("corrupt") else ""


def binding(unit_dir: Path, variant_hash: str | None = None) -> dict:
    """What a unit's manifest must say to count for the folder it sits in: its experiment, variant
    and unit (the path), the variant's config hash (the plan) and the content of the units it was
    built on. A unit copied into another variant's folder, or left from before an earlier
    generation was redone, fails it."""
    unit_dir = Path(unit_dir)
    out = {"experiment": unit_dir.parent.parent.name, "variant": unit_dir.parent.name, "unit": unit_dir.name,
           "upstream": upstream(unit_dir)}
    if variant_hash is not None:
        out["variant_hash"] = variant_hash
    return out


def binding_problems(unit_dir: Path, manifest: dict, expected: dict) -> list[str]:
    """How a manifest (or an unfinished unit's binding file) differs from `expected` (binding()).
    A manifest from before upstream was recorded is not redone for lacking it: its folder and
    variant are still checked, and it was only trusted by verify's deep check of every unit."""
    return [f"{unit_dir}: its manifest says {key} {_shown(manifest.get(key))}, "
            f"{'the folder' if key in ('experiment', 'variant', 'unit') else 'the run'} says {_shown(want)}"
            for key, want in expected.items()
            if manifest.get(key) != want and not (key == "upstream" and key not in manifest)]


def _shown(value) -> str:
    if isinstance(value, dict):  # upstream: name the generations whose content changed
        return "{" + ", ".join(f"{k}: {str(v)[:12] or 'no manifest'}" for k, v in value.items()) + "}"
    return repr(value)


def write_binding(unit_dir: Path, expected: dict) -> None:
    """Record what an unfinished unit is being built for; reset_unit keeps its resumable
    leftovers only for the same binding."""
    write_json(Path(unit_dir) / BINDING, expected)


def bind_data(unit_dir: Path, path: Path, data_dir: Path) -> None:
    """Add a file of cached data (under `data_dir`) the unfinished unit has read to its binding file, hashed:
    a resume after the data set was prepared again (--force, other text) then keeps none of the partial
    work built on the old text (RunStore.reset_unit), as the manifest tells of a finished unit. A binding
    file from before this (or none: a unit run without the engine) lists none, and its unit resumes."""
    where, root = Path(unit_dir) / BINDING, Path(data_dir).absolute()
    doc, _ = _binding_file(unit_dir)
    if doc is None:
        return
    data = doc["data"] if isinstance(doc.get("data"), dict) else {}
    rel = Path(path).absolute().relative_to(root).as_posix()
    if rel not in data and Path(path).is_file():
        write_json(where, {**doc, "data": {**data, rel: file_entry(Path(path))}, "data_dir": str(root)})


def read_binding(unit_dir: Path) -> dict | None:
    """The binding of a unit's last attempt: its manifest's, else its binding file's."""
    return last_binding(unit_dir)[0]


def last_binding(unit_dir: Path) -> tuple[dict | None, bool]:
    """read_binding's binding, and whether the binding file it fell back on is there but does not read as one
    (cut short, garbage: what the unit's leftovers were made for is unknown), told from the one read of it."""
    manifest = read_manifest(unit_dir)
    if manifest and not manifest.get("corrupt"):
        return manifest, False
    return _binding_file(unit_dir)


def _binding_file(unit_dir: Path) -> tuple[dict | None, bool]:
    """An unfinished unit's binding file as a mapping, and False; (None, False) where there is none, (None, True)
    where it does not read as one (cut short). A read the file system refuses is NotRead: taken for none, the
    unit's redo would keep leftovers made for another binding, or its data go unrecorded."""
    try:
        doc = json.loads(read_text(Path(unit_dir) / BINDING, "binding file", KEPT,
                                   kept=(FileNotFoundError, IsADirectoryError)))
    except (FileNotFoundError, IsADirectoryError):
        return None, False
    except (OSError, ValueError):
        return None, True
    return (doc, False) if isinstance(doc, dict) else (None, True)


def file_entry(p: Path) -> dict:
    entry = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    rows = _rows(p)
    if rows is not None:
        entry["rows"] = rows
    return entry


def run_root(unit_dir: Path) -> Path:
    """runs/<run>/<experiment>/<variant>/<unit> -> runs/<run>."""
    return Path(unit_dir).parents[2]


def write_manifest(unit_dir: Path, *, config_hash: str, started: float, extra: dict | None = None,
                   inputs=(), root: Path | None = None,
                   data_dir: Path | None = None, volatile: Collection[str] = (), earlier: float = 0.0) -> dict:
    """inputs: files outside the unit that its results depend on: under `root` (the run folder)
    listed under "inputs" relative to it; under `data_dir` (cached data, the base model) under
    "data" relative to it, beside "data_dir". volatile: name patterns (fnmatch, of the listed path) of
    the files holding what the run measured; those listed go under "volatile" (files_digest). earlier: the
    seconds of the unit's attempts before this one (killed and resumed), counted in its "seconds"."""
    files = {p.relative_to(unit_dir).as_posix(): file_entry(p) for p in unit_files(unit_dir)}
    measured = sorted(rel for rel in files if any(fnmatch.fnmatchcase(rel, pattern) for pattern in volatile))
    root = (Path(root) if root is not None else run_root(unit_dir)).absolute()
    used, data = {}, {}
    for p in map(lambda q: Path(q).absolute(), inputs):
        if p.is_relative_to(root):
            used[p.relative_to(root).as_posix()] = file_entry(p)
        elif data_dir is not None and p.is_relative_to(Path(data_dir).absolute()):
            data[p.relative_to(Path(data_dir).absolute()).as_posix()] = file_entry(p)
        else:
            raise ValueError(f"{p}: an input outside the run folder and the data folder")
    finished = time.time()
    manifest = {
        "files": files,
        **({VOLATILE: measured} if measured else {}),
        **({"inputs": used} if used else {}),
        **({"data": data, "data_dir": str(Path(data_dir or "").absolute())} if data else {}),
        "config_hash": config_hash,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "job_id": job_id(),
        "started": started,
        "finished": finished,
        "seconds": round(earlier + finished - started, 3),
        **binding(unit_dir),  # the engine's extra gives the variant's hash and the binding it started with
        **(extra or {}),
    }
    manifest = json.loads(json.dumps(manifest, default=str))  # as read back: the checksum is of what is on disk
    manifest[SELF] = own_digest(manifest)
    write_json(unit_dir / MANIFEST, manifest)
    return manifest


def own_digest(manifest: dict) -> str:
    """The checksum of a manifest's content (its JSON, keys sorted, without SELF): a manifest edited since it
    was written (a file's sha256 changed but not its size, which a skip's size check would pass) no longer
    matches it, while one only reformatted does."""
    body = {k: v for k, v in manifest.items() if k != SELF}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


_MANIFESTS = ReadOnce("manifests_read")


def read_once():
    """Within it each manifest is read once, by its unit's path, and the same mapping handed out again:
    for a command that only reads the run (status), where a unit's state, binding and what its job
    made each asked for it. A unit written within would be read as it was."""
    return _MANIFESTS.held()


def read_manifest(unit_dir: Path) -> dict | None:
    return _MANIFESTS.get(unit_dir, lambda: _read_manifest(unit_dir))  # keyed by the path as given


def _read_manifest(unit_dir: Path) -> dict | None:
    path = Path(unit_dir) / MANIFEST
    try:  # a read refused (permissions, an I/O error) says nothing of the unit: NotRead, not redone
        manifest = json.loads(read_text(path, "manifest", KEPT,
                                        kept=(FileNotFoundError, IsADirectoryError, NotADirectoryError)))
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # no read of it will do, as NotRead's "run the same command again" would promise
        raise UserError(file_in_the_way(path)) from None
    except ValueError:
        return {"corrupt": "not valid JSON"}
    except IsADirectoryError:  # made by hand or a stray tool: the unit is redone, not the run stopped
        return {"corrupt": "a folder, not a file"}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return {"corrupt": "no mapping of files"}  # hand-edited or foreign: not a completion marker
    if SELF in manifest and manifest[SELF] != own_digest(manifest):  # an older version's has none: read as it is
        return {"corrupt": "edited since it was written: its own checksum no longer matches"}
    if said := _misshapen(manifest):
        return {"corrupt": said}
    return manifest


def file_on_the_way(path: Path, below: Path | None = None) -> Path | None:
    """The plain file at `path` or nearest on the way to it (of the folders below `below`, where given: a run
    folder's); None where none is one."""
    way = itertools.takewhile(lambda p: p != below, (Path(path), *Path(path).parents))
    return next((p for p in way if p.is_file()), None)


def file_in_the_way(path: Path) -> str:
    """One line for a plain file where the run keeps a folder, at `path` or on the way to it (a unit's, a
    variant's, its logs', made by hand or a stray tool): the run never deletes what it did not write."""
    here = file_on_the_way(path) or Path(path)
    return f"{here}: a file where the run keeps a folder, which it makes once the file is gone; {MOVE_AWAY}"


# what readers take of a manifest (status's times, the report's compute and packages) as the kind of value each
# is: an older one without its own checksum, edited by hand, is told from a real one here, not by a reader's error
NUMBER, TEXT, MAPPING, COUNT = ((int, float), "a number"), ((str, type(None)), "text"), (dict, "a mapping"), \
    ((int, type(None)), "a whole number")
SHAPE: dict[str, tuple[type | tuple[type, ...], str]] = {
    "seconds": NUMBER, "started": NUMBER, "finished": NUMBER, "resources": MAPPING, "packages": MAPPING,
    "git_commit": TEXT, "host": TEXT, "job_id": TEXT, "generations": COUNT, "attempts": COUNT,
    VOLATILE: (list, "a list")}
WORDS = {int: "a number", float: "a number", str: "text", dict: "a mapping", list: "a list", bool: "true or false"}


def _misshapen(manifest: dict) -> str | None:
    """What of a manifest is not of the kind SHAPE says (None: all is)."""
    for key, (kind, want) in SHAPE.items():
        value = manifest.get(key)
        if key in manifest and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"its {key!r} is {WORDS.get(type(value), 'null')}, not {want}"
    if any(not isinstance(v, int) or isinstance(v, bool) for v in manifest.get("resources", {}).values()):
        return "its 'resources' are not whole numbers"
    if any(not isinstance(rel, str) for rel in manifest.get(VOLATILE, [])):
        return f"its {VOLATILE!r} are not file names"
    return None


def _entry_ok(entry) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)


def verify_unit(unit_dir: Path, deep: bool | Collection[str] = True, config_hash: str | Collection[str] | None = None,
                inputs: bool = False, variant_hash: str | None = None) -> list[str]:
    """Problems with a finished unit (empty list: it verifies). deep=False checks presence and sizes (and the sha256 of
    a file written after its manifest, file_problem);
    deep a collection of the unit's file names (as its manifest lists them): their sha256 too, the files a
    reader uses (the report); config_hash given: the manifest must have been written under that config (or
    one of them); inputs: the run's files outside the unit that it used (collapse-hpc verify) must be
    unchanged too. Launchers leave inputs out: a shared file made again (the VAE classifier) does not
    redo finished units. Always checked: the binding (binding(): the folder, the variant's hash when given, the earlier
    generations' content) and the cached data the unit read ("data", sizes unless deep)."""
    manifest = read_manifest(unit_dir)
    if manifest is None:
        return [f"{unit_dir}: no manifest (unfinished)"]
    if manifest.get("corrupt"):
        return [f"{unit_dir / MANIFEST}: manifest is corrupt ({manifest['corrupt']})"]
    problems = []
    allowed = {config_hash} if isinstance(config_hash, str) else set(config_hash or ())
    if config_hash is not None and manifest.get("config_hash") not in allowed:
        problems.append(f"{unit_dir}: made under config {manifest.get('config_hash')}, "
                        f"the run's config is {' or '.join(sorted(allowed))}")
    every = deep is True  # else only the named files of the unit itself; files outside it by size alone
    listed = [(unit_dir / rel, rel, e, every or (not isinstance(deep, bool) and rel in deep))
              for rel, e in manifest["files"].items()]
    used = manifest.get("inputs") if inputs else None
    if isinstance(used, dict):
        listed += [(run_root(unit_dir) / rel, rel, e, every) for rel, e in used.items()]
    listed += [(p, rel, e, every) for p, rel, e in data_read(manifest)]
    written = _mtime(unit_dir / MANIFEST)
    problems += [why for p, rel, entry, hashed in listed
                 if (why := file_problem(unit_dir / MANIFEST, p, rel, entry, hashed, written)) is not None]
    return problems + binding_problems(unit_dir, manifest, binding(unit_dir, variant_hash))


def files_changed(unit_dir: Path) -> list[str]:
    """How the files a finished unit's manifest lists differ from it, as the skip check sees them (sizes, and
    the sha256 of a file written since the manifest); [] where they match or there is no manifest that reads."""
    manifest = read_manifest(unit_dir)
    if manifest is None or manifest.get("corrupt"):
        return []
    listing = Path(unit_dir) / MANIFEST
    written = _mtime(listing)
    return [why for rel, e in manifest["files"].items()
            if (why := file_problem(listing, Path(unit_dir) / rel, rel, e, False, written)) is not None]


def _mtime(p: Path) -> int | None:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return None


def file_problem(listing: Path, p: Path, rel: str, entry, hashed: bool, written: int | None = None,
                 called: str = "manifest", refused: Callable[[Path, OSError], NotRead] | None = None) -> str | None:
    """What is wrong with file `p`, listed as `rel` with `entry` (bytes, sha256) in `listing` (said as `called`:
    a unit's manifest, a checkpoint's complete.json); its sha256 compared where `hashed`, or where the file was
    written after `written` (the listing's mtime): a byte changed in place since (a bit flip, a hand edit, a
    colleague's copy over it) keeps the size, so a size check alone takes it for the file listed. None where it
    matches. A hash the file system refuses is NotRead: a listed file's, or the caller's own (`refused`)."""
    if not _entry_ok(entry):
        return f"{listing}: entry {rel!r} is corrupt (needs bytes and sha256)"
    if not p.is_file():  # a folder made in its place (by hand, a stray tool) is there, yet not the file
        return f"{p}: {f'a folder, not the file its {called} lists' if p.is_dir() else 'missing'}"
    st = p.stat()
    if st.st_size != entry["bytes"]:
        return f"{p}: size {st.st_size} != {entry['bytes']} in {called}"
    hashed = hashed or (written is not None and st.st_mtime_ns > written)
    if hashed and sha256(p, "listed file", KEPT, refused) != entry["sha256"]:  # refused: NotRead, not a mismatch
        return f"{p}: sha256 mismatch"
    return None


def data_read(manifest: dict) -> list[tuple[Path, str, Any]]:
    """(path, name in the manifest, entry) of every file of cached data (data_dir) a unit's manifest
    says it read: the data set's splits, its token blocks, the tiny base."""
    data = manifest.get("data")
    if not isinstance(data, dict) or not isinstance(manifest.get("data_dir"), str):
        return []
    return [(Path(manifest["data_dir"]) / rel, rel, e) for rel, e in data.items()]


def data_changed(manifest: dict) -> bool:
    """Whether a file of cached data the manifest's unit (or an unfinished unit's binding file) read is
    gone or holds other bytes (hashed): a data set prepared again (--force) since, whose old text the
    unit's results were built on."""
    return any(file_problem(Path(), p, rel, e, hashed=True) is not None for p, rel, e in data_read(manifest))


def extra_files(unit_dir: Path) -> list[Path]:
    """Files of a finished unit that its manifest does not list (nothing vouches for them)."""
    manifest = read_manifest(unit_dir)
    if not manifest or manifest.get("corrupt"):
        return []
    listed = set(manifest["files"])
    return [p for p in unit_files(unit_dir) if p.relative_to(unit_dir).as_posix() not in listed]
