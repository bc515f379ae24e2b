"""`collapse-hpc lm --generate` on two real gloo ranks, stopped midway: the folder ends with none of the call's
blocks, whichever rank failed first, so the same command is not refused; a rank stopped by its peer's end or hang
says so in one line."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collapse_hpc.launch import peers
from collapse_hpc.machine import free_port
from tests.experiments.lm.test_reference_cli import _tiny

REPO = Path(__file__).resolve().parents[3]
# run in each rank's process (a sitecustomize on PYTHONPATH): rank 0's disk is full at its shard; rank 1 writes
# its shard only once rank 0 has failed and cleaned up (its original.parquet gone), as a rank whose chunk takes
# longer does
HOOK = """import errno, os, time
import collapse_hpc.store as store
write, rank, out = store.write_parquet, os.environ.get("RANK"), os.environ.get("GENERATE_OUT", "")
failed = os.environ.get("SHARD_WRITTEN", "") + ".rank0-failed"
def shard(path, *a, **k):
    name = os.path.basename(str(path))
    if rank == "0" and name.startswith("part-000-"):
        open(failed, "w").close()
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    if rank == "1" and name.startswith("part-001-"):
        until, original = time.time() + 60, os.path.join(out, "original.parquet")
        while time.time() < until and not (os.path.exists(failed) and not os.path.exists(original)):
            time.sleep(0.05)
        written = write(path, *a, **k)
        open(os.environ["SHARD_WRITTEN"], "w").close()
        return written
    return write(path, *a, **k)
if out:
    store.write_parquet = shard
"""


@pytest.mark.slow
def test_a_peer_writing_on_after_the_main_rank_cleaned_up_leaves_no_shard(tmp_path, lm_data_dir):
    """Rank 0 alone cleaned up: where it failed first (its full disk), rank 1, still sampling, wrote its shard
    after rank 0's cleanup and failed only at the barrier after sampling; its shard stayed, and the same command
    refused the folder as an earlier call's blocks. A peer now removes the shards it wrote itself."""
    hooks, out = tmp_path / "hooks", tmp_path / "gen1_data"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "COLLAPSE_THREADS": "1", "GENERATE_OUT": str(out),
           "SHARD_WRITTEN": str(hooks / "rank1-wrote"),
           "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "collapse_hpc", "lm", *_tiny(lm_data_dir), "--set", "collective_timeout_s=30",
            "--eval_only", "--generate", str(out), "--generate_percentage", "0.25"]
    ranks = [subprocess.Popen(argv, cwd=REPO, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=240) for p in ranks]
    said = "\n".join(f"rank {r}: {err[-1500:]}" for r, (_, err) in enumerate(outs))
    assert ranks[0].returncode == 2 and ranks[1].returncode != 0, said
    assert "No space left on device" in outs[0][1], said
    assert (hooks / "rank1-wrote").exists(), said  # after rank 0's cleanup, before its own failure
    assert not out.exists() or list(out.iterdir()) == [], said  # the same command takes the folder again
    assert _error_lines(outs[1][1]) == ["error: rank 1: rank 0 failed: OSError: [Errno 28] No space left on device: "
                                        f"'{out / 'part-000-00000.parquet'}'; this rank stops too"], said
    assert ranks[1].returncode == peers.STOPPED, said


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# in rank 1 (RANK_FAULT's, a sitecustomize on PYTHONPATH): killed at its first shard, or hung before the barrier
# after sampling, where rank 0 then waits
FAULT = """import os
if os.environ.get("RANK") == "1" and os.environ.get("RANK_FAULT"):
    exec(os.environ["RANK_FAULT"])
"""
KILLED_AT_ITS_SHARD = (
    "import signal, collapse_hpc.store as store; write = store.write_parquet; "
    "store.write_parquet = lambda path, *a, **k: os.kill(os.getpid(), signal.SIGKILL) "
    "if os.path.basename(str(path)).startswith('part-') else write(path, *a, **k)")
HUNG_BEFORE_THE_BARRIER = (
    "import time; from collapse_hpc.experiments.lm import distributed; "
    "distributed.barrier = lambda: time.sleep(3600)")
TIMEOUT_S = 15


def _two_ranks(tmp_path: Path, data_dir: Path, fault: str) -> list[subprocess.Popen]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAULT)
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "COLLAPSE_THREADS": "1", "RANK_FAULT": fault,
           "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "collapse_hpc", "lm", *_tiny(data_dir), "--set",
            f"collective_timeout_s={TIMEOUT_S}", "--eval_only", "--generate", str(tmp_path / "gen1_data")]
    return [subprocess.Popen(argv, cwd=REPO, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]


@pytest.mark.slow
def test_the_rank_left_by_a_killed_peer_names_it_in_one_line(tmp_path, lm_data_dir):
    """Rank 0, whose peer was killed, ended with gloo's traceback ("Connection closed by peer")."""
    ranks = _two_ranks(tmp_path, lm_data_dir, KILLED_AT_ITS_SHARD)
    _, err = ranks[0].communicate(timeout=240)
    ranks[1].wait(timeout=30)
    assert ranks[1].returncode == -signal.SIGKILL, err[-3000:]
    assert _error_lines(err) == [f"error: rank 0: rank 1 (pid {ranks[1].pid}) {peers.KILLED}; this rank stops too"]
    assert ranks[0].returncode == peers.STOPPED


@pytest.mark.slow
def test_a_hung_peer_is_named_once_the_collective_timeout_passed(tmp_path, lm_data_dir):
    """Rank 0, waiting at the barrier for a hung peer, ended at collective_timeout_s with gloo's traceback
    ("Timed out waiting 15000ms"), naming no rank."""
    ranks = _two_ranks(tmp_path, lm_data_dir, HUNG_BEFORE_THE_BARRIER)
    try:
        _, err = ranks[0].communicate(timeout=240)
    finally:
        ranks[1].kill()  # hung for an hour: a launcher (torchrun, srun) ends it once rank 0 exits
        ranks[1].communicate()
    assert _error_lines(err) == [f"error: rank 0: rank 1 of 2 (pid {ranks[1].pid} on {socket.gethostname()}) hung: "
                                 f"rank 0 waited {TIMEOUT_S} s in a collective for its peers (collective_timeout_s) "
                                 f"and it never came; this rank stops too"], err[-3000:]
    assert ranks[0].returncode == peers.STOPPED
