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


def _fits(regime, n, generations, ddof, replicates=4000, seed=1):
    """(log sigma_hat^2, W2^2 to N(0, 1)) per generation and replicate, as run.py records them."""
    from collapse_hpc.experiments.gaussian.theory import w2

    rng = np.random.default_rng(seed)
    logvar, w2sq = np.empty((generations, replicates)), np.empty((generations, replicates))

    def record(gen):
        logvar[gen.index] = 2 * np.log(gen.sigma_hat)
        w2sq[gen.index] = w2(0.0, 1.0, gen.mu_hat, gen.sigma_hat) ** 2

    recurse(rng.standard_normal((replicates, n)), generations, regime, ddof, rng, record)
    return logvar, w2sq


def test_w2_matches_the_quantile_integral():
    """W2^2 = integral over u of (F^-1(u) - G^-1(u))^2, by quadrature, against the closed form."""
    from scipy.stats import norm

    from collapse_hpc.experiments.gaussian.theory import w2

    u = (np.arange(200_000) + 0.5) / 200_000
    for mu_hat, sigma_hat in [(0.3, 0.5), (-1.0, 2.0), (0.0, 1.0)]:
        numeric = np.mean((norm.ppf(u, 0.0, 1.0) - norm.ppf(u, mu_hat, sigma_hat)) ** 2)
        assert float(w2(0.0, 1.0, mu_hat, sigma_hat)) ** 2 == pytest.approx(numeric, rel=2e-3, abs=1e-9)


@pytest.mark.parametrize("estimator, ddof", [("unbiased", 1), ("mle", 0)])
def test_typical_variance_and_w2_follow_theory(estimator, ddof):
    """Monte Carlo means of log sigma_hat^2 and W2^2 against theory.py at generation k (k+1 fits)."""
    from collapse_hpc.experiments.gaussian import theory

    n, G = 10, 30
    logvar, w2sq = _fits(Regime(), n, G, ddof)
    for k in (0, 4, 14, 29):
        for sample, expected in ((logvar[k], theory.mean_log_variance(1.0, n, estimator, k + 1)),
                                 (w2sq[k], theory.mean_w2_squared(1.0, n, estimator, k + 1))):
            se = sample.std(ddof=1) / np.sqrt(len(sample))
            assert abs(sample.mean() - expected) < 4 * se, (estimator, k, sample.mean(), expected, se)
    # the theorem: under the unbiased estimator the typical variance dies while W2 keeps growing
    if estimator == "unbiased":
        assert np.median(np.exp(logvar[-1])) < 0.3
        assert theory.mean_w2_squared(1.0, n, estimator, 1000) > theory.mean_w2_squared(1.0, n, estimator, 100) > 2
    assert theory.mean_log_variance(1.0, n, estimator, 10) < theory.mean_log_variance(1.0, n, estimator, 1) < 0


def test_the_spread_of_log_variance_follows_theory():
    """sd of log sigma_hat^2 after t fits: sqrt(t trigamma((n-1)/2)), either estimator."""
    from collapse_hpc.experiments.gaussian import theory

    n, G = 10, 30
    for ddof in (0, 1):
        logvar, _ = _fits(Regime(), n, G, ddof)
        for k in (0, 9, 29):
            expected = float(theory.sd_log_variance(n, k + 1))
            assert logvar[k].std(ddof=1) == pytest.approx(expected, rel=0.05), (ddof, k)
    assert float(theory.sd_log_variance(100, 1000)) == pytest.approx(4.52, abs=0.01)  # the paper's n = 100, k = 999


@pytest.mark.parametrize("ddof", [0, 1])
def test_the_spread_of_the_variance_follows_its_closed_form(ddof):
    """Var[sigma_hat^2] after t fits, from the suite's recursion, against its closed form: each fit multiplies
    sigma_hat^2 by an independent V ~ chi^2(n-1)/d, so E[sigma_t^4] = sigma^4 (E V^2)^t with
    E V^2 = (n-1)(n+1)/d^2, and Var = sigma^4 ((E V^2)^t - (E V)^(2t))."""
    n, G = 10, 5
    var = _variances(Regime(), n, G, replicates=40_000, ddof=ddof, seed=3)
    d = n - ddof
    ev, ev2, ev4 = (n - 1) / d, (n - 1) * (n + 1) / d**2, (n - 1) * (n + 1) * (n + 3) * (n + 5) / d**4
    for k in range(G):
        t = k + 1
        second = var[k] ** 2  # sigma_hat^4: its mean is E V^2 to the t
        se = np.sqrt(ev4**t - ev2 ** (2 * t)) / np.sqrt(len(second))  # exact sd of sigma_hat^4, over sqrt(R)
        assert abs(second.mean() - ev2**t) < 4 * se, (ddof, k, second.mean(), ev2**t, se)
        assert var[k].var() == pytest.approx(ev2**t - ev ** (2 * t), rel=0.15), (ddof, k)
