"""The share of a generation's samples beyond the real distribution's 2- and 3-sigma contour."""
import math

import numpy as np
import pytest

from collapse_hpc.experiments.gmm.metrics import beyond, real_share
from collapse_hpc.experiments.gmm.recursion import real_data, real_modes


def _direct(points, modes, k):
    """Point by point: beyond when more than k from every mode."""
    out = []
    for replicate in points:
        far = [all(math.dist(p, m) > k for m in modes) for p in replicate]
        out.append(sum(far) / len(far))
    return np.array(out)


@pytest.mark.parametrize("kind, separation", [("blob", 4.0), ("two-mode", 4.0), ("two-mode", 1.5)])
def test_share_is_the_direct_count(kind, separation):
    rng = np.random.default_rng(1)
    modes = real_modes(kind, separation)
    points = rng.standard_normal((4, 500, 2)) * np.array([2.0, 1.2, 0.6, 0.3])[:, None, None]  # wide to collapsed
    points[:, :, 0] += rng.choice(modes[:, 0], size=(4, 500))
    shares = beyond(points, modes)
    assert set(shares) == {2, 3}
    for k, share in shares.items():
        assert share.shape == (4,)
        np.testing.assert_array_equal(share, _direct(points, modes, k))
    assert shares[2][0] > shares[2][-1] and shares[2][-1] == 0.0  # a collapsed cloud has no tails


@pytest.mark.parametrize("kind, separation", [("blob", 4.0), ("two-mode", 4.0), ("two-mode", 2.5), ("two-mode", 0.0)])
def test_real_share_is_the_real_datas_own(kind, separation):
    modes = real_modes(kind, separation)
    x = real_data(kind, 2_000_000, np.random.default_rng(2), separation)
    for k in (2, 3):
        expected = real_share(modes, k)
        sampled = beyond(x[None], modes, (k,))[k][0]
        assert abs(sampled - expected) < 5 * math.sqrt(expected * (1 - expected) / len(x)), (k, sampled, expected)
    if kind == "blob":
        assert real_share(modes, 2) == pytest.approx(math.exp(-2))
        assert real_share(modes, 3) == pytest.approx(math.exp(-4.5))


def test_component_metrics_are_declared_in_component_order():
    """Columns come sorted by name (c0, c1, c10, c100, …, c2): a mixture of 11 or more components listed
    and drew component 10 before component 2, and the overview's first pages held components 0, 1, 10, 100…"""
    from collapse_hpc.experiments import describe
    from collapse_hpc.experiments.gmm.metrics import names

    columns = sorted(names(12))
    declared = [m for m in describe("gmm").metric_specs(columns) if m[:1] == "c" and m[1:2].isdigit()]
    assert declared == names(12)[names(12).index("c0_weight"):]
    assert describe("gmm").metric_specs(columns)["c10_weight"].label == "comp. 10 weight"
