"""A recursion's pool in memory: which generated pools it keeps under each regime, what it mixes,
and the accumulate shortcut (a running summary instead of the items)."""
import numpy as np
import pytest

from collapse_hpc.regimes import REAL, Pool, Regime, items_held, mix
from tests.regimes.concatenated import Concatenated


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


def _same(got, want):
    assert np.array_equal(got, want) and got.dtype == want.dtype and got.shape == want.shape
    def layout(x):  # the strides that matter: numpy sums another layout in another order
        return [s for s, n in zip(x.strides, x.shape) if n > 1]

    assert layout(got) == layout(want)


@pytest.mark.parametrize("reserve", [0, 7, 10_000])
@pytest.mark.parametrize("shape, axis", [((3,), 0), ((3,), 1), ((1,), 1), ((4, 2), 1)])
@pytest.mark.parametrize("name", ["accumulate", "accumulate-subsample", "detector-resample"])
def test_pooling_regimes_train_on_what_concatenating_the_pools_gave(name, shape, axis, reserve):
    # every pool kept in one array: the same items, order, dtype and layout as the pools concatenated
    # (along a later axis numpy lays out a concatenation of one-item parts otherwise), whether the
    # array was made big enough at once (reserve) or grew; early and late draws (a permutation of
    # the whole pool, then a choice among many pools)
    make = np.random.default_rng(6)

    def items(n):
        x = make.standard_normal(shape[:axis] + (n,) + shape[axis:])
        return x.astype(np.float32) if n == 5 else x  # a float32 pool: concatenating promotes it

    real = items(9)
    regime = Regime(name)
    pool, reference = Pool(regime, real, axis, reserve=reserve), Concatenated(regime, real, axis)
    scores = {REAL: make.random(9)}
    rng, rng_reference = np.random.default_rng(7), np.random.default_rng(7)
    for g, n in enumerate([9, 5, 1, 9, 30, 2] + [9] * 30):
        given = scores if name == "detector-resample" else None
        for size in (11, 3):
            _same(pool.training(rng, size=size, scores=given),
                  reference.training(rng_reference, size=size, scores=given))
        made = items(n)
        pool.add(made)
        reference.add(made)
        scores[g] = make.random(n)
    assert pool.nbytes == 8 * sum(x.size for x in [real, *reference.pools.values()])  # float64, as promoted
    assert sorted(pool.pools) == sorted(reference.pools)
    assert all(np.array_equal(pool.pools[g], reference.pools[g]) for g in reference.pools)


def test_a_draw_from_thousands_of_pools_is_one_gather_from_one_array():
    # the paper's GMM under accumulate-subsample holds 2050 pools of 1000 points per replicate; one
    # fancy index per pool made its generations cost ever more (O(generations^2) per chain). The
    # speed itself is benchmarks/gmm_regimes.py's; here, what makes it: every item in one array,
    # and a draw that indexes it once
    make = np.random.default_rng(8)
    p = Pool(Regime("accumulate-subsample"), make.standard_normal((10, 2)))
    for _ in range(2000):
        p.add(make.standard_normal((10, 2)))
    held = p.stacked.items
    taken = []
    real_take = p.stacked.take
    p.stacked.take = lambda idx: taken.append(len(idx)) or real_take(idx)
    out = p.training(np.random.default_rng(9))
    assert p.stacked.items is held and held.shape[1:] == (2,) and p.stacked.end == 2001 * 10
    assert taken == [10] and out.shape == (10, 2)
