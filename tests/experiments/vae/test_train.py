"""A generation's training mix (regimes, fresh samples, even spread) and its determinism."""
import numpy as np
import pytest
import torch

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae import model, train
from collapse_hpc.experiments.vae.config import VaeConfig
from collapse_hpc.regimes import REAL as R
from collapse_hpc.regimes import Regime


def _plan(regime, generations, n_real=1000, n_gen=1000):
    return train.plan_slots(regime, n_real, n_gen, generations, np.random.default_rng(0))


def test_generation_zero_is_all_real():
    source, index = _plan(Regime("replace", 0.1), 0)
    assert (source == R).all() and sorted(index) == list(range(1000))


def test_replace_uses_the_newest_generation_and_keeps_a_fraction():
    source, index = _plan(Regime("replace", 0.0), 3)
    assert (source == 2).all() and len(source) == 1000
    source, index = _plan(Regime("replace", 0.1), 3)
    assert (source == R).sum() == 100 and (source == 2).sum() == 900
    assert len(set(index[source == R])) == 100  # distinct real images


def test_accumulate_and_subsample():
    source, _ = _plan(Regime("accumulate"), 2, n_gen=500)
    assert [(source == s).sum() for s in (R, 0, 1)] == [1000, 500, 500]
    source, _ = _plan(Regime("accumulate-subsample"), 2, n_gen=1000)
    assert len(source) == 1000 and set(source) == {R, 0, 1}


def test_every_batch_carries_its_share_of_real_images():
    source, _ = _plan(Regime("replace", 0.1), 1)
    order = train.epoch_order(source, np.random.default_rng(1))
    assert sorted(order) == list(range(1000))
    per_batch = [(source[order[i:i + 50]] == R).sum() for i in range(0, 1000, 50)]
    assert min(per_batch) >= 4 and max(per_batch) <= 6  # 10% of 50, +-1


def test_generated_slots_are_fresh_decoder_samples():
    torch.manual_seed(0)
    decoder = model.ConvVAE(8, 8, latent=4, capacity=4).eval()
    real = torch.zeros(10, 1, 8, 8)
    source, index = np.array([R, 0, 0]), np.array([3, 0, 1])
    gen = torch.Generator().manual_seed(5)
    a = train._batch(np.arange(3), source, index, real, {0: decoder}, "mean", gen)
    b = train._batch(np.arange(3), source, index, real, {0: decoder}, "mean", gen)
    assert a.shape == (3, 1, 8, 8) and (a[0] == 0).all()  # the real image
    assert not torch.equal(a[1:], b[1:])  # new z every batch
    c = train._batch(np.arange(3), source, index, real, {0: decoder}, "bernoulli", gen)
    assert set(c[1:].unique().tolist()) <= {0.0, 1.0}


def _fit(seed_shift=0, **knobs):
    cfg = VaeConfig(**{"epochs": 2, "batch_size": 16, "capacity": 4, "latent": 3, **knobs})
    torch.manual_seed(99)
    real = torch.rand(40, 1, 8, 8)
    slots = train.plan_slots(Regime(), 40, 40, 0, np.random.default_rng(0))
    seeds = {"init": 1 + seed_shift, "order": 2, "prior": 3, "noise": 4}
    vae, loss = train.fit(cfg, 8, 8, real, slots, {}, seeds, "cpu")
    return vae, loss


def test_training_is_deterministic_for_a_seed():
    (a, la), (b, lb), (c, _) = _fit(), _fit(), _fit(seed_shift=1)
    assert la == lb and np.isfinite(la)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.mu.weight, c.mu.weight)


def test_a_diverging_training_says_so():
    # lr 10 turns the weights to NaN in the first epoch; the generation then failed in its Frechet
    # distance with "LinAlgError: Eigenvalues did not converge"
    with pytest.raises(UserError, match=r"vae: training diverged: the loss is nan in epoch 1 of 2 .*lower vae.lr"):
        _fit(lr=10.0)
