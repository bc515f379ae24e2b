"""A batch of Gaussian mixtures (one per replicate): sampling and the closed-form L2 distance.

Everything is a torch float64 tensor with the replicate as the leading dimension, so one call
handles a whole chunk of replicates. Covariances are always full d x d matrices, whatever the
covariance type they were fitted with (diagonal and spherical ones are just diagonal matrices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from collapse_hpc.experiments.gmm.passes import JIT


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


@numba.njit(**JIT)
def cholesky(C, L) -> bool:
    """Lower Cholesky factor L of C (d, d), in place; False if C is not positive definite."""
    d = C.shape[0]
    L[:] = 0.0
    for j in range(d):
        s = C[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not (s > 0.0 and np.isfinite(s)):
            return False
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, d):
            t = C[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / L[j, j]
    return True


@numba.njit(parallel=True, **JIT)
def _sample(weights, means, cov, uniforms, normals, out, failed):
    R, K, d = means.shape
    n = uniforms.shape[1]
    for r in numba.prange(R):
        chol = np.empty((K, d, d))
        for k in range(K):
            if not cholesky(cov[r, k], chol[k]):
                failed[r] = True
        edges = np.cumsum(weights[r])
        for i in range(n):
            k = min(np.searchsorted(edges, uniforms[r, i], side="right"), K - 1)
            for a in range(d):
                v = means[r, k, a]
                for b in range(a + 1):
                    v += chol[k, a, b] * normals[r, i, b]
                out[r, i, a] = v


@numba.njit(parallel=True, **JIT)
def total_variance(points):
    """Trace of the covariance (ddof 0) of each replicate's points (R, n, d), (R,); two passes."""
    R, n, d = points.shape
    out = np.zeros(R)
    for r in numba.prange(R):
        for a in range(d):
            m = 0.0
            for i in range(n):
                m += points[r, i, a]
            m /= n
            v = 0.0
            for i in range(n):
                v += (points[r, i, a] - m) ** 2
            out[r] += v / n
    return out


def sample(mix: Mixtures, uniforms: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Points (R, n, d) from every mixture, given uniforms (R, n) in [0, 1) and standard normals
    (R, n, d) (the caller's random draws, so that each replicate can use its own generator).

    Each point picks its component from the weights by its uniform (the component counts are then
    multinomial, as in scikit-learn's GaussianMixture.sample; points come in random rather than
    sorted order), then maps its normals through that component's Cholesky factor.
    """
    out, failed = np.empty(normals.shape), np.zeros(len(normals), dtype=bool)
    _sample(*(np.ascontiguousarray(t.numpy()) for t in (mix.weights, mix.means, mix.covariances)),
            np.ascontiguousarray(uniforms), np.ascontiguousarray(normals), out, failed)
    if failed.any():
        raise ValueError("a fitted component's covariance is not positive definite; increase reg_covar")
    return out


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
