"""Typed configuration: YAML -> dataclasses, command-line overrides, validation.

A config file has run-level keys (RunConfig below) and one section per experiment, named
after it (`gmm:`, `gaussian:`, `lm:`, `vae:`), each loading into that experiment's own
dataclass. Every problem is reported as one line naming the file and the key.

This module knows no experiment: the caller names the sections a config may hold
(`sections`: name -> Section dataclass; experiments.sections() gives the registered ones).
Loading checks keys, types and ranges and nothing else; what a config plans is the engine's
to check.

Field metadata used for validation: min / max (inclusive), gt (exclusive lower bound),
choices, and help (shown by `collapse-hpc config` without a CONFIG). Metadata of what a run folder
compares when it resumes (knob's hashed / exact): a knob that says how a unit runs, not what it computes,
is hashed=False; exact=False where changing it changes results in float rounding or random draws only
(equal in distribution, not bit for bit).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from collapse_hpc import yamlfile
from collapse_hpc.errors import ConfigError, refusals
from collapse_hpc.regimes import KINDS, Regime

# Control characters: never meaningful in a config string, and a newline in a value that reaches
# an #SBATCH line or an `export` would be a line of shell of its own.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# A name that becomes one folder (a data set): no `/`, no `..`, nothing a shell or a URL mangles.
FILE_NAME = re.compile(r"[A-Za-z0-9_-]+")
FILE_NAME_CHARS = "letters, digits, - and _"
MAX_INT = 2**31 - 1  # no count of this project is larger; 1e20 is a typo, not a plan

EXECUTORS = ("local", "slurm", "debug")  # where units run; launch/ has one back-end each

# Keys that say where or how a run executes, not what it computes: not part of the config hash.
NOT_HASHED = ("name", "executor", "profile", "data_dir", "generations")


DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # 1e-3, 3E5, .5: a number in any notation

def knob(default, help: str = "", *, hashed: bool = True, exact: bool = True, **checks):
    """A config field with a documented default and validation checks.

    hashed=False: the knob says how a unit runs, not what it computes; a run resumes after it changed
    (each unit's manifest records the value it ran with). exact=False (with hashed=False): results then
    differ from the earlier generations' in float rounding or random draws, and the resume warns."""
    meta = {"help": help, **checks} | ({} if hashed else {"hashed": False, "exact": exact})
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(v):
    return copy.deepcopy(v)


@dataclass
class Section:
    """Base of every experiment's config section; unset shared keys fall back to the run's."""

    enabled: bool = knob(True, "run this experiment when the config is run")
    generations: int | None = knob(None, "generations for this experiment (default: the run's)", min=1)
    seeds: list[int] | None = knob(None, "seeds for this experiment (default: the run's)", min=0, unique=True)
    regimes: list[Regime] | None = knob(None, "regimes for this experiment (default: the run's)", unique=True)


@dataclass
class RunConfig:
    name: str = knob("run", "run name, shown in reports (the run folder defaults to runs/<config file name>)")
    generations: int = knob(3, "generations per chain (generation 0 trains on real data)", min=1)
    seeds: list[int] = knob([0], "one chain per seed (and regime)", min=0, unique=True)  # numpy seeds are >= 0
    regimes: list[Regime] = knob([Regime()], "data regimes, each a chain: replace (with keep_fraction, alias "
                                 "keep_original_fraction), accumulate, accumulate-subsample, detector-resample, "
                                 "verifier-filter (with verifier_quantile; lm only); a regime may "
                                 "override an experiment's keys for its own chains, e.g. "
                                 "{name: replace, keep_fraction: 0.1, lm: {epochs: 10}}", unique=True)
    executor: str = knob("local", "where units run: local (subprocesses), slurm, debug (in-process)",
                         choices=EXECUTORS)
    profile: str | None = knob(None, "cluster profile YAML (slurm/…); needed for executor slurm; saved absolute, "
                                     "as data_dir")
    data_dir: str = knob("data", "prepared data sets (collapse-hpc data prepare); a relative path is read from the "
                                 "folder the command runs in and saved absolute in the run folder's config.yaml")
    sections: dict[str, Any] = field(default_factory=dict)  # experiment name -> its Section

    def section(self, name: str):
        return self.sections[name]

    def section_for(self, name: str, regime: Regime | None = None):
        """The section as the chains of `regime` see it: the regime's overrides of `name` applied
        (checked when the config was loaded)."""
        changes = regime.overrides_of(name) if regime is not None else {}
        return dataclasses.replace(self.sections[name], **changes) if changes else self.sections[name]

    def enabled(self) -> list[str]:
        return [n for n, s in self.sections.items() if s.enabled]

    def generations_of(self, name: str) -> int:
        return self.sections[name].generations or self.generations

    def seeds_of(self, name: str) -> list[int]:
        s = self.sections[name].seeds
        return list(self.seeds if s is None else s)

    def regimes_of(self, name: str) -> list[Regime]:
        r = self.sections[name].regimes
        return list(self.regimes if r is None else r)

    def to_dict(self) -> dict:
        out = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "sections"}
        for name, sec in self.sections.items():
            out[name] = plain(sec)
        return out

    def hash(self) -> str:
        return config_hash(self.to_dict())

    def section_classes(self) -> dict[str, type]:
        """experiment name -> its Section dataclass, for the sections this config holds."""
        return {name: type(sec) for name, sec in self.sections.items()}


