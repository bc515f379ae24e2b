"""Sampling resumed on two real gloo ranks: the chunks left are shared, whichever rank's were done."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collapse_hpc.experiments.lm.sample import Decoding, read_shards, sample_shards, seconds_name, shard_name
from collapse_hpc.machine import free_port
from tests.experiments.lm.test_sample import _blocks, _opt, _Tok

REPO = Path(__file__).resolve().parents[3]
# one rank (argv: the shards folder): Pipeline.sample of test_sample's tiny model and prompts
RANK = """import logging, os, sys
import torch
from collapse_hpc.experiments.lm import distributed
from collapse_hpc.experiments.lm.pipeline import Pipeline
from collapse_hpc.experiments.lm.sample import Decoding
from tests.experiments.lm.conftest import tiny_cfg
from tests.experiments.lm.test_sample import _blocks, _opt, _Tok
rank, world, _ = distributed.init(30)
lm = Pipeline(tiny_cfg(sample_batch_size=8), None, _Tok(), rank, world, 0, torch.device("cpu"),
              logging.getLogger("collapse_hpc.lm"), {})
lm.sample(_opt(), _blocks(n=32), Decoding(num_beams=2, new_tokens=8), sys.argv[1], generation=2, seed=0,
          model_hash="abc")
"""


@pytest.mark.slow
def test_a_resume_whose_rank_0_had_finished_shares_its_peers_chunks(tmp_path):
    """Rank 0's chunks all done before (its peer died early): rank 0 sampled nothing and waited at the barrier
    after sampling for rank 1's whole share, past collective_timeout_s at scale. Both sample now, and the
    shards are an uninterrupted run's."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    sample_shards(_opt(), _Tok(), _blocks(n=32), Decoding(num_beams=2, new_tokens=8), whole, generation=2,
                  batch_size=8, model_hash="abc")
    part.mkdir()
    for k in (0, 2):
        shutil.copy(whole / shard_name(0, k), part / shard_name(0, k))
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "COLLAPSE_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(part)], cwd=REPO,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    errs = [p.communicate(timeout=120)[1] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], "\n".join(e[-1500:] for e in errs)
    assert sorted(p.name for p in part.iterdir()) == [shard_name(0, 0), shard_name(0, 1), shard_name(0, 2),
                                                      shard_name(1, 3), seconds_name(0), seconds_name(1)]
    assert read_shards(part).equals(read_shards(whole))
