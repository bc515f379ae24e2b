"""EM for Gaussian mixtures, faithful to scikit-learn's GaussianMixture, for many replicates at once.

One call fits R independent mixtures (one per replicate) to R data sets of the same size; the
replicates are spread over threads, each fitted from start to end by one compiled loop (numba),
so a slow fit costs only its own work.
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
Documented differences: the k-means++ draws come from numpy generators the caller gives (one
per data set), so they are equal in distribution, not bit for bit; an empty k-means cluster
keeps its centre (scikit-learn moves it to a far point; with k-means++ seeding this
practically never happens).

Why it is fast: a component's log-density is linear in the features
phi(x) = (x_i x_j for i <= j, x_i, 1), so a point costs one dot product per component in the
E-step and one multiply-add per feature in the M-step's sufficient statistics
(sum r, sum r x, sum r x x^T). The data are centred per replicate first, which keeps the
expanded quadratic forms well conditioned. The log of each point's normaliser is taken once
per block of points, as the log of a product (each factor lies in [1, K], see _e_step).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numba
import numpy as np
import torch

from collapse_hpc.experiments.gmm.mixture import Mixtures, cholesky

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS = float(np.finfo(np.float64).eps)
LOG_2PI = math.log(2 * math.pi)
# status codes of a fit
OK, ILL_DEFINED = 0, 1
JIT = dict(cache=True, nogil=True, error_model="numpy")
# the passes over the points may fuse multiplies and adds (FMA): faster and as exact or more;
# nothing else of fast-math (no reassociation), so results do not depend on the vector width
POINTS = dict(JIT, fastmath={"contract"})
LN2_HI, LN2_LO, INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
EXP_CUT = 40.0  # exp(-40) < 1e-17: below rounding against the 1 it is added to


@dataclass
class Fit:
    mixtures: Mixtures
    n_iter: torch.Tensor  # (R,) EM iterations run
    converged: torch.Tensor  # (R,) bool
    lower_bound: torch.Tensor  # (R,) mean log-likelihood at the last E-step


def seeding_trials(K: int) -> int:
    return 2 + int(math.log(K))  # scikit-learn's local trials per k-means++ centre


def kmeans_draws(rngs, K: int) -> np.ndarray:
    """The uniforms k-means++ uses, one row per data set from its own generator: the first
    centre's index, then `trials` candidates for each further centre."""
    size = 1 + (K - 1) * seeding_trials(K)
    return np.stack([rng.random(size) for rng in rngs])


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


@numba.njit(inline="always", **POINTS)
def _exp_neg(a):
    """exp(-a) for 0 <= a <= 43, to about 1 ulp, in plain arithmetic (vectorisable, unlike a libm
    call): a = k ln 2 - r with |r| <= ln 2 / 2, exp(r) by its Taylor polynomial of degree 13,
    2^-k from the bits of k."""
    k = math.floor(a * INV_LN2 + 0.5)
    r = (k * LN2_HI - a) + k * LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = int(k)
    p *= 0.5 if ki & 1 else 1.0
    p *= 0.25 if ki & 2 else 1.0
    p *= 0.0625 if ki & 4 else 1.0
    p *= 0.00390625 if ki & 8 else 1.0
    p *= 1.52587890625e-05 if ki & 16 else 1.0
    p *= 2.3283064365386963e-10 if ki & 32 else 1.0
    return p


@numba.njit(**JIT)
def _pair(i, j, d):
    """Index of the pair (min, max) among the features."""
    a, b = min(i, j), max(i, j)
    return a * d - a * (a - 1) // 2 + (b - a)


@numba.njit(**POINTS)
def _sqdist(xt, c, out):
    """Squared distances (N,) of the points xt (d, N) to c (d,)."""
    out[:] = 0.0
    for i in range(xt.shape[0]):
        for n in range(xt.shape[1]):
            out[n] += (xt[i, n] - c[i]) ** 2


