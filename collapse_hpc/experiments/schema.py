"""What an experiment's metrics.parquet holds, declared once on its Experiment (metrics_schema).

The table is wide: key columns saying which row it is (`generation`, `replicate` where rows are
per replicate, and settings such as gaussian's `samples`), then one float64 column per metric,
each declared by the plotting.metrics.Metric the report shows it with. The one writer
(UnitContext.write_metrics) checks a table against its declaration before a byte is written; the
report (report/collect.py) reads which columns are keys from the same declaration. Metrics that
are a stored one's plain function (gaussian's var_hat of sigma_hat) are declared `derived`: the report
computes them where it reads a unit (Experiment.derive) rather than every part storing them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collapse_hpc.plotting.metrics import Metric

FLOAT = "double"  # pyarrow's name of float64: every metric's type
INT32, INT64, STRING = "int32", "int64", "string"


@dataclass(frozen=True)
class MetricsSchema:
    """metrics.parquet as an experiment writes it; types are pyarrow's names (str(pa.int32()): int32)."""

    per_replicate: bool  # rows: one per generation and replicate (array experiments), else one per generation
    metrics: Mapping[str, Metric]  # the float64 columns (plotting.metrics.specs), as the report shows them
    generation: str = INT64  # the type of the generation column (and of replicate, where there is one)
    settings: tuple[tuple[str, str], ...] = ()  # further key columns and their types, e.g. (("samples", INT32),)
    optional: frozenset[str] = field(default_factory=frozenset)  # metrics only some units write (lm: generation 0's)
    # metrics the report computes from the stored ones where it reads a unit (Experiment.derive), as the report
    # shows them: no columns of metrics.parquet (gaussian's var_hat, the square of sigma_hat)
    derived: Mapping[str, Metric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.optional) - set(self.metrics))
        if unknown:
            raise ValueError(f"optional metrics {', '.join(unknown)} are not declared metrics")
        clash = sorted(set(self.keys) & set(self.metrics))
        if clash:
            raise ValueError(f"{', '.join(clash)}: declared both as a key column and as a metric")
        twice = sorted((set(self.keys) | set(self.metrics)) & set(self.derived))
        if twice:
            raise ValueError(f"{', '.join(twice)}: declared both as a stored column and as a derived metric")

    @property
    def shown(self) -> dict[str, Metric]:
        """Every metric the report shows of a unit: the stored ones and the derived ones."""
        return {**self.metrics, **self.derived}

    @property
    def keys(self) -> dict[str, str]:
        """The key columns, name -> type: generation, replicate (per replicate), settings."""
        out = {"generation": self.generation}
        if self.per_replicate:
            out["replicate"] = self.generation
        return out | dict(self.settings)

    @property
    def columns(self) -> dict[str, str]:
        """Every column the table may have, name -> type."""
        return self.keys | dict.fromkeys(self.metrics, FLOAT)

    def problems(self, table) -> list[str]:
        """What in a pyarrow Table breaks the declaration: a missing, undeclared or wrongly typed column."""
        have = {f.name: str(f.type) for f in table.schema}
        declared = self.columns
        out = [f"lacks column {c}" for c in declared if c not in have and c not in self.optional]
        out += [f"has column {c}, which its metrics schema does not declare" for c in have if c not in declared]
        out += [f"column {c} is {t}, declared {declared[c]}" for c, t in have.items()
                if c in declared and t != declared[c]]
        return out

    def check(self, experiment: str, table) -> None:
        """Raise ValueError (a programming error: the experiment's code and its declaration disagree)."""
        found = self.problems(table)
        if found:
            raise ValueError(f"{experiment}: metrics.parquet {'; '.join(found)}")
