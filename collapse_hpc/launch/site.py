"""The site profile: slurm/site.yaml, this checkout's own cluster profile (ignored by git).

`collapse-hpc profile init` writes a starter from what `sinfo` reports: the default partition
for every job kind, a partition with GPUs for the GPU kinds, time limits within each partition's.
The user then checks it (account, QOS, container image); `submit` uses it when neither --profile
nor the config's `profile:` names one.
"""
from __future__ import annotations

from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.launch.profile import SITE

FORMAT = "%P|%l|%G"  # partition (the default marked with *), time limit, generic resources


def partitions(sinfo: str) -> list[tuple[str, bool, str, bool]]:
    """(name, is default, time limit, has GPUs) per partition, from `sinfo -h -o FORMAT`."""
    seen: dict[str, tuple[str, bool, str, bool]] = {}
    for line in sinfo.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3 or not fields[0]:
            continue
        name, limit, gres = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = "gpu" in gres.lower() or (name in seen and seen[name][3])  # one line per node state
        seen[name] = (name, default or (name in seen and seen[name][1]), limit, gpus)
    return list(seen.values())


def _minutes(limit: str, want: int) -> int:
    from collapse_hpc.launch.slurm import _minutes as parse

    m = parse(limit)
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
    cpus_per_task: 8
    mem: 64G
  gpu1:                   # one VAE generation
    partition: {gpu_part[0]}
    time_min: {_minutes(gpu_part[2], 120)}
    gpus_per_node: {gpus}
    cpus_per_task: 4
    mem: 32G
  cpu:                    # one GMM / Gaussian array task
    time_min: {_minutes(default[2], 60)}
    cpus_per_task: 4
    mem: 8G
  aggregate:
    time_min: {_minutes(default[2], 30)}
    cpus_per_task: 2
    mem: 16G
# container:
#   image: /path/to/collapse-hpc.sif   # make image && make sif
env:
  HF_HUB_OFFLINE: "1"     # compute nodes often have no internet: collapse-hpc stage fills the cache first
  # HF_HOME: /scratch/$USER/hf-cache   # the HF cache jobs use (shared storage)
"""


def init(path: Path = SITE, force: bool = False) -> int:
    from collapse_hpc.launch.slurm import _slurm
    from collapse_hpc.store import atomic

    if path.exists() and not force:
        raise UserError(f"{path} exists; edit it, or write a new starter with --force")
    text = starter(_slurm(["sinfo", "-h", "-o", FORMAT]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)
    print(f"wrote {path}: check partition, time limits, account and container, then: "
          f"collapse-hpc submit CONFIG --dry-run")
    return 0
