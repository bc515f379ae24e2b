"""EM for Gaussian mixtures, faithful to scikit-learn's GaussianMixture, for many replicates at once.

One call fits R independent mixtures (one per replicate) to R data sets of the same size; the
replicates are spread over threads, each fitted from start to end by one compiled loop (numba),
so a slow fit costs only its own work.
What matches scikit-learn (and is tested against it):
- initialisation: responsibilities are the one-hot labels of a k-means solution, as with
  init_params="kmeans" (kmeans.py), followed by one M-step; or given initial weights, means
  and covariances (then EM starts with an E-step, as with weights_init/means_init/precisions_init);
- the M-step (nk + 10 eps, weights nk / sum nk, reg_covar added to the diagonal) for the
  full, tied, diag and spherical covariance types;
- the stopping rule: stop after the first iteration whose change of the lower bound (the mean
  log-likelihood) is below tol, or after max_iter iterations; the result is the last M-step.
Documented differences: the k-means++ draws come from numpy generators the caller gives (one
per data set), so they are equal in distribution, not bit for bit; an empty k-means cluster
keeps its centre (scikit-learn moves it to a far point; with k-means++ seeding this
practically never happens).

Why it is fast: a component's log-density is linear in the features
phi(x) = (x_i x_j for i <= j, x_i, 1), so a point costs one dot product per component in the
E-step and one multiply-add per feature in the M-step's sufficient statistics
(sum r, sum r x, sum r x x^T); with two components one log-odds per point suffices. The data
are centred per replicate first, which keeps the expanded quadratic forms well conditioned.
The passes over the points vectorise (passes.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

from collapse_hpc.experiments.gmm.kmeans import kmeans, kmeans_draws, seeding_trials
from collapse_hpc.experiments.gmm.mixture import Mixtures, cholesky
from collapse_hpc.experiments.gmm.passes import EXP_CUT, JIT, POINTS, dot, exp_neg, log_sum

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS = float(np.finfo(np.float64).eps)
LOG_2PI = math.log(2 * math.pi)
# status codes of a fit
OK, ILL_DEFINED = 0, 1


@dataclass
class Fit:
    mixtures: Mixtures
    n_iter: torch.Tensor  # (R,) EM iterations run
    converged: torch.Tensor  # (R,) bool
    lower_bound: torch.Tensor  # (R,) mean log-likelihood at the last E-step


# ---------------------------------------------------------------- compiled kernels (one data set)

@numba.njit(**JIT)
def _features(x):
    """phi(x) (F, N) of centred points x (N, d): pairs i <= j, then x_i, then 1 (one row each,
    so that the passes over the points below are plain loops the compiler vectorises)."""
    N, d = x.shape
    P = d * (d + 1) // 2
    phi = np.empty((P + d + 1, N))
    p = 0
    for i in range(d):
        for j in range(i, d):
            for n in range(N):
                phi[p, n] = x[n, i] * x[n, j]
            p += 1
    for i in range(d):
        for n in range(N):
            phi[P + i, n] = x[n, i]
    phi[P + d] = 1.0
    return phi


@numba.njit(**JIT)
def _pair(i, j, d):
    """Index of the pair (min, max) among the features."""
    a, b = min(i, j), max(i, j)
    return a * d - a * (a - 1) // 2 + (b - a)


@numba.njit(**JIT)
def _m_step(S, total, d, cov_type, reg, weights, means, cov):
    """Weights, means, covariances (centred coordinates) from S = sum_n r_kn phi(x_n), (K, F)."""
    K, F = S.shape
    P = d * (d + 1) // 2
    nk = np.empty(K)
    for k in range(K):
        nk[k] = S[k, F - 1] + 10 * EPS
        for i in range(d):
            means[k, i] = S[k, P + i] / nk[k]
    weights[:] = nk / nk.sum()
    cov[:] = 0.0
    if cov_type == 1:  # tied: scikit-learn uses X^T X, the sum over all points: the total of phi
        n_all = nk.sum()
        for i in range(d):
            for j in range(d):
                c = total[_pair(i, j, d)]
                for k in range(K):
                    c -= nk[k] * means[k, i] * means[k, j]
                for k in range(K):
                    cov[k, i, j] = c / n_all
    for k in range(K):
        if cov_type == 0:
            for i in range(d):
                for j in range(d):
                    cov[k, i, j] = S[k, _pair(i, j, d)] / nk[k] - means[k, i] * means[k, j]
        elif cov_type >= 2:
            mean_var = 0.0
            for i in range(d):
                v = S[k, _pair(i, i, d)] / nk[k] - means[k, i] * means[k, i]
                cov[k, i, i] = v
                mean_var += v / d
            if cov_type == 3:  # spherical
                for i in range(d):
                    cov[k, i, i] = mean_var
        for i in range(d):
            cov[k, i, i] += reg


@numba.njit(**JIT)
def _coefficients(weights, means, cov, W):
    """W (K, F) with log(w_k N(x; m_k, C_k)) = W_k . phi(x). False if a covariance is not
    positive definite."""
    K, d = means.shape
    P = d * (d + 1) // 2
    L = np.empty((d, d))
    inv = np.empty((d, d))
    prec = np.empty((d, d))
    for k in range(K):
        # Cholesky C = L L^T, then the precision C^-1 = L^-T L^-1
        if not cholesky(cov[k], L):
            return False
        log_det = 0.0
        for j in range(d):
            log_det += 2 * math.log(L[j, j])
        inv[:] = 0.0
        for j in range(d):
            inv[j, j] = 1.0 / L[j, j]
            for i in range(j + 1, d):
                t = 0.0
                for m in range(j, i):
                    t -= L[i, m] * inv[m, j]
                inv[i, j] = t / L[i, i]
        for i in range(d):
            for j in range(d):
                t = 0.0
                for m in range(max(i, j), d):
                    t += inv[m, i] * inv[m, j]
                prec[i, j] = t
        quad = 0.0
        for i in range(d):
            pm = 0.0
            for j in range(d):
                pm += prec[i, j] * means[k, j]
            W[k, P + i] = pm
            quad += means[k, i] * pm
            for j in range(i, d):
                W[k, _pair(i, j, d)] = -0.5 * prec[i, i] if i == j else -prec[i, j]
        W[k, P + d] = -0.5 * quad - 0.5 * d * LOG_2PI - 0.5 * log_det + math.log(weights[k])
    return True


@numba.njit(**POINTS)
def _e_step(W, phi, total, S, L):
    """S (K, F) = sum_n r_kn phi(x_n) of the responsibilities under W; returns the lower bound.
    total: sum_n phi(x_n); L (K + 2, N): scratch.

    log sum_k e^(L_k) = max_k L_k + log s with s = sum_k e^(L_k - max) in [1, K]. With two
    components only the log-odds D = L_1 - L_0 is needed: r_1 = 1 / (1 + e^-D) and
    log(e^L_0 + e^L_1) = L_0 + max(D, 0) + log(1 + e^-|D|), where the sum of the L_0 is
    W_0 . total. Passes over the points carry no sums from point to point except in dot and
    log_sum, so the compiler vectorises them."""
    K, F = W.shape
    N = phi.shape[1]
    if K == 2:
        D, R, Q = L[0], L[1], L[2]
        D[:] = 0.0
        for f in range(F):
            w = W[1, f] - W[0, f]
            for n in range(N):
                D[n] += w * phi[f, n]
        for n in range(N):
            e = exp_neg(min(abs(D[n]), EXP_CUT))
            Q[n] = 1.0 + e
            R[n] = (1.0 if D[n] >= 0 else e) / Q[n]  # r_1
            D[n] = max(D[n], 0.0)
        lb = log_sum(D, Q, 128)  # Q <= 2
        for f in range(F):
            S[1, f] = dot(R, phi[f])
            S[0, f] = total[f] - S[1, f]
            lb += W[0, f] * total[f]
        return lb / N
    top, s = L[K], L[K + 1]
    L[:K] = 0.0
    for k in range(K):
        for f in range(F):
            w = W[k, f]
            for n in range(N):
                L[k, n] += w * phi[f, n]
    top[:] = L[0]
    for k in range(1, K):
        for n in range(N):
            top[n] = max(top[n], L[k, n])
    s[:] = 0.0
    for k in range(K):
        for n in range(N):
            L[k, n] = exp_neg(min(top[n] - L[k, n], EXP_CUT))
            s[n] += L[k, n]
    for k in range(K):
        for n in range(N):
            L[k, n] /= s[n]  # the responsibilities
        for f in range(F):
            S[k, f] = dot(L[k], phi[f])
    return log_sum(top, s, max(1, int(150.0 / math.log(K)))) / N


@numba.njit(**JIT)
def _fit_one(x, K, cov_type, tol, max_iter, reg, init, weights, means, cov, seeding, trials):
    """EM on one data set x (N, d), centred. weights/means/cov: the start if init, else filled
    from k-means; on return they hold the fit. Returns (n_iter, converged, lower bound, status)."""
    N, d = x.shape
    phi = _features(x)
    F = phi.shape[0]
    total = phi.sum(1)
    S = np.zeros((K, F))
    if not init:
        labels = kmeans(phi[F - 1 - d:F - 1], K, seeding, trials)
        for f in range(F):
            for n in range(N):
                S[labels[n], f] += phi[f, n]
        _m_step(S, total, d, cov_type, reg, weights, means, cov)
    W = np.empty((K, F))
    L = np.empty((K + 2, N))
    previous, n_iter, converged = -np.inf, 0, False
    while n_iter < max_iter:
        if not _coefficients(weights, means, cov, W):
            return n_iter, False, previous, ILL_DEFINED
        bound = _e_step(W, phi, total, S, L)
        _m_step(S, total, d, cov_type, reg, weights, means, cov)
        n_iter += 1
        converged = abs(bound - previous) < tol
        previous = bound
        if converged:
            break
    return n_iter, converged, previous, OK


@numba.njit(parallel=True, **JIT)
def _fit_all(X, K, cov_type, tol, max_iter, reg, init, weights, means, cov, seeding, trials,
             n_iter, converged, bound, status):
    for r in numba.prange(X.shape[0]):
        x = X[r]
        shift = np.empty(x.shape[1])
        for i in range(x.shape[1]):
            shift[i] = x[:, i].mean()
        xc = x - shift
        if init:
            means[r] -= shift
        n_iter[r], converged[r], bound[r], status[r] = _fit_one(
            xc, K, cov_type, tol, max_iter, reg, init, weights[r], means[r], cov[r], seeding[r], trials)
        means[r] += shift


# ---------------------------------------------------------------- the fit

def compiled() -> bool:
    """Whether numba's on-disk cache holds the fit: the kernel's index file in its cache folder
    (compiling _fit_all compiles what it calls); False where there is none. A fresh environment
    compiles on the first fit: about half a minute to 2 minutes on 2 cores."""
    import sys
    from pathlib import Path

    func = _fit_all.py_func
    # numba names a kernel's index <module>.<qualname>-<first line>.py<version><abiflags>.nbi
    index = f"{Path(func.__code__.co_filename).stem}.{func.__qualname__}-{func.__code__.co_firstlineno}" \
            f".py{sys.version_info[0]}{sys.version_info[1]}*.nbi"
    return any(any(folder.glob(index)) for folder in _cache_folders(func))


def _cache_folders(func) -> list:
    """Where numba keeps _fit_all's cache: the dispatcher says (stats.cache_path); a numba whose
    dispatcher does not is looked through where numba caches: NUMBA_CACHE_DIR's folders (named
    after the source folder), else __pycache__ beside the source, and the user-wide cache."""
    import os
    from pathlib import Path

    said = getattr(getattr(_fit_all, "stats", None), "cache_path", None)
    if said:
        return [Path(said)]
    if numba.config.CACHE_DIR:
        return [p for p in Path(numba.config.CACHE_DIR).glob("*") if p.is_dir()]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    return [Path(func.__code__.co_filename).parent / "__pycache__",
            *(p for p in user.glob("*") if p.is_dir())]


def check(X, components: int, covariance: str) -> None:
    if covariance not in COVARIANCE_TYPES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance!r}")
    if X.shape[1] < components:
        raise ValueError(f"cannot fit {components} components to {X.shape[1]} points")


def threads(n: int | None = None) -> None:
    """Use n threads for the fits (default: every core numba sees; a unit passes ctx.threads)."""
    n = n or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def fit(X, components: int, covariance: str = "full", tol: float = 1e-3, max_iter: int = 100,
        reg_covar: float = 1e-6, init: Mixtures | None = None, seeding: np.ndarray | None = None,
        rng: np.random.Generator | None = None) -> Fit:
    """Fit one mixture per replicate to X (R, N, d) (scikit-learn's defaults as defaults).

    Without `init`, k-means++ takes its uniforms from `seeding` (kmeans_draws), else draws them
    from `rng` (default: seed 0), replicate after replicate."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    check(X, components, covariance)
    R, _, d = X.shape
    K = components
    if init is None:
        if seeding is None:
            rng = rng or np.random.default_rng(0)
            seeding = kmeans_draws([rng] * R, K)
        weights, means, cov = np.empty((R, K)), np.empty((R, K, d)), np.empty((R, K, d, d))
    else:
        seeding = np.zeros((R, 1))
        weights, means, cov = (np.array(t.numpy() if torch.is_tensor(t) else t, dtype=np.float64)
                               for t in (init.weights, init.means, init.covariances))
    n_iter, converged = np.zeros(R, np.int64), np.zeros(R, np.bool_)
    bound, status = np.zeros(R), np.zeros(R, np.int64)
    _fit_all(X, K, COVARIANCE_TYPES.index(covariance), float(tol), int(max_iter), float(reg_covar),
             init is not None, weights, means, cov, np.ascontiguousarray(seeding, dtype=np.float64),
             seeding_trials(K), n_iter, converged, bound, status)
    if (status == ILL_DEFINED).any():
        raise ValueError("a fitted component has an ill-defined covariance (collapsed onto too few "
                         "points); increase reg_covar or samples")
    return Fit(Mixtures(*(torch.from_numpy(a) for a in (weights, means, cov))), torch.from_numpy(n_iter),
               torch.from_numpy(converged), torch.from_numpy(bound))
