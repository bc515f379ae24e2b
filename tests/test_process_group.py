"""machine.leave_process_group: a rank that leaves its group keeps none of gloo's threads running."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, warnings
import torch.distributed as dist
os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
dist.init_process_group("gloo")

def barrier(group=dist.group.WORLD):  # defined while the group exists, as DeepSpeed's barrier is
    return group

def reduce(*, group=dist.group.WORLD):
    return group

from collapse_hpc.machine import leave_process_group

warnings.simplefilter("error")  # isinstance on torch's deprecated reduce_op warns: never done
leave_process_group()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(barrier(), reduce(), [n for n in names if "gloo" in n])
"""


def test_leaving_frees_the_group_that_functions_took_as_a_default(tmp_path):
    """A function defined while the group existed held it as a default argument, and with it gloo's
    threads, into the interpreter's exit (where they could abort the finished rank): it defaults to
    None after, and no gloo thread is left."""
    from collapse_hpc.machine import free_port

    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PORT": str(free_port())})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "None None []", out.stdout


def test_forgetting_groups_passes_over_a_dead_weak_proxy():
    """gc's objects may hold a weak proxy whose referent is gone, on which isinstance raises
    ReferenceError (it asks the proxy for __class__): _forget_groups tells functions by their type
    alone, and resets the defaults still."""
    import weakref

    from collapse_hpc.machine import _forget_groups

    class Group:
        pass

    def barrier(group=Group()):
        return group

    def reduce(*, group=Group()):
        return group

    dead = [weakref.proxy(Group())]  # its referent goes at once: only the proxy is left
    with pytest.raises(ReferenceError):
        dead[0].__class__
    _forget_groups(Group)
    assert barrier() is None and reduce() is None
