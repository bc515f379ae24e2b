"""What one generation's VAE is measured by (all float64, nats where a unit applies).

- elbo, recon, kl: on the real test split, per image (one posterior sample, seeded);
- class_0..class_9 and class_entropy: the classifier's labels of generated samples; mode
  collapse shows as entropy falling from ~log K towards 0, K the classes of the real training
  images (real_classes: 10 for digits and MNIST, fewer for a data set of the user's with fewer), each
  image labelled the likeliest of those K (the classifier's other outputs are no class of the data);
- pixel_variance: per-pixel variance across generated samples, averaged over pixels;
- frechet: Frechet distance between Gaussians fitted to the classifier's penultimate features
  of generated and of real test images (FID's formula, with our small classifier: the distance
  squared, so in the square of those features' units);
- the tails: class_min_share, the share of the rarest of those K classes among the labels (1/K
  when all come equally often; 0 once one is lost), and latent_tail_share, the share of generated
  images whose latent mean under generation 0's encoder lies farther from the prior's centre than
  99% of the real training images' (beyond_radius; the real images' own share is 0.01 by definition).
"""
from __future__ import annotations

import numpy as np

from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.plotting.metrics import NONNEGATIVE, SHARE, Metric, specs

# images an evaluation pass sends through a network at once (latent_radii, classifier.predict): their
# feature maps are the largest thing scoring holds (the memory estimate counts them)
EVAL_BATCH = 4096

CLASSES = 10

# what each column of metrics.parquet is, for the report: display name, unit, which way collapse moves it
SPECS = specs(
    Metric("elbo", "test ELBO", "nats", worse="lower", bounds=(None, 0.0)),
    Metric("recon", "test reconstruction", "nats", worse="higher", bounds=NONNEGATIVE),
    Metric("kl", "test KL", "nats", bounds=NONNEGATIVE),
    *(Metric(f"class_{c}", f"share labelled {c}", bounds=SHARE) for c in range(CLASSES)),
    # at most log 10 nats: every class equally often
    Metric("class_entropy", "class entropy", "nats", worse="lower", bounds=(0.0, float(np.log(CLASSES)))),
    Metric("class_min_share", "rarest class's share", worse="lower", bounds=SHARE),
    # K: the levels of class_entropy (log K) and class_min_share (1/K) when every class comes equally often
    Metric("real_classes", "classes of the real training images", kind="bookkeeping", bounds=(1.0, float(CLASSES))),
    Metric("pixel_variance", "pixel variance", "(0–1 intensity)²", worse="lower", bounds=NONNEGATIVE),
    # FID's formula gives the squared Fréchet (W2) distance: in the square of the classifier's feature activations
    Metric("frechet", "Fréchet distance", "classifier feature units²", worse="higher", bounds=NONNEGATIVE),
    # the paper's collapse: the tails go first, so fewer generated images lie out where 1% of the real ones do
    Metric("latent_tail_share", "latent tail share", worse="lower", bounds=SHARE),
    Metric("train_loss", "training loss", "nats", bounds=NONNEGATIVE),
    Metric("classifier_accuracy", "classifier accuracy", kind="bookkeeping", bounds=SHARE),
    Metric("real_share", "real share trained on", kind="bookkeeping", bounds=SHARE),
)

SCHEMA = MetricsSchema(per_replicate=False, metrics=SPECS)  # one row per generation


def class_shares(labels: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """Share of each class among labels (sums to 1)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=classes)[:classes]
    return counts / max(1, counts.sum())


def class_metrics(labels: np.ndarray, present) -> dict[str, float]:
    """class_0 … class_9, class_entropy and class_min_share of the classifier's labels, the rarest share among
    the classes `present` in the real training images (real_classes of them): a class the data never had is no
    class lost."""
    shares = class_shares(labels)
    present = np.asarray(sorted(set(np.asarray(present).tolist())), np.int64)
    return {**{f"class_{c}": float(s) for c, s in enumerate(shares)}, "class_entropy": entropy(shares),
            "class_min_share": float(shares[present].min()), "real_classes": float(len(present))}


def entropy(shares: np.ndarray) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    p = np.asarray(shares, np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0: no -0.0 for a single class


def beyond_radius(real_radii: np.ndarray, radii: np.ndarray, q: float = 0.99) -> tuple[float, float]:
    """(share of `radii` beyond the q-quantile of `real_radii`, that quantile): the share of generated
    images out in the latent tail that the real images occupy only 1 - q of."""
    bound = float(np.quantile(np.asarray(real_radii, np.float64), q))
    return float((np.asarray(radii, np.float64) > bound).mean()), bound


def latent_radii(encoder, images, batch: int = EVAL_BATCH) -> np.ndarray:
    """||mu(x)||, the distance of each image's latent mean under `encoder` from the prior's centre."""
    import torch

    with torch.no_grad():
        return torch.cat([encoder.encode(images[i:i + batch])[0].double().norm(dim=1).cpu()
                          for i in range(0, len(images), batch)]).numpy()


def pixel_variance(images: np.ndarray) -> float:
    """Variance of each pixel across images (N, …), averaged over pixels."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    return float(flat.var(axis=0).mean())


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) for feature rows a (N, d) and b (M, d).

    tr (C_a C_b)^(1/2) is taken as the sum of square roots of the eigenvalues of the symmetric
    C_a^(1/2) C_b C_a^(1/2) (the same value), which stays exact for singular covariances (dead
    ReLU features) where scipy's sqrtm of the product warns and drifts.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0, None)).sum()
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross
    return float(max(value, 0.0))


def evaluate_elbo(model, images, generator, batch: int = 1024) -> dict[str, float]:
    """Mean per-image ELBO, reconstruction (summed BCE) and KL on images (a tensor on the model's device)."""
    import torch

    from collapse_hpc.experiments.vae.model import losses

    recon_sum, kl_sum = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start:start + batch]
            recon, kl = losses(x, *model(x, generator))
            recon_sum += float(recon.double().sum())
            kl_sum += float(kl.double().sum())
    n = len(images)
    return {"elbo": -(recon_sum + kl_sum) / n, "recon": recon_sum / n, "kl": kl_sum / n}
