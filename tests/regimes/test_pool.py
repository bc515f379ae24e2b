"""A recursion's pool in memory: which generated pools it keeps under each regime, what it mixes,
and the accumulate shortcut (a running summary instead of the items)."""
import numpy as np
import pytest

from collapse_hpc.regimes import REAL, Pool, Regime, items_held, mix


def _points(rng, r=3, n=8):
    return rng.standard_normal((r, n))


@pytest.mark.parametrize("name, kept", [("replace", [2]), ("accumulate", [0, 1, 2]),
                                        ("accumulate-subsample", [0, 1, 2])])
def test_a_pool_keeps_what_its_regime_can_draw_from(name, kept):
    rng = np.random.default_rng(0)
    pool = Pool(Regime(name), _points(rng), axis=1)
    for _ in range(3):
        pool.add(_points(rng))
    assert sorted(pool.pools) == kept and pool.sizes == [8, 8, 8] and pool.made == 3
    assert pool.nbytes == 3 * 8 * 8 * (1 + len(kept)) == 8 * 3 * items_held(Regime(name), 8, 8, 3)


@pytest.mark.parametrize("regime", [Regime(), Regime("replace", 0.25), Regime("accumulate"),
                                    Regime("accumulate-subsample")])
def test_training_is_mix_s_choice_along_the_items_axis(regime):
    rng = np.random.default_rng(1)
    real = _points(rng)
    pool, made = Pool(regime, real, axis=1), []
    assert np.array_equal(pool.training(np.random.default_rng(2)), real)  # generation 0: the real data
    for _ in range(2):
        made.append(_points(rng))
        pool.add(made[-1])
    got = pool.training(np.random.default_rng(3))
    picks = mix(regime, 8, [8, 8], np.random.default_rng(3), size=8)
    want = np.concatenate([(real if src == REAL else made[src])[:, idx] for src, idx in picks], 1)
    assert np.array_equal(got, want)
    assert got.shape == (3, 24 if regime.name == "accumulate" else 8)


def test_items_on_axis_0_and_a_training_size():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((10, 2))
    pool = Pool(Regime("accumulate-subsample"), real)
    pool.add(rng.standard_normal((6, 2)))
    assert pool.training(rng, size=12).shape == (12, 2)


def test_accumulate_with_a_summary_keeps_no_items_and_sums_every_point_so_far():
    rng = np.random.default_rng(5)
    real = rng.integers(0, 4, (2, 10))

    def counts(x):
        return np.stack([np.bincount(row, minlength=4) for row in x])

    pool = Pool(Regime("accumulate"), real, axis=1, summarize=counts, merge=np.add)
    seen = [real]
    for _ in range(3):
        seen.append(rng.integers(0, 4, (2, 10)))
        pool.add(seen[-1])
    assert pool.pools == {} and pool.made == 3
    assert np.array_equal(pool.summary(rng), counts(np.concatenate(seen, 1)))
    with pytest.raises(ValueError, match="summary"):
        pool.training(rng)
    # the other regimes summarize their training data: real data at generation 0, mix's choice after
    other = Pool(Regime(), real, axis=1, summarize=counts, merge=np.add)
    assert np.array_equal(other.summary(rng), counts(real))
    other.add(seen[1])
    assert np.array_equal(other.summary(rng), counts(seen[1]))  # replace, keep 0%: the newest pool alone


def test_items_along_a_later_axis_are_summed_as_the_recursions_always_summed_them():
    # numpy sums a column-major copy in another order than the row-major pool (last bits differ):
    # the pool's training data along axis 1 is always such a copy, the whole newest pool included
    rng = np.random.default_rng(0)
    real, drawn = rng.standard_normal((250, 100)), rng.standard_normal((250, 100))
    pool = Pool(Regime(), real, axis=1)
    pool.add(drawn)
    got = pool.training(rng)
    assert np.array_equal(got, drawn)
    assert np.array_equal(got.mean(1), np.concatenate([drawn[:, np.arange(100)]], 1).mean(1))
