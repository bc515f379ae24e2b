"""The run folder: runs/<run>/{config.yaml, run.json, plan.json, logs/, <experiment>/<variant>/<unit>/}."""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from collapse_hpc import config as cfgmod
from collapse_hpc import yamlfile
from collapse_hpc.errors import ConfigError, UserError
from collapse_hpc.logs import first_few
from collapse_hpc.store import atomic
from collapse_hpc.store.lock import RunLock
from collapse_hpc.store.made import inferred
from collapse_hpc.store.manifest import (BINDING, binding_problems, data_changed, file_in_the_way, last_binding,
                                         read_manifest, verify_unit)
from collapse_hpc.store.live import folders_made, listing
from collapse_hpc.store.reads import read_text, refusals

log = logging.getLogger("collapse_hpc")

CONFIG = "config.yaml"
RUN_JSON = "run.json"  # the config hash the run was made with (RunStore.open)
PLAN = "plan.json"  # the engine's plan of the run, written once per config (engine.freeze)
UNIT = re.compile(r"(gen|part)_\d{3,}")


def utf8_path(path, what: str) -> Path:
    """`path`, refused in one line where its absolute form is not UTF-8 (a folder named in latin-1):
    pyarrow takes only UTF-8 paths, so every unit or report would fail there on a traceback."""
    path = Path(path)
    try:
        str(path.absolute()).encode()
    except UnicodeEncodeError:
        raise UserError(f"{what}{path.absolute()}: the path is not UTF-8 (a name in another encoding), and "
                        f"Parquet files are read and written under UTF-8 paths only: rename it, or give another "
                        f"folder") from None
    return path


def folder_to_make(path, what: str) -> Path:
    """`path` (utf8_path), refused in one line where a part of it is a file or a symbolic link to nothing:
    the folder made there would meet mkdir's bare 'File exists'."""
    from collapse_hpc.store.space import not_a_folder

    blocked = not_a_folder(utf8_path(path, what))
    if blocked:
        raise UserError(f"{what}{blocked}; a folder is made there: give a folder's path")
    return Path(path)


def made_folder(path, what: str) -> Path:
    """`path` made (folder_to_make's checks first), or one line naming the folder the file system would not
    make and why: mkdir's word alone was "/proc/x: No such file or directory", the folder asked for unnamed."""
    path = folder_to_make(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what}{path}: the folder could not be made: {_why_not_made(e, path)}; give a folder "
                        f"that can be made") from None
    return path


def _why_not_made(e: OSError, path: Path) -> str:
    """The part of the path mkdir refused and what that refusal means there."""
    from collapse_hpc.store.space import mount_point

    part = Path(e.filename) if e.filename is not None else path
    said = f"{part}: {e.strerror or e}"
    if e.errno == errno.ENOENT and part.parent.is_dir():  # its parent is there: its file system makes none
        return f"{said}, though {part.parent} is there (the kernel's file systems, /proc and /sys, take no folders)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{said} (no permission to make a folder in {part.parent})"
    if e.errno == errno.EROFS:
        return f"{said} ({mount_point(part)} is mounted read-only)"
    return said


def unit_name(shape: str, index: int) -> str:
    return f"gen_{index:03d}" if shape == "chain" else f"part_{index:03d}"


def unit_index(name: str) -> int:
    """The generation or part number of a unit folder's name (gen_003 -> 3)."""
    return int(name.rpartition("_")[2])


def _warn_inexact(root: Path, changed: list[tuple[str, bool]], redone: Callable[[], list[str] | None] | None) -> None:
    """One line where how-it-runs knobs changed that change results in rounding or random draws; it
    names the partial work of unfinished units that is not kept (`redone`: the engine's judgement)."""
    inexact = [line for line, exact in changed if not exact]
    if not inexact:
        return
    lost = redone() if redone is not None else None
    kept = "" if lost is None else ("; unfinished units keep their partial work"
                                    + (f" but {', '.join(lost)}, which is redone" if lost else ""))
    print(f"warning: {root}: {'; '.join(inexact)}: the run goes on, and its generations from now on differ "
          f"from the earlier ones in float rounding and random draws only (equal in distribution, not bit "
          f"for bit); each generation's manifest records what it ran with{kept}", file=sys.stderr)


