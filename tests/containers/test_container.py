"""The command every Slurm job of a containerised profile runs: generated from a sample
profile and asserted exactly, then followed through submitit into the sbatch script."""
import os
import shlex
import stat
from types import SimpleNamespace

import pytest

from collapse_hpc.config import build
from collapse_hpc.errors import ConfigError, UserError
from collapse_hpc.launch import profile as profiles
from collapse_hpc.launch.container import ContainerConfig, command, slurm_host_paths, slurm_python

SLURM = ["/usr/bin/scontrol:/usr/bin/scontrol", "/etc/slurm", "/run/munge"]
ENV = ["--env", "PYTHONNOUSERSITE=1", "--env", "PYTHONSAFEPATH=1", "--env", "PYTHONPATH=",
       "--env", "HF_HOME=/hf-cache", "--env", "HF_HUB_CACHE=/hf-cache/hub",
       "--env", "TORCH_EXTENSIONS_DIR=/hf-cache/torch_extensions",
       "--env", "NUMBA_CACHE_DIR=/hf-cache/numba"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A cluster's folders: image, scratch with runs, data and the HF cache."""
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "collapse-hpc.sif").write_bytes(b"SIF")
    (tmp_path / "scratch" / "data").mkdir(parents=True)
    prof = tmp_path / "cluster.yaml"
    prof.write_text(f"""
name: sample
partition: gpu
container:
  image: {tmp_path}/images/collapse-hpc.sif
  binds:
    - $SCRATCH
    - /opt/site/licenses:/licenses:ro
  env:
    NCCL_DEBUG: WARN
""")
    return tmp_path, profiles.load(prof)


def test_sample_profile_command_line(site):
    root, prof = site
    assert isinstance(prof.container, ContainerConfig)
    run, data, hf = root / "scratch/runs/paper", root / "scratch/data", root / "scratch/hf"
    line = slurm_python(prof.container, run, data, "$SCRATCH/hf", slurm_paths=SLURM)
    assert line == shlex.join([
        "apptainer", "exec", "--nv",
        "--bind", ",".join([str(run), str(data), f"{hf}:/hf-cache", *SLURM, str(root / "scratch"),
                            "/opt/site/licenses:/licenses:ro"]),
        *ENV, "--env", "NCCL_DEBUG=WARN",
        str(root / "images/collapse-hpc.sif"), "python"])
    assert "--cleanenv" not in line and "--containall" not in line  # SLURM_* must reach the job
    assert run.is_dir() and hf.is_dir()  # bind sources exist before the job starts


def test_symlinked_folders_are_bound_at_the_paths_jobs_are_given(tmp_path):
    """/scratch -> /lustre/scratch: the job is handed /scratch/... paths, so they must exist inside."""
    (tmp_path / "img.sif").write_bytes(b"SIF")
    (tmp_path / "lustre" / "data").mkdir(parents=True)
    (tmp_path / "scratch").symlink_to(tmp_path / "lustre")
    run, data = tmp_path / "scratch" / "run", tmp_path / "scratch" / "data"
    cfg = ContainerConfig(image=str(tmp_path / "img.sif"), slurm_binds=False)
    argv = command(cfg, run, data, tmp_path / "hf")
    binds = argv[argv.index("--bind") + 1].split(",")
    assert f"{tmp_path / 'lustre' / 'run'}:{run}" in binds and f"{tmp_path / 'lustre' / 'data'}:{data}" in binds


def test_no_gpu_no_data_no_slurm_binds_singularity(tmp_path):
    (tmp_path / "img.sif").write_bytes(b"SIF")
    cfg = ContainerConfig(image=str(tmp_path / "img.sif"), nv=False, slurm_binds=False, runtime="singularity")
    argv = command(cfg, tmp_path / "run", tmp_path / "no-data-here", tmp_path / "hf")
    assert argv == ["singularity", "exec", "--bind", f"{tmp_path}/run,{tmp_path}/hf:/hf-cache",
                    *ENV, str(tmp_path / "img.sif"), "python"]


def test_relative_image_and_data_inside_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "img.sif").write_bytes(b"SIF")
    (tmp_path / "run" / "data").mkdir(parents=True)
    argv = command(ContainerConfig(image="img.sif"), "run", "run", "hf", slurm_paths=[])
    assert argv[argv.index("--bind") + 1] == f"{tmp_path}/run,{tmp_path}/hf:/hf-cache"  # listed once
    assert argv[-2:] == [str(tmp_path / "img.sif"), "python"]


def test_no_image_means_host_python(tmp_path):
    assert slurm_python(ContainerConfig(), tmp_path / "run") is None


def test_missing_image_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match=r"container image .*missing.sif not found \(build it with make image"):
        slurm_python(ContainerConfig(image=str(tmp_path / "missing.sif")), tmp_path / "run", slurm_paths=[])


