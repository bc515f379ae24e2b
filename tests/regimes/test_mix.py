"""What mix picks: the curated regimes by their scores, replace slot by slot (and slot_order back)."""
import timeit

import numpy as np
import pytest

from collapse_hpc import experiments
from collapse_hpc.errors import ConfigError
from collapse_hpc.regimes import REAL, Regime, mix, slot_order


def test_detector_resample_draws_by_weight_from_the_whole_pool():
    # weight 0 for every generated item: only real items are drawn, with replacement, to the real size
    scores = {-1: np.ones(10), 0: np.zeros(10), 1: np.zeros(10)}
    picks = dict(mix(Regime("detector-resample"), 10, [10, 10], np.random.default_rng(0), scores=scores))
    assert len(picks[-1]) == 10 and len(picks[0]) == len(picks[1]) == 0
    # draw frequency follows the weights: items 0..4 of generation 0 weigh 9x the real ones
    w = {-1: np.ones(50), 0: np.r_[np.full(5, 9.0), np.zeros(45)]}
    picks = dict(mix(Regime("detector-resample"), 50, [50], np.random.default_rng(1), size=20000, scores=w))
    assert set(picks[0]) <= set(range(5))
    share = len(picks[0]) / 20000  # expected 45 / (45 + 50)
    assert abs(share - 45 / 95) < 0.02
    assert np.all(np.diff(picks[-1]) >= 0)  # sorted, repeats allowed
    with pytest.raises(ValueError, match="weight"):
        mix(Regime("detector-resample"), 3, [3], np.random.default_rng(0), scores={-1: np.zeros(3), 0: np.zeros(3)})


def test_verifier_filter_keeps_the_passing_items_and_refills_with_them():
    score = np.array([5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0])  # items 1, 3, 5, 7 are the best half
    (src, idx), = mix(Regime("verifier-filter"), 8, [8, 8], np.random.default_rng(0), scores={1: score})
    assert src == 1 and len(idx) == 8  # the newest generation, refilled to the same size
    assert set(idx) == {1, 3, 5, 7}  # every passing item, and only those
    (_, idx), = mix(Regime("verifier-filter", verifier_quantile=0.25), 8, [8], np.random.default_rng(0),
                    scores={0: score})
    assert set(idx) == {1, 3} and len(idx) == 8
    # more pass than wanted: the best ones
    (_, idx), = mix(Regime("verifier-filter", verifier_quantile=1.0), 8, [8], np.random.default_rng(0),
                    size=3, scores={0: score})
    assert list(idx) == [1, 3, 5]
    with pytest.raises(ValueError, match="needs the experiment's scores"):
        mix(Regime("verifier-filter"), 8, [8], np.random.default_rng(0))


def test_curated_regimes_in_configs():
    run = experiments.config_from_dict({"regimes": ["detector-resample",
                                                    {"name": "verifier-filter", "verifier_quantile": 0.3}],
                                        "lm": {"verifier": "base"}})
    assert [r.label for r in run.regimes] == ["detector-resample", "verifier-filter-q0.3"]
    again = experiments.config_from_dict(run.to_dict())  # the saved config reads back the same (and hashes the same)
    assert again.regimes == run.regimes and again.hash() == run.hash()
    for raw, msg in (({"regimes": ["detector-resample"], "gmm": {}}, r"not available for gmm \(only for lm\)"),
                     ({"regimes": [{"name": "replace", "verifier_quantile": 0.2}], "lm": {}}, "verifier-filter"),
                     ({"regimes": [{"name": "verifier-filter", "verifier_quantile": 0}], "lm": {}}, r"\(0, 1\]")):
        with pytest.raises(ConfigError, match=msg) as e:
            experiments.config_from_dict(raw)
        assert "\n" not in str(e.value)
    # another experiment may keep its own regimes beside lm's curated ones
    experiments.config_from_dict({"regimes": ["verifier-filter"], "lm": {}, "gmm": {"regimes": ["replace"]}})


def test_replace_draws_slot_wise_and_slot_order_puts_items_back():
    # equal sizes: slot i holds real item i (kept) or the item generated from it, never both
    picks = mix(Regime("replace", 0.3), 10, [10, 10], np.random.default_rng(0))
    (real_src, keep), (new_src, new) = picks
    assert (real_src, new_src) == (REAL, 1) and len(keep) == 3
    assert sorted([*keep, *new]) == list(range(10)) and not set(keep) & set(new)
    order = slot_order(Regime("replace", 0.3), picks)
    slots = np.concatenate([keep, new])[order]
    assert slots.tolist() == list(range(10))
    source = np.concatenate([np.full(len(keep), REAL), np.full(len(new), 1)])[order]
    assert (source[keep] == REAL).all() and (source[new] == 1).all()


def test_slot_order_only_where_the_draw_was_slot_wise():
    rng = np.random.default_rng(0)
    assert slot_order(Regime("accumulate"), mix(Regime("accumulate"), 4, [4], rng)) is None
    # a newest pool larger than the training set: a random draw, not slots
    picks = [(REAL, np.array([0, 5])), (0, np.array([1, 7, 8]))]
    assert slot_order(Regime("replace", 0.4), picks) is None
    assert slot_order(Regime(), [(REAL, np.arange(3))]).tolist() == [0, 1, 2]  # generation 0


def test_accumulate_subsample_cuts_its_draw_at_the_pools_in_one_pass():
    # the paper's single Gaussian at n = 10000: 1000 pools by its last generation. A mask per pool
    # made every draw cost pools x n (250x one pool's draw of the same total: hours per variant);
    # cut at the boundaries it costs a few times one pool's (up to 15x on a loaded machine)
    regime, n, pools = Regime("accumulate-subsample"), 10_000, 999
    picks = mix(regime, n, [n] * pools, np.random.default_rng(0))
    assert [src for src, _ in picks] == [REAL, *range(pools)]
    assert sum(len(idx) for _, idx in picks) == n
    assert all(np.all(np.diff(idx) > 0) and (not len(idx) or 0 <= idx[0] and idx[-1] < n) for _, idx in picks)
    whole = np.sort(np.random.default_rng(0).choice(n * (pools + 1), n, replace=False))  # the same draw, global
    assert np.array_equal(np.concatenate([idx + n * (src + 1) for src, idx in picks]), whole)

    def best(generated):
        rng = np.random.default_rng(1)
        return min(timeit.repeat(lambda: mix(regime, n, generated, rng), number=3, repeat=5))

    assert best([n] * pools) < 40 * best([n * pools])
