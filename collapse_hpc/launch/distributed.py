"""Ranks and rendezvous for multi-process units (DeepSpeed on GPUs, gloo on CPUs).

Inside a submitit job (local or Slurm) every task learns its rank from submitit's job
environment; we export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT so that
torch.distributed / DeepSpeed initialise with env:// (without them DeepSpeed falls back to
MPI discovery). No per-task CUDA_VISIBLE_DEVICES: DeepSpeed picks its GPU by LOCAL_RANK.
"""
from __future__ import annotations

import os


def export_env() -> dict[str, str]:
    """Export the torch.distributed variables of this task; returns them.

    Outside submitit (plain python) nothing is exported: the engine then runs as rank 0 of 1.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return {}
    from submitit.helpers import TorchDistributedEnvironment

    # overwrite: a job submitted from inside another job inherits the parent's variables
    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    threads = os.environ.get("SLURM_CPUS_PER_TASK")
    if threads and not os.environ.get("COLLAPSE_THREADS"):
        os.environ["COLLAPSE_THREADS"] = threads
    return {"RANK": str(env.rank), "WORLD_SIZE": str(env.world_size), "LOCAL_RANK": str(env.local_rank),
            "MASTER_ADDR": env.master_addr, "MASTER_PORT": str(env.master_port)}
