"""Helpers for tests: a toy run built in a temporary folder."""
import os

os.environ.setdefault("COLLAPSE_EXTRA_EXPERIMENTS", "toy=tests.toy_experiment")

from collapse_hpc import config as cfgmod  # noqa: E402
from collapse_hpc import experiments  # noqa: E402

experiments.REGISTRY.setdefault("toy", "tests.toy_experiment")


def toy_run(tmp_path, generations=3, **toy):
    run = cfgmod.from_dict({"name": "t", "generations": generations, "seeds": [0],
                            "executor": "debug", "toy": toy})
    from collapse_hpc.store import RunStore

    store = RunStore(tmp_path / "run")
    store.open(run)
    return store, run
