"""Helpers for tests: a toy run built in a temporary folder; reads the file system refuses."""
import builtins
import contextlib
import errno
import io
import os
import sys
import sysconfig
from importlib.machinery import PathFinder
from pathlib import Path

from collapse_hpc import engine, experiments  # toy is registered by tests/conftest.py


def toy_run(tmp_path, generations=3, **toy):
    run = experiments.config_from_dict({"name": "t", "generations": generations, "seeds": [0],
                                        "executor": "debug", "toy": toy})
    from collapse_hpc.store import RunStore

    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    return store, run


def readme_outputs() -> dict[str, list[str]]:
    """What the README's Outputs block says a run folder holds, as glob patterns by where: 'run' (its
    top), 'logs', 'unit' (every unit), 'report', and each experiment's own unit files ('lm', 'vae',
    'gmm'). `<name>` and NNN become wildcards, {out,err} two names."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("\n## Outputs\n", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    name = re.compile(r"[\w<>-]+(?:/[\w<>-]+)*\.(?:\{out,err\}|\w+)|[\w<>-]+/(?=[\s(;]|$)")
    labels = "|".join(experiments.BUILTIN)

    def names(s: str) -> list[str]:
        out = []
        for n in name.findall(s):
            n = re.sub(r"<[^>]*>", "*", n).replace("NNN", "[0-9][0-9][0-9]")
            out += [n.replace("{out,err}", e) for e in ("out", "err")] if "{out,err}" in n else [n]
        return out

    lines = block.splitlines()
    found: dict[str, list[str]] = {"run": names(lines[1].split("   ")[0]), "unit": []}
    for i, line in enumerate(lines):
        head, _, rest = line.strip().partition(" ")
        if head == "logs/":
            found["logs"] = names(rest)
        elif head == "report/":
            found["report"] = names(rest)
        elif head == "...":  # each experiment's own files, in the prose of this line and the ones below it
            prose = " ".join([rest, *(ln.strip() for ln in lines[i + 1:] if ln.startswith(" " * 42))])
            for experiment, files in re.findall(rf"\b({labels}): (.*?)(?=\b(?:{labels}): |$)", prose):
                found[experiment] = names(files)
        elif line.startswith(" " * 6) and line[6] != " ":
            found["unit"] += names(head)
    return found


def holds(folder, pattern: str) -> bool:
    """`folder` has something matching an Outputs pattern: a folder (`model/`), or a file at any depth
    (`training.json`, which the block names inside model/)."""
    from pathlib import Path

    folder = Path(folder)
    if pattern.endswith("/"):
        return any(p.is_dir() for p in folder.glob(pattern.rstrip("/")))
    return any(folder.glob(pattern)) or any(folder.rglob(pattern))


def hashed(monkeypatch) -> list:
    """The files sha256_file reads from now on (the real function, counted)."""
    from collapse_hpc.store import manifest, reads

    seen, real = [], manifest.sha256_file
    for module in (manifest, reads):  # a listed file is hashed through reads.sha256 (a refusal: NotRead)
        monkeypatch.setattr(module, "sha256_file", lambda p: seen.append(p) or real(p))
    return seen


def flip(path, keep_time: bool = False) -> None:
    """Change one byte in the middle of a file, its size kept: only its sha256 tells. keep_time: its mtime
    too (as a copy that keeps times leaves it), so the skip check, which hashes a file written after its
    manifest, passes it by its size."""
    data, kept = bytearray(path.read_bytes()), path.stat().st_mtime_ns
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_time:
        os.utime(path, ns=(kept, kept))


# what a machine adds to a process's peak RSS beyond its code's: a torch thread per core, and glibc's dynamic
# mmap threshold (freed mmapped blocks raise it; later ones come from arenas that keep what they free)
MACHINE_FIXED = {"COLLAPSE_THREADS": "2", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def traced_peak_and_estimate(folder, config: dict) -> tuple[int, int]:
    """One array experiment's part run by the debug executor under tracemalloc (numpy's allocations and
    numba's): its peak and the experiment's memory estimate of it. Warm the modules it imports first,
    which tracemalloc would count."""
    import tracemalloc

    from collapse_hpc.launch.debug import execute
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug", **config})
    store = RunStore(folder)
    engine.open_run(store, run)
    chains = engine.plan(run)
    estimate = experiments.get(chains[0].experiment).memory(run, chains[0].variant)
    tracemalloc.start()
    try:
        execute(store, run, chains)
        return tracemalloc.get_traced_memory()[1], estimate
    finally:
        tracemalloc.stop()


def edit_manifest(unit_dir, edit, *, older: bool = False) -> dict:
    """Change a finished unit's manifest as the tool would have written it (its own checksum made anew), or, with
    `older`, as a version before that checksum wrote it (none); returns it."""
    import json
    from pathlib import Path

    from collapse_hpc.store.manifest import MANIFEST, SELF, own_digest

    path = Path(unit_dir) / MANIFEST
    m = json.loads(path.read_text())
    edit(m)
    m.pop(SELF, None)
    if not older:
        m[SELF] = own_digest(m)
    path.write_text(json.dumps(m))
    return m


class FailingMiddle(io.FileIO):
    """A file whose middle byte the disk will not give (EIO): a failing disk, a network file system's hiccup."""

    def _reaching(self, n: int) -> None:
        if self.tell() <= os.fstat(self.fileno()).st_size // 2 < self.tell() + n:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def readinto(self, buffer):
        self._reaching(len(buffer))
        return super().readinto(buffer)

    def read(self, size=-1):
        self._reaching(size if size >= 0 else 1 << 62)
        return super().read(size)

    def readall(self):  # a text read's, through its buffer
        self._reaching(1 << 62)
        return super().readall()


