"""The closed-form L2 distance against numerical integration on a grid; sampling moments."""
import numpy as np
import torch

from collapse_hpc.experiments.gmm.mixture import Mixtures, l2_squared, log_density, sample


def _random_mixtures(gen, R, K):
    w = torch.rand(R, K, generator=gen, dtype=torch.float64) + 0.2
    m = torch.randn(R, K, 2, generator=gen, dtype=torch.float64) * 1.5
    A = torch.randn(R, K, 2, 2, generator=gen, dtype=torch.float64) * 0.6
    C = A @ A.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=torch.float64)
    return Mixtures(w / w.sum(1, keepdim=True), m, C)


def test_l2_matches_grid_integration():
    gen = torch.Generator().manual_seed(0)
    f, g = _random_mixtures(gen, 4, 2), _random_mixtures(gen, 4, 3)
    axis = torch.linspace(-12, 12, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    cell = float(axis[1] - axis[0]) ** 2
    numeric = ((log_density(f, grid).exp() - log_density(g, grid).exp()) ** 2).sum(1) * cell
    np.testing.assert_allclose(l2_squared(f, g).numpy(), numeric.numpy(), rtol=1e-6)
    assert torch.allclose(l2_squared(f, f), torch.zeros(4, dtype=torch.float64), atol=1e-12)


def test_sampling_follows_the_mixture():
    gen = torch.Generator().manual_seed(1)
    mix = _random_mixtures(gen, 2, 2)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(sample(mix, rng.random((2, 200_000)), rng.standard_normal((2, 200_000, 2))))
    np.testing.assert_allclose(x.mean(1).numpy(), (mix.weights[..., None] * mix.means).sum(1).numpy(), atol=0.02)
    emp = torch.stack([torch.cov(x[r].T) for r in range(2)])
    np.testing.assert_allclose(emp.numpy(), mix.total_covariance().numpy(), rtol=0.03, atol=0.02)


def _notebook_l2(f, g, r):
    """The notebook's own closed form, with scipy: sum_ij a_i a_j N(m_i - m_j; 0, C_i + C_j) over
    (f, f) plus (g, g) minus twice (f, g), mixture r of each batch."""
    from scipy.stats import multivariate_normal

    def cross(a, b):
        return sum(a.weights[r, i] * b.weights[r, j] * multivariate_normal.pdf(
            (a.means[r, i] - b.means[r, j]).numpy(), np.zeros(2), (a.covariances[r, i] + b.covariances[r, j]).numpy())
            for i in range(a.weights.shape[1]) for j in range(b.weights.shape[1]))

    return float(cross(f, f) + cross(g, g) - 2 * cross(f, g))


def test_recorded_l2_squared_is_the_notebooks_quantity():
    """metrics.measure's l2_squared (the figure's metric) equals the notebook's formula; l2 is its root."""
    from types import SimpleNamespace

    from collapse_hpc.experiments.gmm.metrics import measure

    gen = torch.Generator().manual_seed(3)
    f, g = _random_mixtures(gen, 3, 2), _random_mixtures(gen, 3, 2)
    fit = SimpleNamespace(mixtures=g, lower_bound=torch.zeros(3), n_iter=torch.ones(3), converged=torch.ones(3))
    out = measure(SimpleNamespace(fit=fit, reference=f, samples=np.zeros((3, 5, 2))), np.zeros((1, 2)))
    notebook = [_notebook_l2(f, g, r) for r in range(3)]
    np.testing.assert_allclose(out["l2_squared"].numpy(), notebook, rtol=1e-10)
    np.testing.assert_allclose(out["l2"].numpy() ** 2, notebook, rtol=1e-10)
