"""Run Slurm jobs inside the Apptainer image: the command submitit starts Python with.

A profile whose `container.image` names a .sif makes every job run as

    apptainer exec --nv --bind <run folder>,<data>,<HF cache>:/hf-cache,<Slurm> \\
        --env PYTHONNOUSERSITE=1,... <image.sif> python -u -m submitit.core._submit <folder>

(`slurm_python` returns everything before `-u`; submitit appends the rest). Three things
matter on a cluster and are why the command looks as it does:
- no --cleanenv: submitit and the distributed setup read SLURM_* inside the job;
- `scontrol` must be reachable inside for submitit's requeue on USR2, so the host's binary,
  its plugin folder, the Slurm config and the munge socket are bound where they exist (on a
  cluster laid out differently, add its paths to `container.binds`);
- the host's ~/.local and the submission folder are visible in the container (Apptainer
  binds $HOME and $PWD), so PYTHONNOUSERSITE=1 and PYTHONSAFEPATH=1 keep Python on the
  image's packages and the image's collapse_hpc.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from collapse_hpc.config import knob
from collapse_hpc.errors import UserError

HF_CACHE = "/hf-cache"  # HF_HOME inside the image (Dockerfile, apptainer.def)

# Where Slurm keeps what `scontrol requeue` needs, on the common layouts (Debian/Ubuntu
# packages, RPM builds, source installs under /usr/local): config, plugins and libslurm,
# the munge socket and library. Bound at the same path when they exist on the submit host.
SLURM_PATHS = (
    "/etc/slurm",
    "/etc/slurm-llnl",
    "/usr/lib/x86_64-linux-gnu/slurm-wlm",
    "/usr/lib/x86_64-linux-gnu/slurm",
    "/usr/lib64/slurm",
    "/usr/lib/slurm",
    "/usr/local/lib/slurm",
    "/usr/lib/x86_64-linux-gnu/libmunge.so.2",
    "/usr/lib64/libmunge.so.2",
    "/run/munge",
    "/var/run/munge",
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class ContainerConfig:
    """The `container:` section of a cluster profile."""

    image: str | None = knob(None, "Apptainer image (.sif) every job's Python runs in; unset: the host's Python")
    binds: list[str] = knob([], "extra bind mounts as apptainer --bind takes them (src[:dst[:opts]]); "
                                "the run folder, data folder, HF cache and Slurm paths are bound already")
    nv: bool = knob(True, "pass --nv (the host's NVIDIA driver and GPUs) to apptainer")
    env: dict[str, str] = knob({}, "environment variables set inside the container (apptainer --env); "
                                   "the host's environment, SLURM_* included, passes through anyway")
    slurm_binds: bool = knob(True, "bind the host's scontrol, Slurm config and munge socket (for requeue)")
    runtime: str = knob("apptainer", "the container command on the nodes (apptainer or singularity)",
                        choices=("apptainer", "singularity"))

    def validate(self):
        for b in self.binds:
            if not b or "," in b or not b.split(":")[0].startswith(("/", "~", "$")):
                raise ValueError(f"binds: {b!r} is not an absolute src[:dst[:opts]] path without commas")
        for k, v in self.env.items():
            if not _ENV_NAME.match(k):
                raise ValueError(f"env: {k!r} is not a valid environment variable name")
            if "," in str(v):  # apptainer --env splits its value at commas
                raise ValueError(f"env: {k} has a comma; set it in the profile's top-level env instead")


def default_hf_home() -> Path:
    """The host's HF cache: $HF_HOME, else ~/.cache/huggingface (what huggingface_hub uses)."""
    from collapse_hpc.machine import hf_home

    return hf_home()


def slurm_host_paths(candidates=SLURM_PATHS) -> list[str]:
    """The host's scontrol and whichever of `candidates` exist, for binding at the same path."""
    found, seen = [], set()
    scontrol = shutil.which("scontrol")
    if scontrol:
        found.append(f"{os.path.realpath(scontrol)}:/usr/bin/scontrol")
    for p in candidates:
        real = os.path.realpath(p)
        if os.path.exists(real) and real not in seen:  # /var/run/munge is /run/munge on most hosts
            seen.add(real)
            found.append(p if real == p else f"{real}:{p}")
    return found


def resolve_image(image: str) -> str:
    """A local .sif or sandbox as an absolute path (UserError if missing); docker:// etc. as given."""
    if "://" in image:
        return image
    path = Path(image).expanduser().resolve()
    if not path.exists():
        raise UserError(f"container image {image} not found (build it with make image && make sif)")
    return str(path)


