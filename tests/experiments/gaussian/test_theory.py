"""Single Gaussian: the MLE variance shrinks as theory says under replace; accumulate does not collapse."""
import numpy as np
import pytest

from collapse_hpc.experiments.gaussian.recursion import recurse
from collapse_hpc.regimes import Regime


def _variances(regime, n, generations, replicates=2000, ddof=0, seed=0):
    rng = np.random.default_rng(seed)
    out = np.empty((generations, replicates))

    def record(gen):
        out[gen.index] = gen.sigma_hat**2

    recurse(rng.standard_normal((replicates, n)), generations, regime, ddof, rng, record)
    return out


def test_mle_variance_follows_theory():
    """E[sigma_hat^2 at generation g] = sigma^2 ((n-1)/n)^(g+1): g+1 estimates from n points each."""
    n = 10
    var = _variances(Regime(), n, 20)
    for g in (0, 1, 4, 9, 19):
        expected = ((n - 1) / n) ** (g + 1)
        se = var[g].std(ddof=1) / np.sqrt(var.shape[1])
        assert abs(var[g].mean() - expected) < 3 * se, (g, var[g].mean(), expected, se)
    assert var[19].mean() < 0.2  # it really shrinks: 0.9^20 = 0.12


def test_unbiased_estimator_keeps_the_mean_variance():
    var = _variances(Regime(), 10, 10, ddof=1)
    se = var[9].std(ddof=1) / np.sqrt(var.shape[1])
    assert abs(var[9].mean() - 1.0) < 3 * se


@pytest.mark.parametrize("regime", [Regime("accumulate"), Regime("replace", keep_fraction=0.5)])
def test_real_data_kept_prevents_collapse(regime):
    replace = _variances(Regime(), 10, 100, replicates=500)
    kept = _variances(regime, 10, 100, replicates=500)
    assert np.median(replace[-1]) < 1e-3  # collapsed under replace
    assert 0.5 < np.median(kept[-1]) < 1.5  # not collapsed


def test_accumulate_subsample_uses_the_whole_pool():
    var = _variances(Regime("accumulate-subsample"), 50, 60, replicates=300)
    replace = _variances(Regime(), 50, 60, replicates=300)
    assert np.median(var[-1]) > 2 * np.median(replace[-1])