@numba.njit(**POINTS)
def _assign(xt, centres, score, labels, member):
    """labels[n] = the nearest centre (the first on ties), by |c|^2 - 2 c . x, and member (K, N)
    its one-hot floats; score (K, N): scratch."""
    K, d = centres.shape
    N = xt.shape[1]
    if K == 2:  # the side of the bisecting hyperplane: one pass
        D = score[0]
        b = 0.0
        for i in range(d):
            b += centres[1, i] ** 2 - centres[0, i] ** 2
        D[:] = b
        for i in range(d):
            w = 2.0 * (centres[0, i] - centres[1, i])
            for n in range(N):
                D[n] += w * xt[i, n]
        for n in range(N):  # score_1 - score_0 < 0: centre 1 is strictly nearer
            member[1, n] = 1.0 if D[n] < 0 else 0.0
            member[0, n] = 1.0 - member[1, n]
            labels[n] = 1 if D[n] < 0 else 0
        return
    score[:] = 0.0
    for k in range(K):
        c2 = 0.0
        for i in range(d):
            c2 += centres[k, i] ** 2
        for n in range(N):
            score[k, n] = c2
        for i in range(d):
            w = -2.0 * centres[k, i]
            for n in range(N):
                score[k, n] += w * xt[i, n]
    for n in range(N):
        best, low = 0, score[0, n]
        for k in range(1, K):
            if score[k, n] < low:
                low, best = score[k, n], k
        labels[n] = best
    for k in range(K):
        for n in range(N):
            member[k, n] = 1.0 if labels[n] == k else 0.0


@numba.njit(**JIT)
def _kmeans(xt, K, seeding, trials, max_iter, tol):
    """Labels (N,) of KMeans(n_clusters=K, n_init=1) on centred points xt (d, N) (see the module
    docstring)."""
    d, N = xt.shape
    centres = np.empty((K, d))
    first = min(int(seeding[0] * N), N - 1)
    centres[0] = xt[:, first]
    closest = np.empty(N)
    _sqdist(xt, centres[0], closest)
    potential = closest.sum()
    cum = np.empty(N)
    dist = np.empty(N)
    best_dist = np.empty(N)
    for k in range(1, K):
        acc = 0.0
        for n in range(N):
            acc += closest[n]
            cum[n] = acc
        best_pot = np.inf
        best = 0
        for t in range(trials):
            u = seeding[1 + (k - 1) * trials + t] * potential
            cand = min(np.searchsorted(cum, u), N - 1)  # side left, as scikit-learn
            _sqdist(xt, xt[:, cand].copy(), dist)
            pot = 0.0
            for n in range(N):
                dist[n] = min(closest[n], dist[n])
                pot += dist[n]
            if pot < best_pot:
                best_pot, best = pot, cand
                best_dist[:] = dist
        centres[k] = xt[:, best]
        closest[:] = best_dist
        potential = best_pot

    labels = np.full(N, -1, dtype=np.int64)
    new = np.empty(N, dtype=np.int64)
    score = np.empty((K, N))
    member = np.empty((K, N))
    ones = np.ones(N)
    sums = np.empty((K, d + 1))  # per cluster: coordinate sums, then the count
    all_sums = np.empty(d + 1)
    for i in range(d):
        all_sums[i] = _dot(ones, xt[i])
    all_sums[d] = N
    strict = False
    for _ in range(max_iter):
        _assign(xt, centres, score, new, member)
        sums[K - 1] = all_sums  # the last cluster: what the others leave
        for k in range(K - 1):
            for i in range(d):
                sums[k, i] = _dot(member[k], xt[i])
            sums[k, d] = _dot(member[k], ones)
            sums[K - 1] -= sums[k]
        shift = 0.0
        for k in range(K):
            if sums[k, d] > 0:  # an empty cluster keeps its centre
                for i in range(d):
                    c = sums[k, i] / sums[k, d]
                    shift += (c - centres[k, i]) ** 2
                    centres[k, i] = c
        strict = True
        for n in range(N):
            if new[n] != labels[n]:
                strict = False
                break
        labels[:] = new
        if strict or shift <= tol:
            break
    if not strict:  # labels once more from the final centres, consistent with them
        _assign(xt, centres, score, labels, member)
    return labels


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


