"""Cluster profiles (slurm/*.yaml): where and with what resources each kind of job runs.

A profile names the cluster-wide settings (partition, account, qos, container, environment,
setup lines) and, per job kind, the resources: `gpu` (a multi-GPU DeepSpeed generation),
`gpu1` (a single-GPU generation), `cpu` (an array task) and `aggregate` (the final report).
Loaded with the same validation as run configs: an unknown key or a bad value is one line.
A profile also picks the back-end: `collapse-hpc run CONFIG --profile P` without --executor
uses P's `executor` (slurm unless the profile says otherwise).

Which profile a submission uses (pick): --profile, else the config's `profile:`, else the
site profile slurm/site.yaml (ignored by git; `collapse-hpc profile init` writes a starter
from sinfo), else none: refused, naming the three ways.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from collapse_hpc import yamlfile
from collapse_hpc.config import EXECUTORS, build, knob
from collapse_hpc.errors import ConfigError, UserError
from collapse_hpc.launch.container import ContainerConfig as Container
from collapse_hpc.store.reads import refusals

KINDS = ("gpu", "gpu1", "cpu", "aggregate")
# sbatch --signal: "the signal may be sent up to 60 seconds earlier than specified" (its timer's
# resolution); measured here: time_min 1, USR2 at 30 s came 8 s and 19 s after the job started
SIGNAL_SLACK_S = 60
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SBATCH_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
SITE = Path("slurm") / "site.yaml"  # the cluster's own profile, made once per checkout

# sbatch options the tool writes itself; a profile's `sbatch:` extras replacing one would silently
# break what it is there for
RESERVED = {
    "dependency": "the afterok chaining of generations",
    "output": "the job logs that status shows",
    "error": "the job logs that status shows",
    "signal": "USR2 before the time limit (checkpoint and requeue)",
    "array": "the array experiments' tasks",
    "export": "the environment that the ranks and the container read",
}


def reserved(key: str) -> str | None:
    """The reserved option an extra sbatch key would set, or None. submitit writes `_` as `-`,
    and sbatch takes any unambiguous prefix of a long option (`--dep` is `--dependency`)."""
    k = key.replace("_", "-").lower()
    return next((r for r in RESERVED if r.startswith(k)), None)


@dataclass
class Resources:
    """What one job of a kind asks Slurm for."""

    time_min: int = knob(60, "time limit in minutes; on USR2 before it the job checkpoints and requeues", min=1)
    nodes: int = knob(1, "nodes per job (gpu kind only may use several)", min=1)
    gpus_per_node: int = knob(0, "GPUs per node; one rank per GPU (tasks_per_node = gpus_per_node)", min=0)
    tasks_per_node: int | None = knob(None, "ranks per node when there are no GPUs "
                                      "(default: the experiment's `ranks`, else 1)", min=1)
    cpus_per_task: int = knob(1, "CPU cores per rank", min=1)
    mem: str | None = knob(None, "memory per node, as sbatch --mem takes it (e.g. 64G); unset: the cluster default")
    partition: str | None = knob(None, "partition for this kind (default: the profile's)")
    qos: str | None = knob(None, "quality of service for this kind (default: the profile's)")
    sbatch: dict[str, str] = knob({}, "extra sbatch arguments for this kind, e.g. {constraint: a100}")


@dataclass
class Jobs:
    gpu: Resources = knob(Resources(time_min=720, gpus_per_node=1), "multi-GPU DeepSpeed generations (lm)")
    gpu1: Resources = knob(Resources(time_min=240, gpus_per_node=1), "single-GPU generations (vae)")
    cpu: Resources = knob(Resources(time_min=60), "CPU array tasks (gmm, gaussian)")
    aggregate: Resources = knob(Resources(time_min=30), "the final aggregation job (tables, figures, page)")

    def validate(self):
        for kind in ("gpu1", "cpu", "aggregate"):
            if getattr(self, kind).nodes != 1:
                raise ValueError(f"{kind}.nodes: only gpu jobs may span several nodes")
        if self.gpu1.gpus_per_node > 1:
            raise ValueError("gpu1.gpus_per_node: a gpu1 job uses one GPU (0 on a CPU-only cluster)")
        for kind in ("cpu", "aggregate"):
            if getattr(self, kind).gpus_per_node:
                raise ValueError(f"{kind}.gpus_per_node: {kind} jobs use no GPU")


@dataclass
class Profile:
    name: str = knob("cluster", "a name for the cluster, shown by submit and status (left out: the file's name, load)")
    executor: str = knob("slurm", "back-end of `run --profile THIS` without --executor: slurm (submit), "
                         "local or debug", choices=EXECUTORS)
    partition: str | None = knob(None, "default partition (unset: the cluster's default)")
    account: str | None = knob(None, "account jobs are charged to")
    qos: str | None = knob(None, "default quality of service")
    jobs: Jobs = knob(Jobs(), "resources per job kind: gpu, gpu1, cpu, aggregate")
    array_parallelism: int = knob(32, "array tasks running at once (sbatch --array=…%N)", min=1)
    signal_delay_s: int = knob(120, "USR2 this many seconds before the time limit: checkpoint and requeue", min=1)
    max_requeues: int = knob(5, "requeues after a time limit before a job counts as failed (submitit's "
                            "max_num_timeout; requeues after a preemption are not counted)", min=0)
    kill_on_invalid_dep: bool = knob(True, "cancel jobs whose afterok dependency failed (sbatch --kill-on-invalid-dep)")
    container: Container = knob(Container(), "container the jobs run in (image, binds)")
    sbatch: dict[str, str] = knob({}, "extra sbatch arguments for every job, e.g. {mail-type: FAIL}; not the "
                                  "ones collapse-hpc sets itself: " + ", ".join(RESERVED))
    wckey: str | None = knob(None, "workload characterisation key of every job (sbatch --wckey); unset: none "
                             "(submitit's default 'submitit' is left out: clusters that check wckeys refuse it)")
    env: dict[str, str] = knob({}, "environment variables exported in every job")
    setup: list[str] = knob([], "shell lines run before each job (module loads, venv activation)")
    python: str | None = knob(None, "Python command on the nodes (default: this Python; ignored with a container)")

    def validate(self):
        """Keys that become `export NAME=…` and `#SBATCH --KEY=…` lines must be names (values
        without control characters are checked for every string of a profile)."""
        for k in self.env:
            if not ENV_NAME.fullmatch(k):
                raise ValueError(f"env.{k}: not a valid environment variable name")
        for where, extra in [("sbatch", self.sbatch)] + [(f"jobs.{kind}.sbatch", self.resources(kind).sbatch)
                                                         for kind in KINDS]:
            for k in extra:
                if not SBATCH_KEY.fullmatch(k):
                    raise ValueError(f"{where}.{k}: not an sbatch option name (letters, digits, - and _)")
                if r := reserved(k):
                    raise ValueError(f"{where}.{k}: would replace --{r}, which collapse-hpc sets itself for "
                                     f"{RESERVED[r]}; remove it")
        for kind in KINDS:  # Slurm checks limits every SIGNAL_SLACK_S: USR2 may come that much early
            limit = self.resources(kind).time_min
            if self.signal_delay_s + SIGNAL_SLACK_S >= limit * 60:
                raise ValueError(f"signal_delay_s: {self.signal_delay_s} s, plus the {SIGNAL_SLACK_S} s Slurm may "
                                 f"signal early, is not shorter than jobs.{kind}.time_min ({limit} min): a {kind} "
                                 f"job could be signalled as it starts and requeue itself until max_requeues "
                                 f"without getting on; lower it or raise the time limit")

    def resources(self, kind: str) -> Resources:
        if kind not in KINDS:
            raise ConfigError(f"profile {self.name}: no job kind {kind!r} (kinds: {', '.join(KINDS)})")
        return getattr(self.jobs, kind)


def pick(given: str | None, configured: str | None, config: str) -> str:
    """The profile of a submission: --profile, else the config's `profile:`, else the site profile."""
    if given or configured:
        return str(given or configured)
    if SITE.is_file():
        return str(SITE)
    raise UserError(f"{config}: no cluster profile: give --profile P (make submit PROFILE=P), set `profile: P` in "
                    f"the config, or write {SITE} once (collapse-hpc profile init writes a starter from sinfo)")


