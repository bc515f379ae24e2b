"""The VAE metrics on inputs whose answers are known."""
import math

import numpy as np
import pytest
from scipy import linalg

from collapse_hpc.experiments.vae import metrics


def test_entropy_of_one_class_is_zero():
    shares = metrics.class_shares(np.full(10000, 7))
    assert shares[7] == 1.0 and shares.sum() == 1.0
    assert metrics.entropy(shares) == 0.0
    assert str(metrics.entropy(shares)) == "0.0"  # not -0.0 in tables


def test_entropy_of_uniform_classes_is_log_10():
    shares = metrics.class_shares(np.repeat(np.arange(10), 1000))
    assert np.allclose(shares, 0.1)
    assert metrics.entropy(shares) == pytest.approx(math.log(10), abs=1e-12)


def test_entropy_of_two_equal_classes_is_log_2():
    assert metrics.entropy(metrics.class_shares(np.array([3, 5, 3, 5]))) == pytest.approx(math.log(2))


def test_pixel_variance():
    images = np.zeros((4, 1, 2, 2))
    images[:2, 0, 0, 0] = 1.0  # one pixel half on, half off: variance 0.25; the other three 0
    assert metrics.pixel_variance(images) == pytest.approx(0.25 / 4)
    assert metrics.pixel_variance(np.ones((5, 1, 8, 8))) == 0.0


def test_frechet_of_identical_features_is_zero_and_of_a_shift_is_its_square():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 6))
    assert metrics.frechet(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0, 0, 0, 0.5])
    assert metrics.frechet(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-8)


def test_frechet_matches_the_textbook_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 5))
    b = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5)) + 1.0
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * np.real(linalg.sqrtm(ca @ cb)))
    assert metrics.frechet(a, b) == pytest.approx(ref, rel=1e-9)


def test_frechet_survives_dead_features():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 3
    a[:, 2] = 0.0  # a ReLU unit that never fires: singular covariance
    b[:, 2] = 0.0
    value = metrics.frechet(a, b)
    assert np.isfinite(value) and value == pytest.approx(
        ((a.mean(0) - b.mean(0)) ** 2).sum(), rel=0.1)  # unit covariances: the mean term dominates


def test_beyond_radius_counts_what_lies_past_the_real_99th_percentile():
    # real radii 1 … 1000: the 99th percentile is 990.01 (numpy's linear rule)
    real = np.arange(1, 1001, dtype=float)
    share, bound = metrics.beyond_radius(real, np.array([5.0, 990.0, 990.02, 2000.0]))
    assert bound == pytest.approx(990.01) and share == 0.5
    assert metrics.beyond_radius(real, real)[0] == 0.01  # the real images' own share: 1% by definition
    assert metrics.beyond_radius(real, np.full(7, 3.0))[0] == 0.0  # a collapsed generation has no tail


def test_latent_radii_are_the_norms_of_the_encoders_means():
    import torch

    class Encoder:  # mu(x) = the first two pixels, so the radius is known
        def encode(self, x):
            return x.flatten(1)[:, :2], None

    images = torch.zeros(5, 1, 2, 2)
    images[:, 0, 0, 0] = torch.tensor([3.0, 0.0, 1.0, 6.0, 0.5])
    images[:, 0, 0, 1] = torch.tensor([4.0, 0.0, 0.0, 8.0, 0.5])
    radii = metrics.latent_radii(Encoder(), images, batch=2)  # batches join in order
    np.testing.assert_allclose(radii, [5.0, 0.0, 1.0, 10.0, np.sqrt(0.5)])


def test_the_class_metrics_count_the_classes_the_real_images_have(monkeypatch):
    """A data set of the user's with labels 0..4, its samples labelled evenly over those five: the rarest class's
    share is 1/5, not 0 for classes 5..9 the data never had, and the run stores the five it had."""
    import torch

    from collapse_hpc.experiments.vae import classifier, generation, model
    from collapse_hpc.experiments.vae.data import Images

    n = 500
    monkeypatch.setattr(classifier, "predict", lambda judge, x, classes=None: (
        np.arange(len(x)) % 5, np.random.default_rng(0).normal(size=(len(x), 3))))
    vae = model.ConvVAE(8, 8, latent=2, capacity=2, stages=1)
    test = Images(np.zeros((4, 1, 8, 8), np.float32), np.arange(4))
    row = generation.evaluate(vae, None, test, n, 0, torch.device("cpu"), present=np.array([4, 0, 1, 2, 3, 1]))
    assert row["class_min_share"] == pytest.approx(0.2) and row["real_classes"] == 5
    assert row["class_entropy"] == pytest.approx(math.log(5))
    assert [row[f"class_{c}"] for c in range(10)] == pytest.approx([0.2] * 5 + [0.0] * 5)
    # the digits' ten classes, as before: one class never labelled is one lost
    ten = metrics.class_metrics(np.arange(n) % 9, present=range(10))
    assert ten["class_min_share"] == 0 and ten["real_classes"] == 10