def refuse_reads(monkeypatch, path: Path, refusal: int) -> None:
    """Reads of `path` refused as the file system refuses them: EACCES at its open (a permissions slip, which
    root, running the tests, is never told by chmod), or EIO reading its middle."""
    real = io.open

    def opened(file, *args, **kwargs):
        if not isinstance(file, (str, os.PathLike)) or Path(file) != path:
            return real(file, *args, **kwargs)
        if refusal == errno.EACCES:
            raise PermissionError(refusal, os.strerror(refusal), str(file))
        failing = io.BufferedReader(FailingMiddle(file))
        mode = args[0] if args else kwargs.get("mode", "r")
        return failing if "b" in mode else io.TextIOWrapper(failing)

    monkeypatch.setattr(builtins, "open", opened)
    monkeypatch.setattr(io, "open", opened)


def safetensors_refuses(monkeypatch, path: Path, refusal: int) -> None:
    """safetensors' reads of `path` refused as it says a refusal past its open (its memory map): an
    OSError without an errno, the OS error in its text alone."""
    import safetensors

    real = safetensors.safe_open

    def opened(file, *args, **kwargs):
        if Path(file) == path:
            raise OSError(f"{os.strerror(refusal)} (os error {refusal})")
        return real(file, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", opened)


def nobody():
    """The user `nobody`, as whom a child process works (forked_as) where root's permission bits would bind no one:
    a colleague's files. The test is skipped unless it runs as root."""
    import pwd

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root, to work as another user (nobody) in a child process")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")


class _InterpretersOwn:
    """Finds and loads the modules of the interpreter's standard library as root, for a process that became another
    user: this interpreter may lie where only root may read (under /root), unlike one installed for all users, and
    what the child may import must not depend on what the tests imported before its fork."""

    def __init__(self):
        self.top = Path(sysconfig.get_path("stdlib"))

    def find_spec(self, name, path=None, target=None):
        own = [entry for entry in (path or sys.path) if Path(entry or ".").is_relative_to(self.top)]
        with _as_root():
            spec = PathFinder.find_spec(name, own, target) if own else None
        if spec is not None:
            spec.loader = _RootsLoader(spec.loader)
        return spec


class _RootsLoader:
    """A module loader whose module is read (and its top run) as root; the rest as the loader it wraps."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        with _as_root():
            return self.loader.create_module(spec)

    def exec_module(self, module):
        with _as_root():
            self.loader.exec_module(module)


@contextlib.contextmanager
def _as_root():
    """The block as root, in a child that became another user (become) and kept root as its saved user id."""
    user = os.geteuid()
    os.seteuid(0)
    try:
        yield
    finally:
        os.seteuid(user)


def become(user) -> None:
    """This (forked) process works as `user`, its groups too, and reads the interpreter's own modules still
    (_InterpretersOwn): as a user of an interpreter installed for all."""
    sys.meta_path.append(_InterpretersOwn())  # after the usual finders: for what they may not read
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, 0)  # root kept as the saved user id, for _as_root alone


def forked_as(user, work) -> tuple[int, int]:
    """work() in a forked child process that became `user` (become): its pid, and the read end of a pipe that gets
    what work returns (a str), or its error's name and text (ended)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            become(user)
            try:
                said = work()
            except Exception as e:
                said = f"{type(e).__name__}: {e}"
            os.write(write, said.encode())
        finally:
            os._exit(0)
    os.close(write)
    return pid, read


def ended(child: tuple[int, int]) -> str:
    """What a child of forked_as said, once it ended."""
    pid, read = child
    with os.fdopen(read) as f:
        said = f.read()
    os.waitpid(pid, 0)
    return said


