"""Batched EM for Gaussian mixtures, faithful to scikit-learn's GaussianMixture.

One call fits R independent mixtures (one per replicate) to R data sets of the same size.
What matches scikit-learn (and is tested against it):
- initialisation: responsibilities are the one-hot labels of a k-means solution, as with
  init_params="kmeans" (KMeans(n_init=1): k-means++ seeding with 2 + ln K local trials, then
  Lloyd until the labels stop changing or the centres move less than 1e-4 x the mean variance),
  followed by one M-step; or given initial weights, means and covariances (then EM starts
  with an E-step, as with weights_init/means_init/precisions_init);
- the M-step (nk + 10 eps, weights nk / sum nk, reg_covar added to the diagonal) for the
  full, tied, diag and spherical covariance types;
- the stopping rule: stop after the first iteration whose change of the lower bound (the mean
  log-likelihood) is below tol, or after max_iter iterations; the result is the last M-step.
Documented differences: random draws (k-means++ centres, sampling) come from torch's generator,
so they are equal in distribution, not bit for bit; an empty k-means cluster keeps its centre
(scikit-learn moves it to a far point; with k-means++ seeding this practically never happens).

Why it is fast: the log-densities are a linear function of the features
phi(x) = (x_i x_j for i <= j, x_i, 1), so the E-step is one batched matmul and the M-step's
sufficient statistics (sum r, sum r x, sum r x x^T) are another. The data are centred per
replicate first, which keeps the expanded quadratic forms well conditioned. Replicates that
have converged drop out of the batch, so the slowest one costs only its own work. With two
components the E-step needs one exp per point instead of two (a logistic in the log-odds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from collapse_hpc.experiments.gmm.mixture import Mixtures

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS = np.finfo(np.float64).eps


@dataclass
class Fit:
    mixtures: Mixtures
    n_iter: torch.Tensor  # (R,) EM iterations run
    converged: torch.Tensor  # (R,) bool
    lower_bound: torch.Tensor  # (R,) mean log-likelihood at the last E-step


class Features:
    """phi(x) of centred data, laid out (R, F, N) for the two matmuls."""

    def __init__(self, X: torch.Tensor):
        R, N, d = X.shape
        self.d, self.n = d, N
        self.shift = X.mean(1)  # (R, d)
        xt = (X - self.shift[:, None]).transpose(1, 2)  # (R, d, N)
        self.pairs = [(i, j) for i in range(d) for j in range(i, d)]
        rows = [xt[:, i] * xt[:, j] for i, j in self.pairs] + [xt[:, i] for i in range(d)]
        rows.append(torch.ones_like(xt[:, 0]))
        self.phi = torch.stack(rows, 1).contiguous()  # (R, F, N)
        self.total = self.phi.sum(-1)  # (R, F): sum of phi over the points
        self.total_np = self.total.numpy()
        self.centred = xt  # (R, d, N), for k-means
        index = {pair: p for p, pair in enumerate(self.pairs)}
        self.square = np.array([[index[min(i, j), max(i, j)] for j in range(d)] for i in range(d)])
        self.diagonal = np.array([index[i, i] for i in range(d)])
        self.rows_i, self.rows_j = (np.array(v) for v in zip(*self.pairs))
        self.quad_scale = np.array([-0.5 if i == j else -1.0 for i, j in self.pairs])

    def take(self, idx: torch.Tensor) -> "Features":
        out = object.__new__(Features)
        out.__dict__.update(self.__dict__)
        out.shift, out.phi, out.total, out.centred = (self.shift[idx], self.phi[idx], self.total[idx],
                                                      self.centred[idx])
        out.total_np = out.total.numpy()
        return out


# ---------------------------------------------------------------- M-step and E-step
# Parameters are small (R, K, d, d) arrays: numpy handles them with far less overhead per call
# than torch; the per-point work (the two matmuls and the logistic) stays in torch.

def _m_step(S: np.ndarray, feats: Features, covariance: str, reg_covar: float):
    """Weights, means, covariances (centred coordinates) from S = sum_n resp_kn phi(x_n), (R, K, F)."""
    d, P = feats.d, len(feats.pairs)
    nk = S[..., -1] + 10 * EPS  # (R, K)
    means = S[..., P:P + d] / nk[..., None]
    outer = means[..., :, None] * means[..., None, :]
    if covariance in ("full", "tied"):
        second = S[..., feats.square] / nk[..., None, None]  # (R, K, d, d)
        if covariance == "full":
            cov = second - outer
        else:  # scikit-learn uses X^T X, the sum over all points: the total of phi
            xx = feats.total_np[:, feats.square]
            tied = (xx - (nk[..., None, None] * outer).sum(1)) / nk.sum(1)[:, None, None]
            cov = np.repeat(tied[:, None], S.shape[1], 1)
    else:
        var = S[..., feats.diagonal] / nk[..., None] - means * means  # (R, K, d)
        if covariance == "spherical":
            var = np.repeat(var.mean(-1, keepdims=True), d, -1)
        cov = var[..., None] * np.eye(d)
    cov = cov + reg_covar * np.eye(d)
    return nk / nk.sum(1, keepdims=True), means, cov


def _coefficients(weights, means, cov, feats: Features):
    """W (R, K, F) with log(w_k N(x; m_k, C_k)) = W_k . phi(x); and the rows whose covariance
    is not positive definite."""
    d = feats.d
    sign, log_det = np.linalg.slogdet(cov)
    failed = ~((sign > 0) & np.isfinite(log_det)).all(-1)
    with np.errstate(all="ignore"):
        prec = np.linalg.inv(np.where(failed[:, None, None, None], np.eye(d), cov))
    pm = (prec @ means[..., None])[..., 0]  # (R, K, d)
    quad = prec[..., feats.rows_i, feats.rows_j] * feats.quad_scale
    const = (-0.5 * (means * pm).sum(-1) - 0.5 * d * math.log(2 * math.pi) - 0.5 * log_det
             + np.log(weights))
    return np.concatenate([quad, pm, const[..., None]], -1), failed


def _e_step(W: np.ndarray, feats: Features):
    """Responsibility statistics S (R, K, F) and the lower bound (mean log-likelihood) (R,)."""
    phi, n = feats.phi, feats.n
    Wt = torch.from_numpy(W)
    if W.shape[1] == 2:  # log-odds D = L1 - L0: r1 = sigmoid(D), log(e^L0 + e^L1) = L0 + softplus(D)
        D = torch.bmm(Wt[:, 1:] - Wt[:, :1], phi).squeeze(1)  # (R, N)
        r1 = torch.sigmoid(D)
        softplus = torch.logaddexp(D, torch.zeros((), dtype=D.dtype)).sum(-1).numpy()
        S1 = torch.bmm(r1[:, None], phi.transpose(1, 2)).numpy()  # (R, 1, F)
        lse_sum = (W[:, 0] * feats.total_np).sum(-1) + softplus
        return np.concatenate([feats.total_np[:, None] - S1, S1], 1), lse_sum / n
    L = torch.bmm(Wt, phi)  # (R, K, N)
    top = L.amax(1, keepdim=True)
    E = torch.exp(L - top)
    s = E.sum(1, keepdim=True)
    S = torch.bmm(E / s, phi.transpose(1, 2))
    return S.numpy(), ((top + torch.log(s)).sum((1, 2)) / n).numpy()


# ---------------------------------------------------------------- k-means initialisation

def kmeans_labels(feats: Features, K: int, generator: torch.Generator, max_iter: int = 300,
                  tol: float = 1e-4) -> torch.Tensor:
    """Labels (R, N) of KMeans(n_clusters=K, n_init=1) per replicate (see the module docstring)."""
    xt = feats.centred  # (R, d, N)
    R, d, N = xt.shape
    rows = torch.arange(R)
    sq = (xt * xt).sum(1)  # (R, N)

    def sqdist(c):  # c (R, T, d) -> squared distances (R, T, N), as scikit-learn expands them
        return (sq[:, None] - 2 * torch.bmm(c, xt) + (c * c).sum(-1)[..., None]).clamp(min=0)

    first = torch.randint(N, (R,), generator=generator)
    centres = [xt[rows, :, first]]
    closest = sqdist(centres[0][:, None])[:, 0]
    potential = closest.sum(1)
    trials = 2 + int(math.log(K))
    for _ in range(1, K):
        u = torch.rand(R, trials, generator=generator, dtype=xt.dtype) * potential[:, None]
        cand = torch.searchsorted(closest.cumsum(1), u).clamp(max=N - 1)  # (R, T)
        cx = xt.transpose(1, 2)[rows[:, None], cand]  # (R, T, d)
        dist = torch.minimum(closest[:, None], sqdist(cx))
        pots = dist.sum(-1)
        best = pots.argmin(1)
        closest, potential = dist[rows, best], pots[rows, best]
        centres.append(cx[rows, best])
    C = torch.stack(centres, 1)  # (R, K, d)

    # Lloyd; replicates that have converged drop out of the batch as in the EM loop
    tol_r = xt.var(2, unbiased=False).mean(1) * tol
    out = torch.empty(R, N, dtype=torch.long)
    labels = torch.full((R, N), -1, dtype=torch.long)
    batch, x = torch.arange(R), xt
    for _ in range(max_iter):
        new_labels = _nearest(C, x)
        counts, sums = _cluster_sums(new_labels, K, x)
        new_C = torch.where(counts[..., None] > 0, sums / counts.clamp(min=1)[..., None], C)
        strict = (new_labels == labels).all(1)
        done = strict | (((new_C - C) ** 2).sum((1, 2)) <= tol_r)
        labels, C = new_labels, new_C
        if bool(done.any()):
            # not strictly converged: labels once more from the final centres, consistent with them
            out[batch[done]] = torch.where(strict[done, None], labels[done], _nearest(C[done], x[done]))
            live = ~done
            if not bool(live.any()):
                return out
            batch, x, labels, C, tol_r = batch[live], x[live], labels[live], C[live], tol_r[live]
    out[batch] = _nearest(C, x)
    return out


def _nearest(C: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre (R, N), the first on ties: argmin_k |c_k|^2 - 2 c_k . x."""
    if C.shape[1] == 2:
        lin = torch.bmm(C[:, 1:] - C[:, :1], x).squeeze(1)
        return (2 * lin > ((C[:, 1] ** 2).sum(-1) - (C[:, 0] ** 2).sum(-1))[:, None]).long()
    score = (C * C).sum(-1)[..., None] - 2 * torch.bmm(C, x)  # (R, K, N)
    best, labels = score[:, 0], torch.zeros(x.shape[0], x.shape[2], dtype=torch.long)
    for k in range(1, C.shape[1]):
        closer = score[:, k] < best
        labels[closer], best = k, torch.minimum(best, score[:, k])
    return labels


