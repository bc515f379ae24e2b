"""benchmarks/gpu.sh and gpu_wheels.sh: what they do before any GPU work (the GPU machine's minutes
are few, so a missing wheel must stop the run at once, and the wheels must build in any checkout)."""
import os
import re
import shutil
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
MACHINE_HAS = {"torch", "numpy", "ninja", "psutil", "tqdm", "packaging"}  # in the GPU image, seen 2026-12-04


def _name(text):
    return re.sub(r"[-_.]+", "-", text).lower()


def _carried_needs(*roots):
    """The installed packages that roots need at run time, less the GPU machine's own: what must travel."""
    needed, todo = set(), [_name(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in needed or name in MACHINE_HAS:
            continue
        needed.add(name)
        for line in metadata.requires(name) or []:
            need = Requirement(line)
            if need.marker is None or need.marker.evaluate({"extra": ""}):
                todo.append(_name(need.name))
    return needed


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_gpu_wheels_builds_in_a_git_worktree_with_every_carried_pin(tmp_path):
    # a worktree's .git is a file: the script stopped on 'mkdir: cannot create directory .git'
    main = tmp_path / "main"
    (main / "benchmarks").mkdir(parents=True)
    for name in ("benchmarks/gpu_wheels.sh", "requirements.lock", ".gitignore"):
        shutil.copy(REPO / name, main / name)
    _git(main, "init", "-q")
    _git(main, "add", ".")
    _git(main, "commit", "-q", "-m", "copy")
    _git(main, "worktree", "add", "-q", str(tmp_path / "wt"))
    calls = tmp_path / "pip-calls"
    pip = tmp_path / "python"  # stands in for the interpreter's pip (the registry is not a test's)
    pip.write_text(f'#!/bin/sh\necho "$@" >>{calls}\n')
    pip.chmod(pip.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(["bash", str(tmp_path / "wt" / "benchmarks" / "gpu_wheels.sh")],
                          env={**os.environ, "PYTHON": str(pip)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    asked = calls.read_text()
    lock = (REPO / "requirements.lock").read_text()
    # deepspeed imports einops, msgpack and cpuinfo at once: without their wheels gpu.sh stopped there
    for name in _carried_needs("deepspeed", "submitit"):
        version = re.search(rf"^{name}==(\S+)", lock, flags=re.M).group(1)
        assert f" {name}=={version}" in asked, name
    assert (tmp_path / "wt" / ".whl").is_dir()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path / "wt", capture_output=True,
                          text=True).stdout == ""  # the wheels' folder is ignored


def test_gpu_sh_without_deepspeed_stops_before_the_first_step(tmp_path):
    # it ran every step, each failing on the missing import: minutes of a lent GPU for nothing
    copy = tmp_path / "repo"
    (copy / "benchmarks").mkdir(parents=True)
    shutil.copy(REPO / "benchmarks" / "gpu.sh", copy / "benchmarks" / "gpu.sh")
    (tmp_path / "shadow" / "deepspeed").mkdir(parents=True)
    (tmp_path / "shadow" / "deepspeed" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'deepspeed'\")\n")
    done = subprocess.run(["bash", str(copy / "benchmarks" / "gpu.sh"), str(tmp_path / "out")],
                          env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "shadow"),
                               "TINY": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "== train" not in done.stdout
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("gpu.sh: ") and "gpu_wheels.sh" in errors[0]
    assert "No module named 'deepspeed'" in errors[0]
