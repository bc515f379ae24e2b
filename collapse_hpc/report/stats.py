"""Means and 95% confidence intervals over seeds and replicates, per generation."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from collapse_hpc.plotting.plots import REGIME, SUMMARY, setting_columns
from collapse_hpc.report.longform import plain

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
    values = df["value"].astype(float)
    g = df.assign(value=values, infinite=np.isinf(values)).groupby(keys, dropna=False, sort=True, observed=True)
    out = g["value"].agg(n="count", mean="mean", std="std").reset_index()
    out.insert(out.columns.get_loc("mean"), "n_infinite", g["infinite"].sum().to_numpy().astype(int))
    out = plain(out)  # the key columns as the values they stand for: the table's are Categoricals
    collapsed = out["n_infinite"].to_numpy() > 0
    out.loc[collapsed, ["mean", "std"]] = np.nan
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * out["std"].to_numpy() / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out