@numba.njit(inline="always", **POINTS)
def _dot(a, b):
    """sum_n a[n] b[n] as four interleaved partial sums: independent chains run four times as fast."""
    N = a.shape[0]
    M = N - N % 4
    s0 = s1 = s2 = s3 = 0.0
    for n in range(0, M, 4):
        s0 += a[n] * b[n]
        s1 += a[n + 1] * b[n + 1]
        s2 += a[n + 2] * b[n + 2]
        s3 += a[n + 3] * b[n + 3]
    for n in range(M, N):
        s0 += a[n] * b[n]
    return (s0 + s1) + (s2 + s3)


@numba.njit(inline="always", **POINTS)
def _log_sum(top, s, block):
    """sum_n top[n] + log s[n] with s[n] in [1, K]: the logs as the log of products over blocks
    short enough not to overflow, four interleaved chains as in _dot."""
    N = top.shape[0]
    lb0 = lb1 = lb2 = lb3 = 0.0
    total = 0.0
    for start in range(0, N, 4 * block):
        p0 = p1 = p2 = p3 = 1.0
        stop = min(N, start + 4 * block)
        M = stop - (stop - start) % 4
        for n in range(start, M, 4):
            lb0 += top[n]
            lb1 += top[n + 1]
            lb2 += top[n + 2]
            lb3 += top[n + 3]
            p0 *= s[n]
            p1 *= s[n + 1]
            p2 *= s[n + 2]
            p3 *= s[n + 3]
        for n in range(M, stop):
            lb0 += top[n]
            p0 *= s[n]
        total += math.log(p0) + math.log(p1) + math.log(p2) + math.log(p3)
    return total + (lb0 + lb1) + (lb2 + lb3)


@numba.njit(**POINTS)
def _e_step(W, phi, total, S, L):
    """S (K, F) = sum_n r_kn phi(x_n) of the responsibilities under W; returns the lower bound.
    total: sum_n phi(x_n); L (K + 2, N): scratch.

    log sum_k e^(L_k) = max_k L_k + log s with s = sum_k e^(L_k - max) in [1, K]. With two
    components only the log-odds D = L_1 - L_0 is needed: r_1 = 1 / (1 + e^-D) and
    log(e^L_0 + e^L_1) = L_0 + max(D, 0) + log(1 + e^-|D|), where the sum of the L_0 is
    W_0 . total. Passes over the points carry no sums from point to point except in _dot and
    _log_sum, so the compiler vectorises them."""
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
            e = _exp_neg(min(abs(D[n]), EXP_CUT))
            Q[n] = 1.0 + e
            R[n] = (1.0 if D[n] >= 0 else e) / Q[n]  # r_1
            D[n] = max(D[n], 0.0)
        lb = _log_sum(D, Q, 128)  # Q <= 2
        for f in range(F):
            S[1, f] = _dot(R, phi[f])
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
            L[k, n] = _exp_neg(min(top[n] - L[k, n], EXP_CUT))
            s[n] += L[k, n]
    for k in range(K):
        for n in range(N):
            L[k, n] /= s[n]  # the responsibilities
        for f in range(F):
            S[k, f] = _dot(L[k], phi[f])
    return _log_sum(top, s, max(1, int(150.0 / math.log(K)))) / N


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
        labels = _kmeans(phi[F - 1 - d:F - 1], K, seeding, trials, 300, 1e-4 * (x * x).sum() / (N * d))
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

def check(X, components: int, covariance: str) -> None:
    if covariance not in COVARIANCE_TYPES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance!r}")
    if X.shape[1] < components:
        raise ValueError(f"cannot fit {components} components to {X.shape[1]} points")


def threads(n: int | None = None) -> None:
    """Use n threads for the fits (default: COLLAPSE_THREADS, else every core numba sees)."""
    n = n or int(os.environ.get("COLLAPSE_THREADS", 0)) or numba.config.NUMBA_NUM_THREADS
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


def kmeans_labels(X, K: int, seeding: np.ndarray) -> np.ndarray:
    """Labels (R, N) of KMeans(n_clusters=K, n_init=1) per data set of X (R, N, d) (tests)."""
    X = np.asarray(X, dtype=np.float64)
    out = []
    for x, s in zip(X, seeding):
        xt = np.ascontiguousarray((x - x.mean(0)).T)
        out.append(_kmeans(xt, K, np.ascontiguousarray(s), seeding_trials(K), 300,
                           1e-4 * (xt * xt).sum() / xt.size))
    return np.stack(out)
