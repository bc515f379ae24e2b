"""The site profile: slurm/site.yaml, this checkout's own cluster profile (ignored by git).

`collapse-hpc profile init` writes a starter from what `sinfo` reports: the default partition
for every job kind, a partition with GPUs for the GPU kinds, time limits within each partition's,
memory and CPUs within its largest node's.
The user then checks it (account, QOS, container image); `submit` uses it when neither --profile
nor the config's `profile:` names one.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.launch.profile import SITE

# partition (the default marked with *), time limit, generic resources, memory (MiB) and CPUs per node
FORMAT = "%P|%l|%G|%m|%c"


def _count(field: str) -> int:
    """sinfo's 21694 or 21694+ (nodes of several sizes: the smallest, and more); 0 when not given."""
    digits = re.match(r"\d+", field.strip())
    return int(digits[0]) if digits else 0


def partitions(sinfo: str) -> list[tuple[str, bool, str, bool, int, int]]:
    """(name, is default, time limit, has GPUs, MiB and CPUs of its largest node) per partition, from
    `sinfo -h -o FORMAT` (memory and CPUs 0 where sinfo gives none)."""
    seen: dict[str, tuple[str, bool, str, bool, int, int]] = {}
    for line in sinfo.splitlines():
        fields = line.strip().split("|")
        if len(fields) not in (3, 5) or not fields[0]:
            continue
        name, limit, gres = fields[:3]
        mem, cpus = (_count(f) for f in (fields[3:] or ["", ""]))
        default = name.endswith("*")
        name = name.rstrip("*")
        before = seen.get(name, (name, False, limit, False, 0, 0))  # one line per node state and size
        seen[name] = (name, default or before[1], limit, "gpu" in gres.lower() or before[3],
                      max(mem, before[4]), max(cpus, before[5]))
    return list(seen.values())


def _mem(part: tuple, want_gib: int) -> str:
    """`want_gib` GiB, or what the partition's largest node has where that is less (sbatch refuses more)."""
    have = part[4]
    if not have or want_gib * 1024 <= have:
        return f"{want_gib}G"
    return f"{have // 1024}G" if have >= 1024 else f"{have}M"


def _cpus(part: tuple, want: int) -> int:
    return min(want, part[5]) if part[5] else want


def _minutes(limit: str, want: int) -> int:
    from collapse_hpc.launch.slurm import limit_minutes

    m = limit_minutes(limit)
    return want if m is None else max(1, min(want, int(m)))


def starter(sinfo: str) -> str:
    """A commented profile for the partitions `sinfo` lists."""
    parts = partitions(sinfo)
    if not parts:
        raise UserError("sinfo lists no partition: write slurm/site.yaml from slurm/example-cluster.yaml by hand")
    default = next((p for p in parts if p[1]), parts[0])
    gpu = next((p for p in parts if p[3] and p[1]), None) or next((p for p in parts if p[3]), None)
    gpu_part, gpus = (gpu, 1) if gpu else (default, 0)
    return f"""# This checkout's cluster profile, written by `collapse-hpc profile init` from sinfo; check it.
# submit uses it when neither --profile nor the config's `profile:` names one. Every key:
# collapse_hpc/launch/profile.py; a commented example: slurm/example-cluster.yaml.
name: site
executor: slurm
partition: {default[0]}            # sinfo's default partition
# account: my-project     # sbatch --account, where the site charges projects
# wckey: my-key           # where the site checks wckeys (unset: no --wckey line)
array_parallelism: 16     # CPU array tasks at once (sbatch --array=…%N)
jobs:
  gpu:                    # one LM generation (OPT-125M: one GPU, minutes)
    partition: {gpu_part[0]}
    time_min: {_minutes(gpu_part[2], 120)}
    gpus_per_node: {gpus}
    cpus_per_task: {_cpus(gpu_part, 8)}
    mem: {_mem(gpu_part, 64)}
  gpu1:                   # one VAE generation
    partition: {gpu_part[0]}
    time_min: {_minutes(gpu_part[2], 120)}
    gpus_per_node: {gpus}
    cpus_per_task: {_cpus(gpu_part, 4)}
    mem: {_mem(gpu_part, 32)}
  cpu:                    # one GMM / Gaussian array task
    time_min: {_minutes(default[2], 60)}
    cpus_per_task: {_cpus(default, 4)}
    mem: {_mem(default, 8)}
  aggregate:
    time_min: {_minutes(default[2], 30)}
    cpus_per_task: {_cpus(default, 2)}
    mem: {_mem(default, 16)}
# container:
#   image: /path/to/collapse-hpc.sif   # make image && make sif
env:
  HF_HUB_OFFLINE: "1"     # compute nodes often have no internet: collapse-hpc stage fills the cache first
  # HF_HOME: /scratch/$USER/hf-cache   # the HF cache jobs use (shared storage)
"""


def init(path: Path = SITE, force: bool = False) -> int:
    from collapse_hpc.launch.slurm import _slurm
    from collapse_hpc.store import atomic

    if path.is_dir():  # --force would swap a file in for the folder: refused with a temporary file's name
        raise UserError(f"{path} is a folder: --out names the profile file to write, e.g. {path / 'site.yaml'}")
    if path.exists() and not force:
        raise UserError(f"{path} exists; edit it, or write a new starter with --force")
    text = starter(_slurm(["sinfo", "-h", "-o", FORMAT]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)
    # --profile names it: a config's own `profile:` (paper.yaml's) comes before the site's, and --out's file is
    # never picked by itself
    print(f"wrote {path}: check partition, time limits, account and container, then: "
          f"collapse-hpc submit CONFIG --profile {shlex.quote(str(path))} --dry-run")
    return 0