def _warn_overwritten(path: Path, made: dict, edited: object, new: dict, sections: Mapping[str, type]) -> None:
    """One line where config.yaml was edited by hand (how-it-runs knobs: `made` -> `edited`) and the
    config given now says otherwise: the given one wins and is saved over the edit."""
    if not isinstance(edited, dict):
        return
    lost = []
    for name, cls in sections.items():
        was, hand, now = made.get(name), edited.get(name), new.get(name)
        if not (isinstance(was, dict) and isinstance(hand, dict) and isinstance(now, dict)):
            continue
        hand, now = cfgmod.defaults(cls) | hand, cfgmod.defaults(cls) | now
        lost += [f"{name}.{k}: {hand.get(k)!r} by hand, {now.get(k)!r} in the config given"
                 for k in cfgmod.knobs_changed(was, hand, cls) if k in cfgmod.knobs_changed(hand, now, cls)]
    if lost:
        print(f"warning: {path} was edited by hand ({'; '.join(lost)}): the run goes on with the config given "
              f"and saves it over the edit; to keep the edit, run {path} itself or --set the key", file=sys.stderr)


def closed(folder: Path) -> None:
    """Make `folder` (or keep it) writable by its owner only: submitit's job pickles live in
    logs/submitit, and whoever can write there runs code in the run's jobs."""
    if folder.is_symlink():
        raise UserError(f"{folder}: a symbolic link in the run folder; the run never writes through one: remove it")
    if folder.exists() and not folder.is_dir():
        raise UserError(file_in_the_way(folder))
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    if mode & 0o022:
        try:
            os.chmod(folder, mode & 0o7755)
        except OSError:  # someone else's folder: its owner must close it
            raise UserError(f"{folder}: writable by others and not ours to change; the jobs run the pickles "
                            f"in it: make it writable by its owner only (chmod go-w)") from None


def not_a_run(path) -> str:
    """The line every command that reads a run folder (status, cancel, verify, aggregate) says of a path that
    is none: no such folder, a file, or a folder without the config.yaml a run writes first."""
    root = Path(path)
    what = ("not a run folder (no " + CONFIG + ")" if root.is_dir() else
            "not a run folder (a file)" if root.exists() else "no such run folder")
    return f"{path}: {what}; collapse-hpc run or submit makes one (runs/<config name>, or --run FOLDER)"


def existing_run(path) -> RunStore:
    """The run folder at `path`, refused in not_a_run's line where there is none."""
    store = RunStore(path)
    if not store.exists():
        raise UserError(not_a_run(path))
    return store


