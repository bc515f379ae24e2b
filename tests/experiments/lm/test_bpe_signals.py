"""A unit's job that Slurm ends while the data set's BPE trains stops within seconds: the trainer's merges
are Rust's, during which Python ran no signal handler (tens of seconds on a large corpus, minutes on a
larger one: past Slurm's KillWait, the job killed where it stood)."""
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VOCAB = 60000  # merges over ~800k distinct words: ~25 s of Rust after the texts are read, on a 2-core machine

SCRIPT = """
import logging, sys
from pathlib import Path
from collapse_hpc.experiments.lm import tokenizer
from collapse_hpc.launch.job import STOPS, stops_when_ending

cut = tokenizer._words_cut

def said_when_read(texts):  # the trainer's merges start once it has read every text
    yield from cut(texts)
    print("merging", flush=True)

tokenizer._words_cut = said_when_read
logging.basicConfig(level=logging.INFO)
with stops_when_ending("lm/replace unit 0", STOPS):
    tokenizer.bpe_tokenizer(Path(sys.argv[1]), "words", int(sys.argv[2]))
print("trained", flush=True)
"""


def _corpus(folder: Path) -> Path:
    """Texts of distinct random words: every merge of the trainer's touches many of them."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for split, rows in (("train", 16000), ("validation", 50), ("test", 50)):
        lines = (" ".join("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10)))
                          for _ in range(50)) for _ in range(rows))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_cancelled_job_stops_during_the_bpe_merges(tmp_path):
    from collapse_hpc.experiments.lm.data import prepare_local
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir

    data_dir = tmp_path / "data"
    prepare_local("words", _corpus(tmp_path / "source"), data_dir)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\necho "JobId=7 JobName=x JobState=CANCELLED Reason=None"\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "7",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(data_dir), str(VOCAB)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "merging\n", proc.communicate()
    time.sleep(1)  # well into the merges
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # scancel's, of a job Slurm says is CANCELLED
    out, err = proc.communicate(timeout=240)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err[-3000:]  # the unit's stop, not its training finished
    assert took < 5, f"stopped {took:.1f} s after the SIGTERM"
    assert "trained" not in out and "Traceback" not in err
    assert "lm/replace unit 0: job 7 is ending (Slurm: CANCELLED): the unit stops here" in err, err[-3000:]
    # nothing half-written: a resumed unit trains the BPE afresh
    folder = bpe_dir(data_dir, "words", VOCAB)
    assert not folder.exists() and [p.name for p in folder.parent.glob(f"*{folder.name}*")] == [f".lock-{folder.name}"]


def test_a_call_heeding_signals_gives_its_result_and_its_error():
    from collapse_hpc.machine import heeding_signals

    assert heeding_signals(pow, 2, exp=10) == 1024
    with pytest.raises(ZeroDivisionError):
        heeding_signals(divmod, 1, 0)