def volatile_unread(store, experiment: str, variant: str) -> tuple[dict, dict]:
    """Experiment.volatile's promise, tried on a chain's generations 0 and 1: generation 1 built on generation 0
    untouched, then built again (its folder removed) on generation 0 with the files its manifest names volatile
    changed -> (its files, {how they were changed: what the build on them gave, its files or the error it
    raised}). Its files: those two builds on the untouched generation 0 give byte for byte (its volatile files that
    hold timings are not). Equal: generation 1 read none of them, and is rightly kept by a redo of generation 0 that
    measured other seconds.

    'other numbers': every number in them other (parquet columns, JSON values), the files still valid, and their
    entries in generation 0's manifest made anew, as the redo writes them (edit_manifest); its digest, what
    generation 1 is bound to, stays. 'unreadable': garbage bytes, written once the engine has checked generation 0
    (it hashes in full what generation 1 reads, and would refuse them as damage), where the experiment's code
    begins: any read of them fails, by whatever library it goes through."""
    import pytest

    from collapse_hpc.store.manifest import file_entry, files_digest, read_manifest

    exp = experiments.get(experiment)
    gen0, gen1 = (store.unit_dir(experiment, variant, "chain", g) for g in (0, 1))
    assert engine.run_unit(store.root, experiment, variant, 0) == "done"
    first, second = (_build(store, experiment, variant) for _ in range(2))
    measured = read_manifest(gen0).get("volatile") or []
    assert measured, f"{gen0}: its manifest names no volatile files"
    repeated = sorted(rel for rel, data in first.items() if second.get(rel) == data)
    unrepeated = set(first) - set(repeated) - set(read_manifest(gen1).get("volatile") or [])
    assert not unrepeated, f"{sorted(unrepeated)}: not repeated on the same input, so the comparison says nothing"
    digest = files_digest(read_manifest(gen0))
    for rel in measured:
        _other_numbers(gen0 / rel)
    edited = edit_manifest(gen0, lambda m: m["files"].update({r: file_entry(gen0 / r) for r in measured}))
    assert files_digest(edited) == digest  # the redo's: generation 1 stays bound
    built = {"other numbers": _build(store, experiment, variant)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exp, "run_unit", _garbling(exp.run_unit, measured))
        built["unreadable"] = _build(store, experiment, variant)
    kept = {how: out if isinstance(out, str) else {rel: out.get(rel) for rel in repeated} for how, out in built.items()}
    return {rel: first[rel] for rel in repeated}, kept


def _build(store, experiment: str, variant: str) -> dict[str, str] | str:
    """Generation 1 built afresh -> its files (those its manifest lists), each with the sha256 of its bytes as on
    disk (not as the manifest says), or the error it raised."""
    import shutil

    from collapse_hpc.store.atomic import sha256_file
    from collapse_hpc.store.manifest import read_manifest

    unit = store.unit_dir(experiment, variant, "chain", 1)
    shutil.rmtree(unit, ignore_errors=True)
    try:
        engine.run_unit(store.root, experiment, variant, 1)
    except Exception as e:  # noqa: BLE001 - whatever a read of garbage raises is the finding
        return f"generation 1 raised {type(e).__name__}: {e}"
    return {rel: sha256_file(unit / rel) for rel in read_manifest(unit)["files"]}


def _garbling(run_unit, measured: list[str]):
    """The experiment's run_unit, with generation 0's `measured` files made garbage before it begins."""
    def garbled(ctx):
        for rel in measured:
            (ctx.previous[0] / rel).write_bytes(b"\x00not what was written\xff" * 4)
        run_unit(ctx)
    return garbled


def _other_numbers(path: Path) -> None:
    """Every number of a parquet table's columns or a JSON document other (times 7, plus 1), its shape kept."""
    import json

    if path.suffix == ".json":
        path.write_text(json.dumps(_renumbered(json.loads(path.read_text()))))
        return
    if path.suffix != ".parquet":
        raise ValueError(f"{path}: neither parquet nor JSON, its numbers unknown here")
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = [pc.add(pc.multiply(c, 7), 1).cast(c.type) if pa.types.is_integer(c.type) or pa.types.is_floating(c.type)
               else c for c in table.columns]
    pq.write_table(pa.Table.from_arrays(columns, schema=table.schema), path)


def _renumbered(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return value * 7 + 1
    if isinstance(value, dict):
        return {k: _renumbered(v) for k, v in value.items()}
    return [_renumbered(v) for v in value]


# another process's unit coming and going in its barest form: the folder made (its parents too), a file written in
# it (under a temporary name first, as atomic writes do), both removed again up to the top (as working() leaves the
# register, a launcher a job's rank records), in a loop fast enough to meet a reader's look and listing within a few
# hundred reads
_CHURN = """import os, sys
top, name, text, folder = sys.argv[1], sys.argv[2], sys.argv[3], os.path.join(*sys.argv[1:2], *sys.argv[4:])
print('in', flush=True)
while True:
    try:
        os.makedirs(folder)
        with open(os.path.join(folder, '.tmp-' + name), 'w') as f:
            f.write(text)
        os.rename(os.path.join(folder, '.tmp-' + name), os.path.join(folder, name))
        os.unlink(os.path.join(folder, name))
        here = folder
        while here != top:
            os.rmdir(here)
            here = os.path.dirname(here)
    except OSError:
        pass
"""


@contextlib.contextmanager
def churning(top: Path, folder: str, file: str = "host-1", text: str = ""):
    """Another process makes and removes `top/folder` (a relative path), with `file` holding `text` in it, in a loop
    while the block runs; it is checked to have run to the block's end (it raced the reads all along)."""
    import subprocess

    churn = subprocess.Popen([sys.executable, "-c", _CHURN, str(top), file, text, *Path(folder).parts],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert churn.stdout.readline().strip() == "in"
        yield
        assert churn.poll() is None
    finally:
        churn.kill()
        churn.wait()
        churn.stdout.close()