def _a_run_record(doc) -> bool:
    """Whether `doc` has the shape run.json is written in (RunStore.open; an older version's: the hash alone)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("config_hash"), str):
        return False
    earlier, config, knobs = doc.get("earlier", []), doc.get("config", {}), doc.get("how_it_runs", [])
    return (isinstance(earlier, list) and all(isinstance(h, str) for h in earlier)
            and isinstance(config, dict) and isinstance(knobs, list))


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self._lock: RunLock | None = None

    # ---- paths
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def plan_path(self) -> Path:
        return self.root / PLAN

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def variant_dir(self, experiment: str, variant: str) -> Path:
        return self.root / experiment / variant

    def unit_dir(self, experiment: str, variant: str, shape: str, index: int) -> Path:
        return self.variant_dir(experiment, variant) / unit_name(shape, index)

    def lock(self, log=print, wait_s: float = 0, command: str | None = None, launcher: bool = False) -> RunLock:
        """The run's lock; one object per store, so taking it again inside a held block nests.
        wait_s: how long a killed launcher's unit processes are waited for (RunLock.wait_s); command,
        launcher: who takes it, as the refusal of another process names it (RunLock)."""
        if self._lock is None:
            self._lock = RunLock(self.root / ".lock", log=log, wait_s=wait_s, command=command, launcher=launcher)
        elif not self._lock.held:
            self._lock.log, self._lock.wait_s = log, wait_s
            self._lock.command, self._lock.launcher = command, launcher
        return self._lock

    # ---- config
    def exists(self) -> bool:
        return self.config_path.is_file()

    def load_config(self, sections: Mapping[str, type], made: dict | None = None) -> cfgmod.RunConfig:
        """The run's saved config, with `sections` (experiments.sections()) as its experiments; `made`: its
        mapping as saved() read it, not read again."""
        if made is None and not self.exists():
            raise UserError(not_a_run(self.root))
        # as the run recorded it (a hand edit of how-it-runs knobs counts from the next run on); keys
        # added since take their defaults
        return cfgmod.from_dict(self.saved_config(sections) if made is None else made, str(self.config_path),
                                sections=sections)

    def open(self, run: cfgmod.RunConfig, redone: Callable[[], list[str] | None] | None = None) -> cfgmod.RunConfig:
        """Create the run folder, or check that an existing one was made with the same config.

        Generation counts may change (extend or shorten chains), and so may a section's how-it-runs
        knobs (config.knob's hashed=False; a warning where results change in rounding or random draws);
        keys the saved config lacks (made by an older version) count at their defaults. Anything else
        that changes what a generation computes is refused. A changed config is saved, and run.json
        keeps the hashes it was made under before (`earlier`: the manifests of its finished units).
        `redone` names the partial work of unfinished units that changed knobs do not leave sound to
        go on from (engine.redone_partial_work), for the warning line.
        """
        new = run.to_dict()
        recorded = self._recorded_hash() if self.exists() else None
        if self.exists() and recorded is None:  # neither run.json nor the line a run writes
            raise UserError(f"{self.config_path}: not a config a run saved (no {RUN_JSON} beside it, no "
                            f"'# config_hash:' line): --run names a folder of yours; keep configs outside run "
                            f"folders, or give another --run")
        old = hand = None
        earlier: set[str] = set()
        if self.exists():  # the config as the run made it, and the file's values as they are now: one read
            _, hand, old = self._saved(run.section_classes())
            earlier = ({cfgmod.config_hash(old)} | self._earlier()) - {run.hash()}  # a damaged run.json: refused
        # edited by hand after the run saved it (how-it-runs knobs only, else _saved refuses it): the next run
        # saves the config it goes on with over it
        edited = hand is not None and cfgmod.config_hash(hand) != recorded
        if old is not None and edited:
            _warn_overwritten(self.config_path, old, hand, new, run.section_classes())
        if old is not None and cfgmod.config_hash(old) != run.hash():  # refused before anything is made
            old = cfgmod.defaults(cfgmod.RunConfig) | old  # run-level keys added since: at their defaults
            changes = cfgmod.diff(old, new, run.section_classes())
            if changes:
                raise UserError(f"{self.root} was made with a different config ({first_few(changes, 3, '; ')})"
                                + (cfgmod.regimes_changed(changes, old) or "; use another --run for a new run"))
            _warn_inexact(self.root, cfgmod.runs_diff(old, new, run.section_classes()), redone)
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.logs, self.logs / "submitit"):
            closed(folder)
        # unchanged, and run.json keeps its copy of the config (an older version's gets one now: a later
        # hand edit is judged against it)
        if old == new and not edited and self._made_config(run.hash()) is not None:
            return run
        atomic.write_text(self.config_path, f"# config_hash: {run.hash()}\n" + cfgmod.dump(run))
        knobs = sorted(f"{name}.{k}" for name, cls in run.section_classes().items() for k in cfgmod.how_it_runs(cls))
        # the config itself too: a later hand edit of config.yaml is judged against it (saved_config)
        atomic.write_json(self.root / RUN_JSON, {"config_hash": run.hash(), "updated": time.time(),
                                                 **({"earlier": sorted(earlier)} if earlier else {}),
                                                 "config": new, "how_it_runs": knobs})
        return run

    def config_hashes(self, made: dict) -> set[str]:
        """The hashes of every config the run was made under: its saved config's (`made`, as saved_config read
        it: an edit by hand is said before a damaged record), and those run.json keeps from before a how-it-runs
        knob changed or a newer version added keys (`earlier`)."""
        return {cfgmod.config_hash(made)} | self._earlier()

    def _earlier(self) -> set[str]:
        """The hashes run.json keeps of the configs the run was made under before its saved one (`earlier`)."""
        doc = self._intact_record()
        return set(doc.get("earlier", []) if doc is not None else [])

    def saved_config(self, sections: Mapping[str, type] | None = None) -> dict:
        """The run's config.yaml as a mapping, as the run made it (saved), or one error line (never a traceback)."""
        return self.saved(sections)[1]

    def saved(self, sections: Mapping[str, type] | None = None) -> tuple[str, dict]:
        """The run's config.yaml as written (its text, from the one read) and as a mapping, as the run made it,
        or one error line (never a traceback).

        Its hash stays what run.json recorded when the run was made (only keys the hash leaves out,
        such as generation counts, may change): an edit by hand would have the next run redo, under
        the edited values, every unit made under the old ones. An edit of how-it-runs knobs only counts
        from the next run on; where run.json (an older version's) keeps no copy of the config, `sections`
        (name -> Section dataclass) tell the knobs, and the config it was made with is inferred."""
        text, _, made = self._saved(sections)
        return text, made

    def _saved(self, sections: Mapping[str, type] | None) -> tuple[str, dict, dict]:
        """saved's text and config, with between them the file's values as they are (an edit of how-it-runs
        knobs: not the config the run made), all of one read."""
        try:  # a read refused is NotRead, not damage to restore
            text = self._saved_text()
            old = yamlfile.loads(text, str(self.config_path))
        except ConfigError as e:
            raise UserError(f"the run's saved config: {e}; restore it{self._copy_kept()} or use another "
                            f"--run") from None
        if not isinstance(old, dict):
            raise UserError(f"{self.config_path}: the run's saved config is not a mapping of keys; "
                            f"restore it{self._copy_kept()} or use another --run")
        recorded = self._recorded_hash()
        if recorded is None or cfgmod.config_hash(old) == recorded:
            return text, old, old
        made = self._made_config(recorded) or (inferred(self.root, old, recorded, sections) if sections else None)
        shown = ""
        if made is not None:
            config, knobs = made
            hashed = [line for line in cfgmod.diff(config, old) if line.split(": ", 1)[0] not in knobs]
            if not hashed:  # how-it-runs knobs only: the next run goes on under them, as with --set
                return text, old, config
            shown = f" ({first_few(hashed, 3, '; ')})"
            lacking = [k for k in config if k not in old]
            if lacking:  # a file cut short (a copy stopped midway): its whole sections, not each one's values
                shown = f" (it lacks {', '.join(lacking)}: cut short?)"
        if made is None and self._made_config(recorded, any_hash=True) is None:  # an older version's run.json
            raise UserError(f"{self.config_path} was edited after the run was made: its values no longer hash to "
                            f"the {recorded} of {self._without_copy()}, so which keys the edit changed cannot be "
                            f"told (a how-it-runs knob may change, other keys not); restore the file and give the "
                            f"knob with --set KEY=VALUE, or start another --run with the new values")
        raise UserError(f"{self.config_path} was edited after the run was made{shown}: its values no longer hash "
                        f"to the {recorded} of {RUN_JSON}, and the run's results are the old values'; restore it"
                        f"{self._copy_kept()}, "
                        f"or start another --run with the new ones (more generations need no edit: "
                        f"--generations N)")

    def _config_reads(self):
        """A block reading config.yaml: a read the file system refuses is NotRead, never damage to restore nor a
        config unedited."""
        return refusals(self.config_path, "the run's saved config", "the run is kept as it is")

    def _saved_text(self) -> str:
        """config.yaml's text (yamlfile.read: ConfigError where it is none a config may be; _config_reads)."""
        with self._config_reads():
            return yamlfile.read(self.config_path)

    def _without_copy(self) -> str:
        """Where the recorded config hash was read, and why no copy of the config is there to tell the edit by."""
        doc = self._record()
        if isinstance(doc, dict) and isinstance(doc.get("config_hash"), str):
            return f"{RUN_JSON}, which an older version wrote without a copy of the config"
        if (self.root / RUN_JSON).exists():  # cut short or overwritten: not an older version's
            return f"{CONFIG}'s first line ({RUN_JSON}, which keeps a copy of the config, no longer reads as one)"
        return f"{CONFIG}'s first line, which an older version wrote without a copy of the config"

    def _copy_kept(self) -> str:
        """Where run.json keeps the config the run was made with, a clause saying so (to restore config.yaml)."""
        return f" ({RUN_JSON} keeps a copy of the run's config under 'config')" if self._made_config(
            "", any_hash=True) else ""

    def _made_config(self, recorded: str, any_hash: bool = False) -> tuple[dict, set[str]] | None:
        """The config run.json keeps beside its hash (`config`), with the dotted keys of the knobs a run
        may change (`how_it_runs`), where it hashes to `recorded` (any_hash: whatever it hashes to); None
        for a run.json of an older version."""
        doc = self._record()
        config, knobs = (doc.get("config"), doc.get("how_it_runs")) if isinstance(doc, dict) else (None, None)
        if not isinstance(config, dict) or not isinstance(knobs, list) or (
                not any_hash and cfgmod.config_hash(config) != recorded):
            return None
        return config, {k for k in knobs if isinstance(k, str)}

    def _record(self):
        """run.json as read (any JSON value); None where there is none, or it is no JSON (cut short). A read
        the file system refuses is NotRead: taken as none, the run's config would be judged without it, and
        run.json written anew without the hashes it kept."""
        try:
            return json.loads(read_text(self.root / RUN_JSON, "run record", "the run is kept as it is",
                                        kept=(FileNotFoundError, IsADirectoryError)))
        except (OSError, ValueError):
            return None

    def _intact_record(self) -> dict | None:
        """run.json as read; None where there is none (an older version's run). One there that is no run record
        (cut short, garbage, another shape) is one error line: its `earlier` hashes are kept nowhere else, and
        without them a run would write it anew and verify judge the units made under them another config's."""
        doc = self._record()
        if doc is None and not (self.root / RUN_JSON).exists():
            return None
        if _a_run_record(doc):
            return doc
        raise UserError(f"{self.root / RUN_JSON}: not a run record (cut short or damaged), and it keeps the hashes "
                        f"of the configs the run was made under: restore it, or remove it to go on without them "
                        f"(units made under an earlier config then read as another config's)")

    def _recorded_hash(self) -> str | None:
        """The config hash run.json recorded, else config.yaml's first line (`# config_hash: …`, written
        with it); None where neither has one (a config.yaml written by another hand)."""
        doc = self._record()
        found = doc.get("config_hash") if isinstance(doc, dict) else None
        if isinstance(found, str):
            return found
        with self._config_reads(), open(self.config_path, errors="replace") as f:
            header = re.fullmatch(r"# config_hash: ([0-9a-f]{16})\s*", f.readline())
        return header.group(1) if header else None

    # ---- units
    def is_done(self, unit_dir: Path, deep: bool = True) -> bool:
        return read_manifest(unit_dir) is not None and not verify_unit(unit_dir, deep=deep)

    def reset_unit(self, unit_dir: Path, keep: tuple[str, ...] = (), expected: dict | None = None) -> None:
        """Make an unfinished unit ready to redo: drop its files except resumable sub-folders.

        Inside those only temporaries go (files, and folders such as a killed swap's .tmp-best.XXXX/;
        the unit's redo is their only writer), and a folder swap killed midway is put back (atomic.recover):
        their complete files (atomic writes) are reused, unless
        the unit was finished once and its manifest no longer vouches for a file there (changed
        or missing afterwards): then that whole sub-folder goes, its files may depend on each other.
        Nothing is kept when the last attempt was made for another binding (`expected`, manifest.binding:
        another folder, variant or earlier generations' content), or on cached data since changed. A
        symlink in the unit is refused, never followed: deleting through it would empty whatever it points at.
        """
        self.refuse_links(unit_dir)
        folders_made(unit_dir)  # the experiment's units refusing beside remove their empty folders (engine._refused)
        # a binding file cut short or garbage (unbound): what the leftovers were made for is unknown (as none:
        # an older version's unit, which wrote none, keeps them)
        last, unbound = last_binding(unit_dir)
        stale = expected is not None and (unbound or (last is not None and bool(binding_problems(unit_dir, last,
                                                                                                 expected))))
        if stale and unbound and any((unit_dir / name).is_dir() for name in keep):
            log.warning("%s: does not read as a binding (cut short or damaged): the unit's partial work is redone",
                        unit_dir / BINDING)
        for name in keep:  # a kept folder whose swap (atomic_dir) was killed midway: back in place
            atomic.recover(unit_dir / name)
        # on cached data changed since (a data set prepared again), as the manifest or binding file lists it
        bad = set(keep) if stale or (last is not None and data_changed(last)) else self._tampered(unit_dir, keep)
        for p in unit_dir.iterdir():
            if p.is_dir() and p.name in keep and p.name not in bad:
                for old in sorted(p.rglob(atomic.OLD_PREFIX + "*"), reverse=True):  # so too inside (a best model)
                    atomic.recover(old.with_name(old.name[len(atomic.OLD_PREFIX):]))
                for folder in [p, *sorted(q for q in p.rglob("*") if q.is_dir())]:
                    atomic.sweep(folder)  # temporary files and folders (a killed atomic_dir's, whole)
            elif p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def refuse_links(self, unit_dir: Path) -> None:
        """One error line naming the first symlink on the way to or inside a unit folder."""
        unit_dir = Path(unit_dir)
        here = unit_dir
        while here != self.root and self.root in here.parents:
            if here.is_symlink():
                raise UserError(f"{here}: a symbolic link inside the run folder; the run never deletes or writes "
                                f"through one: remove the link (the run makes a plain folder)")
            here = here.parent
        if unit_dir.is_dir():
            for p in unit_dir.rglob("*"):
                if p.is_symlink():
                    raise UserError(f"{p}: a symbolic link inside a unit folder; the run never deletes or writes "
                                    f"through one: remove the link")

    @staticmethod
    def _tampered(unit_dir: Path, keep: tuple[str, ...]) -> set[str]:
        """The kept sub-folders holding a file that differs from the unit's old manifest."""
        manifest = read_manifest(unit_dir)
        if not manifest or manifest.get("corrupt"):
            return set()
        bad = set()
        for rel, entry in manifest["files"].items():
            top = rel.split("/", 1)[0]
            if top not in keep or "/" not in rel or top in bad:
                continue
            p = unit_dir / rel
            ok = (isinstance(entry, dict) and p.is_file() and p.stat().st_size == entry.get("bytes")
                  and atomic.sha256_file(p) == entry.get("sha256"))
            if not ok:
                bad.add(top)
        return bad

    def units(self) -> list[Path]:
        """Every unit folder of the run (finished or not)."""
        return [unit for experiment in listing(self.root) for variant in listing(experiment)
                for unit in listing(variant) if UNIT.fullmatch(unit.name) and unit.is_dir()]
