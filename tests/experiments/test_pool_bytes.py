"""The array experiments' pool memory estimate (pool_bytes) against the bytes their recursion's
Pool really holds, for every regime they run: the estimate comes from the regime's values."""
import numpy as np
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.regimes import Pool

REGIMES = ["replace", "replace:0.5", "accumulate", "accumulate-subsample"]
G = 4


class Recorded(Pool):
    """A Pool that remembers the most bytes it held."""

    peak = 0

    def add(self, items):
        super().add(items)
        Recorded.peak = max(Recorded.peak, self.nbytes)


def _variants(name, section):
    run = experiments.config_from_dict({"name": "t", "generations": G, "seeds": [0], "executor": "debug",
                                        "regimes": REGIMES, name: {"generations": G, **section}})
    variants = [c.variant for c in engine.plan(run)]
    assert {v.regime.name for v in variants} == {"replace", "accumulate", "accumulate-subsample"}
    return run, variants


@pytest.fixture
def recorded():
    Recorded.peak = 0
    return Recorded


def test_gaussian_estimate_is_what_its_pool_holds(recorded, monkeypatch):
    from collapse_hpc.experiments.gaussian import EXPERIMENT, recursion

    monkeypatch.setattr(recursion, "Pool", recorded)
    run, variants = _variants("gaussian", {"samples": [10], "replicates": 3, "chunk_replicates": 3})
    for variant in variants:
        recorded.peak = 0
        rng = np.random.default_rng(0)
        recursion.recurse(rng.standard_normal((3, 10)), G, variant.regime, 0, rng, lambda gen: None)
        assert EXPERIMENT.pool_bytes(run, variant) * 3 == recorded.peak > 0, variant.name  # one pool for 3


def test_gmm_estimate_is_what_its_pool_holds(recorded, monkeypatch):
    from collapse_hpc.experiments.gmm import EXPERIMENT, recursion

    monkeypatch.setattr(recursion, "Pool", recorded)
    run, variants = _variants("gmm", {"samples": 30, "replicates": 2, "chunk_replicates": 2})
    for variant in variants:
        recorded.peak = 0
        rngs = [recursion.draws(0, r) for r in range(2)]
        real = [recursion.real_data("blob", 30, rng) for rng in rngs]
        recursion.recurse(real, G, variant.regime, recursion.FitSettings(), 30, rngs, lambda gen: None)
        assert EXPERIMENT.pool_bytes(run, variant) == recorded.peak > 0, variant.name  # a pool per replicate
