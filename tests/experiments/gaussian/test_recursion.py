"""The single-Gaussian recursion gives the numbers it gave with the straightforward pool (every
generation's points kept apart, mix's choice taken pool by pool and concatenated), bit for bit."""
import numpy as np
import pytest

from collapse_hpc.experiments.gaussian import recursion
from collapse_hpc.regimes import Regime
from tests.regimes.concatenated import Concatenated


def _estimates(regime, generations=200, replicates=5, n=10):
    rng = np.random.default_rng(3)
    out = []
    recursion.recurse(rng.standard_normal((replicates, n)), generations, regime, 0, rng,
                      lambda gen: out.append((gen.mu_hat.copy(), gen.sigma_hat.copy())))
    return np.array(out)


@pytest.mark.parametrize("regime", [Regime(), Regime("replace", 0.1), Regime("accumulate"),
                                    Regime("accumulate-subsample")])
def test_same_numbers_as_the_concatenated_pools(regime, monkeypatch):
    # n = 10 from up to 200 pools: many generations draw one point per pool, which the concatenation
    # laid out row-major (numpy then sums each replicate's points in another order)
    got = _estimates(regime)
    monkeypatch.setattr(recursion, "Pool", Concatenated)
    np.testing.assert_array_equal(got, _estimates(regime))
