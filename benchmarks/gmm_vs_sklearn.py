"""Gaussian-mixture recursion: the notebook's loop (scikit-learn) against ours, same problem.

(a) the notebook's procedure, one replicate at a time: GaussianMixture(2, full, tol 1e-5,
    max_iter 2000).fit, then .sample(N), and the L2 distance to generation 0 term by term
    with scipy's multivariate normal density;
(b) ours: collapse_hpc.experiments.gmm (EM, sampling and every recorded metric, closed-form
    L2 included) for all R replicates at once: one compiled EM loop per replicate, replicates
    spread over every core (as sklearn's own threads are), after a warm-up that loads the
    compiled kernels (numba's cache; the first run ever compiles them).
Both start from the notebook's 2-D standard normal blob (N points). The two must agree
statistically: the mean total variance of the last generation's fit within 4 standard errors
(exit 1 otherwise). Prints replicate-generations per second of each; the last line is
`ratio: <ours / scikit-learn>`. Defaults: R=64, G=200, N=1000 (about 2.5 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np


def notebook_l2_squared(f, g) -> float:
    from scipy.stats import multivariate_normal

    def cross(a, b):
        return sum(wa * wb * multivariate_normal.pdf(ma - mb, mean=np.zeros(len(ma)), cov=ca + cb)
                   for wa, ma, ca in zip(a.weights_, a.means_, a.covariances_)
                   for wb, mb, cb in zip(b.weights_, b.means_, b.covariances_))

    return cross(f, f) + cross(g, g) - 2 * cross(f, g)


def run_sklearn(R: int, G: int, N: int, seed: int) -> np.ndarray:
    """Total variance of the last generation's fit, per replicate."""
    from sklearn.datasets import make_blobs
    from sklearn.mixture import GaussianMixture

    out = []
    for r in range(R):
        X, _ = make_blobs(N, n_features=2, centers=[[0, 0]], cluster_std=1, random_state=seed + r)
        first = None
        for g in range(G):
            gmm = GaussianMixture(2, covariance_type="full", tol=1e-5, max_iter=2000).fit(X)
            first = first or gmm
            notebook_l2_squared(first, gmm)
            X = gmm.sample(N)[0]
        spread = gmm.means_ - gmm.weights_ @ gmm.means_
        total = sum(w * (np.trace(c) + s @ s) for w, c, s in zip(gmm.weights_, gmm.covariances_, spread))
        out.append(total)
    return np.array(out)


def run_ours(R: int, G: int, N: int, seed: int) -> np.ndarray:
    """Total variance of the last generation's fit, per replicate."""
    import torch

    from collapse_hpc.experiments.gmm import em, metrics
    from collapse_hpc.experiments.gmm.recursion import FitSettings, draws, real_data, real_modes, recurse
    from collapse_hpc.regimes import Regime

    torch.set_num_threads(1)  # as in the experiment's array tasks: small tensors, no intra-op threads
    em.threads()  # the fits: every core
    last = {}

    def record(gen):
        last.update(metrics.measure(gen, real_modes("blob")))  # every recorded metric, as a run computes them

    rngs = [draws(seed, r) for r in range(R)]
    recurse([real_data("blob", N, rng) for rng in rngs], G, Regime(), FitSettings(), N, rngs, record)
    return last["total_variance"].numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicates", "-R", type=int, default=64)
    p.add_argument("--generations", "-G", type=int, default=200)
    p.add_argument("--samples", "-N", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    R, G, N = a.replicates, a.generations, a.samples
    print(f"gmm recursion: R={R} replicates x G={G} generations, N={N}, 2 components, 2-D")
    warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning on degenerate late generations

    t = time.perf_counter()
    run_ours(2, 2, N, a.seed)  # loads (or, the first time, compiles) the kernels, as a run's first task does
    print(f"warm-up:      {time.perf_counter() - t:10.1f} s (kernel compile/cache load; not timed below)")
    t = time.perf_counter()
    ours = run_ours(R, G, N, a.seed)
    t_ours = time.perf_counter() - t
    print(f"ours:         {R * G / t_ours:10.1f} replicate-generations/s ({t_ours:.1f} s)")
    t = time.perf_counter()
    ref = run_sklearn(R, G, N, a.seed)
    t_ref = time.perf_counter() - t
    print(f"scikit-learn: {R * G / t_ref:10.1f} replicate-generations/s ({t_ref:.1f} s)")

    se = math.sqrt(ours.var(ddof=1) / R + ref.var(ddof=1) / R)
    gap = abs(ours.mean() - ref.mean())
    ok = gap <= 4 * se
    print(f"total variance at generation {G - 1}: ours {ours.mean():.4g}, scikit-learn {ref.mean():.4g} "
          f"(difference {gap:.3g}, 4 standard errors {4 * se:.3g}): {'agree' if ok else 'DISAGREE'}")
    print(f"ratio: {t_ref / t_ours:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
