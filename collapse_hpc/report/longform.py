"""The report's long table (collect.tidy) built compactly: one row per run, experiment, variant, seed,
setting, replicate, generation and metric.

The paper's runs make hundreds of millions of such rows, and an aggregation job is killed at its peak.
So every column but replicate, generation and value (run, experiment, variant, regime and its values,
seed, settings, metric: a few values each, repeated) is a Categorical (its values once, sorted, and a
small integer a row), and every row is written once, in its final order,
into columns allocated at their final length, straight from each unit's table as recorded (a column
per metric). Values, dtypes and order are those of the plain way (melt each unit, concatenate, convert,
sort by KEYS, settings, metric, generation, replicate): the dtypes and every row's run, variant, regime
and settings come from those same steps done on a few rows of each unit (its distinct setting keys).
Since run, experiment and variant lead the sort, only each variant's own rows need sorting.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from collapse_hpc.plotting.plots import KEYS, REGIME, TAIL
from collapse_hpc.store.atomic import atomic_path, parquet_options

log = logging.getLogger("collapse_hpc.report")

SORT_TAIL = ["metric", "generation", "replicate"]  # after KEYS and the settings


@dataclass
class Part:
    """One finished unit's metrics as recorded (wide: its key columns, then a float column per metric)."""

    run: str  # the run's label
    experiment: str
    variant: str
    info: object  # collect.VariantInfo
    wide: pd.DataFrame
    ids: list[str]  # its declared key columns (generation, replicate, settings such as samples)
    metrics: list[str]

    @property
    def keyed(self) -> list[str]:
        """The key columns that are settings (their values a row's, not the variant's)."""
        return [c for c in self.ids if c not in ("generation", "replicate")]

    def distinct(self) -> tuple[pd.DataFrame, np.ndarray | None]:
        """Its rows of distinct setting keys (one row where none vary), and each row's index among them."""
        if not self.keyed or len(self.wide) < 2:
            return self.wide.iloc[:1], None
        first = self.wide.drop_duplicates(subset=self.keyed)
        if len(first) == 1:
            return first, None
        which = self.wide.groupby(self.keyed, dropna=False, sort=False, observed=True).ngroup().to_numpy()
        return first, which


def melted(part: Part, df: pd.DataFrame) -> pd.DataFrame:
    """Rows `df` of the part in long form, the plain way: run, experiment, variant, regime, seed, the regime's
    values and settings beside each metric's value."""
    info = part.info
    # temporary names: a metric may itself be called "value" (or "metric")
    long = df.melt(id_vars=part.ids, value_vars=part.metrics, var_name="__metric", value_name="__value")
    long = long.rename(columns={"__metric": "metric", "__value": "value"})
    if "replicate" not in long:
        long["replicate"] = 0
    for k, v in info.settings.items():
        if k not in long:
            long[k] = v
    long["run"], long["experiment"], long["variant"] = part.run, part.experiment, part.variant
    long["regime"], long["seed"] = info.regime, info.seed
    for k in REGIME:
        long[k] = info.values.get(k)
    return long


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """The concatenated long rows with the table's dtypes and column order (not sorted)."""
    settings = [c for c in df.columns if c not in KEYS + TAIL]
    for c in settings:  # one dtype per setting column across experiments (absent -> null)
        vals = df[c].dropna()
        numeric = pd.api.types.is_numeric_dtype(vals) and np.all(np.mod(vals.astype(float), 1) == 0)
        df[c] = df[c].astype("Int64") if numeric else df[c].astype("string")
    df["seed"] = df["seed"].astype("int64")
    df["keep_fraction"] = df["keep_fraction"].astype("float64")
    # a quantile only where a verifier filters: other regimes' rows carried 0.5 as if they had one
    df["verifier_quantile"] = df["verifier_quantile"].astype("float64").where(df["kind"] == "verifier-filter")
    df["replicate"] = df["replicate"].astype("int64")
    df["generation"] = df["generation"].astype("int64")
    df["value"] = df["value"].astype("float64")
    return df[KEYS + sorted(settings) + TAIL]


VALUES = ("replicate", "generation", "value")  # numbers of their own a row; every other column repeats a few


def missing_last(codes: np.ndarray, categories: int) -> np.ndarray:
    """Category codes as numbers that order like their values, a missing value's (-1) after every other."""
    return np.where(codes < 0, categories, codes)


class Column:
    """One column of the table, allocated at its full length: a Categorical's codes (its few values, sorted,
    once), or the values themselves (VALUES)."""

    def __init__(self, name: str, sample: pd.Series, rows: int):
        self.categories = None
        dtype = sample.dtype
        if name not in VALUES:
            self.categories = pd.CategoricalDtype(pd.Index(sorted(set(sample.dropna())), dtype=dtype))
            dtype = pd.Categorical([], dtype=self.categories).codes.dtype
        self.data = np.empty(rows, dtype=dtype)

    def encode(self, values: pd.Series) -> np.ndarray:
        """Values of this column's dtype as this column stores them."""
        if self.categories is not None:
            return pd.Categorical(values, dtype=self.categories).codes
        return values.to_numpy(dtype=self.data.dtype)

    def sort_key(self, data: np.ndarray) -> np.ndarray:
        """Ordering stored values as a sort of the values does (missing last: code -1)."""
        if self.categories is None:
            return data
        return missing_last(data, len(self.categories.categories))

    def array(self):
        if self.categories is not None:
            return pd.Categorical.from_codes(self.data, dtype=self.categories)
        return self.data