def plain(v):
    """A config value as plain data (YAML/JSON): dataclasses as mappings, a Regime as the user writes it."""
    if isinstance(v, Regime):  # overrides written as the user writes them: {name: …, lm: {epochs: 10}}
        extra = {"verifier_quantile": v.verifier_quantile} if v.name == "verifier-filter" else {}
        return {"name": v.name, "keep_fraction": v.keep_fraction, **extra, **plain(v.overrides)}
    if dataclasses.is_dataclass(v):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def _strip(d: dict) -> dict:
    """The config without what says where or how it runs: NOT_HASHED at the run level, and a
    section's own generation count (the sections are the run-level mappings)."""
    return {k: ({s: x for s, x in v.items() if s != "generations"} if isinstance(v, dict) else v)
            for k, v in d.items() if k not in NOT_HASHED}


def config_hash(d: dict) -> str:
    """Hash of what the run computes (locations, executor and generation counts excluded); a value JSON has no
    type for (a date YAML reads in a hand edit of config.yaml) hashed as its text, as from_dict loads it."""
    return hashlib.sha256(json.dumps(_strip(d), sort_keys=True, default=str).encode()).hexdigest()[:16]


def how_it_runs(cls) -> dict[str, bool]:
    """The knobs of a config dataclass that the hash of what it computes leaves out (hashed=False),
    each with whether results stay bit for bit the same when it changes (exact)."""
    return {f.name: f.metadata["exact"] for f in dataclasses.fields(cls) if f.metadata.get("hashed") is False}


