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
    """_pooled a metric at a time: grouping every row at once holds a code per key and row (the report's peak
    of memory), a metric's rows are a fraction of them."""
    metrics = df["metric"].unique()
    if len(metrics) < 2 or df["metric"].isna().any():
        return _pooled(df, keys)
    return pd.concat([_pooled(df[df["metric"] == m], keys) for m in metrics], ignore_index=True)


def _pooled(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each group's keys (its first row's), n (the values that are not NaN), n_infinite (those that are ±inf),
    mean and std (ddof 1), the groups in their sorted order (missing keys last). Computed here rather than by
    pandas' groupby, whose sum (pairwise, or one value after another, by how the rows came and whether a NaN
    was anywhere) moved the last bit: each sum is _sums', the std from the deviations from the mean."""
    order, starts = _groups(df, keys)
    x = df["value"].to_numpy(dtype=float, na_value=np.nan)[order]
    sizes = np.diff(np.append(starts, len(x)))
    counted = ~np.isnan(x)
    n = np.add.reduceat(counted, starts).astype(np.int64)
    infinite = np.add.reduceat(np.isinf(x), starts).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = np.where(counted, x, 0.0)
        mean = _sums(x, starts, sizes) / n
        dev = np.where(counted, x - np.repeat(mean, sizes), 0.0)
        std = np.sqrt(_sums(dev * dev, starts, sizes) / (n - 1))
    out = df[keys].iloc[order[starts]].reset_index(drop=True)
    return out.assign(n=n, n_infinite=infinite, mean=mean, std=np.where(n >= 2, std, np.nan))


def _sums(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The sum of each group's values (values[start:start + size]), groups of a size together, as a table of a
    row each: its columns added pairwise, each addition's rounding error kept (TwoSum) and added in at the
    end. Plain float64 arithmetic in a fixed order, so no library's way of summing shows in the result, and
    as accurate as a compensated sum (the mean of values that nearly cancel included)."""
    out = np.empty(len(starts))
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        table = values[starts[which, None] + np.arange(size)]
        error = np.zeros_like(table)
        while table.shape[1] > 1:
            if table.shape[1] % 2:
                table, error = (np.pad(t, ((0, 0), (0, 1))) for t in (table, error))
            a, b = table[:, 0::2], table[:, 1::2]
            table = a + b
            b_part = table - a
            error = error[:, 0::2] + error[:, 1::2] + ((a - (table - b_part)) + (b - b_part))
        out[which] = table[:, 0] + error[:, 0]
    return out


def _groups(df: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The rows in group order (stable: a group's rows in the table's order) and where each group starts."""
    code = np.zeros(len(df), dtype=np.int64)
    for k in keys:
        rank = _rank(df[k]).astype(np.int64)
        span = int(rank.max()) + 1 if len(rank) else 1
        if code.max(initial=0) >= (2**62) // span:  # the combined code would overflow: number the groups anew
            code = np.unique(code, return_inverse=True)[1].astype(np.int64)
        code = code * span + rank
    order = np.argsort(code, kind="stable")
    ordered = code[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.zeros(0, np.intp)
    return order, starts


def _rank(column: pd.Series) -> np.ndarray:
    """Numbers in the order groupby sorts the column's values, missing last; a Categorical's own codes."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return missing_last(column.cat.codes.to_numpy(), len(column.cat.categories))
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        values = column.to_numpy().astype(np.int64)
        return values - values.min(initial=0)
    codes, uniques = pd.factorize(column, sort=True)
    return missing_last(codes, len(uniques))
