"""What is recorded per generation and replicate (one float64 column each, wide).

Components are listed in the order of their mean's x coordinate (c0 leftmost), so that a
component keeps its name when EM happens to return them in another order.
- l2, l2_squared: exact L2 distance (and its square) between this fit and generation 0's;
- total_variance: trace of the fitted mixture's covariance; sample_variance: trace of the
  covariance of the points drawn from it (ddof 0); lower_bound, em_iterations, em_converged;
- tail_share_2sigma, tail_share_3sigma: the share of this generation's own samples (the points drawn
  from the fit) beyond the real distribution's 2- and 3-sigma contour (beyond; real_share: its own);
- per component cK_: weight, mean_x/y, cov_trace, cov_eig0/1 (ascending), std as the notebook
  defines it (sqrt(trace(cov) / components)), and the tail positions q95/q975/q99_x/y
  (mean + 1.645 / 1.960 / 2.326 std).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from collapse_hpc.experiments.gmm.mixture import l2_squared, total_variance
from collapse_hpc.experiments.gmm.passes import JIT
from collapse_hpc.experiments.schema import INT32, MetricsSchema
from collapse_hpc.plotting.metrics import NONNEGATIVE, SHARE, Metric, specs

AXES = ("x", "y")
TAILS = (("q95", 1.645), ("q975", 1.960), ("q99", 2.326))
SIGMAS = (2, 3)  # the real distribution's k-sigma contours (tail_share_2sigma, tail_share_3sigma)


def names(components: int) -> list[str]:
    out = ["l2", "l2_squared", "total_variance", "sample_variance", "lower_bound", "em_iterations",
           "em_converged", *(f"tail_share_{k}sigma" for k in SIGMAS)]
    for k in range(components):
        out += [f"c{k}_{m}" for m in ("weight", "mean_x", "mean_y", "cov_trace", "cov_eig0", "cov_eig1", "std")]
        out += [f"c{k}_{q}_{a}" for q, _ in TAILS for a in AXES]
    return out


def beyond(points: np.ndarray, modes: np.ndarray, sigmas=SIGMAS) -> dict[int, np.ndarray]:
    """k -> the share of each replicate's points (R, n, 2) beyond the real distribution's k-sigma contour.

    The contour: the real distribution is a mixture of unit-covariance normal modes (modes (M, 2), from
    recursion.real_modes), and its k-sigma contour is the outline of the points within Mahalanobis
    distance k of some mode (Euclidean, the covariance being I). For the notebook's blob that is the
    circle of radius k around the origin; for two-mode data the outline of the union of the two discs
    of radius k around the modes. A point lies beyond it when it is more than k from every mode."""
    counts = np.zeros((len(points), len(sigmas)))
    _count_beyond(np.ascontiguousarray(points, np.float64), np.ascontiguousarray(modes, np.float64),
                  np.asarray(sigmas, np.float64) ** 2, counts)
    return {k: counts[:, j] / points.shape[1] for j, k in enumerate(sigmas)}


@numba.njit(**JIT)
def _count_beyond(points, modes, radii2, counts):
    """counts[r, j]: the points of replicate r whose squared distance to the nearest mode exceeds
    radii2[j]; one pass over the points without numpy's temporaries, on one thread (starting a parallel
    region costs more than the pass itself on a busy machine)."""
    R, n, d = points.shape
    for r in range(R):
        for i in range(n):
            near = np.inf
            for m in range(modes.shape[0]):
                s = 0.0
                for a in range(d):
                    t = points[r, i, a] - modes[m, a]
                    s += t * t
                near = min(near, s)
            for j in range(radii2.shape[0]):
                if near > radii2[j]:
                    counts[r, j] += 1.0


def real_share(modes: np.ndarray, k: float) -> float:
    """The real distribution's own share beyond its k-sigma contour (see beyond): exp(-k^2/2) for one
    mode (0.135 for k = 2, 0.0111 for k = 3). For two modes s apart, a point of one mode at radius rho
    from it lies within k of the other on the arc of the circle of angle 2 arccos((rho^2 + s^2 - k^2) /
    (2 rho s)); so the share is the integral over rho > k of rho e^(-rho^2/2) times the rest of the circle
    (numerical quadrature; none of the circle is near the other mode beyond rho = s + k)."""
    from scipy.integrate import quad

    if len(modes) == 1 or np.allclose(modes[0], modes[-1]):
        return math.exp(-k * k / 2)
    if len(modes) != 2:
        raise ValueError(f"real_share: one or two modes, got {len(modes)}")
    s = float(np.linalg.norm(modes[1] - modes[0]))

    def elsewhere(rho):  # the share of the circle of radius rho more than k from the other mode
        c = (rho * rho + s * s - k * k) / (2 * rho * s)
        return 1 - math.acos(min(1.0, max(-1.0, c))) / math.pi

    top = s + k
    kink = [abs(s - k)] if k < abs(s - k) < top else None
    inner, _ = quad(lambda rho: rho * math.exp(-rho * rho / 2) * elsewhere(rho), k, top, points=kink,
                    epsabs=1e-13, epsrel=1e-11)
    return inner + math.exp(-top * top / 2)


def measure(gen, modes: np.ndarray) -> dict[str, torch.Tensor]:
    """Every metric of one generation (a recursion.Generation), each a (R,) tensor; modes: the real
    distribution's (recursion.real_modes), whose contours the tail shares are measured against."""
    mix, fit = gen.fit.mixtures, gen.fit
    K = mix.weights.shape[1]
    d2 = l2_squared(gen.reference, mix).clamp(min=0)
    drawn = gen.samples
    out = {
        "l2": d2.sqrt(), "l2_squared": d2,
        "total_variance": torch.diagonal(mix.total_covariance(), dim1=-2, dim2=-1).sum(-1),
        "sample_variance": torch.from_numpy(total_variance(drawn)),
        "lower_bound": fit.lower_bound, "em_iterations": fit.n_iter.to(torch.float64),
        "em_converged": fit.converged.to(torch.float64),
    }
    out.update({f"tail_share_{k}sigma": torch.from_numpy(v) for k, v in beyond(drawn, modes).items()})
    order = mix.means[..., 0].argsort(1)  # (R, K)
    rows = torch.arange(mix.replicates)[:, None]
    w, m, c = mix.weights[rows, order], mix.means[rows, order], mix.covariances[rows, order]
    trace = torch.diagonal(c, dim1=-2, dim2=-1).sum(-1)  # (R, K)
    eig = torch.linalg.eigvalsh(c)  # (R, K, 2) ascending
    std = (trace / K).sqrt()
    for k in range(K):
        out.update({f"c{k}_weight": w[:, k], f"c{k}_mean_x": m[:, k, 0], f"c{k}_mean_y": m[:, k, 1],
                    f"c{k}_cov_trace": trace[:, k], f"c{k}_cov_eig0": eig[:, k, 0],
                    f"c{k}_cov_eig1": eig[:, k, 1], f"c{k}_std": std[:, k]})
        for q, z in TAILS:
            for a, axis in enumerate(AXES):
                out[f"c{k}_{q}_{axis}"] = m[:, k, a] + z * std[:, k]
    return out


