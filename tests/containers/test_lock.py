"""One lock for every environment: make setup (and so CI), the Dockerfile and apptainer.def
install from requirements.lock and nothing by name, so a dependency cannot be added in one
place only. The one difference allowed: the containers take the CUDA torch of the base image
instead of the lock's CPU wheel, and it must be the locked version."""
import re
import subprocess
import sys

import pytest

from tests.containers.recipes import (LOCK, REPO, def_sections, dockerfile_instructions, lock_pins,
                                      make_recipe, named_packages, normalise, pip_commands,
                                      requirement_files)


def _dockerfile_run_text() -> str:
    return "\n".join(args for word, args in dockerfile_instructions() if word == "RUN")


def test_lock_is_exact_pins_with_torch():
    pins = lock_pins()
    assert pins["torch"] and all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())


def test_every_declared_dependency_is_locked():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    names = {normalise(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in declared}
    missing = sorted(names - set(lock_pins()))
    assert not missing, f"in pyproject.toml but not in requirements.lock: {missing}"


def test_every_third_party_import_of_the_package_is_declared():
    """An import added to collapse_hpc/ without its distribution in pyproject.toml (and so the
    lock) would pass here, where the venv has it, and fail on a fresh clone or in the image."""
    import ast
    import importlib.metadata

    tomllib = pytest.importorskip("tomllib")
    declared = {normalise(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0])
                for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = set()
    for path in (REPO / "collapse_hpc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top == "collapse_hpc":
                    continue
                dists = {normalise(d) for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.add(f"{top} ({path.relative_to(REPO)})")
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {sorted(undeclared)}"


def test_make_setup_installs_the_lock_and_nothing_by_name():
    recipe = "\n".join(make_recipe("$(VENV)/.installed"))
    cmds = pip_commands(recipe)
    assert cmds, "make setup runs no pip install"
    assert any(requirement_files(c) == ["requirements.lock"] for c in cmds)
    assert [p for c in cmds for p in named_packages(c)] == []


def test_ci_installs_nothing_outside_the_lock():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci  # CI's environment is make setup's
    assert [p for c in pip_commands(ci) for p in named_packages(c)] == []
    for c in pip_commands(ci):
        assert set(requirement_files(c)) <= {"requirements.lock"}


def test_dockerfile_installs_the_lock_without_torch_and_nothing_by_name():
    text = _dockerfile_run_text()
    cmds = pip_commands(text)
    assert len(cmds) >= 2  # wheels of the lock, then their install
    assert [p for c in cmds for p in named_packages(c)] == []
    # Every requirements file it uses is the lock, filtered by the torch-only grep below.
    assert {f for c in cmds for f in requirement_files(c)} <= {"/requirements.cuda.txt",
                                                               "/wheels/requirements.cuda.txt"}
    assert "--no-index" in next(c for c in cmds if "/wheels/requirements.cuda.txt" in c)


def test_the_dockerfile_filter_drops_exactly_the_torch_line():
    """Run the Dockerfile's own filter command on the real lock."""
    m = re.search(r"(grep -v -E '\^torch==' requirements\.lock) > /requirements\.cuda\.txt", _dockerfile_run_text())
    assert m, "the Dockerfile no longer derives /requirements.cuda.txt with grep -v '^torch=='"
    out = subprocess.run(["bash", "-c", m.group(1)], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lock = LOCK.read_text().splitlines()
    assert out.splitlines() == [line for line in lock if not line.startswith("torch==")]
    assert len(out.splitlines()) == len(lock) - 1


def test_dockerfile_base_image_carries_the_locked_torch():
    args = [a for w, a in dockerfile_instructions() if w == "ARG" and a.startswith("BASE_IMAGE=")]
    assert len(args) == 1
    image = args[0].split("=", 1)[1]
    m = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+\.\d+)-cudnn\d+-runtime", image)
    assert m, f"base image {image} is not a pinned pytorch/pytorch CUDA runtime tag"
    assert m.group(1) == lock_pins()["torch"], "the base image's torch differs from requirements.lock"
    # and the build itself refuses a base image whose torch differs from the lock
    assert "torch.__version__" in _dockerfile_run_text()


def test_apptainer_def_installs_nothing_of_its_own():
    """The SIF is the Docker image converted: no %post installing packages beside the lock."""
    header, sections = def_sections()
    assert header["Bootstrap"] in ("docker-daemon", "docker-archive")
    for name, body in sections.items():
        assert pip_commands(body) == [], f"%{name} runs pip: install through the Dockerfile and the lock"


@pytest.mark.parametrize("argv, named", [
    (["-r", "requirements.lock"], []),
    (["--no-deps", "--no-build-isolation", "-e", "."], []),
    (["--no-index", "--find-links", "/wheels", "-r", "x.txt", "/wheels/a-1.whl"], []),
    (["-q", "requests==2.0", "-r", "requirements.lock"], ["requests==2.0"]),
    (["torch", "--index-url", "https://download.pytorch.org/whl/cu130"], ["torch"]),
])
def test_named_package_detection(argv, named):
    """The checker above must catch a package installed by name."""
    assert named_packages(argv) == named


def _guards() -> list[str]:
    """The `python -c` programs the Dockerfile runs after installing (the build's guards)."""
    return re.findall(r'python -c "([^"]+)"', _dockerfile_run_text())


def test_build_guard_refuses_versions_other_than_the_lock(tmp_path):
    """The Dockerfile's version guard, run on this environment (installed from the same lock)."""
    guard = next(g for g in _guards() if "importlib.metadata" in g)
    lock = [line for line in LOCK.read_text().splitlines() if not line.startswith("torch==")]
    good = tmp_path / "good.txt"
    good.write_text("\n".join(lock) + "\n")
    r = subprocess.run([sys.executable, "-c", guard, str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(re.sub(r"^numpy==.*", "numpy==0.0.1", line) for line in lock) + "\n")
    r = subprocess.run([sys.executable, "-c", guard, str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "not the locked versions: ['numpy==0.0.1 (installed" in r.stderr


@pytest.mark.slow  # imports torch twice
def test_build_guard_refuses_a_base_image_with_another_torch():
    guard = next(g for g in _guards() if "torch.__version__" in g)
    sed = re.search(r"\$\((sed -n '[^']+') /tmp/requirements\.lock\)", _dockerfile_run_text()).group(1)
    locked = subprocess.run(["bash", "-c", f"{sed} requirements.lock"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert locked == lock_pins()["torch"]
    assert subprocess.run([sys.executable, "-c", guard, locked], capture_output=True).returncode == 0
    r = subprocess.run([sys.executable, "-c", guard, "9.9.9"], capture_output=True, text=True)
    assert r.returncode == 1 and "!= locked torch 9.9.9" in r.stderr
