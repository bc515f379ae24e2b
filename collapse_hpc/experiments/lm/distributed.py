"""The process group every LM rank joins, from the environment the launch layer sets.

RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from the launch layer (submitit
exports them from Slurm's variables). A single process without them gets sane defaults, so that
DeepSpeed does not fall back to MPI discovery (which fails without mpi4py). CPU ranks talk over
gloo, GPU ranks over nccl.

API: setup_env(), init(timeout_s) -> (rank, world_size, local_rank), group_options(...), load_deepspeed(),
device(local_rank), barrier(), mean_over_ranks(tensor), is_initialized(), keep_freed_memory().
"""
from __future__ import annotations

import ctypes
import os
import sys
from datetime import timedelta
from pathlib import Path

from collapse_hpc.machine import free_port

# seconds a rank waits in a collective for its peers (lm.collective_timeout_s): a peer alive but hung held
# the others, and every GPU of the job, for DeepSpeed's 30 minutes
COLLECTIVE_TIMEOUT_S = 600.0


def setup_env() -> list[str]:
    """Defaults that must be in place before deepspeed is imported; returns the names it set."""
    before = set(os.environ)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "collapse-hpc" / "torch_extensions"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "WORLD_SIZE" not in os.environ or os.environ.get("WORLD_SIZE") == "1":
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    return sorted(set(os.environ) - before)


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init(timeout_s: float = COLLECTIVE_TIMEOUT_S) -> tuple[int, int, int]:
    """Join (or reuse) the process group; returns (rank, world_size, local_rank). torch's own
    init_process_group, without importing DeepSpeed (its engine adopts the group: load_deepspeed() below)."""
    added = setup_env()
    import torch
    import torch.distributed as dist

    if not is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        options = group_options(cuda, int(os.environ["WORLD_SIZE"]), local_rank, timeout_s)
        dist.init_process_group(**options)
        # the groups made later without a timeout (DeepSpeed's: ZeRO's and data-parallel collectives) take
        # torch's default, 30 min, not the world group's: it is made this one
        import torch.distributed.distributed_c10d as c10d

        c10d.default_pg_timeout = c10d.default_pg_nccl_timeout = options["timeout"]
        # an unbound NCCL group connects at its first collective: let that be here, in the
        # process-group phase of the job's start-up, not in whatever comes next
        dist.barrier(**({"device_ids": [local_rank]} if cuda else {}))
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # ours, and in use by this process's store:
        if name in added:                          # child processes must not inherit them
            os.environ.pop(name, None)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def group_options(cuda: bool, world_size: int, local_rank: int, timeout_s: float) -> dict:
    """init_process_group's arguments: nccl on GPUs, gloo on CPUs; on GPUs with more than one rank
    the rank's device is bound (device_id), so NCCL connects inside init_process_group, not at the
    first collective, and barriers know their device. One rank is left unbound, as DeepSpeed does
    (DeepSpeed issue 8248: binding a single GPU failed with CUDA error 600)."""
    import torch

    options = {"backend": "nccl" if cuda else "gloo", "init_method": "env://", "timeout": timedelta(seconds=timeout_s)}
    if cuda and world_size > 1:
        options["device_id"] = torch.device("cuda", local_rank)
    return options


def load_deepspeed():
    """The deepspeed module, made safe to initialise an engine: DeepSpeed's comm layer JIT-compiles
    a shared-memory all-reduce that only its inference_all_reduce uses (never called here), after
    probing every op with the compiler: ~45 s per fresh machine, and a build killed half-way (a
    preempted job) leaves a lock file on which every later job of the node waits forever. Its only
    reader is that build."""
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__ = {"deepspeed_shm_comm": False}
    return deepspeed


def device(local_rank: int = 0):
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    keep_freed_memory()
    return torch.device("cpu")


def keep_freed_memory() -> None:
    """CPU: make glibc's malloc keep freed memory for reuse instead of handing it back to the
    kernel. By default the big activation buffers of every training step are mmapped and unmapped
    (or the heap trimmed), and the next step faults all their pages in again: measured here, 8-30k
    page faults per micro-batch and up to 3x slower steps; with these settings, none after the first
    step. Costs up to 1 GiB of retained memory per process. No-op where libc is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum; fixing it also stops its dynamic changes
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_top_pad, 64 << 20)


def barrier() -> None:
    if is_initialized():
        import torch.distributed as dist

        dist.barrier()


def mean_over_ranks(tensor):
    """`tensor` averaged over every rank, in place (a collective: every rank calls it); itself
    without a process group or with one rank."""
    if not is_initialized():
        return tensor
    import torch.distributed as dist

    world = dist.get_world_size()
    if world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world
    return tensor
