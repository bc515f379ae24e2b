"""Means and t intervals over seeds and replicates, from known values."""
import math

import numpy as np
import pandas as pd
import pytest

from collapse_hpc.report.stats import summarise

T_975_DF2 = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2), from tables
T_975_DF3 = 3.182446305284263


def tidy(rows):
    cols = ["run", "experiment", "variant", "regime", "seed", "samples", "replicate", "generation", "metric", "value"]
    df = pd.DataFrame(rows, columns=cols)
    df["samples"] = df["samples"].astype("Int64")
    return df


def test_mean_and_interval_over_seeds():
    rows = [("r", "lm", f"replace-p0-s{s}", "replace-p0", s, pd.NA, 0, 0, "test_ppl", v)
            for s, v in enumerate([1.0, 2.0, 3.0])]
    out = summarise(tidy(rows))
    assert len(out) == 1
    row = out.iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(2.0) and row["std"] == pytest.approx(1.0)
    half = T_975_DF2 / math.sqrt(3)
    assert row["ci_low"] == pytest.approx(2.0 - half) and row["ci_high"] == pytest.approx(2.0 + half)


def test_replicates_and_seeds_pool_but_settings_and_generations_do_not():
    rows = []
    for seed in (0, 1):
        for rep, v in enumerate((10.0, 14.0)):
            rows.append(("r", "gaussian", f"replace-p0-samples100-s{seed}", "replace-p0", seed, 100, rep, 0,
                         "sigma_hat", v + seed))
    rows.append(("r", "gaussian", "replace-p0-samples10-s0", "replace-p0", 0, 10, 0, 0, "sigma_hat", 5.0))
    rows.append(("r", "gaussian", "replace-p0-samples100-s0", "replace-p0", 0, 100, 0, 1, "sigma_hat", 7.0))
    out = summarise(tidy(rows)).set_index(["samples", "generation"])
    pooled = out.loc[(100, 0)]
    values = np.array([10.0, 14.0, 11.0, 15.0])
    assert pooled["n"] == 4 and pooled["mean"] == pytest.approx(12.5)
    half = T_975_DF3 * values.std(ddof=1) / 2
    assert pooled["ci_high"] - pooled["mean"] == pytest.approx(half)
    # a single value: a mean but no interval (never a zero-width one)
    for key in [(10, 0), (100, 1)]:
        assert out.loc[key, "n"] == 1 and math.isnan(out.loc[key, "ci_low"]) and math.isnan(out.loc[key, "ci_high"])


def test_missing_values_are_not_counted_as_zeros():
    rows = [("r", "gmm", "replace-p0-s0", "replace-p0", 0, pd.NA, rep, 3, "l2", v)
            for rep, v in enumerate([2.0, float("nan"), 4.0])]
    row = summarise(tidy(rows)).iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(3.0)