def _cluster_sums(labels: torch.Tensor, K: int, x: torch.Tensor):
    """Points per cluster (R, K) and their coordinate sums (R, K, d)."""
    if K == 2:
        m = labels.to(x.dtype)[:, None]  # (R, 1, N)
        c1, s1 = m.sum(2), torch.bmm(m, x.transpose(1, 2))
        return torch.cat([x.shape[2] - c1, c1], 1), torch.cat([x.sum(2)[:, None] - s1, s1], 1)
    onehot = _one_hot(labels, K, x.dtype)
    return onehot.sum(2), torch.bmm(onehot, x.transpose(1, 2))


def _one_hot(labels: torch.Tensor, K: int, dtype) -> torch.Tensor:
    return (labels[:, None] == torch.arange(K)[None, :, None]).to(dtype)  # (R, K, N)


# ---------------------------------------------------------------- the fit

def _stats_from_labels(labels: torch.Tensor, K: int, feats: Features) -> torch.Tensor:
    return torch.bmm(_one_hot(labels, K, feats.phi.dtype), feats.phi.transpose(1, 2))


def fit(X: torch.Tensor, components: int, covariance: str = "full", tol: float = 1e-3,
        max_iter: int = 100, reg_covar: float = 1e-6, init: Mixtures | None = None,
        generator: torch.Generator | None = None) -> Fit:
    """Fit one mixture per replicate to X (R, N, d) (scikit-learn's defaults as defaults)."""
    if covariance not in COVARIANCE_TYPES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance!r}")
    R, N, d = X.shape
    if N < components:
        raise ValueError(f"cannot fit {components} components to {N} points")
    X = X.to(torch.float64)
    feats = Features(X)
    if init is None:
        labels = kmeans_labels(feats, components, generator or torch.Generator().manual_seed(0))
        S = _stats_from_labels(labels, components, feats).numpy()
        weights, means, cov = _m_step(S, feats, covariance, reg_covar)
    else:
        weights, means, cov = (init.weights.numpy(), (init.means - feats.shift[:, None]).numpy(),
                               init.covariances.numpy())

    out_w, out_m, out_c = weights.copy(), means.copy(), cov.copy()
    n_iter = np.zeros(R, dtype=np.int64)
    converged = np.zeros(R, dtype=bool)
    bound = np.full(R, -np.inf)
    batch = np.arange(R)  # replicates in the current batch (rows of feats, weights, ...)
    live = np.ones(R, dtype=bool)  # which batch rows still iterate
    previous = bound.copy()
    for it in range(1, max_iter + 1):
        W, failed = _coefficients(weights, means, cov, feats)
        if (failed & live).any():
            raise ValueError("a fitted component has an ill-defined covariance (collapsed onto too few "
                             "points); increase reg_covar or samples")
        S, lb = _e_step(W, feats)
        weights, means, cov = _m_step(S, feats, covariance, reg_covar)
        small = np.abs(lb - previous) < tol
        stop = live & (small | (it == max_iter))
        previous = lb
        if stop.any():
            rows = batch[stop]
            out_w[rows], out_m[rows], out_c[rows] = weights[stop], means[stop], cov[stop]
            n_iter[rows], bound[rows], converged[rows] = it, lb[stop], small[stop]
            live &= ~stop
            if not live.any():
                break
            if live.sum() <= 0.75 * len(batch):  # compact: drop finished rows from the batch
                batch, feats = batch[live], feats.take(torch.from_numpy(live))
                weights, means, cov, previous = weights[live], means[live], cov[live], previous[live]
                live = np.ones(len(batch), dtype=bool)
    out_m += X.mean(1)[:, None].numpy()
    return Fit(Mixtures(*(torch.from_numpy(v) for v in (out_w, out_m, out_c))),
               torch.from_numpy(n_iter), torch.from_numpy(converged), torch.from_numpy(bound))
