"""apptainer.def: parses (spython), builds from the Docker image, and has the sections jobs
and `make sif` rely on. Its %environment and %test scripts are run here, on the host's
Python, the way Apptainer runs them (sh), with the build arguments filled in."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from spython.main.parse.parsers import SingularityParser

from tests.containers.recipes import REPO, def_sections, dockerfile_instructions

DEF = REPO / "apptainer.def"
REQUIRED = {"arguments", "environment", "runscript", "test", "labels"}


def _filled(text: str, **args) -> str:
    """Apptainer's build-argument templating: {{ NAME }} -> value."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: args[m.group(1)], text)


def test_parses_with_spython():
    recipe = SingularityParser(str(DEF)).recipe["spython-base"]
    assert recipe.cmd == 'exec collapse-hpc "$@"'
    assert "PYTHONNOUSERSITE=1" in recipe.environ
    labels = dict(line.split(None, 1) for line in recipe.labels)
    assert labels["org.opencontainers.image.version"] == "{{ VERSION }}"
    assert labels["org.opencontainers.image.revision"] == "{{ GIT_COMMIT }}"
    assert recipe.test  # spython turns %test into a script


def test_header_sections_and_build_arguments():
    header, sections = def_sections()
    assert header["Bootstrap"] in ("docker-daemon", "docker-archive")
    assert header["From"] == "{{ IMAGE }}"
    assert REQUIRED <= set(sections)
    defaults = dict(line.strip().split("=", 1) for line in sections["arguments"].splitlines() if "=" in line)
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", DEF.read_text()))
    assert used == set(defaults) == {"IMAGE", "VERSION", "GIT_COMMIT"}
    assert "--cleanenv" not in DEF.read_text().split("%runscript")[1]  # jobs need SLURM_*


def test_environment_matches_the_dockerfile():
    """Sourced as Apptainer does (sh): same HF cache and flags as the Docker image's ENV."""
    _, sections = def_sections()
    script = _filled(sections["environment"], GIT_COMMIT="abc123") + "\nenv\n"
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "TORCH_EXTENSIONS_DIR")}
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["sh", "-c", script], env=clean, capture_output=True, text=True, check=True).stdout.splitlines()
        if "=" in line)
    docker = {}
    for w, a in dockerfile_instructions():
        if w == "ENV":
            docker.update(dict(re.findall(r"(\w+)=(\S+)", a)))
    for key in ("PYTHONNOUSERSITE", "HF_HOME", "TORCH_EXTENSIONS_DIR", "TOKENIZERS_PARALLELISM", "MPLBACKEND"):
        assert env[key] == docker[key], key
    assert env["COLLAPSE_HPC_GIT_COMMIT"] == "abc123"


@pytest.mark.slow
def test_test_section_passes_on_the_host_environment(tmp_path):
    """%test imports the stack, runs `collapse-hpc --version` and, with no GPU here, takes the
    CPU branch; run with this venv first on PATH, as the image's Python is in the container."""
    _, sections = def_sections()
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    r = subprocess.run(["sh", "-c", sections["test"]], env=env, capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"collapse-hpc \d+\.\d+", r.stdout)
    if subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode:
        assert "no GPU visible" in r.stdout


def test_test_section_fails_when_an_import_fails(tmp_path):
    """%test is a real check: a missing package stops it with a non-zero status."""
    _, sections = def_sections()
    script = sections["test"].replace("import collapse_hpc,", "import collapse_hpc_missing_package,", 1)
    assert script != sections["test"]
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"]}
    r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode != 0 and "collapse_hpc_missing_package" in r.stderr
