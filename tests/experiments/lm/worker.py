"""One rank of a tiny training run, for the multi-process tests (run as a script).

argv: data_dir out_root json-overrides. Writes out_root/summary-<rank>.json with the summary, a
hash of this rank's parameters after training, and the validation perplexities (sharded).
With WORKER_KILL_AT_STEP=N in the environment the process kills itself (SIGKILL) once the
checkpoint of step N is complete.
"""
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.experiments.lm.conftest import tiny_cfg  # noqa: E402


def _kill_after_checkpoint(training, step: int) -> None:
    """SIGKILL this process once the checkpoint of `step` is complete on every rank."""
    checkpoint = training._Training.checkpoint

    def checkpoint_then_kill(self):
        checkpoint(self)
        if self.state["global_step"] == step:
            os.kill(os.getpid(), signal.SIGKILL)

    training._Training.checkpoint = checkpoint_then_kill


def _gloo_threads() -> list[str]:
    """The names of this process's gloo threads (its worker and I/O loops) still running."""
    tasks = Path("/proc/self/task")
    names = [(t / "comm").read_text().strip() for t in tasks.iterdir()] if tasks.is_dir() else []
    return [n for n in names if "gloo" in n]


def main():
    data_dir, out_root, overrides = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    torch.set_num_threads(1)
    from collapse_hpc.experiments.lm import distributed
    from collapse_hpc.experiments.lm.data import load_blocks
    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import build_model
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer
    from collapse_hpc.experiments.lm import train as training
    from collapse_hpc.experiments.lm.train import train_generation
    from collapse_hpc.machine import leave_process_group

    kill_at = os.environ.get("WORKER_KILL_AT_STEP")
    if kill_at:
        _kill_after_checkpoint(training, int(kill_at))

    logging.basicConfig(level=logging.INFO)
    cfg = tiny_cfg(**overrides)
    rank, world, local = distributed.init()
    tok = load_tokenizer(cfg, data_dir)
    train = load_blocks(data_dir, "tiny", "train", tok, cfg.block_size)
    if cfg.max_train_blocks:  # as the chain takes generation 0's blocks
        train = train.slice(0, cfg.max_train_blocks)
    val = load_blocks(data_dir, "tiny", "validation", tok, cfg.block_size)
    model = build_model(cfg, tok, data_dir)
    from collapse_hpc.experiments.lm.evaluate import mean_loss

    initial = mean_loss(model, val, 32, "cpu", rank=rank, world_size=world)
    summary = train_generation(model, tok, train, val, cfg, out_root / "model", out_root / "ckpt", seed=0,
                               rank=rank, world_size=world, local_rank=local)
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode() + p.detach().float().cpu().numpy().tobytes())
    corpus, per_seq = perplexity(model, val, 7, "cpu", rank=rank, world_size=world)
    summary.update(initial_val_loss=initial, params=h.hexdigest(), ppl=corpus, per_seq=per_seq.tolist())
    del model  # a unit's model ends with it
    leave_process_group()  # as a unit's rank does (launch/job.py)
    summary["gloo_threads_left"] = _gloo_threads()
    (out_root / f"summary-{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
