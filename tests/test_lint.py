"""Lint is part of `make test` (and so CI): ruff with the project's own configuration on the
whole tree, mypy over the public modules and import-linter's contracts (imports run one way),
before the tests; and the Python version the README promises is the package's."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def test_make_test_runs_ruff_mypy_and_the_import_contracts_before_pytest():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # -n prints the commands without running them; -o: setup counts as done
    out = subprocess.run([make, "-n", "--no-print-directory", "-o", ".venv/.installed", "test"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    ruff = next(i for i, line in enumerate(out) if re.search(r"\bruff check \.", line))
    mypy = next(i for i, line in enumerate(out) if re.search(r"/mypy$", line))
    contracts = next(i for i, line in enumerate(out) if re.search(r"/lint-imports\b", line))
    pytest_line = next(i for i, line in enumerate(out) if "-m pytest" in line)
    assert ruff < pytest_line and mypy < pytest_line and contracts < pytest_line


def test_mypy_checks_the_public_modules_and_catches_a_type_error(tmp_path):
    import tomllib

    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    public = {"collapse_hpc/config.py", "collapse_hpc/regimes", "collapse_hpc/store", "collapse_hpc/engine.py"}
    assert public <= set(files)
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> str:\n    return x\n")
    mypy = [str(RUFF.with_name("mypy")), "--config-file", str(REPO / "pyproject.toml"), "--no-incremental"]
    r = subprocess.run([*mypy, str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "Incompatible return value type" in r.stdout


def test_ruff_with_the_project_config_catches_an_unused_import_and_passes_the_tree(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nx = 1" + " " * 130 + "\n")
    config = ["--config", str(REPO / "pyproject.toml")]
    r = subprocess.run([str(RUFF), "check", *config, "--no-cache", "--output-format", "concise", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "F401" in r.stdout and "E501" in r.stdout and "W291" in r.stdout
    r = subprocess.run([str(RUFF), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_no_module_has_three_blank_lines_in_a_row():
    # pycodestyle's E303; ruff has it in its preview only, whose output names rules instead of their codes
    for path in sorted([*REPO.glob("collapse_hpc/**/*.py"), *REPO.glob("tests/**/*.py")]):
        assert "\n\n\n\n" not in path.read_text(), f"{path.relative_to(REPO)}: three blank lines in a row"


def test_requires_python_agrees_with_the_readme():
    import tomllib

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    promised = re.search(r"\(Python (3\.\d+)\+", (REPO / "README.md").read_text()).group(1)
    assert spec == f">={promised}"
    assert sys.version_info >= tuple(int(p) for p in promised.split("."))


def test_import_contracts_hold_and_an_upward_import_breaks_them(tmp_path):
    """The floors of pyproject.toml's [tool.importlinter] hold for the package, and a planted
    import of a higher floor, even inside a function, breaks them."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert {"layers", "independence", "forbidden"} <= {c["type"] for c in contracts} and len(contracts) >= 3
    lint = [str(RUFF.with_name("lint-imports")), "--no-logo", "--no-cache", str(REPO / "pyproject.toml")]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy below, ahead of the installed package
    shutil.copytree(REPO / "collapse_hpc", tmp_path / "collapse_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    config = tmp_path / "collapse_hpc" / "config.py"
    config.write_text(config.read_text() + "\n\ndef _planned(run):\n    from collapse_hpc import engine\n\n"
                      "    return engine.plan(run)\n")
    r = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "BROKEN" in r.stdout and "collapse_hpc.config -> collapse_hpc.engine" in r.stdout


def test_make_lint_bounds_the_language_model_functions_at_40_lines(tmp_path):
    """`make lint` runs tests/function_length.py over collapse_hpc/experiments/lm: the tree passes,
    and a planted function of 41 lines (a nested one counted on its own too) fails it."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run([make, "-n", "--no-print-directory", "-o", ".venv/.installed", "lint"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"tests/function_length\.py --max 40 collapse_hpc/experiments/lm$", out, re.M), out
    check = [sys.executable, str(REPO / "tests" / "function_length.py"), "--max", "40"]
    r = subprocess.run([*check, str(REPO / "collapse_hpc" / "experiments" / "lm")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    body = "".join(f"    x{i} = {i}\n" for i in range(38))
    (tmp_path / "ok.py").write_text(f"def fits():\n{body}    return 0\n")  # 40 lines
    nested = "".join(f"            x{i} = {i}\n" for i in range(39))
    (tmp_path / "long.py").write_text(f"class C:\n    def outer(self):\n        def inner():\n{nested}"
                                      "            return 1\n        return inner\n")  # inner 41 lines
    r = subprocess.run([*check, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [f"{tmp_path / 'long.py'}:2: C.outer is 43 lines (max 40)",
                                     f"{tmp_path / 'long.py'}:3: C.outer.inner is 41 lines (max 40)"], r.stdout


def test_the_language_model_modules_import_one_way(tmp_path):
    """data.py reads text through corpus.py and imports the tokenizer; the tokenizer importing
    data.py back (the circle there was, inside a function) breaks the lm-one-way contract."""
    lint = [str(RUFF.with_name("lint-imports")), "--no-logo", "--no-cache", "--contract", "lm-one-way",
            str(REPO / "pyproject.toml")]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    shutil.copytree(REPO / "collapse_hpc", tmp_path / "collapse_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    tokenizer = tmp_path / "collapse_hpc" / "experiments" / "lm" / "tokenizer.py"
    tokenizer.write_text(tokenizer.read_text() + "\n\ndef _texts(data_dir, dataset):\n"
                         "    from collapse_hpc.experiments.lm.data import read_texts\n\n"
                         "    return read_texts(data_dir, dataset, 'train')\n")
    r = subprocess.run(lint, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "BROKEN" in r.stdout, r.stdout


def test_no_pipeline_under_pipefail_ends_in_a_grep_that_stops_reading():
    """`cmd | grep -q` under pipefail fails at random where cmd writes more than one chunk:
    grep leaves at the first match and cmd dies of SIGPIPE (image-test's ldconfig check failed
    so, twice in 500 runs). Every tracked script that sets pipefail reads its pipes to the end."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    early = re.compile(r"\|\s*grep\s+(-[A-Za-z]*[qm][A-Za-z]*\b|--quiet|--silent|--max-count)")
    found = []
    for name in files:
        path = REPO / name
        if path.suffix in (".py", ".md") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if "pipefail" in text:
            lines = enumerate(text.splitlines(), 1)
            found += [f"{name}:{i}: {line.strip()}" for i, line in lines if early.search(line)]
    assert not found, "\n".join(found)
    assert early.search("ldconfig -p | grep -q x") and not early.search("ldconfig -p | grep x >/dev/null")
