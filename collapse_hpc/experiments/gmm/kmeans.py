"""k-means as scikit-learn's KMeans(n_clusters=K, n_init=1) runs it, compiled, for one data set:
k-means++ seeding with 2 + ln K local trials per centre, then Lloyd until the labels stop
changing or the centres move (in total squared distance) by at most 1e-4 x the mean variance of
the coordinates (scikit-learn's tol=1e-4, scaled as its _tolerance does). The seeding's uniforms
come from the caller (kmeans_draws), one row per data set from its replicate's generator.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from collapse_hpc.experiments.gmm.passes import JIT, POINTS, dot


def seeding_trials(K: int) -> int:
    return 2 + int(math.log(K))  # scikit-learn's local trials per k-means++ centre


def kmeans_draws(rngs, K: int) -> np.ndarray:
    """The uniforms k-means++ uses, one row per data set from its own generator: the first
    centre's index, then `trials` candidates for each further centre."""
    size = 1 + (K - 1) * seeding_trials(K)
    return np.stack([rng.random(size) for rng in rngs])


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
def kmeans(xt, K, seeding, trials, max_iter=300):
    """Labels (N,) of KMeans(n_clusters=K, n_init=1) on centred points xt (d, N) (see the module
    docstring)."""
    d, N = xt.shape
    tol = 1e-4 * (xt * xt).sum() / (N * d)  # centred: the mean of the coordinates' variances
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
        all_sums[i] = dot(ones, xt[i])
    all_sums[d] = N
    strict = False
    for _ in range(max_iter):
        _assign(xt, centres, score, new, member)
        sums[K - 1] = all_sums  # the last cluster: what the others leave
        for k in range(K - 1):
            for i in range(d):
                sums[k, i] = dot(member[k], xt[i])
            sums[k, d] = dot(member[k], ones)
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


def kmeans_labels(X, K: int, seeding: np.ndarray) -> np.ndarray:
    """Labels (R, N) of KMeans(n_clusters=K, n_init=1) per data set of X (R, N, d) (tests)."""
    X = np.asarray(X, dtype=np.float64)
    out = []
    for x, s in zip(X, seeding):
        xt = np.ascontiguousarray((x - x.mean(0)).T)
        out.append(kmeans(xt, K, np.ascontiguousarray(s), seeding_trials(K)))
    return np.stack(out)