@contextlib.contextmanager
def job_environment(prof: Profile | None, only: tuple[str, ...] | None = None):
    """os.environ as the profile's jobs see it (its `env` over this shell's, $VARS expanded; of the
    names in `only` when given), for the checks of what jobs will load: e.g. a model in the HF cache
    of the jobs' HF_HOME, not this shell's."""
    saved = dict(os.environ)
    try:
        for k, v in (prof.env if prof else {}).items():
            if only is None or k in only:
                os.environ[k] = os.path.expanduser(os.path.expandvars(str(v)))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def jobs_caches(prof: Profile | None) -> tuple[Path, Path]:
    """(HF home, hub cache) as the profile's jobs see them: its env's HF_HOME / HF_HUB_CACHE over this shell's."""
    from collapse_hpc.machine import hf_home, hub_cache

    with job_environment(prof, only=("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME")):
        return hf_home(), hub_cache()


def load(path: str | Path) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {yamlfile.not_found(path, 'cluster profile')} "
                          f"(see slurm/local.yaml, slurm/example-cluster.yaml)")
    with refusals(path, "cluster profile", "nothing is done; it is done"):
        raw = yamlfile.load_mapping(path, "cluster profile")
    raw.setdefault("name", path.stem)
    return build(Profile, raw, str(path))
