"""`collapse-hpc lm --generate` on two real gloo ranks, stopped midway: the folder ends with none of the call's
blocks, whichever rank failed first, so the same command is not refused."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
