"""Batched EM against scikit-learn: same data and initial parameters -> same fit (to 1e-6)."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from collapse_hpc.experiments.gmm import em, kmeans
from collapse_hpc.experiments.gmm.mixture import Mixtures


def _full(cov, kind, K):
    if kind == "full":
        return cov
    if kind == "tied":
        return np.repeat(cov[None], K, 0)
    if kind == "diag":
        return np.stack([np.diag(v) for v in cov])
    return np.stack([np.eye(2) * v for v in cov])  # spherical


def _data(rng, n=400):
    return np.concatenate([rng.normal(size=(n // 2, 2)), rng.normal(size=(n // 2, 2)) * [0.5, 0.8] + [2, 1]])


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("K", [2, 3])
def test_same_start_same_fit_as_sklearn(kind, K):
    rng = np.random.default_rng(K)
    sets = [_data(rng) for _ in range(3)]  # three replicates in one batch
    inits, refs = [], []
    for X in sets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a 1-iteration fit to get a start that is not converged
            start = GaussianMixture(K, covariance_type=kind, max_iter=1, random_state=0).fit(X)
        c = start.covariances_
        prec = np.linalg.inv(c) if kind in ("full", "tied") else 1 / c
        ref = GaussianMixture(K, covariance_type=kind, tol=1e-5, max_iter=2000, weights_init=start.weights_,
                              means_init=start.means_, precisions_init=prec).fit(X)
        inits.append((start.weights_, start.means_, _full(c, kind, K)))
        refs.append(ref)
    init = Mixtures(*(torch.tensor(np.stack(v)) for v in zip(*inits)))
    fit = em.fit(torch.tensor(np.stack(sets)), K, kind, tol=1e-5, max_iter=2000, init=init)
    for r, ref in enumerate(refs):
        assert int(fit.n_iter[r]) == ref.n_iter_
        assert bool(fit.converged[r]) == ref.converged_
        np.testing.assert_allclose(fit.mixtures.weights[r], ref.weights_, atol=1e-6, rtol=0)
        np.testing.assert_allclose(fit.mixtures.means[r], ref.means_, atol=1e-6, rtol=0)
        np.testing.assert_allclose(fit.mixtures.covariances[r], _full(ref.covariances_, kind, K), atol=1e-6, rtol=0)
        assert float(fit.lower_bound[r]) == pytest.approx(ref.lower_bound_, abs=1e-9)


def test_max_iter_stops_unconverged_like_sklearn():
    X = _data(np.random.default_rng(5))
    start = GaussianMixture(2, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X)
        ref = GaussianMixture(2, tol=1e-12, max_iter=3, weights_init=start.weights_, means_init=start.means_,
                              precisions_init=np.linalg.inv(start.covariances_)).fit(X)
    init = Mixtures(*(torch.tensor(v)[None] for v in (start.weights_, start.means_, start.covariances_)))
    fit = em.fit(torch.tensor(X)[None], 2, tol=1e-12, max_iter=3, init=init)
    assert int(fit.n_iter[0]) == 3 and not bool(fit.converged[0]) and not ref.converged_
    np.testing.assert_allclose(fit.mixtures.means[0], ref.means_, atol=1e-9)


@pytest.mark.parametrize("K", [2, 3])
def test_kmeans_init_finds_sklearns_partition(K):
    """Well separated clusters have one k-means solution: ours and scikit-learn's agree."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 0], [0, 8]])[:K]
    X = np.concatenate([rng.normal(size=(150, 2)) + c for c in centres])
    ref = KMeans(K, n_init=1, random_state=0).fit(X).labels_
    seeding = kmeans.kmeans_draws([np.random.default_rng(0)], K)
    ours = kmeans.kmeans_labels(X[None], K, seeding)[0]
    # same partition up to the naming of the clusters
    assert len({(a, b) for a, b in zip(ref, ours)}) == K


def test_kmeans_initialised_fit_matches_sklearn_fit():
    """Default (k-means) start: with a unique k-means partition the whole fit matches."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) * 0.7 + [5, 3]])
    ref = GaussianMixture(2, tol=1e-5, max_iter=2000, random_state=0).fit(X)
    fit = em.fit(torch.tensor(X)[None], 2, tol=1e-5, max_iter=2000, rng=np.random.default_rng(0))
    order = np.argsort(fit.mixtures.means[0, :, 0].numpy())
    ref_order = np.argsort(ref.means_[:, 0])
    np.testing.assert_allclose(fit.mixtures.means[0].numpy()[order], ref.means_[ref_order], atol=1e-6)
    np.testing.assert_allclose(fit.mixtures.weights[0].numpy()[order], ref.weights_[ref_order], atol=1e-6)


def test_bad_arguments_are_refused():
    X = torch.zeros(1, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="cannot fit 5 components to 3 points"):
        em.fit(X, 5)
    with pytest.raises(ValueError, match="covariance must be one of"):
        em.fit(X, 2, covariance="banana")


def test_compiled_tells_whether_numbas_cache_holds_the_fit(tmp_path):
    # a fresh environment compiles for minutes before the first fit: the unit says so only then
    import subprocess
    import sys

    em.fit(torch.as_tensor(_data(np.random.default_rng(0), 40))[None], 2)
    assert em.compiled()  # cached now, wherever numba keeps this process's cache
    empty = subprocess.run([sys.executable, "-c", "from collapse_hpc.experiments.gmm import em; print(em.compiled())"],
                           env={**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path)},
                           capture_output=True, text=True, check=True)
    assert empty.stdout.strip() == "False"


def _real_index() -> Path:
    """The index file numba wrote for the fit's kernel (a fit first: it compiles, or loads the cache)."""
    em.fit(torch.as_tensor(_data(np.random.default_rng(0), 40))[None], 2)
    line = em._fit_all.py_func.__code__.co_firstlineno
    found = list(Path(em._fit_all.stats.cache_path).glob(f"em._fit_all-{line}.py*.nbi"))
    assert len(found) == 1, found
    return found[0]


def test_compiled_reads_no_private_numba_attribute(tmp_path, monkeypatch):
    """It read numba's private _cache._cache_file._index_path: a numba laid out otherwise read
    False, and every run told of a compile that never came. Now the dispatcher's public
    stats.cache_path names the folder that must hold the kernel's index file."""
    from types import SimpleNamespace

    index = _real_index()
    stand_in = SimpleNamespace(py_func=em._fit_all.py_func, stats=SimpleNamespace(cache_path=str(tmp_path)))
    monkeypatch.setattr(em, "_fit_all", stand_in)  # a dispatcher without numba's private cache objects
    assert not em.compiled()
    (tmp_path / index.name).write_bytes(b"")
    assert em.compiled()


def test_compiled_looks_where_numba_caches_when_the_dispatcher_does_not_say(tmp_path, monkeypatch):
    """A numba whose dispatcher has no stats: NUMBA_CACHE_DIR's folders, else __pycache__ beside
    the source (or the user-wide cache); the index a real fit wrote is found there."""
    import numba
    from types import SimpleNamespace

    index = _real_index()
    monkeypatch.setattr(em, "_fit_all", SimpleNamespace(py_func=em._fit_all.py_func))
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(index.parent.parent) if numba.config.CACHE_DIR else "")
    assert em.compiled()  # found without the dispatcher's word, in numba's real layout
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert not em.compiled()  # an empty NUMBA_CACHE_DIR
    (tmp_path / "gmm_0123abcd").mkdir()
    (tmp_path / "gmm_0123abcd" / index.name).write_bytes(b"")
    assert em.compiled()
