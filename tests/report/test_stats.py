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
    return df.assign(kind="replace", keep_fraction=0.0, verifier_quantile=0.5)  # the regime's values (collect.tidy)


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


def test_a_log_of_a_zero_variance_leaves_the_mean_empty_and_is_counted():
    # replicate 1 collapsed to a point mass: its variance is 0, its log variance -inf
    rows = [("r", "gaussian", "replace-p0-samples2-s0", "replace-p0", 0, 2, rep, 5, metric, v)
            for rep, (var, log) in enumerate([(0.5, math.log(0.5)), (0.0, -math.inf), (0.25, math.log(0.25))])
            for metric, v in (("var_hat", var), ("log_var_hat", log))]
    rows.append(("r", "gaussian", "replace-p0-samples2-s0", "replace-p0", 0, 2, 0, 6, "log_var_hat", math.inf))
    rows.append(("r", "gaussian", "replace-p0-samples2-s0", "replace-p0", 0, 2, 1, 6, "log_var_hat", -math.inf))
    out = summarise(tidy(rows)).set_index(["metric", "generation"])
    var = out.loc[("var_hat", 5)]
    assert var["n"] == 3 and var["n_infinite"] == 0 and var["mean"] == pytest.approx(0.25)  # the 0 counts
    for key in [("log_var_hat", 5), ("log_var_hat", 6)]:  # -inf alone, and -inf beside +inf (NaN)
        row = out.loc[key]
        assert row["n_infinite"] == row["n"] - (key[1] == 5) * 2
        assert all(math.isnan(row[c]) for c in ("mean", "std", "ci_low", "ci_high"))
    text = out.reset_index().to_csv(index=False, float_format="%.8g")
    assert not {c.lower() for ln in text.splitlines()[1:] for c in ln.split(",")} & {"inf", "-inf", "nan"}


def test_every_replicate_at_zero_variance_is_a_real_zero_mean():
    rows = [("r", "gaussian", "replace-p0-samples2-s0", "replace-p0", 0, 2, rep, 9, "var_hat", 0.0)
            for rep in range(4)]
    row = summarise(tidy(rows)).iloc[0]
    assert row["n"] == 4 and row["n_infinite"] == 0
    assert row["mean"] == 0.0 and row["std"] == 0.0 and row["ci_low"] == 0.0 and row["ci_high"] == 0.0


# 16 values whose mean pandas' groupby gave as 0.009125 or 0.009125000000000001, by how the rows came
CLOSE = [0.008, 0.007, 0.009, 0.013, 0.007, 0.007, 0.005, 0.01, 0.01, 0.011, 0.006, 0.007, 0.01, 0.018, 0.013, 0.005]


@pytest.mark.parametrize("layout", ["one-variant", "seeds-interleaved", "a-nan-in-another-metric"])
def test_the_mean_and_std_are_pinned_whatever_the_rows_around_them(layout):
    """The mean of CLOSE is their exact mean rounded once, 0.009125, and their std (ddof 1) the exact one
    rounded, in every layout of the table; a group far from 0 keeps its small spread, and the mean of values
    that nearly cancel is exact."""
    seeds = [0, 1] if layout == "seeds-interleaved" else [0]
    rows = [("r", "gmm", f"replace-p0-s{s}", "replace-p0", s, pd.NA, rep, 0, "tail", v)
            for s in seeds for rep, v in enumerate(CLOSE[s::len(seeds)])]
    rows += [("r", "gmm", "replace-p0-s0", "replace-p0", 0, pd.NA, rep, 1, "tail", 1e8 + rep) for rep in range(3)]
    # values that nearly cancel: summed one after another or pairwise, 1 is lost beside 1e16 (a mean of 0)
    rows += [("r", "gmm", "replace-p0-s0", "replace-p0", 0, pd.NA, rep, 2, "tail", v)
             for rep, v in enumerate([1e16, 1.0, -1e16, 2.0] * 8)]
    if layout == "a-nan-in-another-metric":
        rows.append(("r", "gmm", "replace-p0-s0", "replace-p0", 0, pd.NA, 0, 0, "other", float("nan")))
    out = summarise(tidy(rows)).set_index(["metric", "generation"])
    close, far = out.loc[("tail", 0)], out.loc[("tail", 1)]
    assert close["n"] == 16 and close["mean"] == 0.009125 and close["std"] == 0.0034423828956117006
    assert far["mean"] == 100000001.0 and far["std"] == 1.0
    assert out.loc[("tail", 2), "mean"] == 3 / 4
