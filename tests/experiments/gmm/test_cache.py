"""numba's cache of the gmm kernels: a cached file cut short is emptied and compiled again."""
import pickle

import numba
import pytest

from collapse_hpc.experiments.gmm import cache


def twice(x):
    return 2 * x


def test_a_kernel_cache_cut_short_is_emptied_and_compiled_again(tmp_path, monkeypatch):
    """A kernel's cached file cut short (a node's crash after numba wrote it) failed every fit of every later part
    with "pickle data was truncated", until someone removed it by hand. Now a part empties that kernel's cache
    before its first fit, the file removed, and numba compiles it again."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    assert numba.njit(cache=True)(twice)(3) == 6  # compiled and cached
    data = list(tmp_path.rglob("*.nbc"))
    assert data
    for f in data:
        f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(pickle.UnpicklingError):  # a later process, as a part met it
        numba.njit(cache=True)(twice)(3)
    later = numba.njit(cache=True)(twice)
    monkeypatch.setattr(cache, "kernels", lambda: [later])
    assert cache.heal() == ["twice"]
    assert not any(f.exists() for f in data)
    assert later(3) == 6
    assert cache.heal() == []  # compiled again and cached whole
    assert numba.njit(cache=True)(twice)(4) == 8


def test_every_gmm_kernel_is_looked_at_once():
    found = cache.kernels()
    assert len({id(k) for k in found}) == len(found)
    assert {"_fit_all", "_sample", "kmeans", "_count_beyond"} <= {k.__name__ for k in found}
