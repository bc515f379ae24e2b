"""The config a run folder of an older version was made with, where config.yaml was edited by hand since.

run.json keeps a copy of the config it hashes only since hand edits of how-it-runs knobs were taken
(RunStore.saved_config); before, it kept the hash alone. The config before the edit is then found
back: a few of its how-it-runs knobs put back at values the folder tells (plan.json's, the default,
or not set: a key the older version did not write), the fewest whose hash is the recorded one. A
64-bit hash matched is the config made, not a guess.
"""
from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from pathlib import Path

from collapse_hpc import config as cfgmod
from collapse_hpc.store.reads import read_text

PLAN = "plan.json"
UNSET = object()  # the key not written (a knob added after the older version that made the run)
EDITS = 3  # knobs edited at once, at most: thousands of hashes (a few knobs, a few values each)


def plan_json(path: Path):
    """plan.json's JSON: FileNotFoundError (IsADirectoryError) where there is none, ValueError where it is not
    JSON; NotRead where the file system refuses the read, said, the plan kept: taken for none, the run would be
    planned anew over it, or its finished units judged without their variant's hash."""
    return json.loads(read_text(path, "plan", "the run and its plan are kept as they are (not planned anew)",
                                kept=(FileNotFoundError, IsADirectoryError)))


def inferred(root: Path, edited: dict, recorded: str, sections: Mapping[str, type]) -> tuple[dict, set[str]] | None:
    """(the config the run was made with, the dotted keys of its how-it-runs knobs), where only such
    knobs were edited (EDITS at most) and their values before are among those the folder tells; else None."""
    planned = _planned_sections(root, recorded)
    knobs, choices = [], []
    for name, cls in sections.items():
        section = edited.get(name)
        if not isinstance(section, dict):
            continue
        for key in cfgmod.how_it_runs(cls):
            knobs.append(f"{name}.{key}")
            now = _key(section.get(key, UNSET))
            told = [cfgmod.defaults(cls).get(key, UNSET), UNSET, *(p.get(key, UNSET) for p in planned.get(name, []))]
            others = [v for k, v in {_key(v): v for v in told}.items() if k != now]
            choices.append((name, key, others))
    for n in range(1, EDITS + 1):  # the fewest keys edited first
        for picked in itertools.combinations(choices, n):
            for combo in itertools.product(*(c[2] for c in picked)):
                config = dict(edited) | {name: dict(edited[name]) for name, _, _ in picked}
                for (name, key, _), value in zip(picked, combo):
                    config[name].pop(key, None)
                    if value is not UNSET:
                        config[name][key] = value
                if cfgmod.config_hash(config) == recorded:
                    return copy.deepcopy(config), set(knobs)
    return None


def _planned_sections(root: Path, recorded: str) -> dict[str, list[dict]]:
    """Each experiment's sections as its variants ran them (regime overrides applied), from plan.json
    where it was written for the recorded config."""
    try:  # a read refused is NotRead: taken for none, the config made would not be found back
        doc = plan_json(root / PLAN)
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("config_hash") != recorded or not isinstance(doc.get("chains"), list):
        return {}
    out: dict[str, list[dict]] = {}
    for chain in doc["chains"]:
        config = chain.get("config") if isinstance(chain, dict) else None
        name = chain.get("experiment") if isinstance(chain, dict) else None
        if isinstance(name, str) and isinstance(config, dict) and isinstance(config.get(name), dict):
            out.setdefault(name, []).append(config[name])
    return out


def _key(value) -> str:
    return "<unset>" if value is UNSET else json.dumps(value, sort_keys=True, default=str)
