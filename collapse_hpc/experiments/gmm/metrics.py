"""What is recorded per generation and replicate (one float64 column each, wide).

Components are listed in the order of their mean's x coordinate (c0 leftmost), so that a
component keeps its name when EM happens to return them in another order.
- l2, l2_squared: exact L2 distance (and its square) between this fit and generation 0's;
- total_variance: trace of the fitted mixture's covariance; sample_variance: trace of the
  covariance of the points drawn from it (ddof 0); lower_bound, em_iterations, em_converged;
- per component cK_: weight, mean_x/y, cov_trace, cov_eig0/1 (ascending), std as the notebook
  defines it (sqrt(trace(cov) / components)), and the tail positions q95/q975/q99_x/y
  (mean + 1.645 / 1.960 / 2.326 std).
"""
from __future__ import annotations

import torch

from collapse_hpc.experiments.gmm.mixture import l2_squared, total_variance

AXES = ("x", "y")
TAILS = (("q95", 1.645), ("q975", 1.960), ("q99", 2.326))


def names(components: int) -> list[str]:
    out = ["l2", "l2_squared", "total_variance", "sample_variance", "lower_bound", "em_iterations",
           "em_converged"]
    for k in range(components):
        out += [f"c{k}_{m}" for m in ("weight", "mean_x", "mean_y", "cov_trace", "cov_eig0", "cov_eig1", "std")]
        out += [f"c{k}_{q}_{a}" for q, _ in TAILS for a in AXES]
    return out


def measure(gen) -> dict[str, torch.Tensor]:
    """Every metric of one generation (a recursion.Generation), each a (R,) tensor."""
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
