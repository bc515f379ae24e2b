"""Two tiny experiments for the launch tests (not shipped): `ltchain`, a chain whose
generations derive from the previous one (optionally several ranks with a gloo all-reduce,
a failure at one generation, resumable sleep steps), and `ltarray`, an array of parts.

Importing this package registers them, also for job subprocesses and Slurm jobs (through
COLLAPSE_EXTRA_EXPERIMENTS and PYTHONPATH, which jobs inherit)."""
import os
from pathlib import Path

from collapse_hpc import experiments

REPO = str(Path(__file__).resolve().parents[3])
EXTRA = {"ltchain": "tests.launch.toys.chain", "ltarray": "tests.launch.toys.array"}


def register() -> None:
    items = [i for i in os.environ.get("COLLAPSE_EXTRA_EXPERIMENTS", "").split(",") if i]
    names = {i.partition("=")[0] for i in items}
    items += [f"{k}={v}" for k, v in EXTRA.items() if k not in names]
    os.environ["COLLAPSE_EXTRA_EXPERIMENTS"] = ",".join(items)
    path = os.environ.get("PYTHONPATH", "")
    if REPO not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, path]))
    experiments.REGISTRY.update(EXTRA)


register()
