"""What a unit's manifest says it held (the report's core-hours): the cores allotted to it,
not every core the process can see."""
import os

import pytest

from collapse_hpc import engine

SEEN = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("COLLAPSE_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("env, world, cpus", [
    ({"COLLAPSE_THREADS": "3"}, 1, 3),  # the local back-end's share of the machine
    ({"COLLAPSE_THREADS": "3"}, 2, 6),  # per rank
    ({"SLURM_CPUS_PER_TASK": "4"}, 2, 8),  # Slurm's cpus-per-task, per rank
    ({"COLLAPSE_THREADS": "2", "SLURM_CPUS_PER_TASK": "8"}, 1, 2),  # a local run inside an allocation
    ({"COLLAPSE_THREADS": "", "SLURM_CPUS_PER_TASK": "junk"}, 1, SEEN),  # neither usable: what is seen
    ({}, 2, 2 * SEEN),
])
def test_cpus_are_the_allotted_cores_times_ranks(monkeypatch, env, world, cpus):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert engine._resources("cpu", world) == {"gpus": 0, "cpus": cpus}