def _default(f: dataclasses.Field):
    """A config field's default as plain data; dataclasses.MISSING where it has none."""
    if f.default is not dataclasses.MISSING:
        return plain(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return plain(f.default_factory())
    return dataclasses.MISSING


def defaults(cls) -> dict:
    """Every key of a config dataclass at its default, as plain data."""
    return {f.name: d for f in dataclasses.fields(cls)
            if f.name != "sections" and (d := _default(f)) is not dataclasses.MISSING}


def computed(d: dict, sections: Mapping[str, type]) -> dict:
    """What a config (a run's, or a variant's: Variant.config) computes: what the hash ignores left
    out, each of `sections` (name -> Section dataclass) with its keys at their defaults where `d`
    lacks them (keys added since a run folder was made; a new key's default keeps the old behaviour)
    and without its how-it-runs knobs. A regime's overrides stay as they are: they name its variants
    (replace-p0-ranks2-s0), so another value would be another chain."""
    out = _strip(copy.deepcopy(d))
    for name, cls in sections.items():
        if isinstance(out.get(name), dict):
            left_out = {*how_it_runs(cls), "generations"}
            out[name] = {k: v for k, v in (defaults(cls) | out[name]).items() if k not in left_out}
    return out


def _walk(a: dict, b: dict, prefix: str = "") -> list[str]:
    """What differs, by dotted key; in lists of mappings as long as each other (regimes), by item:
    regimes[1].lm.epochs, not the whole list."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _walk(va, vb, f"{prefix}{k}.")
        elif isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb) and va != vb and \
                all(isinstance(x, dict) for x in va + vb):
            out += [line for i, (x, y) in enumerate(zip(va, vb)) for line in _walk(x, y, f"{prefix}{k}[{i}].")]
        elif va != vb:
            out.append(f"{prefix}{k}: {_said(a, k)} -> {_said(b, k)}")
    return out


def _said(config: dict, key: str) -> str:
    """A key's value in a diff line; a key one side lacks is absent, not None (a typo read `lm.epoch: None -> 3`)."""
    return repr(config[key]) if key in config else "absent"


def regimes_changed(changes: list[str], old: dict) -> str:
    """Where `changes` (diff's lines) edit a regime of the `old` config, one sentence saying which chains
    that is and what to do; '' where none does. A regime's values and overrides name its chains' folders,
    so such an edit is other chains, not these ones resumed."""
    chains = []
    for line in changes:
        found = re.match(r"(?:(\w+)\.)?regimes\[(\d+)\]\.(\w+)", line)
        if not found:
            continue
        section, index, key = found.groups()
        items = (old.get(section) or {}).get("regimes") if section else old.get("regimes")
        item = items[int(index)] if isinstance(items, list) and int(index) < len(items) else None
        label = _regime_label(item) if isinstance(item, dict) else f"regimes[{index}]"
        overridden = isinstance(item, dict) and isinstance(item.get(key), dict)
        chains.append(f"the {key} chains {key}/{label}-*" if overridden else f"every {label} chain")
    if not chains:
        return ""
    return (f"; that is {', '.join(dict.fromkeys(chains))}: a regime's values and overrides name its chains, so "
            f"the edit makes other chains than those the run holds; put the old value back to resume this run, "
            f"or use another --run for a new one")


def _regime_label(item: dict) -> str:
    """A saved regime's folder name (replace-p0.1), or its kind where its values no longer make one."""
    try:
        return Regime(**{k: v for k, v in item.items() if k in ("name", "keep_fraction", "verifier_quantile")}).label
    except (TypeError, ValueError):
        return str(item.get("name"))


def diff(a: dict, b: dict, sections: Mapping[str, type] | None = None) -> list[str]:
    """Dotted keys whose values differ, ignoring what the hash ignores; given `sections`, what
    computed() ignores too (how-it-runs knobs, keys of one config at their defaults in the other)."""
    if sections is None:
        return _walk(_strip(a), _strip(b))
    return _walk(computed(a, sections), computed(b, sections))


def runs_diff(a: dict, b: dict, sections: Mapping[str, type]) -> list[tuple[str, bool]]:
    """The how-it-runs knobs of the sections that differ between configs `a` and `b`, each with
    whether results stay bit for bit the same (exact): ('lm.ranks: 4 -> 2', False)."""
    out = []
    for name, cls in sections.items():
        old, new = a.get(name), b.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            base = defaults(cls)
            out += [(f"{name}.{k}: {(base | old).get(k)!r} -> {(base | new).get(k)!r}", exact)
                    for k, exact in knobs_changed(old, new, cls).items()]
    return out


def knobs_changed(old: dict, new: dict, cls) -> dict[str, bool]:
    """The how-it-runs knobs whose values differ between two mappings of one section (`cls`, keys
    they lack at their defaults), each with whether results stay bit for bit the same (exact)."""
    base = defaults(cls)
    return {k: exact for k, exact in how_it_runs(cls).items() if (base | old).get(k) != (base | new).get(k)}


# ---------------------------------------------------------------- building dataclasses

class _Where:
    def __init__(self, file: str, sections: Mapping[str, type] | None = None):
        self.file = file
        self.sections = sections or {}  # experiment name -> its Section dataclass

    def fail(self, key: str, msg: str) -> NoReturn:
        raise ConfigError(f"{self.file}: {key}: {msg}")


def _typename(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, key: str, where: _Where):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _convert(a, value, key, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            where.fail(key, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        inner = args[0] if args else Any
        if origin is list and isinstance(value, str) and _names(inner):
            value = [value]  # decoding: beam, regimes: replace, setup: "module load x": one item, unambiguous
        if not isinstance(value, (list, tuple)):
            _not_a_list(key, value, where)
        return [_convert(inner, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            where.fail(key, f"expected a mapping, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or CONTROL.search(k):
                where.fail(key, f"key {k!r}: must be a string without control characters")
            # a mapping's value may be empty (env: {CUDA_VISIBLE_DEVICES: ""}); a key's own value may not
            out[k] = v if inner is str and v == "" else _convert(inner, v, f"{key}.{k}", where)
        return out
    if dataclasses.is_dataclass(tp):
        if tp is Regime and isinstance(value, str):
            value = _regime_from_str(value, key, where)
        if tp is Regime and isinstance(value, dict):
            value = _regime_overrides(_regime_alias(value, key, where), key, where)
        if not isinstance(value, dict):
            where.fail(key, f"expected a mapping of {_typename(tp)} keys, got {value!r}")
        return build(tp, value, where.file, prefix=f"{key}.", sections=where.sections)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            where.fail(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            where.fail(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and DECIMAL.fullmatch(value.strip()):  # YAML 1.1 reads 1e-3 as a string
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            where.fail(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            where.fail(key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            where.fail(key, f"expected a string, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            where.fail(key, f"must be a finite number, got {value!r}")
        if CONTROL.search(str(value)):  # a newline in a job name is a shell line in the sbatch script
            where.fail(key, f"must not contain control characters (newline, tab, …), got {value!r}")
        if not str(value).strip():  # lm.model: '' failed only inside a unit; unset is null (the default)
            where.fail(key, f"must not be empty, got {value!r} (leave the key out for its default)")
        return str(value)
    return value


def _names(tp) -> bool:
    """Whether a list's items are written as strings (a decoding, a regime, a shell line)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_names(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    return tp is str or tp is Regime


def _not_a_list(key: str, value, where: _Where) -> NoReturn:
    """A number where a list is expected is refused, not taken as a list of one: `seeds: 5` may mean seed 5
    or five replicates."""
    if value is None or isinstance(value, (dict, bool, str)):  # a string: of a list of numbers (seeds: '5')
        where.fail(key, f"expected a list, got {value!r}" + (" (leave the key out for its default)" if value is None
                                                             else ""))
    one = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()
    if key.rpartition(".")[2] != "seeds" or not isinstance(value, int):
        where.fail(key, f"is a list, got {value!r}; write {one} for a list of one")
    first = ", ".join(map(str, range(min(value, 5)))) + (", …" if value > 5 else "")
    where.fail(key, f"is a list, got {value!r}; write {one} for seed {value}"
                    + (f", or [{first}] for {value} replicates" if value > 1 else ""))


SHORT_NUMBER = {"replace": "keep_fraction", "verifier-filter": "verifier_quantile"}  # NAME:VALUE sets it


def _regime_from_str(text: str, key: str, where: _Where) -> dict:
    """Short forms: 'replace', 'replace:0.1' (keep_fraction), 'verifier-filter:0.3' (verifier_quantile),
    'accumulate', 'accumulate-subsample', 'detector-resample'."""
    name, _, number = text.partition(":")
    if not number:
        return {"name": name}
    if name not in SHORT_NUMBER:
        if name not in KINDS:  # no such regime: said by the regime's own check
            return {"name": name}
        where.fail(key, f"bad regime {text!r}: only {' and '.join(SHORT_NUMBER)} take a number "
                        f"(replace:0.1 keeps 10% real data, verifier-filter:0.3 passes the best 30%)")
    try:
        return {"name": name, SHORT_NUMBER[name]: float(number)}
    except ValueError:
        where.fail(key, f"bad regime {text!r} (expected e.g. replace:0.1)")


def _regime_alias(value: dict, key: str, where: _Where) -> dict:
    """keep_original_fraction (the reference implementation's name) means keep_fraction."""
    if "keep_original_fraction" not in value:
        return value
    if "keep_fraction" in value:
        where.fail(f"{key}.keep_original_fraction", "is an alias of keep_fraction; give only one of them")
    value = dict(value)
    value["keep_fraction"] = value.pop("keep_original_fraction")
    return value


def _regime_overrides(value: dict, key: str, where: _Where) -> dict:
    """A regime's keys named after an experiment (`lm: {epochs: 10}`) are overrides of that
    experiment's section; typed and checked by _type_overrides once the sections are built.
    `overrides` is where they are kept, not a key one writes."""
    names = list(where.sections)
    if "overrides" in value:
        where.fail(f"{key}.overrides", f"unknown key; a regime overrides an experiment's keys under its name, "
                                       f"e.g. {{name: replace, {(names or ['lm'])[0]}: {{...}}}}")
    if not any(k in names for k in value):
        return value
    return {k: v for k, v in value.items() if k not in names} | {
        "overrides": {k: v for k, v in value.items() if k in names}}


# shared keys of every section: what a chain is, not how a unit computes; not overridable per regime
CHAIN_KEYS = ("enabled", "generations", "seeds", "regimes")


def _type_overrides(regime: Regime, key: str, raw: dict, where: _Where) -> Regime:
    """Check a regime's overrides against each named experiment's section, as if written in it
    (types, ranges, cross-field checks), and keep their typed values."""
    names, typed = list(where.sections), {}
    for name, changes in regime.overrides.items():
        if name not in names:
            where.fail(f"{key}.{name}", f"unknown experiment; regimes override the keys of one of: {', '.join(names)}")
        if not isinstance(changes, dict):
            where.fail(f"{key}.{name}", f"expected a mapping of {name} keys, got {changes!r}")
        for k in changes:
            if k in CHAIN_KEYS:
                where.fail(f"{key}.{name}.{k}", "cannot be set per regime (it defines the chains themselves)")
        base = {k: v for k, v in (raw.get(name) or {}).items() if k not in CHAIN_KEYS}
        section = build(where.sections[name], {**base, **changes}, where.file, prefix=f"{key}.{name}.",
                        sections=where.sections)
        typed[name] = {k: getattr(section, k) for k in changes}
    return dataclasses.replace(regime, overrides=typed)


def _check(f: dataclasses.Field, value, key: str, where: _Where):
    m = f.metadata
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if m.get("unique"):  # each entry is a variant with its own folders: a repeat would share them
        for i, v in enumerate(items):
            if v in items[:i]:
                where.fail(key, f"lists {getattr(v, 'label', v)!r} twice; list each once")
    for v in items:
        if not isinstance(v, (int, float, str)) or isinstance(v, bool):
            continue
        if "choices" in m and v not in m["choices"]:
            close = difflib.get_close_matches(str(v), [str(c) for c in m["choices"]], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where.fail(key, f"must be one of {', '.join(map(str, m['choices']))}, got {v!r}{hint}")
        if isinstance(v, int) and abs(v) > MAX_INT and "max" not in m:
            where.fail(key, f"must be at most {MAX_INT}, got {v!r}")
        if "chars" in m and isinstance(v, str) and not FILE_NAME.fullmatch(v):
            where.fail(key, f"{v!r}: use {m['chars']} only (it names a folder)")
        if "min" in m and v < m["min"]:
            where.fail(key, f"must be >= {m['min']}, got {v!r}")
        if "max" in m and v > m["max"]:
            where.fail(key, f"must be <= {m['max']}, got {v!r}")
        if "gt" in m and v <= m["gt"]:
            where.fail(key, f"must be > {m['gt']}, got {v!r}")


def build(cls, data: dict, file: str = "<config>", prefix: str = "", sections: Mapping[str, type] | None = None):
    """Build dataclass `cls` from a mapping, checking keys, types and ranges (a regime's overrides
    against `sections`)."""
    where = _Where(file, sections)
    if data is None:
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "sections"}
    hints = typing.get_type_hints(cls)
    # the experiments' sections stand beside the run's keys; a regime's overrides are written under an
    # experiment's name, never as `overrides`
    written = [*(set(fields) - {"overrides"}), *where.sections] if cls in (Regime, RunConfig) else list(fields)
    for k in data:
        if k not in fields:
            close = difflib.get_close_matches(str(k), written, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            where.fail(f"{prefix}{k}", f"unknown key{hint}; valid keys: {', '.join(sorted(written))}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        value = _convert(hints[name], data[name], prefix + name, where)
        _check(f, value, prefix + name, where)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ cross-field checks
        where.fail(prefix.rstrip(".") or "config", str(e))
    validate = getattr(obj, "validate", None)
    if validate:
        try:
            validate()
        except ValueError as e:  # the message names its key, relative to the section's prefix
            if not prefix:
                raise ConfigError(f"{where.file}: {e}") from None
            where.fail(prefix.rstrip("."), str(e))
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected section.key=value")
    key, _, raw = text.partition("=")
    if not all(part.strip() for part in key.split(".")):  # `=3`, `gmm.=3`: else "gmm.: unknown key"
        raise ConfigError(f"--set {text}: expected section.key=value, a key of no empty part")
    try:
        value = yamlfile.loads(raw, f"--set {key.strip()}") if raw.strip() else ""
    except ConfigError as e:
        if "not valid YAML" not in str(e):  # a bomb, a deep nesting: refused, not taken as text
            raise
        value = raw
    return key.strip().split("."), value


def load(path: str | Path, overrides: Sequence[str] = (), generations: int | None = None, *,
         sections: Mapping[str, type], needs_profile: bool = True) -> RunConfig:
    """Load, override and validate a config file whose experiment sections are `sections`
    (name -> Section dataclass); raise ConfigError with one line on any problem, NotRead naming the file where
    the file system refuses its read. needs_profile=False: executor slurm without a profile is no problem (the
    command picks one itself: cli._submission_profile)."""
    with refusals(Path(path), "config file", "nothing is done; it is done"):
        raw = yamlfile.load_mapping(path)
    return from_dict(raw, str(path), overrides, generations, sections=sections, needs_profile=needs_profile)


def from_dict(raw: dict, file: str = "<config>", overrides: Sequence[str] = (),
              generations: int | None = None, *, sections: Mapping[str, type], needs_profile: bool = True) -> RunConfig:
    try:
        return _from_dict(raw, file, overrides, generations, sections=sections, needs_profile=needs_profile)
    except ConfigError as e:  # a key given with --set, not in the file: the line names --set
        for key in (ov.partition("=")[0].strip() for ov in overrides):
            parts = key.split(".")  # or a misspelt section of it (lmm of lmm.epochs), unknown
            sections_said = [f"{'.'.join(parts[:i])}: unknown key" for i in range(1, len(parts))]
            for said in (f"{key}:", f"{key}[", *sections_said):  # the key, or an item of its list (regimes[0])
                if str(e).startswith(f"{file}: {said}"):
                    raise ConfigError(f"--set {said}" + str(e).removeprefix(f"{file}: {said}")) from None
        raise


def _from_dict(raw: dict, file: str, overrides: Sequence[str], generations: int | None, *,
               sections: Mapping[str, type], needs_profile: bool = True) -> RunConfig:
    raw = json.loads(json.dumps(raw, default=str))
    for ov in overrides:
        keys, value = parse_override(ov)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {ov}: {k} is not a section")
        node[keys[-1]] = value
    if generations is not None:  # the run's chains; a section's own count (gmm: 2050) stays
        if generations < 1:
            raise ConfigError(f"--generations: must be >= 1, got {generations}")
        raw["generations"] = generations
    names = list(sections)
    run_keys = {k: v for k, v in raw.items() if k not in names}
    run: RunConfig = build(RunConfig, run_keys, file, sections=sections)
    for name in names:
        if name in raw:
            if raw[name] is not None and not isinstance(raw[name], dict):
                raise ConfigError(f"{file}: {name}: expected a mapping of {name} keys")
            run.sections[name] = build(sections[name], raw[name] or {}, file, prefix=f"{name}.", sections=sections)
    if not run.sections:
        raise ConfigError(f"{file}: names no experiment; add a section for one of: {', '.join(names)}")
    lists = [("regimes", run.regimes)] + [(f"{n}.regimes", s.regimes) for n, s in run.sections.items() if s.regimes]
    where = _Where(file, sections)
    for key, regimes in lists:
        regimes[:] = [_type_overrides(r, f"{key}[{i}]", raw, where) for i, r in enumerate(regimes)]
    # saved absolute: a run folder's config.yaml (status's resume command) names the same folders wherever
    # it is run again from, and its jobs run
    run.data_dir, run.profile = anchored(run.data_dir), run.profile and anchored(run.profile)
    if run.executor == "slurm" and not run.profile and needs_profile:
        raise ConfigError(f"{file}: profile: executor slurm needs a cluster profile (--profile slurm/….yaml)")
    return run


def anchored(path: str) -> str:
    """A path as typed (relative: to the folder the command runs in; ~: the home folder), absolute."""
    return str(Path(os.path.expanduser(path)).absolute())


def dump(run: RunConfig) -> str:
    return yaml.safe_dump(run.to_dict(), sort_keys=False)


def _keys(cls) -> list[tuple[str, str, str, str]]:
    """(name, default as JSON, checks, help) of every key of a config dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "sections":
            continue
        default = _default(f)
        checks = ", ".join(f"{k} {v}" for k, v in f.metadata.items() if k not in ("help", "hashed", "exact"))
        out.append((f.name, json.dumps("" if default is dataclasses.MISSING else default), checks,
                    f.metadata.get("help", "") + _resumes(f)))
    return out


def _resumes(f: dataclasses.Field) -> str:
    """What the reference says of a how-it-runs knob (knob's hashed=False)."""
    if f.metadata.get("hashed") is not False:
        return ""
    if f.metadata["exact"]:
        return "; how it runs: a run resumes after a change (the same results)"
    return "; how it runs: a run resumes after a change, with a warning (results equal up to rounding and random draws)"


def _sections(sections: Mapping[str, type]):
    return [("run-level keys", RunConfig, "")] + [(f"section {n}", cls, f"{n}.") for n, cls in sections.items()]


def describe(sections: Mapping[str, type]) -> str:
    """Every key of the run and of each of `sections`: name, default, checks, meaning (collapse-hpc config)."""
    text: list[str] = []
    for title, cls, prefix in _sections(sections):
        text += ([""] if text else []) + [f"{title}:"]
        for name, default, checks, help in _keys(cls):
            extra = f" [{checks}]" if checks else ""
            text.append(f"  {prefix}{name} = {default}{extra}\n      {help}")
    return "\n".join(text) + "\n"


def describe_markdown(sections: Mapping[str, type]) -> str:
    """The same as Markdown tables (the README's configuration reference: the package's own
    experiments, experiments.sections(experiments.BUILTIN))."""
    text = []
    for title, cls, prefix in _sections(sections):
        text += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        for name, default, checks, help in _keys(cls):
            note = f" ({checks})" if checks else ""
            cell = f"{help}{note}".replace("|", "\\|").replace("\n", " ")
            text.append(f"| `{prefix}{name}` | `{default}` | {cell} |")
        text.append("")
    return "\n".join(text)
