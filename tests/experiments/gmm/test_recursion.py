"""The GMM recursion itself: collapse under replace, none under accumulate; chunking-independent;
the same numbers as with the straightforward pool."""
import numpy as np
import pytest

from collapse_hpc.experiments.gmm import metrics, recursion
from collapse_hpc.experiments.gmm.recursion import FitSettings, draws, real_data, real_modes, recurse
from collapse_hpc.regimes import Regime
from tests.regimes.concatenated import Concatenated


def _total_variance(regime, replicates, generations=60, n=60, first=0):
    rngs = [draws(0, r) for r in range(first, first + replicates)]
    out = np.empty((generations, replicates))

    def record(gen):
        out[gen.index] = metrics.measure(gen, real_modes("blob"))["total_variance"].numpy()

    recurse([real_data("blob", n, rng) for rng in rngs], generations, regime, FitSettings(), n, rngs, record)
    return out


def test_replace_collapses_and_accumulate_does_not():
    replace = _total_variance(Regime(), 12)
    accumulate = _total_variance(Regime("accumulate"), 12)
    assert np.median(replace[-1]) < 0.5 * np.median(replace[0])  # 2-D blob: total variance ~2 at first
    assert 1.2 < np.median(accumulate[-1]) < 3.0


def test_a_replicate_gives_the_same_numbers_in_any_chunk():
    together = _total_variance(Regime("replace", 0.1), 4, generations=8)
    alone = _total_variance(Regime("replace", 0.1), 1, generations=8, first=2)
    np.testing.assert_array_equal(together[:, 2], alone[:, 0])


@pytest.mark.parametrize("regime", [Regime("replace", 0.1), Regime("accumulate"), Regime("accumulate-subsample")])
def test_every_generation_is_what_the_concatenated_pools_gave(regime, monkeypatch):
    # the pools stacked in one array: the same training points, fits and samples bit for bit as the
    # straightforward pool (every generation's points apart, mix's choice concatenated pool by pool)
    def run():
        rngs = [draws(0, r) for r in range(3)]
        seen = []

        def record(gen):
            seen.append([gen.data.copy(), gen.samples.copy(), gen.fit.lower_bound.numpy().copy(),
                         *(v.numpy().copy() for v in metrics.measure(gen, real_modes("blob")).values())])

        recurse([real_data("blob", 40, rng) for rng in rngs], 25, regime, FitSettings(), 40, rngs, record)
        return seen

    got = run()
    monkeypatch.setattr(recursion, "Pool", Concatenated)
    for mine, theirs in zip(got, run(), strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
