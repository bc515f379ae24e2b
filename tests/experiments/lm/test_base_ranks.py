"""The tiny base built by a rank other than 0: ranks of a multi-rank generation race for the base's lock,
and the first to take it pretrains and saves it, inside a real gloo process group."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.experiments.lm.conftest import tiny_cfg

REPO = Path(__file__).resolve().parents[3]
CFG = {"pretrained": True, "pretrain_epochs": 1, "pretrain_blocks": 16, "pretrain_lr": 4e-3}

SCRIPT = f"""
import os
from pathlib import Path
import torch.distributed as dist
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + os.environ["PORT"],
                        rank=int(os.environ["RANK"]), world_size=2)
if dist.get_rank() == 1:  # it took the base's lock first; rank 0 waits
    from collapse_hpc.experiments.lm.model import tiny_base
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer
    from tests.experiments.lm.conftest import tiny_cfg
    data = Path(os.environ["DATA"])
    cfg = tiny_cfg(**{CFG!r})
    print(tiny_base(cfg, load_tokenizer(cfg, data), data))
dist.barrier()
dist.destroy_process_group()
"""


def test_a_base_pretrained_by_rank_1_holds_its_model(tmp_path, lm_data_dir, lm_tokenizer):
    """transformers' save_pretrained writes nothing on a rank other than 0 of a process group: rank 1 sealed
    a base of a tokenizer and a card only, and every run after ('no saved model') failed on it."""
    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir, data_dir)  # the session's data stays as the other tests expect it
    from collapse_hpc.experiments.lm.model import base_fingerprint, load_model
    from collapse_hpc.machine import free_port

    env = {**os.environ, "PORT": str(free_port()), "DATA": str(data_dir), "PYTHONPATH": str(REPO)}
    ranks = [subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=300) for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outs[1][1][-2000:] + outs[0][1][-2000:]
    folder = data_dir / "tiny" / "base" / base_fingerprint(tiny_cfg(**CFG), lm_tokenizer)
    assert outs[1][0].strip() == str(folder)
    load_model(folder)  # the base every rank and later run loads
