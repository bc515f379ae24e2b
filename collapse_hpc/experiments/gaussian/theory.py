"""What theory predicts for the single-Gaussian recursion under replace (keep 0), per generation.

Setting: real data N(mu, sigma^2); every generation fits n points (the first fit, generation 0,
to the real ones) and draws n new points from its fit. The variance estimate divides the centred
sum of squares by d = n - ddof (mle: d = n, unbiased: d = n - 1). With V_j = sigma_j^2 / sigma_{j-1}^2,
the V_j are independent chi^2_{n-1} / d, and after t fits sigma_t^2 = sigma^2 V_1 ... V_t.

- Mean of the variance: E[sigma_t^2] = sigma^2 e^t with e = E[V] = (n-1)/d: it shrinks geometrically
  for the MLE and stays sigma^2 for the unbiased estimator (a martingale).
- Typical variance: E[log sigma_t^2] = log sigma^2 + t c with c = E[log V] = digamma((n-1)/2) + log(2/d)
  < 0 for both estimators (Jensen), so log sigma_t^2 drifts to -infinity linearly and sigma_t^2 -> 0
  almost surely (strong law on the sum of log V_j): the unbiased estimator's mean stays put only
  because ever rarer replicates grow ever larger. exp(E[log sigma_t^2]) is the geometric mean.
- Wasserstein-2 distance to the original, W2^2 = (mu_t - mu)^2 + (sigma_t - sigma)^2 for 1-D normals:
  mu_t is a random walk whose step j has variance E[sigma_{j-1}^2] / n, and E[sigma_t] = sigma m^t with
  m = E[sqrt V] = sqrt(2/d) Gamma(n/2) / Gamma((n-1)/2), so
      E[W2^2] = sigma^2 ( sum_{j<t} e^j / n + e^t - 2 m^t + 1 ).
  Unbiased (e = 1): sigma^2 (t/n + 2 - 2 m^t), which grows without bound: the theorem's distance to
  the original grows. MLE: bounded by sigma^2 (2 + ...), tending to 2 sigma^2 as the variance dies.
- Tails: the mass a fit N(mu_t, sigma_t^2) puts beyond the original's mu -/+ k sigma is exact for each fit
  (tail_mass); as sigma_t^2 -> 0 it goes to 0 unless mu_t has walked past the bound.
t = k + 1 at generation k when generation 0 is a fit to real data (this project's runs), t = k when
generation 0 holds the true parameters.
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln, ndtr, polygamma

SIGMAS = (2, 3)  # the original's k-sigma bounds whose tail mass is recorded (tail_mass_2sigma, …)


def divisor(n: int, estimator: str) -> int:
    return n if estimator == "mle" else n - 1


def mean_variance(sigma: float, n: int, estimator: str, fits) -> np.ndarray:
    """E[sigma_t^2] after `fits` fits."""
    e = (n - 1) / divisor(n, estimator)
    return sigma**2 * e ** np.asarray(fits, np.float64)


def log_mean_variance(sigma: float, n: int, estimator: str, fits) -> np.ndarray:
    """log E[sigma_t^2] after `fits` fits: E[sigma_t^2] itself underflows a float for the MLE at small n
    (n = 2 after 3000 fits: 2^-3000, about 1e-903)."""
    e = (n - 1) / divisor(n, estimator)
    return 2 * np.log(sigma) + np.log(e) * np.asarray(fits, np.float64)


def mean_log_variance(sigma: float, n: int, estimator: str, fits) -> np.ndarray:
    """E[log sigma_t^2] after `fits` fits (the log of the geometric mean of sigma_t^2)."""
    c = digamma((n - 1) / 2) + np.log(2 / divisor(n, estimator))
    return 2 * np.log(sigma) + c * np.asarray(fits, np.float64)


def sd_log_variance(n: int, fits) -> np.ndarray:
    """Standard deviation of log sigma_t^2 after `fits` fits: sqrt(t Var[log V]), Var[log V] = trigamma((n-1)/2)
    for either estimator (the divisor only shifts log V). Where it is large, E[sigma_t^2] is carried by
    replicates rarer than about 1 in exp(sd^2): a mean over fewer replicates falls below mean_variance."""
    return np.sqrt(np.asarray(fits, np.float64) * polygamma(1, (n - 1) / 2))


def mean_w2_squared(sigma: float, n: int, estimator: str, fits) -> np.ndarray:
    """E[W2^2] between N(mu, sigma^2) and the fit after `fits` fits."""
    d = divisor(n, estimator)
    e = (n - 1) / d
    m = np.exp(0.5 * np.log(2 / d) + gammaln(n / 2) - gammaln((n - 1) / 2))
    t = np.asarray(fits, np.float64)
    walk = t / n if e == 1 else (1 - e**t) / (1 - e) / n
    return sigma**2 * (walk + e**t - 2 * m**t + 1)


def w2(mu: float, sigma: float, mu_hat, sigma_hat) -> np.ndarray:
    """Wasserstein-2 distance between N(mu, sigma^2) and N(mu_hat, sigma_hat^2) (1-D, closed form)."""
    return np.sqrt((np.asarray(mu_hat) - mu) ** 2 + (np.asarray(sigma_hat) - sigma) ** 2)


def tail_mass(mu: float, sigma: float, mu_hat, sigma_hat, k: float) -> np.ndarray:
    """Mass that N(mu_hat, sigma_hat^2) puts beyond the original's k-sigma bounds mu -/+ k sigma (closed
    form: Phi(lower) + Phi(-upper) in the fit's standard units; the real data's own is 2 Phi(-k): 0.0455
    for k = 2, 0.0027 for k = 3). sigma_hat 0 (a point mass): 1 beyond the bounds, else 0."""
    mu_hat, sigma_hat = np.asarray(mu_hat, np.float64), np.asarray(sigma_hat, np.float64)
    lo, hi = mu - k * sigma, mu + k * sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = ndtr((lo - mu_hat) / sigma_hat) + ndtr((mu_hat - hi) / sigma_hat)
    return np.where(sigma_hat > 0, mass, ((mu_hat < lo) | (mu_hat > hi)).astype(np.float64))
