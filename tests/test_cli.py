"""The collapse-hpc command as a user meets it: one error line and exit 2 on bad input."""
import os
import subprocess
import sys

from tests.conftest import REPO


def cli(*args, cwd=None):
    env = dict(os.environ, COLLAPSE_EXTRA_EXPERIMENTS="toy=tests.toy_experiment", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "collapse_hpc", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or REPO, timeout=300)


def one_error_line(p):
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_missing_config_file(tmp_path):
    line = one_error_line(cli("run", "configs/does-not-exist.yaml", "--run", tmp_path / "r"))
    assert "configs/does-not-exist.yaml" in line and "not found" in line


def test_misspelled_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\ngenerashuns: 2\ntoy: {}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert "bad.yaml" in line and "generashuns" in line and "generations" in line
    assert not (tmp_path / "r").exists()  # nothing written for a bad config


def test_help_everywhere():
    for sub in ([], ["run"], ["submit"], ["status"], ["aggregate"], ["verify"], ["data", "prepare"]):
        p = cli(*sub, "--help")
        assert p.returncode == 0 and "usage: collapse-hpc" in p.stdout, (sub, p.stderr)


def test_run_verify_and_tamper(tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    p = cli("run", cfg, "--run", run)
    assert p.returncode == 0, p.stderr
    assert "2 units done" in p.stdout
    assert (run / "config.yaml").is_file() and (run / "logs" / "collapse-hpc.log").is_file()
    assert cli("verify", run).returncode == 0
    f = run / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet"
    data = bytearray(f.read_bytes())
    data[50] ^= 0x10
    f.write_bytes(bytes(data))
    p = cli("verify", run)
    assert p.returncode == 1 and str(f) in p.stdout
    # a different config on the same run folder is refused
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 5}\n")
    assert "different config" in one_error_line(cli("run", cfg, "--run", run))


def test_python_dash_m_version():
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("collapse-hpc ")