def build(parts: list[Part]) -> pd.DataFrame:
    """The long table of `parts` (at least one), in the order of the plain way's sort."""
    firsts = [p.distinct() for p in parts]
    sample = finish(pd.concat([melted(p, first) for p, (first, _) in zip(parts, firsts)], ignore_index=True))
    offsets = np.cumsum([0] + [len(first) * len(p.metrics) for p, (first, _) in zip(parts, firsts)])
    total = sum(len(p.wide) * len(p.metrics) for p in parts)
    columns = {c: Column(c, sample[c], total) for c in sample.columns}
    at = 0
    for group in _variants(sample, offsets, parts):
        blocks = [(parts[i], firsts[i][1], sample.iloc[offsets[i]:offsets[i] + len(firsts[i][0])]) for i in group]
        at = _fill(columns, blocks, at)
        for i in group:
            parts[i].wide = parts[i].wide.iloc[:0]  # done with: its rows are in the columns now
    return pd.DataFrame({c: col.array() for c, col in columns.items()}, copy=False)


def _variants(sample: pd.DataFrame, offsets: np.ndarray, parts: list[Part]):
    """The parts with rows, grouped by their KEYS (a variant's units), the groups in the sort's order."""
    with_rows = [i for i, p in enumerate(parts) if len(p.wide)]
    heads = sample.iloc[offsets[with_rows]][KEYS].reset_index(drop=True)
    order = heads.sort_values(KEYS, na_position="last", kind="stable").index
    same = [tuple(None if pd.isna(v) else v for v in row) for row in heads.itertuples(index=False)]
    for _, group in itertools.groupby(order, key=lambda h: same[h]):
        yield [with_rows[h] for h in group]


def _fill(columns: dict[str, Column], blocks: list, at: int) -> int:
    """Write one variant's rows (blocks of (part, each row's index among its distinct setting keys or None,
    the sample's rows of those keys)) into the columns from row `at`, sorted by settings, metric, generation
    and replicate; returns the row after them."""
    settings = [c for c in columns if c not in KEYS + TAIL]
    rows: dict[str, list] = {c: [] for c in settings + TAIL}
    for part, which, keys in blocks:
        n, k = len(part.wide), len(part.metrics)
        pick = np.zeros(n * k, dtype=np.intp) if which is None else np.tile(which, k)
        for c in settings:
            rows[c].append(columns[c].encode(keys[c])[pick])
        rows["metric"].append(np.repeat(columns["metric"].encode(pd.Series(part.metrics)), n))
        for c in ("generation", "replicate"):
            one = part.wide[c].to_numpy(dtype=np.int64) if c in part.wide else np.zeros(n, dtype=np.int64)
            rows[c].append(np.tile(one, k))
        rows["value"].append(np.concatenate([part.wide[m].to_numpy(dtype=np.float64, na_value=np.nan)
                                             for m in part.metrics]))
    joined = {c: np.concatenate(v) for c, v in rows.items()}
    keys = [columns[c].sort_key(joined[c]) for c in settings + SORT_TAIL]
    order = np.lexsort(keys[::-1])  # stable; np.lexsort sorts by its last key first
    span = slice(at, at + len(order))
    for c, data in joined.items():
        columns[c].data[span] = data[order]
    for c in KEYS:  # one value for the variant (its rows' KEYS are alike: _variants)
        columns[c].data[span] = columns[c].encode(blocks[0][2][c].iloc[:1])[0]
    return span.stop


def rows(df: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """The rows whose `column` is `value`: a view where they are one block (an experiment of one run: the
    rows are sorted by run, then experiment), else one copy of its blocks (an experiment of several runs, a
    block each), numbered anew: a boolean mask's copy kept every row's old number (8 bytes a row) and
    peaked at 1.5 times the rows it copied (417 MiB for the gaussian rows of two demo runs, now 281)."""
    mask = (df[column] == value).to_numpy()
    edges = np.flatnonzero(np.diff(np.r_[False, mask, False].astype(np.int8)))  # each block's start and end
    blocks = [df.iloc[a:b] for a, b in zip(edges[::2], edges[1::2])]
    if len(blocks) < 2:  # also none: a run with no finished unit yet
        return blocks[0] if blocks else df.iloc[:0]
    return pd.concat(blocks, ignore_index=True)


ROW_GROUP = 256 * 1024  # rows: a row group's strings in writing, ~30 MiB (1Mi rows took 0.39 GiB as pandas' strings)


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its Categorical columns as the strings they stand for (as pandas reads metrics.parquet)."""
    cats = {c: df[c].astype(df[c].cat.categories.dtype) for c in df.columns
            if isinstance(df[c].dtype, pd.CategoricalDtype)}
    return df.assign(**cats) if cats else df


def write(path: Path, df: pd.DataFrame) -> Path:
    """metrics.parquet of the table, its string columns as strings, a row group at a time: the whole table
    as strings would take more memory than the table itself. A row group's strings are taken from their
    column's few values by its codes, in Arrow (pandas' strings of 1Mi rows took 0.39 GiB, the report's peak
    where its table is small); the file is the one pyarrow makes of plain(df)."""
    head = pa.Table.from_pandas(plain(df.iloc[:1]), preserve_index=False)  # the schema, pandas' metadata included
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, head.schema, **parquet_options(head.schema)) as writer:
            for start in range(0, max(len(df), 1), ROW_GROUP):
                rows = df.iloc[start:start + ROW_GROUP]
                table = pa.Table.from_arrays([_arrow(rows[f.name], f.type) for f in head.schema], schema=head.schema)
                writer.write_table(table, row_group_size=ROW_GROUP)
    return Path(path)


def _arrow(column: pd.Series, to: pa.DataType) -> pa.Array:
    """A column of the table as the Arrow array plain(df) would give: a Categorical's values taken by code."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        values = pa.Array.from_pandas(pd.Series(column.cat.categories)).cast(to)
        return values.take(pa.array(codes, mask=codes < 0))
    return pa.Array.from_pandas(column).cast(to)
