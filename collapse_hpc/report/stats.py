"""Means and 95% confidence intervals over seeds and replicates, per generation."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from collapse_hpc.plotting.plots import REGIME, SUMMARY, setting_columns
from collapse_hpc.report.longform import missing_last, plain

LEVEL = 0.95


def group_keys(df: pd.DataFrame) -> list[str]:
    """What a summary row is about: everything except seed, replicate and variant (which names
    the seed) and the value itself."""
    return ["run", "experiment", "regime", *REGIME, *setting_columns(df), "metric", "generation"]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment, regime, settings, metric, generation): n, n_infinite, mean, std
    and the t-distribution 95% interval of the mean (NaN where n < 2). NaN values are not counted.

    A log or ratio of a variance that reached exactly 0 is ±inf in the tidy table (log σ̂² of a replicate
    collapsed to a point mass). Its mean is no number to print or plot (-inf, or NaN beside +inf), and the
    mean of the other values would hide the collapse: such a row keeps n, counts the infinite values in
    n_infinite and leaves mean, std and the interval empty. The variance itself (0) stays a number."""
    keys = group_keys(df)
    if df.empty:
        return pd.DataFrame(columns=keys + SUMMARY)
    out = plain(_pooled_by_metric(df, keys)).sort_values(keys, na_position="last", ignore_index=True)
    collapsed = out["n_infinite"].to_numpy() > 0
    out.loc[collapsed, ["mean", "std"]] = np.nan
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * out["std"].to_numpy() / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def _pooled_by_metric(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """_pooled a metric at a time: grouping every row at once copies a key column per key (the report's peak
    of memory), a metric's rows are a fraction of them. Each metric's groups are summed as the grouping of
    every row would sum them: pandas sums a group's values pairwise where the rows come group after group
    and no value is NaN, else one after another (compensated); the two can differ in the last bit."""
    metrics = df["metric"].unique()
    if len(metrics) < 2 or df["metric"].isna().any():
        return _pooled(df, keys)
    pairwise = not np.isnan(df["value"].to_numpy(dtype=float)).any() and _grouped_in_order(df, keys)
    return pd.concat([_pooled(df[df["metric"] == m], keys, in_order=not pairwise) for m in metrics],
                     ignore_index=True)


def _grouped_in_order(df: pd.DataFrame, keys: list[str]) -> bool:
    """Whether the rows come group after group, the groups in their sorted order (missing keys last)."""
    later = np.zeros(max(len(df) - 1, 0), dtype=bool)  # row i+1 past row i by a key before this one
    same = np.ones_like(later)
    for k in keys:
        rank = _rank(df[k])
        later |= same & (rank[:-1] < rank[1:])
        same &= rank[:-1] == rank[1:]
        if not (later | same).all():
            return False
    return True


def _rank(column: pd.Series) -> np.ndarray:
    """Numbers in the order groupby sorts the column's values, missing last; a Categorical's own codes."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return missing_last(column.cat.codes.to_numpy(), len(column.cat.categories))
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return column.to_numpy()
    codes, uniques = pd.factorize(column, sort=True)
    return missing_last(codes, len(uniques))


def _pooled(df: pd.DataFrame, keys: list[str], in_order: bool = False) -> pd.DataFrame:
    """n, n_infinite (the values that are ±inf), mean and std of the values of each group; in_order: the mean
    summed one value after another (a NaN value, which no statistic counts, keeps pandas from pairwise sums)."""
    if in_order and not df["value"].isna().any():
        df = pd.concat([df, df.iloc[-1:].assign(value=np.nan)])
    values = df["value"].astype(float)
    g = df.assign(value=values, infinite=np.isinf(values)).groupby(keys, dropna=False, sort=True, observed=True)
    out = g["value"].agg(n="count", mean="mean", std="std").reset_index()
    out.insert(out.columns.get_loc("mean"), "n_infinite", g["infinite"].sum().to_numpy().astype(int))
    return out
