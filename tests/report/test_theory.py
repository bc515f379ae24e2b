"""The single-Gaussian theory line: E[σ̂²] shrinks by (n−1)/n per fit under the MLE."""
import numpy as np
import pandas as pd
import pytest

from collapse_hpc.report.collect import RunData
from collapse_hpc.experiments.gaussian.figures import _theory
from collapse_hpc.plotting.plots import Context


def ctx_with(gen0_sigmas, section=None):
    rows = [("r", "gaussian", "replace-p0-samples10-s0", "replace-p0", 0, 10, i, 0, "sigma_hat", v)
            for i, v in enumerate(gen0_sigmas)]
    df = pd.DataFrame(rows, columns=["run", "experiment", "variant", "regime", "seed", "samples", "replicate",
                                     "generation", "metric", "value"])
    run = RunData("r", None, "", {"gaussian": section or {}}, {}, [], {"gaussian": 4})
    return Context("gaussian", df, pd.DataFrame(), [run])


def test_generation_0_fitted_to_real_data_has_shrunk_once():
    curve, label = _theory(ctx_with([0.9, 1.1, 0.95]), "r", 10, np.arange(3))
    assert curve == pytest.approx([0.9, 0.81, 0.729]) and "{k+1}" in label


def test_generation_0_holding_the_truth_has_not_shrunk():
    curve, _ = _theory(ctx_with([2.0, 2.0, 2.0], {"sigma": 2.0}), "r", 10, np.arange(3))
    assert curve == pytest.approx([4.0, 3.6, 3.24])


def test_unbiased_estimator_keeps_the_variance_in_expectation():
    curve, label = _theory(ctx_with([0.9, 1.1], {"estimator": "unbiased"}), "r", 10, np.arange(3))
    assert curve == pytest.approx([1.0, 1.0, 1.0]) and "unbiased" in label
