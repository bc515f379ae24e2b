"""The single Gaussian's tail mass beyond the original's k-sigma bounds: closed form against Monte Carlo."""
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.special import ndtr

from collapse_hpc.experiments.gaussian.theory import tail_mass


def test_closed_form_matches_monte_carlo_for_each_replicate():
    # replicates side by side (one call), fits narrower, wider and shifted against N(1, 2^2)
    mu, sigma = 1.0, 2.0
    mu_hat = np.array([1.0, 1.0, 1.0, 3.5, -4.0, 0.2])
    sigma_hat = np.array([2.0, 0.7, 3.0, 1.0, 0.5, 1.9])
    rng = np.random.default_rng(0)
    draws = mu_hat[:, None] + sigma_hat[:, None] * rng.standard_normal((len(mu_hat), 1_000_000))
    for k in (2, 3):
        exact = tail_mass(mu, sigma, mu_hat, sigma_hat, k)
        assert exact.shape == mu_hat.shape
        mc = (np.abs(draws - mu) > k * sigma).mean(1)
        se = np.sqrt(np.clip(exact * (1 - exact), 1e-12, None) / draws.shape[1])
        assert np.all(np.abs(mc - exact) < 5 * se + 1e-6), (k, mc, exact)
    # the fit that is the original has the real distribution's own tail mass
    assert tail_mass(mu, sigma, [mu], [sigma], 2)[0] == pytest.approx(2 * ndtr(-2), rel=1e-12)  # 0.0455
    assert tail_mass(mu, sigma, [mu], [sigma], 3)[0] == pytest.approx(0.0026998, rel=1e-4)


def test_a_collapsed_fit_is_a_point_mass():
    # sigma_hat 0 (underflow after many generations): all mass where its mean is, never NaN
    out = tail_mass(0.0, 1.0, np.array([0.5, 2.5, -3.1]), np.zeros(3), 2)
    np.testing.assert_array_equal(out, [0.0, 1.0, 1.0])
    tiny = tail_mass(0.0, 1.0, np.array([1.9, 2.1]), np.full(2, 1e-300), 2)
    np.testing.assert_array_equal(tiny, [0.0, 1.0])


def test_a_run_records_the_tail_mass_of_each_generations_fit(tmp_path):
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch.debug import execute
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 30, "seeds": [0], "executor": "debug",
                                        "regimes": ["replace"],
                                        "gaussian": {"samples": [10], "replicates": 200, "chunk_replicates": 200}})
    store = RunStore(tmp_path / "r")
    engine.open_run(store, run)
    execute(store, run, engine.plan(run))
    part = store.variant_dir("gaussian", "replace-p0-samples10-s0") / "part_000"
    t = pq.read_table(part / "metrics.parquet").to_pandas()
    for k in (2, 3):
        np.testing.assert_array_equal(t[f"tail_mass_{k}sigma"], tail_mass(0.0, 1.0, t["mu_hat"], t["sigma_hat"], k))
    typical = t.groupby("generation")["tail_mass_2sigma"].median()
    assert 0.02 < typical[0] < 0.08 and typical[29] < 1e-6 * typical[0]  # n = 10: a typical fit's tails go
