"""The one bounded YAML reader: what it refuses, with the line, and that nothing else parses YAML."""
import re
from pathlib import Path

import pytest

from collapse_hpc import yamlfile
from collapse_hpc.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[1] / "collapse_hpc"


def test_every_yaml_read_goes_through_the_bounded_reader():
    readers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if re.search(r"yaml\.(safe_load|load|full_load|unsafe_load|compose)\(", p.read_text())]
    assert readers == [], f"parse YAML with collapse_hpc.yamlfile, not yaml directly: {readers}"


@pytest.mark.parametrize("text,expected", [
    ("a: 1\nb: [1, 2\n", "not valid YAML (line 3)"),
    ("a: 1\n2024-01-01: x\n", "(line 2): key '2024-01-01' is not a string"),
    ("a: 1\n7: x\n", "(line 2): key '7' is not a string"),
    ("a: &x [*x]\n", "an alias that contains itself"),
    ("a: " + "[" * 40 + "]" * 40, "nested more than 32 levels deep"),
    ("a: " + "[" * 3000 + "]" * 3000, "nested more than 32 levels deep"),
    ("gmm:\n  generations: 2\nseeds: [0]\ngmm:\n  samples: 5\n", "(line 4): key 'gmm' given twice (first on line 1)"),
    ("gmm: {generations: 2, generations: 3}\n", "(line 1): key 'generations' given twice"),
    ("a: 1\nb: x\x00y\n", "not valid YAML (line 2): character #x00 is not allowed"),
    ("a: \x1b[31mred\n", "not valid YAML (line 1): character #x1b is not allowed"),
])
def test_refused_with_a_line(text, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        yamlfile.loads(text, "f.yaml")


def test_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(ConfigError, match="more than 100000 values"):
        yamlfile.loads(bomb, "f.yaml")


def test_ordinary_yaml_is_unchanged():
    text = "base: &b {x: 1, y: [1.5, two]}\nother:\n  <<: *b\n  z: null\n"
    assert yamlfile.loads(text, "f.yaml") == {"base": {"x": 1, "y": [1.5, "two"]},
                                              "other": {"x": 1, "y": [1.5, "two"], "z": None}}
    # a key given beside a merge overrides the merged one: not a repeat
    assert yamlfile.loads("b: &b {x: 1}\no: {<<: *b, x: 2}\n", "f.yaml")["o"] == {"x": 2}
    # the same alias used twice is not a repeated key either
    assert yamlfile.loads("b: &b {x: 1}\no: [*b, *b]\n", "f.yaml")["o"] == [{"x": 1}, {"x": 1}]
    assert yamlfile.loads("", "f.yaml") is None


def test_a_bomb_in_a_run_folder_is_one_line(tmp_path):
    """A run's saved config.yaml goes through the same reader (status, aggregate, verify, a unit)."""
    from tests.test_cli import cli, one_error_line

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("a: &a [*a]\n")
    for argv in (("verify", run), ("aggregate", run), ("status", run)):
        assert "contains itself" in one_error_line(cli(*argv)), argv


@pytest.mark.parametrize("text,reads", [("time_min: 1:30:00", "a base-60 number in YAML (5400)"),
                                        ("seeds: [0, 017]", "an octal number in YAML (15)")])
def test_numbers_yaml_1_1_reads_otherwise_are_refused(text, reads):
    """YAML 1.1 reads 1:30:00 as 5400 (a Slurm time as time_min asked for 5400 minutes) and 017 as 15."""
    with pytest.raises(ConfigError, match=rf"^c.yaml \(line 1\): \S+ reads as {re.escape(reads)}; "):
        yamlfile.loads(text, "c.yaml")


def test_those_numbers_quoted_are_strings():
    assert yamlfile.loads("a: '1:30:00'\nb: \"017\"\nc: 0\nd: 10\ne: 0x1F", "c.yaml") == \
        {"a": "1:30:00", "b": "017", "c": 0, "d": 10, "e": 31}


def test_a_config_that_is_a_pipe_or_a_device_is_said_so(tmp_path):
    # `collapse-hpc run <(sed … demo.yaml)` or /dev/null read "config file not found", of a path that is there
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/null")):
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not a plain file \(a pipe or a device\), "
                                              r"which a config file must be: write it to a file and name that$"):
            yamlfile.load(path)
    with pytest.raises(ConfigError, match=r": config file not found$"):
        yamlfile.load(tmp_path / "nope.yaml")