# ------------------------------------------------------------------ how the report shows them

# positions and spreads are in the data's own units (the real modes have unit covariance). The L2 distances are
# between the 2-D densities, each per data unit² (per area): their squared distance integrates (f₀ − fₖ)² over the
# plane, per data unit², and its root is per data unit
DATA, SQUARED = "data units", "data units²"
PER_DATA, PER_SQUARED = "per data unit", "per data unit²"

SPECS = specs(
    Metric("l2", "L2 distance to generation 0", PER_DATA, worse="higher", bounds=NONNEGATIVE),
    Metric("l2_squared", "squared L2 to generation 0", PER_SQUARED, worse="higher", bounds=NONNEGATIVE),
    Metric("total_variance", "total variance", SQUARED, worse="lower", bounds=NONNEGATIVE),
    Metric("sample_variance", "sample variance", SQUARED, worse="lower", bounds=NONNEGATIVE),
    Metric("lower_bound", "EM lower bound", "nats per point"),  # the mean log-likelihood of a fitted point
    Metric("em_iterations", "EM iterations", "iterations", kind="bookkeeping", bounds=NONNEGATIVE),
    Metric("em_converged", "share of EM fits converged", kind="bookkeeping", bounds=SHARE),
    *(Metric(f"tail_share_{k}sigma", f"share beyond real {k}σ", worse="lower", bounds=SHARE) for k in SIGMAS),
)


# the per-component columns that cannot be negative (a weight is a share); means and tail positions can
BOUNDS = {"weight": SHARE, "cov_trace": NONNEGATIVE, "cov_eig0": NONNEGATIVE, "cov_eig1": NONNEGATIVE,
          "std": NONNEGATIVE}
# the unit of each per-component column but the weight (a share)
UNITS = {"mean_x": DATA, "mean_y": DATA, "cov_trace": SQUARED, "cov_eig0": SQUARED, "cov_eig1": SQUARED, "std": DATA,
         **{f"{q}_{a}": DATA for q, _ in TAILS for a in AXES}}


def component_specs(columns) -> dict[str, Metric]:
    """Declarations of the per-component columns (c0_weight, …) among `columns`: their number depends
    on the config's components."""
    what = {"weight": "weight", "mean_x": "mean x", "mean_y": "mean y", "cov_trace": "cov. trace",
            "cov_eig0": "cov. eigenvalue, small", "cov_eig1": "cov. eigenvalue, large", "std": "std"}
    for q, _ in TAILS:  # q975 -> 97.5%
        what.update({f"{q}_{a}": f"{q[1:3]}{'.' + q[3:] if q[3:] else ''}% tail {a}" for a in AXES})
    found = []
    for c in columns:
        k, _, rest = c.partition("_")
        if k[:1] == "c" and k[1:].isdigit() and rest in what:
            found.append((int(k[1:]), list(what).index(rest), c, rest))
    # by component number, each as names() lists it: columns come sorted by name, which put c10 before c2
    return {c: Metric(c, f"comp. {k} {what[rest]}", UNITS.get(rest, ""), bounds=BOUNDS.get(rest, (None, None)))
            for k, _, c, rest in sorted(found)}


def schema(components: int | None) -> MetricsSchema:
    """metrics.parquet of a config with this many components (None: the columns every config has)."""
    columns = SPECS | component_specs(names(components)) if components else SPECS
    return MetricsSchema(per_replicate=True, metrics=columns, generation=INT32)
