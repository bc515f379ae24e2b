"""The experiments: one folder each, with the same small surface (base.Experiment), and their
registry: which experiments exist, and a config loaded with their sections (load_config).

Adding an experiment = a new folder with config.py (its Section dataclass) and __init__.py (its
base.Experiment subclass; its report figures, title, order, data sets and derived metrics are
declared there too) ending in `REGISTRATION = Registration(config, experiment)`, plus its name in
BUILTIN and registry() here. Experiments outside the package (a third party's, the tests')
register through the Python entry-point group ENTRY_POINTS, each naming its Registration
(docs/extending.md); job subprocesses see the same installed entry points. A built-in name
cannot be taken by one.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import entry_points

from collapse_hpc import config as cfgmod
from collapse_hpc.errors import ConfigError, UserError
from collapse_hpc.experiments.base import Experiment, Registration
from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.regimes import SCORED

BUILTIN = ("lm", "gmm", "gaussian", "vae")  # registry()'s first entries, in this order
ENTRY_POINTS = "collapse_hpc.experiments"  # group of the entry points naming a Registration


@functools.cache
def registry() -> dict[str, Registration]:
    """name -> Registration: the built-in experiments, then those of installed entry points."""
    from collapse_hpc.experiments import gaussian, gmm, lm, vae

    found = {r.name: r for r in (lm.REGISTRATION, gmm.REGISTRATION, gaussian.REGISTRATION, vae.REGISTRATION)}
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        if point.name in found:
            raise UserError(f"entry point {point.name} = {point.value} (group {ENTRY_POINTS}): "
                            f"{'a built-in experiment' if point.name in BUILTIN else 'already registered'} "
                            f"of that name cannot be replaced")
        found[point.name] = _load(point)
    return found


def _load(point) -> Registration:
    try:
        loaded = point.load()
    except Exception as e:  # noqa: BLE001 - whatever a broken plug-in raises, one line names it
        raise UserError(f"entry point {point.name} = {point.value} (group {ENTRY_POINTS}) does not load: "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(loaded, Registration):
        raise UserError(f"entry point {point.name} = {point.value} (group {ENTRY_POINTS}): "
                        f"names a {type(loaded).__name__}, not an experiments.base.Registration")
    if loaded.name != point.name:
        raise UserError(f"entry point {point.name} = {point.value} (group {ENTRY_POINTS}): "
                        f"registers the experiment {loaded.name!r} under the name {point.name!r}")
    return loaded


def names() -> list[str]:
    return list(registry())


def config_class(name: str):
    """The experiment's Section dataclass (a light import: no torch)."""
    return registry()[name].config


def cli(name: str):
    """The module of the experiment's own `collapse-hpc NAME` command (add_arguments, main), or None."""
    return registry()[name].cli


def sections(only: Sequence[str] | None = None) -> dict:
    """name -> Section dataclass of every registered experiment (or of `only`): what a config may hold."""
    return {n: config_class(n) for n in (names() if only is None else only)}


def load_config(path, overrides: Sequence[str] = (), generations: int | None = None,
                needs_profile: bool = True) -> cfgmod.RunConfig:
    """A config file with a section for any registered experiment (config.load), its regimes
    checked against what each experiment offers. A read the file system refuses is NotRead naming the file
    (config.load)."""
    run = cfgmod.load(path, overrides, generations, sections=sections(), needs_profile=needs_profile)
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
    return registry()[name].experiment


def describe(name: str):
    """The experiment's Experiment object, or a bare one of that name when its code is absent
    (the report of a run made by an experiment this installation lacks)."""
    try:
        return get(name)
    except KeyError:
        return Unknown(name)


class Unknown(Experiment):
    """An experiment this installation lacks, as the report sees its run folders: its name, and
    metrics keyed by generation and replicate where the tables have them (no declared metrics)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def metrics_schema(self, section=None) -> MetricsSchema:
        return MetricsSchema(per_replicate=True, metrics={})


def ordered(names: list[str]) -> list[str]:
    """Experiment names in report order: each one's `order`, then the name."""
    return sorted(names, key=lambda n: (describe(n).order, n))
