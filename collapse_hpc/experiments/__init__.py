"""The experiments: one folder each, with the same small surface (base.Experiment).

Adding an experiment = a new folder with config.py (its Section dataclass as CONFIG) and
__init__.py (its base.Experiment subclass, instantiated as EXPERIMENT; its report figures,
title, order, data sets and derived metrics are declared there too), plus one line here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

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
