"""The Regime value: which kind of data assembly a chain uses, with its numbers.

A regime crosses the system as its values (kind, keep_fraction, verifier_quantile: record());
its label (replace-p0.1, accumulate) names folders and its legend (replace, keep 10%) names
series in figures, both made here from the values and never parsed back.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

KINDS = ("replace", "accumulate", "accumulate-subsample", "detector-resample", "verifier-filter")
SCORED = ("detector-resample", "verifier-filter")  # need the experiment's scores of the pools' items
NEWEST_ONLY = ("replace", "verifier-filter")  # draw from the newest generated pool alone
VALUES = ("kind", "keep_fraction", "verifier_quantile")  # what record() holds besides the label


@dataclass(frozen=True)
class Regime:
    name: str = "replace"  # the kind: one of KINDS
    keep_fraction: float = 0.0  # replace only: fraction of the real data kept each generation
    verifier_quantile: float = 0.5  # verifier-filter only: pass = score <= this quantile of the scores
    # experiment -> {key: value}: that experiment's config keys under this regime (typed by config.py)
    overrides: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.name not in KINDS:
            raise ValueError(f"regime must be one of {', '.join(KINDS)}, got {self.name!r}")
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1], got {self.keep_fraction}")
        if self.keep_fraction and self.name != "replace":
            raise ValueError("keep_fraction applies to the replace regime only")
        if not 0.0 < self.verifier_quantile <= 1.0:
            raise ValueError(f"verifier_quantile must be in (0, 1], got {self.verifier_quantile}")
        if self.verifier_quantile != 0.5 and self.name != "verifier-filter":
            raise ValueError("verifier_quantile applies to the verifier-filter regime only")

    @property
    def kind(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """Folder-safe name, e.g. replace-p0, replace-p0.1, accumulate."""
        if self.name == "replace":
            return f"replace-p{self.keep_fraction:g}"
        if self.name == "verifier-filter":
            return f"verifier-filter-q{self.verifier_quantile:g}"
        return self.name

    def record(self) -> dict:
        """The regime as values, for manifests, metrics and the report (overrides go with the config)."""
        return {"kind": self.name, "keep_fraction": self.keep_fraction,
                "verifier_quantile": self.verifier_quantile, "label": self.label}

    def scoped(self, experiment: str) -> Regime:
        """This regime as `experiment` sees it: other experiments' overrides dropped."""
        mine = self.overrides.get(experiment)
        return replace(self, overrides={experiment: dict(mine)} if mine else {})

    def overrides_of(self, experiment: str) -> dict:
        return dict(self.overrides.get(experiment) or {})


def values_of(record: dict) -> dict:
    """kind, keep_fraction and verifier_quantile of a recorded regime (Regime.record(); a plan.json
    written before these records calls the kind `name`)."""
    return {"kind": record.get("kind", record.get("name")), "keep_fraction": record["keep_fraction"],
            "verifier_quantile": record["verifier_quantile"]}


def legend(kind: str, keep_fraction: float = 0.0, verifier_quantile: float = 0.5) -> str:
    """How figures and tables name a regime: replace, replace, keep 10%, accumulate, verifier-filter-q0.3."""
    if kind == "replace":
        return f"replace, keep {keep_fraction:.0%}" if keep_fraction else "replace"
    if kind == "verifier-filter":
        return f"verifier-filter-q{verifier_quantile:g}"
    return kind


def order(kind: str, keep_fraction: float = 0.0, verifier_quantile: float = 0.5) -> tuple:
    """Where a regime goes in legends: replace first (by kept fraction), then the other kinds by name."""
    return kind != "replace", kind, keep_fraction, verifier_quantile
