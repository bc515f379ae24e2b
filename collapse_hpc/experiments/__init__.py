"""The experiments: one folder each, with the same small surface (see base.py).

Adding an experiment = a new folder with config.py (its Section dataclass as CONFIG) and
__init__.py (its Experiment as EXPERIMENT), plus one line here.
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
