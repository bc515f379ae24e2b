"""Facts about the machine this process runs on: its cores, a rank's share of them, a free port,
its HF cache; how this process takes SIGTERM (also during a long native call), and how it leaves its ranks'
process group.

Read by every floor (a unit's threads, a launcher's slots, a rendezvous port), so it imports
nothing of the package.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FunctionType
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def machine_cores() -> int:
    """Cores this process may run on: its affinity (a cgroup or taskset shows fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cores_per_rank() -> int:
    """Cores allotted to each rank: the local back-end's share (COLLAPSE_THREADS) or Slurm's
    cpus-per-task. Affinity only as a last resort: side-by-side local units, and tasks on a
    Slurm node without cgroups, all see every core of the machine."""
    for name in ("COLLAPSE_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return machine_cores()


def available_memory() -> int | None:
    """Bytes of memory available to new processes now (MemAvailable), None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def total_memory() -> int | None:
    """Bytes of memory this machine's processes may ever hold: MemTotal, or the cgroup's limit (a
    container, a Slurm job's allocation) where lower; None where the system says neither."""
    sizes = []
    try:
        with open("/proc/meminfo") as f:
            sizes += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        sizes.append(int(Path("/sys/fs/cgroup/memory.max").read_text()))  # "max": no limit
    except (OSError, ValueError):
        pass
    return min(sizes) if sizes else None


def gpu_ids() -> list[int]:
    """GPUs of this machine without importing torch: CUDA_VISIBLE_DEVICES, else /dev/nvidiaN."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    return sorted(int(p.name[6:]) for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit())


def free_port() -> int:
    """A TCP port nothing listens on now (for a local job's MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hf_home() -> Path:
    """The HF cache's root as os.environ says now: $HF_HOME, else $XDG_CACHE_HOME/huggingface (what
    huggingface_hub uses; its own constants are fixed when it is imported)."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface"


def hub_cache() -> Path:
    """Where hub models are cached: $HF_HUB_CACHE, else hf_home()/hub."""
    return Path(os.environ["HF_HUB_CACHE"]).expanduser() if os.environ.get("HF_HUB_CACHE") else hf_home() / "hub"


# what a download from the hub that failed for want of a network says to do (stage, data prepare)
HUB_UNREACHABLE = ("the hub is not reachable from here: run it where huggingface.co is, e.g. a login node with "
                   "internet, then submit from here")


@contextmanager
def quiet_hub_retries() -> Iterator[None]:
    """huggingface_hub's warnings while it retries a request (two lines a try, five tries) kept off the screen:
    the failure ends in one line of ours (hub_unreachable's), a success needs none."""
    logger = logging.getLogger("huggingface_hub.utils._http")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def hub_unreachable(error: BaseException) -> bool:
    """Whether a download from the hub failed for want of a network (a name not resolved, no route, a timeout),
    through the causes huggingface_hub (LocalEntryNotFoundError) and datasets (ConnectionError) wrap it in."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain of causes, never a cycle
        if seen is None:
            return False
        names = {c.__name__ for c in type(seen).__mro__}
        if isinstance(seen, (ConnectionError, TimeoutError, socket.gaierror)) or \
                names & {"ConnectError", "ConnectTimeout", "LocalEntryNotFoundError"}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interruptible() -> bool:
    """SIGINT taken as Ctrl-C (KeyboardInterrupt) also where this process inherited it ignored: a
    script's background command (`nohup collapse-hpc run … &`, any `&` of a shell without job
    control) starts so, and then `kill -INT`, a launcher's SIGINT to its units or the Ctrl-C of the
    script's terminal did nothing to it, while its units (which take it) stopped. Whether it was
    ignored. Main thread only."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return True
    return False


@contextmanager
def term_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, `timeout`, a session's end) handled as Ctrl-C: the command cleans up as on
    KeyboardInterrupt (temporaries, a half-built data set, a launcher's units) instead of dying
    where it stands; SIGINT so too where it was inherited ignored (interruptible()). Python takes
    signals in its main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    ignored = interruptible()
    try:
        with main_thread_woken():
            yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


WAKE = signal.SIGURG  # ignored by default; given a handler, it ends the main thread's wait (EINTR)


@contextmanager
def main_thread_woken() -> Iterator[None]:
    """Signals taken at once while the main thread waits in a native call (flock, join, waitpid).
    Linux gives a process's signal to any of its threads that does not block it (on kernel 6.18 about
    a quarter of the time an idle library worker's: pyarrow's, OpenBLAS's). Python runs the handler in
    the main thread, but only once that thread is back in bytecode: a report's job waiting for the
    report folder's lock heard scancel's SIGTERM when the wait ended, past KillWait. Each signal with a
    Python handler writes its number to the wakeup fd; a daemon thread reading it sends WAKE to the
    main thread, whose wait ends and runs the handlers (PEP 475 resumes it where none raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block on a full pipe
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous = signal.signal(WAKE, _woken)
    main = threading.main_thread().ident
    forwarder = threading.Thread(target=_forward, args=(read_end, main), name="signal-wake", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(WAKE, signal.SIG_DFL if previous is None else previous)
        with suppress(BlockingIOError):  # full: the forwarder reads to its end (EOF) instead
            os.write(write_end, b"\0")  # the end, no signal's number: a forked child may keep the pipe open
        os.close(write_end)
        forwarder.join(5)
        os.close(read_end)


def _woken(signum, frame) -> None:
    """WAKE's handler: nothing; its arrival alone ends the main thread's wait."""


def _forward(read_end: int, main: int) -> None:
    while (numbers := os.read(read_end, 64)) and 0 not in numbers:
        if any(n != WAKE for n in numbers):  # WAKE's own byte would wake it again and again
            signal.pthread_kill(main, WAKE)


def heeding_signals(call: Callable[..., T], *args, **kwargs) -> T:
    """call(*args, **kwargs), its signals taken while it runs. Python runs a signal's handler in the main
    thread between bytecodes, so a long native call there (tokenizers' BPE training: its merges are
    minutes on a large corpus) took SIGTERM, SIGINT or USR2 only after it returned; on Slurm past
    KillWait, the job killed where it stood. It runs in a daemon thread (it must release the GIL) while
    the main thread waits, and runs the handlers at once (where the signal reached the worker, once
    main_thread_woken wakes it: term_as_interrupt and a job's stops_when_ending); what one raises
    leaves the call to end with the process, its result unused."""
    if threading.current_thread() is not threading.main_thread():
        return call(*args, **kwargs)
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, call(*args, **kwargs)))
        except BaseException as e:  # noqa: BLE001 - raised again in the waiting thread
            outcome.append((False, e))

    worker = threading.Thread(target=run, name=f"heeding-{getattr(call, '__name__', 'call')}", daemon=True)
    worker.start()
    worker.join()  # a lock's wait, which a signal interrupts to run its handler
    done, value = outcome[0]
    if not done:
        raise value
    return value


def leave_process_group() -> None:
    """End this rank's part in torch.distributed's process group, if it joined one: a barrier (no
    rank leaves while another still has a collective with it under way), then destroy. Left to the
    interpreter's exit, gloo's worker threads may still hold work whose release takes the GIL while
    Python finalizes: "terminate called without an active exception" (SIGABRT) after the rank had
    finished and saved (pytorch/pytorch#179291, #190489). Call it on success only: destroying while
    peers are still in a collective hangs (NCCL's abort is collective; pytorch/torchtitan#1342).
    Never imports torch: a process that never did has no group. Where DeepSpeed adopted the group,
    through its own call, which also drops the groups it keeps (the next engine of this process,
    e.g. `collapse-hpc lm` called again in one process, would otherwise meet a destroyed clone)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if dist.get_world_size() > 1:
        dist.barrier()
    deepspeed = sys.modules.get("deepspeed.comm.comm")
    if deepspeed is not None and getattr(deepspeed, "cdb", None) is not None:
        deepspeed.destroy_process_group()
    else:
        dist.destroy_process_group()
    _forget_groups(dist.ProcessGroup)


def _forget_groups(kind: type) -> None:
    """A group's threads (gloo's) run until its last reference goes, and one still running when the
    interpreter exits may abort the rank after it finished and saved ("terminate called without an
    active exception"; on Slurm the chain's next job then never starts). Functions defined while the
    group existed took it as a default argument (torch.distributed.nn's, DeepSpeed's barrier): they
    now default to None, the group of the day, as they would have had they been imported before it;
    and a finished engine's cycles are freed now."""
    def held(d) -> bool:  # by its type: isinstance on torch's deprecated reduce_op warns
        return issubclass(type(d), kind)

    for f in gc.get_objects():
        if type(f) is not FunctionType:  # by type: isinstance on a dead weak proxy raises ReferenceError
            continue
        defaults, keywords = f.__defaults__ or (), f.__kwdefaults__ or {}
        if any(held(d) for d in defaults):
            f.__defaults__ = tuple(None if held(d) else d for d in defaults)
        if any(held(d) for d in keywords.values()):
            f.__kwdefaults__ = {k: None if held(d) else d for k, d in keywords.items()}
    gc.collect()
