"""make image / make sif: a clear one-line message and exit 2 without docker, an engine or
apptainer; otherwise the build commands with the version, commit and tags of this checkout.
No image is built here (no Docker engine): the commands are recorded by stand-in docker and
apptainer executables placed first on PATH."""
import os
import shutil
import stat
import subprocess

import pytest

from tests.containers.recipes import REPO, make_recipe

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make(target, path, *args):
    env = {**os.environ, "PATH": path}
    return subprocess.run([MAKE, "--no-print-directory", target, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def _tools(tmp_path, **scripts) -> str:
    """A PATH with the basic tools the recipes use, plus the given stand-in executables."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sed", "git", "cat", "env"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    for name, body in scripts.items():
        exe = bindir / name
        exe.write_text("#!/bin/bash\n" + body)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(bindir)


def _version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO).returncode != 0
    return head + ("-dirty" if dirty else "")


def test_image_without_docker(tmp_path):
    r = _make("image", _tools(tmp_path))
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == ("make image: docker not found; build the image on a machine "
                                        "with Docker (README: 1. Build the image (Containers))")


def test_image_without_an_engine(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("needs a docker client with no engine behind it (as on the dev and CI machines)")
    r = _make("image", os.environ["PATH"])
    assert r.returncode == 2
    assert r.stderr.startswith("make image: no Docker engine answers")


def test_sif_without_apptainer(tmp_path):
    r = _make("sif", _tools(tmp_path))
    assert r.returncode == 2
    assert r.stderr.splitlines()[0].startswith("make sif: apptainer not found")


def test_image_build_command(tmp_path):
    log = tmp_path / "docker.log"
    path = _tools(tmp_path, docker=f'[ "$1" = info ] && exit 0\nprintf "%s\\n" "$@" > {log}\n')
    r = _make("image", path, "IMAGE=reg.example/me/collapse-hpc")
    assert r.returncode == 0, r.stderr
    v = _version()
    assert log.read_text().splitlines() == [
        "build", "--platform", "linux/amd64", "--build-arg", f"VERSION={v}", "--build-arg", f"GIT_COMMIT={_commit()}",
        "-t", f"reg.example/me/collapse-hpc:{v}", "-t", "reg.example/me/collapse-hpc:latest", "."]
    r = _make("image", path, "BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime")
    assert "--build-arg\nBASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime\n" in log.read_text()
    assert f"collapse-hpc:{_version()}" in log.read_text() and "TORCH_GUARD" not in log.read_text()
    # an NGC base image keeps its own torch: the guard's switch reaches the build
    r = _make("image", path, "BASE_IMAGE=nvcr.io/nvidia/pytorch:25.11-py3", "TORCH_GUARD=warn")
    assert r.returncode == 0, r.stderr
    assert ("--build-arg\nBASE_IMAGE=nvcr.io/nvidia/pytorch:25.11-py3\n--build-arg\nTORCH_GUARD=warn\n"
            in log.read_text())


def test_ci_builds_and_uses_the_image():
    assert make_recipe("image-test") == ["bash tests/containers/image/image-test.sh"]
    assert any(line.split("#")[0].split() == ["timed", "make", "image-test"]
               for line in (REPO / ".ci" / "run").read_text().splitlines())


def test_sif_build_command(tmp_path):
    log = tmp_path / "apptainer.log"
    v = _version()
    path = _tools(tmp_path,
                  docker=f'[ "$1 $2" = "image inspect" ] && [ "${{@: -1}}" = collapse-hpc:{v} ] '
                         '&& echo abc123 && exit 0\nexit 1\n',
                  apptainer=f'printf "%s\\n" "$@" > {log}\n')
    r = _make("sif", path)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == [
        "build", "--force", "--build-arg", f"IMAGE=collapse-hpc:{v}", "--build-arg", f"VERSION={v}",
        "--build-arg", "GIT_COMMIT=abc123", f"collapse-hpc-{v}.sif", "apptainer.def"]
    # the image must exist in the local engine first
    r = _make("sif", path, "IMAGE=not-built")
    assert r.returncode == 2 and f"make sif: Docker image not-built:{v} not found (make image first)" in r.stderr


def test_paths_with_dollars_quotes_and_spaces_reach_the_command_as_written(tmp_path):
    # make expanded a `$` in RUN='runs/$x' as its own (empty) variable: the command ran on runs/, and
    # the default RUN of a config named with a space was cut at it (notdir splits words)
    import shlex

    config, run, profile = str(tmp_path / "my 'cfg' $HOME.v2.yaml"), "runs/a b $x $(shell echo hi)", "p $y.yaml"

    def argv(target, *assigns, env=None):
        r = subprocess.run([MAKE, "-n", "-s", "--no-print-directory", "-o", ".venv/.installed", target, *assigns],
                           cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [shlex.split(line)[1:] for line in r.stdout.splitlines() if line.startswith(".venv/bin/collapse-hpc")]

    for target in ("status", "verify", "aggregate", "cancel"):
        assert argv(target, f"RUN={run}") == [[target, run]]
    assert argv("status", env={"RUN": run}) == [["status", run]]
    assert argv("submit", f"CONFIG={config}", f"PROFILE={profile}") == [
        ["submit", config, "--run", "runs/my 'cfg' $HOME.v2", "--profile", profile]]
    assert argv("demo", f"CONFIG={config}", f"RUN={run}")[1:] == [["run", config, "--run", run], ["aggregate", run]]
