"""Two `data prepare` of one name at once take turns: both succeed, the second finds it prepared
(before: one failed on the other's half-built folder with a temporary file's name)."""
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def test_concurrent_prepares_of_one_name_take_turns(tmp_path):
    rng = np.random.default_rng(0)
    words = "the a river city king poet engine forest bridge island school army old new small large".split()
    (tmp_path / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, 30)) for _ in range(3000)))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    argv = [sys.executable, "-m", "collapse_hpc", "data", "prepare", "same", "--from", "corpus.txt",
            "--data-dir", "data"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(3)]
    outs = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    assert [code for code, _ in outs] == [0, 0, 0], outs
    assert sum("already prepared" in out for _, out in outs) == 2
    assert (tmp_path / "data" / "same" / "card.json").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["same"]


def test_sigterm_of_a_prepare_leaves_nothing(tmp_path):
    """`kill` (SIGTERM, `timeout`) of a preparation is taken as Ctrl-C: the half-built hidden folder
    goes and the command says so; it died at once and left data/.NAME.preparing behind."""
    import signal
    import time

    rng = np.random.default_rng(0)
    words = "the a river city king poet engine forest bridge island school army old new small large".split()
    (tmp_path / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, 30)) for _ in range(60000)))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "data", "prepare", "same", "--from", "corpus.txt",
                             "--data-dir", "data"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    building = tmp_path / "data" / ".same.preparing"
    deadline = time.time() + 120
    while not building.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert building.exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and out.strip().splitlines()[-1] == "interrupted", out
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
