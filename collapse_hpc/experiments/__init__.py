"""The experiments: one folder each, with the same small surface (see base.py).

Adding an experiment = a new folder with config.py (its Section dataclass as CONFIG) and
__init__.py (its Experiment as EXPERIMENT), plus one line here.
"""
from __future__ import annotations

import importlib
import importlib.util

REGISTRY = {
    "lm": "collapse_hpc.experiments.lm",
    "gmm": "collapse_hpc.experiments.gmm",
    "gaussian": "collapse_hpc.experiments.gaussian",
    "vae": "collapse_hpc.experiments.vae",
}


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
