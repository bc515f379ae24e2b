"""One torch thread for these tiny models: on a shared 2-core machine a second thread only
spins (measured ten times slower per step under load)."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("COLLAPSE_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
