"""Helpers for tests: a toy run built in a temporary folder."""
from collapse_hpc import engine, experiments  # toy is registered by tests/conftest.py


def toy_run(tmp_path, generations=3, **toy):
    run = experiments.config_from_dict({"name": "t", "generations": generations, "seeds": [0],
                                        "executor": "debug", "toy": toy})
    from collapse_hpc.store import RunStore

    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    return store, run
