"""A batch of Gaussian mixtures (one per replicate): sampling and the closed-form L2 distance.

Everything is a torch float64 tensor with the replicate as the leading dimension, so one call
handles a whole chunk of replicates. Covariances are always full d x d matrices, whatever the
covariance type they were fitted with (diagonal and spherical ones are just diagonal matrices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Mixtures:
    weights: torch.Tensor  # (R, K)
    means: torch.Tensor  # (R, K, d)
    covariances: torch.Tensor  # (R, K, d, d)

    @property
    def replicates(self) -> int:
        return self.weights.shape[0]

    def select(self, idx: torch.Tensor) -> "Mixtures":
        return Mixtures(self.weights[idx], self.means[idx], self.covariances[idx])

    def total_covariance(self) -> torch.Tensor:
        """Covariance of the mixture distribution itself, (R, d, d)."""
        w = self.weights[..., None, None]
        centre = (self.weights[..., None] * self.means).sum(1)  # (R, d)
        spread = self.means - centre[:, None]
        return (w * (self.covariances + spread[..., :, None] * spread[..., None, :])).sum(1)


def sample(mix: Mixtures, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points from every mixture, (R, n, d).

    Each point picks its component from the weights (the component counts are then multinomial,
    as in scikit-learn's GaussianMixture.sample; points come in random rather than sorted order).
    """
    R, K, d = mix.means.shape
    labels = torch.multinomial(mix.weights, n, replacement=True, generator=generator)  # (R, n)
    z = torch.randn(R, n, d, generator=generator, dtype=mix.means.dtype)
    chol = torch.linalg.cholesky(mix.covariances)  # (R, K, d, d)
    rows = torch.arange(R)[:, None]
    return mix.means[rows, labels] + (chol[rows, labels] @ z[..., None]).squeeze(-1)


def _cross(f: Mixtures, g: Mixtures) -> torch.Tensor:
    """sum_ij f.w_i g.w_j N(f.m_i - g.m_j; 0, f.C_i + g.C_j): the inner product <f, g>, (R,)."""
    d = f.means.shape[-1]
    cov = f.covariances[:, :, None] + g.covariances[:, None, :]  # (R, Kf, Kg, d, d)
    diff = f.means[:, :, None] - g.means[:, None, :]  # (R, Kf, Kg, d)
    chol = torch.linalg.cholesky(cov)
    y = torch.linalg.solve_triangular(chol, diff[..., None], upper=False).squeeze(-1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_density = -0.5 * (d * math.log(2 * math.pi) + log_det + (y * y).sum(-1))
    w = f.weights[:, :, None] * g.weights[:, None, :]
    return (w * torch.exp(log_density)).sum((1, 2))


def l2_squared(f: Mixtures, g: Mixtures) -> torch.Tensor:
    """Exact squared L2 distance between the densities: <f,f> + <g,g> - 2<f,g>, (R,)."""
    return _cross(f, f) + _cross(g, g) - 2 * _cross(f, g)


def log_density(mix: Mixtures, points: torch.Tensor) -> torch.Tensor:
    """log f(x) at points (P, d) for every mixture, (R, P); used to check l2_squared."""
    d = mix.means.shape[-1]
    chol = torch.linalg.cholesky(mix.covariances)  # (R, K, d, d)
    diff = points[None, None] - mix.means[:, :, None]  # (R, K, P, d)
    y = torch.linalg.solve_triangular(chol[:, :, None], diff[..., None], upper=False).squeeze(-1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (R, K)
    comp = -0.5 * (d * math.log(2 * math.pi) + log_det[..., None] + (y * y).sum(-1))
    return torch.logsumexp(comp + torch.log(mix.weights)[..., None], dim=1)