@pytest.mark.parametrize("section, key", [
    ({"binds": ["/a,/b"]}, "binds"),
    ({"binds": ["relative/path"]}, "binds"),
    ({"env": {"BAD-NAME": "1"}}, "env"),
    ({"env": {"NCCL_SOCKET_IFNAME": "ib0,ib1"}}, "env: NCCL_SOCKET_IFNAME has a comma"),
    ({"runtime": "docker"}, "runtime"),
    ({"imgae": "x.sif"}, "imgae"),
])
def test_bad_container_section(tmp_path, section, key):
    with pytest.raises(ConfigError, match=key):
        build(ContainerConfig, section, "cluster.yaml", prefix="container.")


def test_slurm_host_paths_found_and_deduplicated(tmp_path):
    (tmp_path / "run" / "munge").mkdir(parents=True)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to(tmp_path / "run")
    (tmp_path / "etc-slurm-real").mkdir()
    (tmp_path / "etc-slurm").symlink_to(tmp_path / "etc-slurm-real")
    found = slurm_host_paths([str(tmp_path / "etc-slurm"), str(tmp_path / "nope"),
                              str(tmp_path / "run" / "munge"), str(tmp_path / "var" / "run" / "munge")])
    found = [f for f in found if not f.endswith(":/usr/bin/scontrol")]  # depends on this host
    assert found == [f"{tmp_path}/etc-slurm-real:{tmp_path}/etc-slurm", f"{tmp_path}/run/munge"]


def test_the_sbatch_script_runs_the_job_in_the_container(site, monkeypatch):
    """Through the launch layer and submitit: the srun line of the generated sbatch script."""
    root, prof = site
    fake = root / "bin"
    fake.mkdir()
    srun = fake / "srun"  # submitit refuses to build a SlurmExecutor where no srun is on PATH
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_HOME", str(root / "scratch" / "hf"))
    from collapse_hpc.launch.slurm import Submitter

    run_dir = root / "scratch" / "runs" / "paper"
    store = SimpleNamespace(root=run_dir, logs=run_dir / "logs")
    sub = Submitter(store, SimpleNamespace(data_dir=str(root / "scratch" / "data")), prof)
    ex = sub.executor("gpu")
    script = ex._make_submission_file_text(ex._submitit_command_str, "uid")
    srun_line = [line for line in script.splitlines() if line.startswith("srun ")][-1]
    expected = slurm_python(prof.container, run_dir, root / "scratch" / "data", root / "scratch" / "hf")
    assert srun_line.endswith(f" {expected} -u -m submitit.core._submit {store.logs / 'submitit'}")
    assert shlex.split(srun_line)[shlex.split(srun_line).index("apptainer"):][:3] == ["apptainer", "exec", "--nv"]


def test_a_profiles_own_hub_cache_is_what_the_jobs_see(site, monkeypatch):
    # stage and submit's check look for the model in the profile's HF_HUB_CACHE; the jobs saw only
    # HF_HOME at /hf-cache, and the host's HF_HUB_CACHE path, not bound, leaked into the container
    root, prof = site
    prof.env.update({"HF_HOME": str(root / "scratch" / "hf"), "HF_HUB_CACHE": "$SCRATCH/models"})
    monkeypatch.setenv("SCRATCH", str(root / "scratch"))
    monkeypatch.setenv("HF_HUB_CACHE", "/elsewhere/on/the/login/node")
    from collapse_hpc.launch.slurm import Submitter

    run_dir = root / "scratch" / "runs" / "paper"
    store = SimpleNamespace(root=run_dir, logs=run_dir / "logs")
    sub = Submitter(store, SimpleNamespace(data_dir=str(root / "scratch" / "data")), prof, dry_run=True)
    argv = shlex.split(sub.python)
    binds = argv[argv.index("--bind") + 1].split(",")
    assert f"{root / 'scratch' / 'hf'}:/hf-cache" in binds and f"{root / 'scratch' / 'models'}:/hf-cache/hub" in binds
    assert "HF_HUB_CACHE=/hf-cache/hub" in argv


def test_docs_containers_shows_every_variable_a_job_is_given(tmp_path):
    # its command lacked --env HF_HUB_CACHE=/hf-cache/hub, which every job is given
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "containers.md").read_text()
    shown = text.split("apptainer exec --nv --bind <run folder>", 1)[1].split("```", 1)[0]
    (tmp_path / "img.sif").write_bytes(b"SIF")
    argv = command(ContainerConfig(image=str(tmp_path / "img.sif")), tmp_path / "run", tmp_path / "run",
                   tmp_path / "hf", slurm_paths=[])
    given = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert given and [e for e in given if f"--env {e} " not in shown.replace("\\\n", "")] == []
