"""What a metric is for the people who read it: a display name, a unit and which way collapse moves it.

Each experiment declares its metrics once, next to the code that computes them (its metrics.py, listed
by Experiment.metric_specs); figures and tables read them from the Context and never guess from a
column name. The report shows declared metrics only: a column without a declaration (a hand-edit, another
tool's) is named once in its Problems, not drawn (report.collect.Columns).

A declaration also says which values the metric can take (bounds): a 95% interval of the mean of a few
replicates can reach past them (a distance's below 0), which the figures do not draw; summary.csv keeps
the interval as computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["result", "bookkeeping", "compute"]
Bounds = tuple[float | None, float | None]  # (least, most) a metric can take; None: no bound on that side

NONNEGATIVE: Bounds = (0.0, None)  # a distance, a variance, a divergence, a loss, a count, an entropy
SHARE: Bounds = (0.0, 1.0)  # a share, an accuracy, an AUC
PERPLEXITY: Bounds = (1.0, None)  # exp of a cross-entropy, itself at least 0


@dataclass(frozen=True)
class Metric:
    """One metrics.parquet column as a reader sees it."""

    name: str  # the column
    label: str  # e.g. "test perplexity"
    unit: str = ""  # e.g. "nats", "s", "tokens/s"; "" for a ratio or a count
    worse: Literal["higher", "lower"] | None = None  # which way collapse moves it (None: neither, or unknown)
    # result: what collapse does; bookkeeping: how the unit was set up (e.g. its share of real data);
    # compute: what it cost (seconds, throughput), shown in the Compute section
    kind: Kind = "result"
    # the paper's reported values, (value, what), drawn as reference marks where a run's experiment section
    # has every key of `paper_setting` with that value (the paper's own setting)
    paper: tuple[tuple[float, str], ...] = ()
    paper_setting: tuple[tuple[str, object], ...] = ()
    bounds: Bounds = (None, None)  # the values it can take (NONNEGATIVE, SHARE, PERPLEXITY); unknown: none

    @property
    def axis(self) -> str:
        """An axis label: the display name with its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def scale(self) -> str:
        """A y-axis label beside a panel titled with the metric's name: what its values are counted in, the unit,
        or for a metric without one a fraction (a share) or a perplexity, else a bare value; the name itself again
        on the axis said the title twice."""
        if self.unit:
            return self.unit
        return {SHARE: "fraction", PERPLEXITY: "perplexity"}.get(self.bounds, "value")

    @property
    def direction(self) -> str:
        return {"higher": "higher is worse", "lower": "lower is worse"}.get(self.worse or "", "")

    def within(self, values) -> np.ndarray:
        """`values` (a band's edge) cut to the metric's bounds; NaN stays NaN."""
        least, most = self.bounds
        return np.clip(np.asarray(values, dtype=float), -np.inf if least is None else least,
                       np.inf if most is None else most)

    def passed(self, low, high) -> list[float]:
        """The bounds an interval [low, high] (arrays) reaches past: where within() cuts it."""
        least, most = self.bounds
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        return ([least] if least is not None and (low < least).any() else []) + \
            ([most] if most is not None and (high > most).any() else [])

    def paper_marks(self, section) -> list[tuple[float, str]]:
        """The paper's values to draw for a run whose experiment section (its config, a mapping) is this."""
        if not self.paper or not isinstance(section, dict):
            return []
        return list(self.paper) if all(section.get(k) == v for k, v in self.paper_setting) else []


def specs(*metrics: Metric) -> dict[str, Metric]:
    """name -> Metric, refusing a name declared twice."""
    out: dict[str, Metric] = {}
    for m in metrics:
        if m.name in out:
            raise ValueError(f"metric {m.name} is declared twice")
        out[m.name] = m
    return out


def spec(table: dict[str, Metric] | None, name: str) -> Metric:
    """The declaration of `name`, or a bare one that shows the column's own name."""
    return (table or {}).get(name) or Metric(name, name)


def declared_order(table: dict[str, Metric] | None, name: str) -> tuple[int, str]:
    """A sort key: metrics as the experiment declares them (p5 before p25, as a name's letters put them
    after), the undeclared after them by name; figures and tables list metrics alike."""
    order = list(table or {})
    return (order.index(name) if name in order else len(order), name)
