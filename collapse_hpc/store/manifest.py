"""manifest.json: the completion marker of a unit (a generation or an array chunk).

Written last, it lists every file of the unit with its sha256 and row count, so a unit
counts as done only when its manifest exists and every file still matches it.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

from collapse_hpc.store.atomic import is_temporary, sha256_file, write_json

MANIFEST = "manifest.json"
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
    """The artefacts of a unit: every plain file except the manifest and temporaries."""
    return sorted(p for p in unit_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not is_temporary(p))


def _entry(p: Path) -> dict:
    entry = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    rows = _rows(p)
    if rows is not None:
        entry["rows"] = rows
    return entry


def run_root(unit_dir: Path) -> Path:
    """runs/<run>/<experiment>/<variant>/<unit> -> runs/<run>."""
    return Path(unit_dir).parents[2]


def write_manifest(unit_dir: Path, *, config_hash: str, started: float, extra: dict | None = None,
                   inputs=(), root: Path | None = None) -> dict:
    """inputs: files of the run outside the unit that its results depend on (paths under `root`,
    the run folder), listed under "inputs" relative to it."""
    files = {p.relative_to(unit_dir).as_posix(): _entry(p) for p in unit_files(unit_dir)}
    root = Path(root) if root is not None else run_root(unit_dir)
    used = {Path(p).absolute().relative_to(root.absolute()).as_posix(): _entry(Path(p)) for p in inputs}
    finished = time.time()
    manifest = {
        "files": files,
        **({"inputs": used} if used else {}),
        "config_hash": config_hash,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "job_id": job_id(),
        "started": started,
        "finished": finished,
        "seconds": round(finished - started, 3),
        **(extra or {}),
    }
    write_json(unit_dir / MANIFEST, manifest)
    return manifest


def read_manifest(unit_dir: Path) -> dict | None:
    path = Path(unit_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"corrupt": "not valid JSON"}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return {"corrupt": "no mapping of files"}  # hand-edited or foreign: not a completion marker
    return manifest


def _entry_ok(entry) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)


def verify_unit(unit_dir: Path, deep: bool = True, config_hash: str | None = None,
                inputs: bool = False) -> list[str]:
    """Problems with a finished unit (empty list: it verifies). deep=False checks presence and sizes only;
    config_hash given: the manifest must have been written under that config; inputs: the run's
    files outside the unit that it used (collapse-hpc verify) must be unchanged too. Launchers
    leave inputs out: a shared file made again (the VAE classifier) does not redo finished units."""
    manifest = read_manifest(unit_dir)
    if manifest is None:
        return [f"{unit_dir}: no manifest (unfinished)"]
    if manifest.get("corrupt"):
        return [f"{unit_dir / MANIFEST}: manifest is corrupt ({manifest['corrupt']})"]
    problems = []
    if config_hash is not None and manifest.get("config_hash") != config_hash:
        problems.append(f"{unit_dir}: made under config {manifest.get('config_hash')}, "
                        f"the run's config is {config_hash}")
    listed = [(unit_dir / rel, rel, e) for rel, e in manifest["files"].items()]
    used = manifest.get("inputs") if inputs else None
    if isinstance(used, dict):
        listed += [(run_root(unit_dir) / rel, rel, e) for rel, e in used.items()]
    for p, rel, entry in listed:
        if not _entry_ok(entry):
            problems.append(f"{unit_dir / MANIFEST}: entry {rel!r} is corrupt (needs bytes and sha256)")
        elif not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != entry["bytes"]:
            problems.append(f"{p}: size {p.stat().st_size} != {entry['bytes']} in manifest")
        elif deep and sha256_file(p) != entry["sha256"]:
            problems.append(f"{p}: sha256 mismatch")
    return problems


def extra_files(unit_dir: Path) -> list[Path]:
    """Files of a finished unit that its manifest does not list (nothing vouches for them)."""
    manifest = read_manifest(unit_dir)
    if not manifest or manifest.get("corrupt"):
        return []
    listed = set(manifest["files"])
    return [p for p in unit_files(unit_dir) if p.relative_to(unit_dir).as_posix() not in listed]