def check_binds(cfg: ContainerConfig) -> list[str]:
    """UserError for a `binds` source naming a variable not set here (it is expanded here, at submit,
    and would reach apptainer as written); the sources missing on this host, which apptainer would
    refuse at every job's start unless they exist on the compute nodes (node-local storage)."""
    missing = []
    for bind in cfg.binds:
        source = os.path.expandvars(os.path.expanduser(bind.split(":")[0]))
        if "$" in source:
            raise UserError(f"container.binds: {bind}: {source} names a variable not set here (binds are expanded "
                            f"where you submit); set it, or write the path")
        if not os.path.exists(source):
            missing.append(f"container.binds: {bind}: {source} does not exist on this host; every job fails at "
                           f"its start unless it exists on the compute nodes")
    return missing


CACHE_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")  # where the HF cache bound at /hf-cache is


def check_cache_env(env: dict) -> None:
    """UserError for a profile `env` entry that places the HF cache with a variable not set here: the
    cache is bound into the container as expanded where you submit (and made there if missing), so
    the jobs would bind a folder literally named after the variable."""
    for key in CACHE_VARIABLES:
        if key in env:
            value = os.path.expandvars(os.path.expanduser(str(env[key])))
            if "$" in value:
                raise UserError(f"env.{key}: {env[key]} names a variable not set here (stage fetches the "
                                f"models into the HF cache, and submit binds it, as expanded here); set it, or "
                                f"write the path")


def command(cfg: ContainerConfig, run_dir, data_dir=None, hf_home=None, slurm_paths=None,
            dry_run: bool = False, hub_cache=None) -> list[str] | None:
    """The argv that replaces `python` in every job, or None when the profile names no image.

    run_dir and data_dir are bound at their own absolute paths (the engine passes host paths to
    the job); hf_home (default: default_hf_home(); $VARS expand) is bound at /hf-cache, and
    hub_cache (HF_HUB_CACHE, where hub models are; default: hf_home's hub/) at /hf-cache/hub.
    slurm_paths: the Slurm binds (default: found on this host when cfg.slurm_binds).
    dry_run: creates no folder and takes the image as given (submit --dry-run checks it apart)."""
    if not cfg.image:
        return None
    image = cfg.image if dry_run else resolve_image(cfg.image)
    hf_home = Path(os.path.expandvars(str(hf_home or default_hf_home()))).expanduser().resolve()
    hub = Path(os.path.expandvars(str(hub_cache))).expanduser().resolve() if hub_cache else hf_home / "hub"
    if not dry_run:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        for cache in (hf_home, hub):  # a missing bind source fails the job at start
            cache.mkdir(parents=True, exist_ok=True)

    binds = [_same_path(run_dir)]
    if data_dir is not None and Path(data_dir).exists():
        binds.append(_same_path(data_dir))
    binds.append(f"{hf_home}:{HF_CACHE}")
    if hub != hf_home / "hub":  # the models stage fetched, where they are (a profile's own HF_HUB_CACHE)
        binds.append(f"{hub}:{HF_CACHE}/hub")
    if slurm_paths is None:
        slurm_paths = slurm_host_paths() if cfg.slurm_binds else []
    binds += list(slurm_paths)
    binds += [os.path.expandvars(os.path.expanduser(b)) for b in cfg.binds]
    binds = list(dict.fromkeys(binds))  # one folder given twice (data as the run folder) binds once

    # Set, not inherited: the host's HF_HOME and HF_HUB_CACHE (host paths), TORCH_EXTENSIONS_DIR
    # (compiled for the host's torch) and PYTHONPATH (module loads) would otherwise win inside the image.
    env = {"PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1", "PYTHONPATH": "", "HF_HOME": HF_CACHE,
           "HF_HUB_CACHE": f"{HF_CACHE}/hub",
           "TORCH_EXTENSIONS_DIR": f"{HF_CACHE}/torch_extensions", "NUMBA_CACHE_DIR": f"{HF_CACHE}/numba",
           **cfg.env}
    argv = [cfg.runtime, "exec"]
    if cfg.nv:
        argv.append("--nv")
    argv += ["--bind", ",".join(binds)]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    return argv + [image, "python"]


def _same_path(path) -> str:
    """A bind that shows a host folder at the path jobs are given: through a symlink (/scratch ->
    /lustre/scratch) the real folder is bound at the given path."""
    given = Path(path).expanduser().absolute()
    real = given.resolve()
    return str(real) if real == given else f"{real}:{given}"


def slurm_python(cfg: ContainerConfig, run_dir, data_dir=None, hf_home=None, slurm_paths=None,
                 dry_run: bool = False, hub_cache=None) -> str | None:
    """`command` as the shell string submitit's `slurm_python` takes, or None (host Python)."""
    argv = command(cfg, run_dir, data_dir, hf_home, slurm_paths, dry_run=dry_run, hub_cache=hub_cache)
    return shlex.join(argv) if argv else None
