"""The experiments: one folder each, with the same small surface (base.Experiment), and their
registry: which experiments exist, and a config loaded with their sections (load_config).

Adding an experiment = a new folder with config.py (its Section dataclass as CONFIG) and
__init__.py (its base.Experiment subclass, instantiated as EXPERIMENT; its report figures,
title, order, data sets and derived metrics are declared there too), plus one line here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence

from collapse_hpc import config as cfgmod
from collapse_hpc.errors import ConfigError
from collapse_hpc.regimes import SCORED

REGISTRY = {
    "lm": "collapse_hpc.experiments.lm",
    "gmm": "collapse_hpc.experiments.gmm",
    "gaussian": "collapse_hpc.experiments.gaussian",
    "vae": "collapse_hpc.experiments.vae",
}
BUILTIN = tuple(REGISTRY)
# Extra experiments outside the package (e.g. tests' toy experiment), visible to job
# subprocesses too: COLLAPSE_EXTRA_EXPERIMENTS="toy=tests.toy_experiment,other=pkg.mod".
for _item in filter(None, os.environ.get("COLLAPSE_EXTRA_EXPERIMENTS", "").split(",")):
    _name, _, _module = _item.partition("=")
    REGISTRY[_name.strip()] = _module.strip()


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(REGISTRY[name] + ".config") is not None
    except ModuleNotFoundError:  # the experiment's package is not there at all
        return False


def names() -> list[str]:
    return [n for n in REGISTRY if _exists(n)]


def config_class(name: str):
    """The experiment's Section dataclass (a light import: no torch)."""
    return importlib.import_module(REGISTRY[name] + ".config").CONFIG


def sections(only: Sequence[str] | None = None) -> dict:
    """name -> Section dataclass of every registered experiment (or of `only`): what a config may hold."""
    return {n: config_class(n) for n in (names() if only is None else only)}


def load_config(path, overrides: Sequence[str] = (), generations: int | None = None) -> cfgmod.RunConfig:
    """A config file with a section for any registered experiment (config.load), its regimes
    checked against what each experiment offers."""
    run = cfgmod.load(path, overrides, generations, sections=sections())
    check_regimes(run, str(path))
    return run


def config_from_dict(raw: dict, file: str = "<config>", overrides: Sequence[str] = (),
                     generations: int | None = None) -> cfgmod.RunConfig:
    """load_config of a mapping."""
    run = cfgmod.from_dict(raw, file, overrides, generations, sections=sections())
    check_regimes(run, file)
    return run


def check_regimes(run, file: str) -> None:
    """Regimes that need an experiment's scores of its items (regimes.SCORED) only where the
    experiment gives them (its `scored_regimes`)."""
    for name in run.enabled():
        for regime in run.regimes_of(name):
            if regime.name in SCORED and regime.name not in get(name).scored_regimes:
                key = f"{name}.regimes" if run.section(name).regimes is not None else "regimes"
                able = [n for n in names() if regime.name in get(n).scored_regimes]
                raise ConfigError(f"{file}: {key}: the {regime.name} regime is not available for {name} (only for "
                                  f"{', '.join(able) or 'no experiment'}); give {name} its own regimes")


def get(name: str):
    """The experiment's Experiment object."""
    return importlib.import_module(REGISTRY[name]).EXPERIMENT


def describe(name: str):
    """The experiment's Experiment object, or a bare one of that name when its code is absent
    (the report of a run made by an experiment this installation lacks)."""
    from collapse_hpc.experiments.base import Experiment

    try:
        return get(name)
    except (KeyError, ImportError):
        bare = Experiment()
        bare.name = name
        return bare


def ordered(names: list[str]) -> list[str]:
    """Experiment names in report order: each one's `order`, then the name."""
    return sorted(names, key=lambda n: (describe(n).order, n))
