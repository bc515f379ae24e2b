"""Hostile and careless input to the collapse-hpc command: each case is one `error:` line, exit 2,
and nothing written (no run folder, no data set, no stray file beside the inputs).

`python -m tests.test_hardening` prints CASES as a table (the input tried, and what came of it).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest


TOY = "executor: debug\ngenerations: 2\ntoy: {rows: 4}\n"
BOMB = ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "toy: {}\n")
FLOW_BOMB = "[&a [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], " + ", ".join(
    f"&{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")) + "]"
DEEP = "toy: " + "[" * 5000 + "]" * 5000 + "\n"
PROFILE = "executor: slurm\n"

# (kind: 1 shell lines in job scripts, 2 hostile YAML, 3 numbers, 4 repeats, 6 paths; what is tried;
#  files written before the call; argv after `collapse-hpc`)
CASES = [
    ("1", "config name with a newline", {"c.yaml": 'name: "x\\ntouch /tmp/p #"\n' + TOY}, ["run", "c.yaml"]),
    ("1", "profile env value with a newline", {"c.yaml": TOY, "p.yaml": PROFILE + 'env: {A: "1\\nrm -rf ~"}\n'},
     ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("1", "profile env key not a variable name", {"c.yaml": TOY, "p.yaml": PROFILE + 'env: {"A;id": 1}\n'},
     ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("1", "profile account with a newline", {"c.yaml": TOY, "p.yaml": PROFILE + 'account: "a\\n#SBATCH --x"\n'},
     ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("1", "sbatch extra key with a newline", {"c.yaml": TOY, "p.yaml": PROFILE + 'sbatch: {"x\\ny": 1}\n'},
     ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("1", "per-kind qos with a carriage return",
     {"c.yaml": TOY, "p.yaml": PROFILE + 'jobs: {cpu: {qos: "q\\rz"}}\n'}, ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("2", "YAML alias bomb (10^9 values)", {"c.yaml": BOMB}, ["run", "c.yaml"]),
    ("2", "recursive anchor", {"c.yaml": "seeds: &a [*a]\n" + TOY}, ["run", "c.yaml"]),
    ("2", "a date as a key", {"c.yaml": TOY + "2024-01-01: 1\n"}, ["run", "c.yaml"]),
    ("2", "a date as a key in a profile", {"c.yaml": TOY, "p.yaml": PROFILE + "env: {2024-01-01: 1}\n"},
     ["submit", "c.yaml", "--profile", "p.yaml"]),
    ("2", "nesting 5000 deep", {"c.yaml": DEEP}, ["run", "c.yaml"]),
    ("2", "a section given twice (YAML keeps the last)", {"c.yaml": TOY + "toy: {rows: 2}\n"}, ["run", "c.yaml"]),
    ("2", "a 2 MB config", {"c.yaml": TOY + "#" * (2 << 20) + "\n"}, ["run", "c.yaml"]),
    ("2", "alias bomb in --set", {"c.yaml": TOY}, ["run", "c.yaml", "--set", "seeds=" + FLOW_BOMB]),
    ("3", "NaN float", {"c.yaml": "executor: debug\ngmm: {tol: .nan}\n"}, ["run", "c.yaml"]),
    ("3", "inf float through --set", {"c.yaml": "executor: debug\ngmm: {}\n"},
     ["run", "c.yaml", "--set", "gmm.reg_covar=.inf"]),
    ("3", "gmm.replicates: 1.0e+20", {"c.yaml": "executor: debug\ngmm: {replicates: 1.0e+20}\n"}, ["run", "c.yaml"]),
    ("3", "10^8 generations of a chain", {"c.yaml": TOY}, ["run", "c.yaml", "--generations", "100000000"]),
    ("3", "--generations 100000 (a typo: 10^5 units)", {"c.yaml": TOY}, ["run", "c.yaml", "--generations", "100000"]),
    ("3", "a task holding 10^7 x 2050 values", {"c.yaml": "executor: debug\ngmm: {replicates: 10000000, "
                                                          "chunk_replicates: 10000000}\n"}, ["run", "c.yaml"]),
    ("2", "a NUL character in the config", {"c.yaml": TOY + "name: a\x00b\n"}, ["run", "c.yaml"]),
    ("2", "an escape character in --set", {"c.yaml": TOY}, ["run", "c.yaml", "--set", "name=\x1b[31mred"]),
    ("4", "a regime's overrides: written as a key", {"c.yaml": "regimes: [{name: replace, overrides: 3}]\n" + TOY},
     ["run", "c.yaml"]),
    ("2", "a key with a newline", {"c.yaml": TOY + '"a\\nb": 1\n'}, ["run", "c.yaml"]),
    ("4", "seeds: [0, 0]", {"c.yaml": "seeds: [0, 0]\n" + TOY}, ["run", "c.yaml"]),
    ("4", "keep fractions 0.1 and 0.1000001", {"c.yaml": "regimes: [replace:0.1, replace:0.1000001]\n" + TOY},
     ["run", "c.yaml"]),
    ("4", "seeds: [] (no chain to run)", {"c.yaml": "seeds: []\n" + TOY}, ["run", "c.yaml"]),
    ("4", "regimes: [] in a section", {"c.yaml": "executor: debug\ngmm: {regimes: []}\n"}, ["gmm", "c.yaml"]),
    ("4", "every experiment disabled", {"c.yaml": "executor: debug\ntoy: {enabled: false}\n"}, ["run", "c.yaml"]),
    ("4", "gaussian samples [100, 100]", {"c.yaml": "executor: debug\ngaussian: {samples: [100, 100]}\n"},
     ["run", "c.yaml"]),
    ("6", "lm.dataset: ../x", {"c.yaml": "executor: debug\nlm: {dataset: ../x}\n"}, ["run", "c.yaml"]),
    ("6", "lm.dataset: a/b", {"c.yaml": "executor: debug\nlm: {dataset: a/b}\n"}, ["lm", "c.yaml"]),
    ("6", "data prepare .. --from", {"t.txt": "some text\n"}, ["data", "prepare", "..", "--from", "t.txt"]),
    ("10", "--only of a disabled experiment", {"c.yaml": TOY + "gmm: {enabled: false}\n"},
     ["run", "c.yaml", "--only", "gmm"]),
    ("10", "an experiment by hand that the config lacks", {"c.yaml": TOY}, ["gmm", "c.yaml"]),
    ("10", "a by-hand --variant ''", {"c.yaml": TOY}, ["toy", "c.yaml", "--variant", ""]),
    ("10", "a note of the checks (gmm's snapshots beyond the run), then a refusal (vae's data)",
     {"c.yaml": "executor: debug\ngmm: {generations: 2, replicates: 2, chunk_replicates: 2}\nvae: {dataset: nosuch}\n"},
     ["run", "c.yaml"]),
    ("6", "the reference LM on a data set not prepared", {}, ["lm", "--dataset", "nosuch", "--model_tag", "tiny"]),
    ("9", "a --from text too short for one block", {"t.txt": "hello world\n"},
     ["data", "prepare", "small", "--from", "t.txt"]),
    ("9", "a 2 MB line in a --from text", {"t.txt": "word " * 400_000 + "\n" + "some text\n" * 50},
     ["data", "prepare", "big", "--from", "t.txt"]),
]


def attempt(tmp: Path, files: dict, argv: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Write the inputs into tmp, run the command there; its result and any path it added."""
    for name, text in files.items():
        (tmp / name).write_text(text)
    before = {p for p in tmp.rglob("*")}
    env = dict(os.environ, HF_HUB_OFFLINE="1")  # PYTHONPATH (conftest): the tests' experiments too
    p = subprocess.run([sys.executable, "-m", "collapse_hpc", *argv, *(["--run", "run"] if argv[0] != "data" else
                                                                        ["--data-dir", "data"])],
                       capture_output=True, text=True, cwd=tmp, env=env, timeout=300)
    return p, sorted(str(q.relative_to(tmp)) for q in set(tmp.rglob("*")) - before)


@pytest.mark.parametrize("kind,what,files,argv", CASES, ids=[c[1] for c in CASES])
def test_one_error_line_exit_2_nothing_written(tmp_path, kind, what, files, argv):
    p, written = attempt(tmp_path, files, argv)
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stdout + p.stderr
    assert ": config: " not in lines[0]  # the file, then the key: no filler between them
    assert written == [], written


def test_each_case_is_tried_once():
    """A case given twice (a merge that kept both sides) runs its command twice and tests nothing more."""
    assert len({what for _, what, _, _ in CASES}) == len(CASES)
    assert len({repr((files, argv)) for _, _, files, argv in CASES}) == len(CASES)


def main() -> None:
    import tempfile

    print("| kind | input tried | exit | lines printed | written |\n|---|---|---|---|---|")
    for kind, what, files, argv in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            p, written = attempt(Path(tmp), files, argv)
        lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
        shown = f"1: `{lines[0][:150]}`" if len(lines) == 1 else f"{len(lines)} lines"
        print(f"| {kind} | {what} | {p.returncode} | {shown.replace('|', '/')} | {', '.join(written) or 'nothing'} |")


if __name__ == "__main__":
    main()
