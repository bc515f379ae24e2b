"""Means and 95% confidence intervals over seeds and replicates, per generation."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from collapse_hpc.plotting.plots import setting_columns

LEVEL = 0.95


def group_keys(df: pd.DataFrame) -> list[str]:
    """What a summary row is about: everything except seed, replicate and variant (which names
    the seed) and the value itself."""
    return ["run", "experiment", "regime", *setting_columns(df), "metric", "generation"]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment, regime, settings, metric, generation): n, mean, std and the
    t-distribution 95% interval of the mean (NaN where n < 2). NaN values are not counted."""
    keys = group_keys(df)
    if df.empty:
        return pd.DataFrame(columns=keys + ["n", "mean", "std", "ci_low", "ci_high"])
    g = df.groupby(keys, dropna=False, sort=True)["value"]
    out = g.agg(n="count", mean="mean", std="std").reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * out["std"].to_numpy() / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out
