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
    goes and the command says so; it died at once and left data/.tmp-NAME.preparing behind."""
    import signal
    import time

    rng = np.random.default_rng(0)
    words = "the a river city king poet engine forest bridge island school army old new small large".split()
    (tmp_path / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, 30)) for _ in range(60000)))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "data", "prepare", "same", "--from", "corpus.txt",
                             "--data-dir", "data"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    building = tmp_path / "data" / ".tmp-same.preparing"
    deadline = time.time() + 120
    while not building.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert building.exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and out.strip().splitlines()[-1] == "interrupted", out
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def _corpus(path, lines):
    rng = np.random.default_rng(0)
    words = "the a river city king poet engine forest bridge island school army old new small large".split()
    path.write_text("\n".join(" ".join(rng.choice(words, 30)) for _ in range(lines)))
    return path


def _prepare(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "collapse_hpc", "data", "prepare", *map(str, args),
                           "--data-dir", "data"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_what_a_killed_prepare_left_the_next_prepare_removes(tmp_path):
    """SIGKILL (the OOM killer) of `data prepare --force` of a prepared name left its half-built data set
    in data/ for ever: the next prepare of that name found it prepared and left the temporary alone."""
    import signal
    import time

    _corpus(tmp_path / "corpus.txt", 60000)
    assert _prepare(tmp_path, "same", "--from", "corpus.txt").returncode == 0
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "data", "prepare", "same", "--from", "corpus.txt",
                             "--data-dir", "data", "--force"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "data").glob(".*preparing")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert list((tmp_path / "data").glob(".*preparing")), "the preparation ended before it built anything"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    left = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert len(left) == 2 and "same" in left, left  # the prepared set and the killed one's temporary
    done = _prepare(tmp_path, "same", "--from", "corpus.txt")
    assert done.returncode == 0 and "already prepared" in done.stdout, done.stdout + done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["same"]


def test_a_prepare_removes_its_data_sets_temporaries_and_nothing_else(tmp_path):
    """A data set is written whole into a temporary beside data/NAME (the VAE's .tmp-NAME.XXXX, the LM's
    .tmp-NAME.preparing), only by a preparation, which holds the data folder's lock: such a temporary a
    preparation of NAME finds is a killed one's. Other names' wait for theirs (--data-dir may hold other
    things), and the caches inside a data set (tokenizer, token blocks, base model) are written by runs
    under their own locks: a preparation leaves their temporaries to them."""
    from collapse_hpc import data

    data_dir = tmp_path / "data"
    killed = data_dir / ".tmp-digits.k2j4h1x0"
    others = [data_dir / ".tmp-mnist.q1w2e3r4", data_dir / ".tmp-notes.txt"]
    cache = data_dir / "tiny" / ".tmp-tokenizer-bpe8000.q9w8e7"
    for folder in (killed, others[0], cache):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"half")
    others[1].write_text("not ours")
    assert data.prepare("digits", data_dir) == 0
    assert not killed.exists() and all(p.exists() for p in others)
    assert cache.is_dir()  # not the preparation's to remove: a run may be training that tokenizer now
    assert not [p for p in (data_dir / "digits").iterdir() if p.name.startswith(".")]  # digits too is built aside


def test_a_data_set_whose_swap_was_killed_is_put_back_by_the_next_prepare(tmp_path):
    """`data prepare NAME --force` swaps the new data set in whole; killed between its two renames it left
    no data/NAME and the complete earlier one aside (.old-NAME) for good, and the next preparation built
    it anew. It is put back: a data set made from files that are gone since is not lost."""
    from collapse_hpc import data

    data_dir = tmp_path / "data"
    assert data.prepare("digits", data_dir) == 0
    digits = data_dir / "digits"
    before = {p.name: p.stat().st_ino for p in digits.iterdir()}
    os.replace(digits, data_dir / ".old-digits")  # what the kill left: the old one aside, the new one
    (data_dir / ".tmp-digits.k2j4h1x0").mkdir()   # half-built beside it
    assert data.prepare("digits", data_dir) == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["digits"]
    assert {p.name: p.stat().st_ino for p in digits.iterdir()} == before  # the same files, not made again


def test_a_cache_built_again_removes_what_a_killed_builder_left(tmp_path):
    """The token blocks, the BPE and the tiny base are built by the first unit that needs them, the others
    waiting on the cache's lock; a unit killed while writing one left its temporary beside it for ever.
    Whoever takes the lock next removes it: no other writer of that cache is alive then. Another cache's
    temporary in the same folder (another split, cut under its own lock) stays."""
    from collapse_hpc.experiments.lm import data
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir, bpe_tokenizer
    from tests.experiments.lm.conftest import write_corpus

    data.prepare_local("tiny", write_corpus(tmp_path / "source"), tmp_path / "data")
    set_dir = tmp_path / "data" / "tiny"
    bpe = bpe_dir(tmp_path / "data", "tiny", 300)
    killed_bpe = set_dir / f".tmp-{bpe.name}.x7y8z9"
    killed_bpe.mkdir()
    (killed_bpe / "tokenizer.json").write_text("{")
    tok = bpe_tokenizer(tmp_path / "data", "tiny", 300)
    assert bpe.is_dir() and not killed_bpe.exists()

    path = data.blocks_path(tmp_path / "data", "tiny", "train", tok, 16)
    path.parent.mkdir(parents=True)
    killed = [path.parent / ".tmp-train.parquet.a1b2c3d4", path.parent / ".tmp-train.parquet.card.json.e5f6"]
    other = path.parent / ".tmp-validation.parquet.g7h8i9"
    for p in [*killed, other]:
        p.write_bytes(b"half")
    assert data.load_blocks(tmp_path / "data", "tiny", "train", tok, 16).num_rows > 0
    assert not [p for p in killed if p.exists()] and other.exists()
