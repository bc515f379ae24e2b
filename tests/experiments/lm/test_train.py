"""Training one generation: the loss falls, ranks agree, and a killed run resumes exactly."""
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm import train
from tests.experiments.lm.conftest import tiny_cfg
from tests.helpers import refuse_reads

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[3]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(data_dir, out, overrides, world=1, extra_env=None):
    """Start `world` worker ranks as subprocesses with the env the launch layer would set."""
    out.mkdir(parents=True, exist_ok=True)
    port = _port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", **(extra_env or {})}
        log = open(out / f"log-{rank}.txt", "w")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(data_dir), str(out), json.dumps(overrides)],
                                      env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _wait(procs, out, timeout=240):
    codes = [p.wait(timeout=timeout) for p in procs]
    return codes, [json.loads((out / f"summary-{r}.json").read_text()) if (out / f"summary-{r}.json").exists()
                   else None for r in range(len(procs))]


def _tail(out):
    return "\n".join((p.read_text()[-1500:]) for p in sorted(out.glob("log-*.txt")))


def _no_gloo_thread_left(*summaries):
    """No rank's gloo threads outlived its unit: left to the interpreter's exit, they could abort a finished rank."""
    left = [s["gloo_threads_left"] for s in summaries]
    assert left == [[]] * len(summaries), left


def test_batch_plan_splits_the_global_batch_over_ranks():
    assert train.batch_plan(128, 16, 1) == (16, 8)
    assert train.batch_plan(128, 16, 2) == (16, 4)
    assert train.batch_plan(128, 16, 16) == (8, 1)
    assert train.batch_plan(128, 48, 1) == (32, 4)  # largest micro batch dividing the per-rank share
    with pytest.raises(UserError, match="cannot be split"):
        train.batch_plan(128, 16, 3)


@pytest.mark.parametrize("where", ["lm", "regime"])
def test_a_batch_the_ranks_cannot_share_is_refused_when_the_config_loads(where):
    """Not in every rank's job after the run folder exists: before anything is written."""
    from collapse_hpc import experiments
    from collapse_hpc.errors import ConfigError

    lm, regime = {"batch_size": 16, "micro_batch_size": 8}, {"name": "replace"}
    (lm if where == "lm" else regime.setdefault("lm", {})).update(ranks=3)
    with pytest.raises(ConfigError, match=r"batch_size \(16\) must be a multiple of ranks \(3\)"):
        experiments.config_from_dict({"regimes": [regime], "lm": lm})
    experiments.config_from_dict({"regimes": [regime], "lm": {**lm, "batch_size": 18}})


def test_each_step_deals_disjoint_micro_batches_to_the_ranks():
    micro, accum, world = 4, 2, 2
    order = train.epoch_order(37, seed=0, epoch=1, length=48)
    assert sorted(set(order)) == list(range(37))  # every block, padded by wrapping around
    assert not np.array_equal(order, train.epoch_order(37, seed=0, epoch=2, length=48))
    step = [order[(m * world + r) * micro:(m * world + r + 1) * micro] for r in range(world) for m in range(accum)]
    flat = np.concatenate(step)
    assert len(set(flat)) == len(flat) == micro * accum * world


def test_cosine_learning_rate_per_epoch():
    cfg = tiny_cfg(lr=2e-5, lr_min=1e-6, epochs=5)
    lrs = [cfg.lr * train.epoch_lr_factor(cfg, e) for e in range(5)]
    assert lrs[0] == pytest.approx(2e-5)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert cfg.lr * train.epoch_lr_factor(cfg, 5) == pytest.approx(1e-6)


def test_ds_config_bf16_and_zero_stage():
    conf = train.ds_config(tiny_cfg(zero_stage=2), 16, 4, 2, "bf16")
    assert conf["train_batch_size"] == 128 and conf["gradient_accumulation_steps"] == 4
    assert conf["zero_optimization"]["stage"] == 2 and conf["bf16"]["enabled"]
    assert not conf["torch_autocast"]["enabled"]
    assert conf["data_types"] == {"grad_accum_dtype": "fp32"} and conf["communication_data_type"] == "fp32"
    # bf16 weights with fp32 gradients: DeepSpeed's BF16_Optimizer, which it builds from ZeRO-1 on
    assert train.ds_config(tiny_cfg(), 16, 8, 1, "bf16")["zero_optimization"]["stage"] == 1
    bf16_sums = train.ds_config(tiny_cfg(deepspeed={"data_types": {"grad_accum_dtype": "bf16"}}), 16, 8, 1, "bf16")
    assert bf16_sums["zero_optimization"]["stage"] == 0  # DeepSpeed's ZeRO-0 bf16 wrapper stays an option
    mixed = train.ds_config(tiny_cfg(), 16, 8, 1, "bf16-mixed")
    assert mixed["torch_autocast"]["enabled"] and not mixed["bf16"]["enabled"]
    assert "data_types" not in mixed and mixed["zero_optimization"]["stage"] == 0
    assert "optimizer" not in conf  # torch AdamW unless fused_adam
    assert train.ds_config(tiny_cfg(fused_adam=True), 16, 8, 1, "fp32")["optimizer"]["type"] == "AdamW"
    import torch

    assert train.resolve_precision(tiny_cfg(), torch.device("cpu")) == "fp32"
    assert train.resolve_precision(tiny_cfg(), torch.device("cuda")) == "bf16-mixed"


def _touch(path):  # what a tampered checkpoint would run if it were unpickled
    Path(path).write_text("ran")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _touch, (self.marker,)


def _spy(monkeypatch, module, name, calls):
    """Record (args, kwargs, result) of every call of module.name."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result
    monkeypatch.setattr(module, name, spy)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", [1, 2])
def test_schedule_under_zero_and_checkpoints_load_weights_only(stage, lm_data_dir, lm_tokenizer, lm_blocks,
                                                                tmp_path, monkeypatch):
    """fused_adam's path (DeepSpeed builds the optimizer, ZeRO wraps it) keeps the cosine schedule;
    resuming reads the ZeRO checkpoint with weights_only=True and refuses a tampered one."""
    import deepspeed
    import torch

    from collapse_hpc.experiments.lm.model import build_model

    real_conf = train.ds_config

    def torch_adam(*args):  # fused_adam on CPU: DeepSpeed's config optimizer with torch's kernel
        conf = real_conf(*args)
        conf["optimizer"]["params"]["torch_adam"] = True
        return conf
    monkeypatch.setattr(train, "ds_config", torch_adam)
    inits, loads = [], []
    _spy(monkeypatch, deepspeed, "initialize", inits)
    cfg = tiny_cfg(zero_stage=stage, fused_adam=True, epochs=2)
    blocks = lm_blocks["train"].slice(0, 32)  # 2 steps per epoch
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"

    def run():
        model = build_model(cfg, lm_tokenizer, lm_data_dir)
        return train.train_generation(model, lm_tokenizer, blocks, lm_blocks["validation"], cfg, out, ckpt,
                                      seed=0, rank=0, world_size=1, local_rank=0)

    summary = run()
    engine = inits[-1][2][0]
    assert type(engine.optimizer).__name__ == "DeepSpeedZeroOptimizer"  # not a torch Optimizer
    assert engine.lr_scheduler.optimizer is engine.optimizer.optimizer  # the one ZeRO steps
    assert engine.get_lr() == [pytest.approx(cfg.lr_min)]  # 2 epochs stepped: the cosine's end
    assert summary["steps"] == 4 and summary["val_loss"][-1] < summary["val_loss"][0]

    _spy(monkeypatch, torch, "load", loads)
    resumed = run()
    assert resumed["resumed_from"] == 4 and resumed["val_loss"] == summary["val_loss"]
    assert any("optim_states" in str(args[0]) for args, _, _ in loads)  # ZeRO's partition files too
    assert all(kw.get("weights_only") is True for _, kw, _ in loads)

    # a checkpoint holding an arbitrary object is refused in one line, and the object never runs
    marker = tmp_path / "ran.txt"
    states = next((ckpt / "step00000004").glob("mp_rank_*_model_states.pt"))
    sd = torch.load(states, weights_only=False)  # our own file, before tampering
    sd["payload"] = _Payload(str(marker))
    torch.save(sd, states)
    step = states.parent  # its complete.json written anew to vouch for it (else it is set aside, never loaded)
    written = {k: v for k, v in json.loads((step / train.COMPLETE).read_text()).items()
               if k not in ("files", "manifest_sha256")}
    (step / train.COMPLETE).write_text(train._marked(step, written))
    with pytest.raises(UserError, match="not loaded") as e:
        run()
    assert len(str(e.value).splitlines()) == 1 and "_touch" in str(e.value)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bf16_weights_train_on_fp32_gradients_with_one_host_sync_per_step(lm_data_dir, lm_tokenizer, lm_blocks,
                                                                          tmp_path, monkeypatch):
    """precision: bf16 with ZeRO-0 asked for: bf16 weights, gradients summed in fp32 over the
    micro-batches, fp32 master weights in one flat tensor (DeepSpeed's BF16_Optimizer): an optimizer
    step syncs the host once or twice, not once per parameter as DeepSpeed's ZeRO-0 bf16 wrapper's
    overflow checks do; the loss falls, and the checkpoint resumes with weights_only."""
    import deepspeed
    import torch
    from torch.profiler import ProfilerActivity, profile

    from collapse_hpc.experiments.lm.model import build_model

    inits = []
    _spy(monkeypatch, deepspeed, "initialize", inits)
    cfg = tiny_cfg(precision="bf16", epochs=2)  # 16 = 2 micro-batches x 8
    blocks = lm_blocks["train"].slice(0, 32)  # 2 steps per epoch

    def run():
        model = build_model(cfg, lm_tokenizer, lm_data_dir)
        return train.train_generation(model, lm_tokenizer, blocks, lm_blocks["validation"], cfg, tmp_path / "model",
                                      tmp_path / "ckpt", seed=0, rank=0, world_size=1, local_rank=0)

    summary = run()
    engine = inits[-1][2][0]
    assert engine.get_data_types() == (torch.bfloat16, torch.float32)  # weights, gradient accumulation
    assert (summary["master_dtype"], summary["compute_dtype"]) == ("float32", "bfloat16")
    assert summary["zero_stage"] == 1 and summary["gradient_accumulation"] == 2
    assert summary["steps"] == 4 and summary["val_loss"][-1] < summary["val_loss"][0]

    batch = torch.from_numpy(np.array(blocks["input_ids"].to_pylist()[:8]))
    syncs = 0
    for _ in range(2):  # one optimizer step; the forward's own syncs are transformers' (5.17: one per layer)
        engine.backward(engine(batch))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine.step()
        syncs += sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")
    n_params = len(list(engine.module.parameters()))
    assert 1 <= syncs <= 3 < n_params

    resumed = run()
    assert resumed["resumed_from"] == 4 and resumed["val_loss"] == summary["val_loss"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_loss_falls_and_kill_mid_epoch_then_resume_gives_the_same_weights(lm_data_dir, tmp_path):
    from collapse_hpc.experiments.lm.model import model_fingerprint

    # 112 train blocks, batch 16: 7 steps per epoch; checkpoints at steps 3, 6, 7, 9, 12, 14.
    overrides = {"checkpoint_every_steps": 3}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    procs = _launch(lm_data_dir, whole, overrides) + \
        _launch(lm_data_dir, killed, overrides, extra_env={"WORKER_KILL_AT_STEP": "3"})
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, -signal.SIGKILL], _tail(whole) + _tail(killed)
    summary = json.loads((whole / "summary-0.json").read_text())
    assert summary["val_loss"][-1] < summary["val_loss"][0] < summary["initial_val_loss"]
    assert summary["best_val_loss"] == min(summary["val_loss"])
    assert (whole / "model" / "model.safetensors").is_file() and (whole / "model" / "tokenizer.json").is_file()
    assert not (killed / "model").exists()
    assert (killed / "ckpt" / "step00000003" / train.COMPLETE).is_file()
    (killed / "ckpt" / "step00000005").mkdir()  # a save cut short: no completion marker, never resumed

    codes, (resumed,) = _wait(_launch(lm_data_dir, killed, overrides), killed)
    assert codes == [0], _tail(killed)
    assert resumed["resumed_from"] == 3
    assert resumed["val_loss"] == summary["val_loss"]
    assert model_fingerprint(killed / "model") == model_fingerprint(whole / "model")
    # the training curve: one entry per optimizer step, continued across the kill
    curve, n = summary["curve"], summary["steps"] // 2  # n steps per epoch
    assert curve["step"] == list(range(1, 2 * n + 1)) and curve["epoch"] == [1] * n + [2] * n
    for key in ("step", "epoch", "loss", "lr"):
        assert resumed["curve"][key] == curve[key], key
    cfg = tiny_cfg()
    assert curve["lr"] == pytest.approx([cfg.lr] * n + [cfg.lr * train.epoch_lr_factor(cfg, 1)] * n)
    for epoch in (0, 1):  # each epoch's mean step loss is the epoch's training loss
        assert np.mean(curve["loss"][n * epoch:n * (epoch + 1)]) == pytest.approx(summary["train_loss"][epoch])
    assert all(s > 0 for s in curve["seconds"])
    assert curve["tokens_per_s"] == pytest.approx([16 * 16 / s for s in curve["seconds"]])


@pytest.mark.parametrize("written, shards, mine, refused", [
    ({"zero_stage": 0, "world_size": 2, "bf16": False}, False, (0, 1, "fp32"), None),  # ZeRO-0: any rank count
    ({"zero_stage": 1, "world_size": 2, "bf16": True}, True, (1, 2, "bf16"), None),
    ({"zero_stage": 1, "world_size": 2, "bf16": False}, True, (1, 1, "fp32"),
     "written by ZeRO stage 1 on 2 ranks, this job trains by ZeRO stage 1 on 1 rank"),
    ({"zero_stage": 1, "world_size": 1, "bf16": False}, True, (0, 1, "fp32"),
     "written by ZeRO stage 1, this job trains by ZeRO stage 0"),
    (None, False, (1, 1, "bf16"), "written by ZeRO stage 0, this job trains by ZeRO stage 1 on 1 rank, bf16"),
    (None, True, (1, 1, "bf16"), None),  # before layouts were kept, with optimizer shards: left to DeepSpeed
    (None, False, (0, 4, "fp32"), None),
], ids=["zero0-ranks", "same", "zero1-ranks", "zero1-to-0", "old-zero0-to-1", "old-sharded", "old-zero0"])
def test_checkpoint_layouts_that_fit_and_that_do_not(tmp_path, written, shards, mine, refused):
    from types import SimpleNamespace

    tag = tmp_path / "step00000003"
    tag.mkdir()
    (tag / train.COMPLETE).write_text(json.dumps({"global_step": 3} | ({"layout": written} if written else {})))
    if shards:
        (tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"")
    job = SimpleNamespace(zero_stage=mine[0], world_size=mine[1], precision=mine[2], ckpt_dir=tmp_path)
    job._layout = lambda: train._Training._layout(job)
    if refused is None:
        train._Training._check_layout(job, tag)
    else:
        with pytest.raises(UserError, match=re.escape(refused)):
            train._Training._check_layout(job, tag)


@pytest.mark.timeout(600)
def test_a_checkpoint_laid_out_otherwise_is_refused_by_name(lm_data_dir, tmp_path):
    """bf16 weights trained at ZeRO-0 (DeepSpeed's bf16 gradient accumulation, what versions
    before bf16 ran as ZeRO-1 wrote) and resumed as ZeRO-1: one line saying why the checkpoint
    does not fit and what to delete, not DeepSpeed's missing optimizer file."""
    base = {"checkpoint_every_steps": 3, "precision": "bf16", "epochs": 1, "max_train_blocks": 64}
    zero0 = {**base, "deepspeed": {"data_types": {"grad_accum_dtype": "bf16"}}}
    codes, _ = _wait(_launch(lm_data_dir, tmp_path, zero0, extra_env={"WORKER_KILL_AT_STEP": "3"}), tmp_path)
    assert codes == [-signal.SIGKILL], _tail(tmp_path)
    marker = json.loads((tmp_path / "ckpt" / "step00000003" / train.COMPLETE).read_text())
    assert marker["layout"] == {"zero_stage": 0, "world_size": 1, "bf16": True}
    codes, _ = _wait(_launch(lm_data_dir, tmp_path, base), tmp_path)
    log = _tail(tmp_path)
    assert codes == [1]
    assert ("step00000003: written by ZeRO stage 0 on 1 rank, bf16 weights, this job trains by ZeRO stage 1 "
            "on 1 rank, bf16 weights: its optimizer state does not fit; delete") in log, log
    assert "optim_states.pt" not in log
    # the marker as versions before layouts wrote it: a ZeRO-0 checkpoint shows by its missing optimizer shards
    del marker["layout"], marker["manifest_sha256"], marker["files"]
    (tmp_path / "ckpt" / "step00000003" / train.COMPLETE).write_text(json.dumps(marker))
    codes, _ = _wait(_launch(lm_data_dir, tmp_path, base), tmp_path)
    log = _tail(tmp_path)
    assert codes == [1]
    assert ("step00000003: written by ZeRO stage 0, this job trains by ZeRO stage 1 on 1 rank, bf16 weights: "
            "its optimizer state does not fit") in log, log


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_ranks_over_gloo_keep_identical_parameters_and_train_as_one(lm_data_dir, tmp_path):
    """Two ranks keep identical parameters, and they compute what one rank computes: the same
    global batches, micro-batches and dropout masks, so generation 0's loss curve (each step's
    global-batch loss) and validation losses agree up to the order of floating-point sums."""
    from collapse_hpc.experiments.lm.data import load_blocks
    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import load_model
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    one = tmp_path / "one-rank"
    procs = _launch(lm_data_dir, tmp_path, {"zero_stage": 2}, world=2) + _launch(lm_data_dir, one, {"zero_stage": 2})
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0], _tail(tmp_path) + _tail(one)
    _, (r0, r1) = _wait(procs[:2], tmp_path)
    _, (alone,) = _wait(procs[2:], one)
    assert alone["gradient_accumulation"] == 2 and alone["micro_batch_size"] == 8  # 16 = 2 x 8 on one rank
    assert len(alone["curve"]["loss"]) == len(r0["curve"]["loss"]) == r0["steps"]
    np.testing.assert_allclose(r0["curve"]["loss"], alone["curve"]["loss"], rtol=2e-4)
    np.testing.assert_allclose(r0["train_loss"], alone["train_loss"], rtol=2e-4)
    np.testing.assert_allclose(r0["val_loss"], alone["val_loss"], rtol=2e-4)
    assert r1["curve"]["loss"] == r0["curve"]["loss"]  # every rank records the global batch's loss
    assert r0["params"] == r1["params"]
    assert r0["gradient_accumulation"] == 1 and r0["micro_batch_size"] == 8
    _no_gloo_thread_left(r0, r1)
    assert r0["val_loss"] == r1["val_loss"] and r0["val_loss"][-1] < r0["initial_val_loss"]
    # perplexity sharded over the 2 ranks = unsharded perplexity of the saved model
    val = load_blocks(lm_data_dir, "tiny", "validation", load_tokenizer(tiny_cfg(), lm_data_dir), 16)
    corpus, per_seq = perplexity(load_model(tmp_path / "model"), val, 5, "cpu")
    assert r0["per_seq"] == r1["per_seq"]
    np.testing.assert_allclose(r0["per_seq"], per_seq, rtol=1e-5)
    assert r0["ppl"] == pytest.approx(corpus, rel=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bf16_weights_on_two_gloo_ranks_train_as_one(lm_data_dir, tmp_path):
    """precision: bf16 over two ranks (DeepSpeed's BF16_Optimizer partitions the fp32 master
    weights, all-reduces fp32 gradients and all-gathers the bf16 weights) takes one rank's steps."""
    one = tmp_path / "one-rank"
    over = {"precision": "bf16", "epochs": 1, "max_train_blocks": 64}
    procs = _launch(lm_data_dir, tmp_path, over, world=2) + _launch(lm_data_dir, one, over)
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0], _tail(tmp_path) + _tail(one)
    _, (r0, r1) = _wait(procs[:2], tmp_path)
    _, (alone,) = _wait(procs[2:], one)
    assert r0["params"] == r1["params"] and r0["zero_stage"] == alone["zero_stage"] == 1
    assert (r0["master_dtype"], r0["compute_dtype"]) == ("float32", "bfloat16")
    assert len(r0["curve"]["loss"]) == r0["steps"] == 4
    np.testing.assert_allclose(r0["curve"]["loss"], alone["curve"]["loss"], rtol=1e-3)  # bf16 rounding
    np.testing.assert_allclose(r0["val_loss"], alone["val_loss"], rtol=1e-3)
    assert r0["val_loss"][-1] < r0["initial_val_loss"]
    _no_gloo_thread_left(r0, r1)


def test_single_process_defaults_keep_deepspeed_off_mpi(monkeypatch):
    from collapse_hpc.experiments.lm import distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCH_EXTENSIONS_DIR"):
        monkeypatch.delenv(name, raising=False)
    added = distributed.setup_env()
    assert {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCH_EXTENSIONS_DIR"} <= set(added)
    assert os.environ["WORLD_SIZE"] == "1" and int(os.environ["MASTER_PORT"]) > 0
    assert os.environ["TORCH_EXTENSIONS_DIR"].endswith("collapse-hpc/torch_extensions")
    monkeypatch.setenv("WORLD_SIZE", "2")  # the launch layer's values are never replaced
    monkeypatch.setenv("MASTER_PORT", "1234")
    distributed.setup_env()
    assert os.environ["MASTER_PORT"] == "1234"


def test_memory_stays_flat_over_an_epoch(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """No step keeps anything of an earlier one: keeping each step's detached loss grew memory by
    the size of a step's logits every step (here 4 MB: a vocabulary of 8000 on micro-batches of
    8 x 16 tokens; ~32 MB a step in the benchmark)."""
    import torch

    from collapse_hpc.experiments.lm.model import random_model, tiny_config

    cfg = tiny_cfg(epochs=1)
    config = tiny_config(cfg, lm_tokenizer)
    config.vocab_size = 8000  # big logits; the tokenizer's 300 ids fit
    model = random_model(config)
    rss = []

    def hook(module, args, output):
        if torch.is_grad_enabled():  # training steps, not validation
            rss.append(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE"))

    model.get_decoder().register_forward_hook(hook)  # every training forward runs it (the chunked loss too)
    blocks = lm_blocks["train"].slice(0, 512)
    train.train_generation(model, lm_tokenizer, blocks, lm_blocks["validation"], cfg, tmp_path / "model",
                           tmp_path / "ckpt", seed=0, rank=0, world_size=1, local_rank=0)
    assert len(rss) == 64
    grown = rss[-1] - rss[8]  # after the first steps have warmed the allocator up
    assert grown < 64 * 2**20, f"memory grew by {grown / 2**20:.0f} MB over 56 training steps"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compiled_engine_takes_the_eager_steps_compiles_once_and_saves_plain_weights(
        lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch):
    """`compile: true` (torch.compile through engine.compile, inductor: this machine has gcc) takes
    the eager engine's 20 steps (losses within 1e-4 relative; dropout off, as inductor draws its
    own random numbers), compiles one graph and never recompiles (every block has one shape, and
    validation runs the uncompiled model); weights are saved under the model's own names (no
    `_orig_mod.` prefix)."""
    import torch._dynamo
    from safetensors import safe_open
    from torch._dynamo.utils import counters

    from collapse_hpc.experiments.lm.model import build_model, load_model

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # never the shared /tmp one
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    torch._dynamo.reset()
    counters.clear()
    blocks = lm_blocks["train"].slice(0, 160)  # 10 steps per epoch, 2 epochs
    summaries = {}
    for compiled in (False, True):
        cfg = tiny_cfg(compile=compiled, epochs=2, dropout=0.0)
        model = build_model(cfg, lm_tokenizer, lm_data_dir)
        names = set(model.state_dict())
        out = tmp_path / f"model-{compiled}"
        summaries[compiled] = train.train_generation(
            model, lm_tokenizer, blocks, lm_blocks["validation"], cfg, out, tmp_path / f"ckpt-{compiled}",
            seed=0, rank=0, world_size=1, local_rank=0)
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            saved = set(f.keys())
        assert saved and not any("_orig_mod" in k for k in saved)
        assert saved <= names
        assert set(load_model(out).state_dict()) == names
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    eager, compiled = summaries[False]["curve"]["loss"], summaries[True]["curve"]["loss"]
    assert len(eager) == len(compiled) == 20
    np.testing.assert_allclose(compiled, eager, rtol=1e-4)
    torch._dynamo.reset()


def test_saved_model_folder_is_readable_by_the_group(tmp_path):
    # mkdtemp makes 0700: on a shared cluster others must read the model as they read every result
    class Stub:
        def save_pretrained(self, where):
            Path(where, "config.json").write_text("{}")

    old = os.umask(0o022)
    try:
        train._save_pretrained_atomic(Stub(), None, tmp_path / "model")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip (DeepSpeed's default)", "legacy"])
def test_a_training_checkpoint_on_a_full_disk_is_said_as_every_full_disk_is(tmp_path, zipfile):
    """DeepSpeed's torch.save of a checkpoint on a full disk raised PyTorch's own RuntimeError ("[enforce
    fail at inline_container.cc] … unexpected pos", "PytorchStreamWriter failed writing file …"), no
    errno: the unit's FAILED line gave those words, not the file system that was full."""
    import errno

    import torch

    from collapse_hpc.experiments.lm.checkpoint import WeightsOnlyCheckpointEngine
    from collapse_hpc.store import space

    states = tmp_path / "step00000004" / "mp_rank_00_model_states.pt"
    states.parent.mkdir()
    states.symlink_to("/dev/full")  # every write answers ENOSPC, as a full file system does
    engine = WeightsOnlyCheckpointEngine()
    engine.zipfile_serialization = zipfile
    with pytest.raises(OSError) as e:
        engine.save({"module": torch.zeros(1 << 16)}, str(states))
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(states))
    assert space.explain(e.value).startswith(f"{states}: No space left on device: the file system at ")
    engine.save({"module": torch.arange(4)}, str(tmp_path / "fits.pt"))  # room: the same file as before
    assert engine.load(str(tmp_path / "fits.pt"))["module"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("change, why", [
    ("marker", "its complete.json: changed since it was written (its own checksum does not match)"),
    ("cut", "zero_pp_rank_0_mp_rank_00_optim_states.pt: size 250 != 500 in complete.json"),
    ("rewritten", "zero_pp_rank_0_mp_rank_00_optim_states.pt: sha256 mismatch"),
    ("gone", "zero_pp_rank_0_mp_rank_00_optim_states.pt: missing"),
], ids=["marker", "cut", "rewritten", "gone"])
def test_a_step_its_marker_no_longer_vouches_for_is_found_before_resume_loads_it(tmp_path, change, why):
    """complete.json was trusted once it parsed: a flipped digit in it (its layout: every later job refused the
    step as laid out otherwise) went unseen, and a rank's optimizer file gone or cut short was found by DeepSpeed
    with the weights already loaded. It carries its own checksum and each file's size and sha256: what no longer
    matches sets the step aside (unreadable), the files' bytes hashed only where written after it."""
    step = _marked_step(tmp_path)
    shard, marker = step / "zero_pp_rank_0_mp_rank_00_optim_states.pt", step / train.COMPLETE
    assert train._unreadable_marker(step) is None
    if change == "marker":  # still JSON, still a mapping
        marker.write_text(marker.read_text().replace('"zero_stage": 1', '"zero_stage": 3'))
    elif change == "cut":
        shard.write_bytes(b"state" * 50)
    elif change == "rewritten":  # the same size, written after the marker
        shard.write_bytes(b"STATE" * 100)
        os.utime(shard, ns=(marker.stat().st_mtime_ns + 10**9,) * 2)
    else:
        shard.unlink()
    assert train._unreadable_marker(step) == (why if change == "marker" else f"{step / why}")


def _marked_step(tmp_path):
    """A step folder with a model file and a rank's optimizer file, and the complete.json that vouches for them."""
    step = tmp_path / "step00000003"
    step.mkdir()
    (step / "mp_rank_00_model_states.pt").write_bytes(b"weights" * 100)
    (step / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"state" * 100)
    state = {"global_step": 3, "layout": {"zero_stage": 1, "world_size": 1}}
    (step / train.COMPLETE).write_text(train._marked(step, state))
    return step


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_checkpoint_file_the_file_system_will_not_read_for_its_hash_is_said_as_the_checkpoints(
        tmp_path, monkeypatch, refusal):
    """A file written after its complete.json is hashed; a read of it refused was said in a unit manifest's
    words ("listed file …: the unit is kept as it is (not redone)"), not as the training checkpoint it is."""
    from collapse_hpc.experiments.lm.checkpoint import NotRead

    step = _marked_step(tmp_path)
    shard = step / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    os.utime(shard, ns=((step / train.COMPLETE).stat().st_mtime_ns + 10**9,) * 2)
    refuse_reads(monkeypatch, shard, refusal)
    with pytest.raises(NotRead) as said:
        train._unreadable_marker(step)
    assert str(said.value).startswith(f"training checkpoint {shard}: not read ({os.strerror(refusal)}): kept as "
                                      f"it is (not set aside); training resumes from it once the file reads again")


def test_a_folder_in_place_of_a_checkpoint_file_is_said_as_its_marker_lists_it(tmp_path):
    step = _marked_step(tmp_path)
    shard = step / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.unlink()
    shard.mkdir()
    assert train._unreadable_marker(step) == f"{shard}: a folder, not the file its complete.json lists"


def test_an_older_versions_step_marker_is_trusted_as_it_was(tmp_path):
    """A complete.json of an older version (no checksums) still reads as one: the step resumes."""
    step = tmp_path / "step00000003"
    step.mkdir()
    (step / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (step / train.COMPLETE).write_text(json.dumps({"global_step": 3, "layout": {"zero_stage": 0}}))
    assert train._unreadable_marker(step) is None


def test_a_checkpoint_cut_short_after_it_was_marked_complete_names_what_deleting_it_does(tmp_path):
    """A node's crash can cut a step's file after its complete.json was written. Cut to 100 bytes, torch.load
    raised a bare EOFError, and quoting its first line of none ended the job in an IndexError traceback;
    the line said deleting the step folder resumes from an earlier one, but training keeps its latest
    complete checkpoint only, so the generation then trains from its start."""
    import torch

    from collapse_hpc.experiments.lm.checkpoint import WeightsOnlyCheckpointEngine

    states = tmp_path / "mp_rank_00_model_states.pt"
    engine = WeightsOnlyCheckpointEngine()
    engine.save({"module": torch.arange(4)}, str(states))
    states.write_bytes(states.read_bytes()[:100])
    with pytest.raises(UserError, match=r"not readable \(.*\); delete its step folder: the generation then trains "
                                        r"from its start"):
        engine.load(str(states))


@pytest.mark.timeout(600)
def test_step_folders_a_full_disk_or_a_kill_cut_short_are_removed_by_the_next_writer(
        lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch):
    """A save that failed on a full disk (or was killed) left its step folder without complete.json:
    resume ignored it, and nothing removed it (an OPT-125M step with its optimizer state is ~1.5 GB of
    a quota), so the resumed job met the same full disk. The failed save removes its own step folder
    now, its error still the full disk's; the next writer removes what a kill left before it trains;
    the complete steps stay (an earlier one is what a refused newest one falls back to)."""
    import errno

    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(epochs=1, checkpoint_every_steps=2)  # 64 blocks of 16 a step: checkpoints at steps 2 and 4
    ckpt = tmp_path / "ckpt"
    full, killed = ckpt / "step00000004", ckpt / "step00000003"
    checkpoint = train._Training.checkpoint

    def disk_full_at_step_4(self):
        if self.state["global_step"] == 4:  # the disk fills up between the two saves
            full.mkdir()
            (full / "mp_rank_00_model_states.pt").symlink_to("/dev/full")  # every write answers ENOSPC
        checkpoint(self)

    def attempt():
        return train.train_generation(build_model(cfg, lm_tokenizer, lm_data_dir), lm_tokenizer,
                                      lm_blocks["train"].slice(0, 64), lm_blocks["validation"], cfg,
                                      tmp_path / "model", ckpt, seed=0, rank=0, world_size=1, local_rank=0)

    monkeypatch.setattr(train._Training, "checkpoint", disk_full_at_step_4)
    with pytest.raises(OSError) as e:
        attempt()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(full / "mp_rank_00_model_states.pt")
    assert (ckpt / "step00000002" / train.COMPLETE).is_file() and not full.exists()  # gone at the failure
    killed.mkdir()  # an earlier attempt's save, killed midway: a step this job never saves again
    (killed / "mp_rank_00_model_states.pt").write_bytes(b"partly written")
    (ckpt / ".tmp-best.x1y2z3").mkdir()  # and a best-model swap killed before its rename
    (ckpt / ".tmp-best.x1y2z3" / "model.safetensors").write_bytes(b"partly written")
    monkeypatch.undo()
    summary = attempt()  # what filled the disk is gone: the same step's save succeeds
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    assert sorted(p.name for p in ckpt.iterdir()) == ["best", "step00000004"]
    assert (full / train.COMPLETE).is_file() and not (full / "mp_rank_00_model_states.pt").is_symlink()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("older", [False, True], ids=["checkpoint", "older version's checkpoint"])
def test_a_resumed_job_counts_the_training_time_and_tokens_its_checkpoint_holds(
        lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch, older):
    """training.json's seconds (metrics.parquet's train_seconds), tokens and epoch_seconds started at 0 in every
    job, so a unit killed after a checkpoint and resumed counted only its last job's steps: its tokens/s too.
    They ride in the checkpoint now: the resumed job counts the time trained up to it, and its own. A checkpoint
    of an older version, without them, still resumes, counted from 0 as then."""
    import time

    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(epochs=1, checkpoint_every_steps=2)  # 64 blocks of 16 a step: 4 steps, checkpoint at step 2
    step, checkpoint = train._Training.optimizer_step, train._Training.checkpoint
    timed: list[float] = []  # each step's seconds that the resumed summary should count

    class Killed(Exception):
        pass

    def slow_step(self, *args):  # each step takes half a second at least
        started = time.perf_counter()
        time.sleep(0.5)
        loss = step(self, *args)
        timed.append(time.perf_counter() - started)
        return loss

    def killed_after_step_2(self):
        if self.state["global_step"] == 4:  # the job dies before the epoch's checkpoint: steps 3-4 are lost
            raise Killed
        if older:
            save, sums = self.engine.save_checkpoint, ("train_seconds", "tokens", "epoch_seconds")
            self.engine.save_checkpoint = lambda *a, client_state, **k: save(
                *a, client_state={key: v for key, v in client_state.items() if key not in sums}, **k)
        checkpoint(self)

    def attempt():
        return train.train_generation(build_model(cfg, lm_tokenizer, lm_data_dir), lm_tokenizer,
                                      lm_blocks["train"].slice(0, 64), lm_blocks["validation"], cfg,
                                      tmp_path / "model", tmp_path / "ckpt", seed=0, rank=0, world_size=1,
                                      local_rank=0)

    monkeypatch.setattr(train._Training, "optimizer_step", slow_step)
    monkeypatch.setattr(train._Training, "checkpoint", killed_after_step_2)
    with pytest.raises(Killed):
        attempt()
    del timed[2:]  # steps 3-4 of the first job: past its last checkpoint
    monkeypatch.setattr(train._Training, "checkpoint", checkpoint)
    summary = attempt()
    assert summary["resumed_from"] == 2 and summary["steps"] == 4 and len(timed) == 4
    if older:  # this job's 2 steps alone
        assert sum(timed[2:]) <= summary["seconds"] < sum(timed) and summary["epoch_seconds"] == [summary["seconds"]]
        assert summary["tokens"] == 2 * cfg.batch_size * cfg.block_size
        return
    assert summary["seconds"] >= sum(timed) > 2.0  # both jobs' steps (the resumed job's alone: 2 of them, ~1 s)
    assert summary["epoch_seconds"] == [summary["seconds"]]
    assert summary["tokens"] == 4 * cfg.batch_size * cfg.block_size
    assert summary["tokens_per_s"] == pytest.approx(summary["tokens"] / summary["seconds"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_checkpoint_marker_is_written_atomically(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch):
    """complete.json is what makes resume trust a step: it appears whole or not at all."""
    from collapse_hpc.experiments.lm.model import build_model
    from collapse_hpc.store import atomic

    writes = []
    _spy(monkeypatch, atomic, "write_text", writes)
    cfg = tiny_cfg(epochs=1)
    model = build_model(cfg, lm_tokenizer, lm_data_dir)
    train.train_generation(model, lm_tokenizer, lm_blocks["train"].slice(0, 16), lm_blocks["validation"], cfg,
                           tmp_path / "model", tmp_path / "ckpt", seed=0, rank=0, world_size=1, local_rank=0)
    markers = [args[0] for args, _, _ in writes if str(args[0]).endswith(train.COMPLETE)]
    assert markers and all(p.parent.parent == tmp_path / "ckpt" for p in markers)


def test_joining_builds_no_extension_and_a_stale_build_lock_cannot_hang_it(tmp_path):
    """A job killed while DeepSpeed JIT-built its shared-memory op left `lock` in the extensions
    folder, and every later job waited on it forever (CI hung 15 min per test); a fresh machine
    spent ~45 s compiling it. Joining the process group and starting an engine (whose comm layer
    adopts the group) build nothing now."""
    stale = tmp_path / "ext" / "deepspeed_shm_comm"
    stale.mkdir(parents=True)
    (stale / "lock").touch()
    code = ("import torch; from collapse_hpc.experiments.lm import distributed; got = distributed.init()[:2]; "
            "net = torch.nn.Linear(2, 2); distributed.load_deepspeed().initialize(model=net, "
            "optimizer=torch.optim.AdamW(net.parameters()), config={'train_batch_size': 1}); print(got)")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(0, 1)"
    assert sorted(p.name for p in stale.iterdir()) == ["lock"]  # nothing built beside it


def test_joining_the_process_group_leaves_deepspeed_to_training():
    """distributed.init is torch's own init_process_group: a job that finds its model trained (a
    requeued one) never pays DeepSpeed's import; training imports it, timed as its own phase."""
    code = ("import sys; from collapse_hpc.experiments.lm import distributed; print(distributed.init()[:2]); "
            "print('deepspeed' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-3:-1] == ["(0, 1)", "False"]


@pytest.mark.parametrize("cuda,world,expect", [
    (False, 1, {"backend": "gloo"}), (False, 4, {"backend": "gloo"}),
    (True, 1, {"backend": "nccl"}),  # one GPU: left unbound, as DeepSpeed does (its issue 8248)
    (True, 4, {"backend": "nccl", "device_id": "cuda:3"})])
def test_gpu_ranks_bind_their_device_when_joining(cuda, world, expect):
    """On GPUs with more than one rank the process group binds the rank's device (device_id), so NCCL
    connects eagerly in init_process_group; CPU ranks use gloo, unbound. The logic alone (no GPU
    here): torch.device('cuda', n) is only a name until used."""
    from datetime import timedelta

    from collapse_hpc.experiments.lm.distributed import group_options

    got = group_options(cuda, world, 3, 60.0)
    assert got.pop("timeout") == timedelta(seconds=60) and got.pop("init_method") == "env://"
    assert {k: str(v) for k, v in got.items()} == expect


def test_training_and_evaluation_never_build_a_kv_cache(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """HF's OPT returns a key/value cache from every forward unless told not to: in training and
    evaluation that is memory and time for nothing (and under torch.compile a recompile trigger)."""
    import torch

    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(epochs=1)
    model = build_model(cfg, lm_tokenizer, lm_data_dir)
    caches = []
    # the decoder: every forward runs it (the chunked loss without the causal LM's own forward)
    model.get_decoder().register_forward_hook(lambda _m, _a, out: caches.append(out.past_key_values))
    val = lm_blocks["validation"].slice(0, 16)
    train.train_generation(model, lm_tokenizer, lm_blocks["train"].slice(0, 32), val, cfg,
                           tmp_path / "model", tmp_path / "ckpt", seed=0, rank=0, world_size=1, local_rank=0)
    trained = len(caches)
    perplexity(model, val, 8, torch.device("cpu"))
    assert trained > 0 and len(caches) > trained
    built = sum(c is not None for c in caches)
    assert built == 0, f"{built} of {len(caches)} forwards built a cache"


def test_compile_loss_and_sample_precision_options_are_validated():
    """reduce-overhead (CUDA graphs of the step) is accepted; what torch.compile or the decoder would
    refuse mid-run is one config error up front."""
    from collapse_hpc import experiments
    from collapse_hpc.errors import ConfigError

    def lm(**values):
        return experiments.config_from_dict({"regimes": ["replace"], "lm": values}).section("lm")

    s = lm(compile=True, compile_mode="reduce-overhead", compile_backend="aot_eager", loss_chunk_tokens=0,
           sample_precision="bf16")
    assert (s.compile_mode, s.compile_backend, s.loss_chunk_tokens, s.sample_precision) == (
        "reduce-overhead", "aot_eager", 0, "bf16")
    assert (lm().compile_mode, lm().loss_chunk_tokens, lm().sample_precision) == ("default", 2048, "fp32")
    for key, bad in (("compile_mode", "max-autotune"), ("compile_backend", "eager"), ("loss_chunk_tokens", -1),
                     ("sample_precision", "fp16")):
        with pytest.raises(ConfigError, match=key):
            lm(**{key: bad})


def test_a_diverging_training_says_so(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """lr 1e6 makes the weights NaN in the first epoch: no validation loss is finite, so no best model
    is ever saved; the generation failed with '.../checkpoints/best: no saved model'."""
    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(epochs=2, lr=1e6)
    model = build_model(cfg, lm_tokenizer, lm_data_dir)
    with pytest.raises(UserError, match=r"lm: training diverged: the validation loss is nan after epoch 1 of 2, "
                                        r"and no epoch before had a finite one \(lm.lr 1e\+06\); lower lm.lr"):
        train.train_generation(model, lm_tokenizer, lm_blocks["train"].slice(0, 32),
                               lm_blocks["validation"].slice(0, 16), cfg, tmp_path / "model", tmp_path / "ckpt",
                               seed=0, rank=0, world_size=1, local_rank=0)
    assert not (tmp_path / "model").exists()


def test_a_training_forward_at_layerdrop_0_draws_no_layerdrop_number_and_keeps_dropout():
    """transformers 5.17's OPT decoder drew LayerDrop's number for every layer in training even at
    layerdrop 0: a host sync per layer (and a graph break per layer under compile). The decoder's
    own flag stays off through train(); its layers train, so dropout still draws its masks."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import OPTConfig

    from collapse_hpc.experiments.lm.model import random_model, skip_layerdrop_draws

    config = OPTConfig(vocab_size=64, hidden_size=16, word_embed_proj_dim=16, num_hidden_layers=4,
                       num_attention_heads=2, ffn_dim=32, dropout=0.1, layerdrop=0.0)
    model = random_model(config)
    skip_layerdrop_draws(model)
    model.eval()
    model.train()
    decoder = model.get_decoder()
    assert model.training and not decoder.training and all(layer.training for layer in decoder.layers)
    ids = torch.randint(0, 64, (2, 8))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        first = model(input_ids=ids, use_cache=False).logits
    syncs = sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")
    assert syncs <= 1 < len(decoder.layers)  # 5.17's all-ones mask check may stay: once, not per layer
    assert not torch.equal(first, model(input_ids=ids, use_cache=False).logits)  # dropout draws
    model.eval()
    assert torch.equal(*(model(input_ids=ids, use_cache=False).logits for _ in range(2)))  # eval: none

    dropping = random_model(OPTConfig(**{**config.to_dict(), "layerdrop": 0.5}))
    skip_layerdrop_draws(dropping)
    dropping.train()
    assert dropping.get_decoder().training  # LayerDrop asked for: the decoder keeps drawing


def _cut_short(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _flipped_bit(path):  # in a tensor's bytes: torch.load reads it without a word
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _two_epochs(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """ckpt -> the tiny model's training of 2 epochs of 2 steps (a checkpoint at step 2, then 4) there."""
    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(zero_stage=1, epochs=2)
    blocks = lm_blocks["train"].slice(0, 32)

    def run(ckpt):
        return train.train_generation(build_model(cfg, lm_tokenizer, lm_data_dir), lm_tokenizer, blocks,
                                      lm_blocks["validation"], cfg, tmp_path / "model", ckpt, seed=0, rank=0,
                                      world_size=1, local_rank=0)
    return run


def _killed_in_epoch_2(run, ckpt, monkeypatch):
    """`run(ckpt)` killed after the first epoch's checkpoint (step00000002)."""
    epoch = train._Training.epoch

    def killed_in_epoch_2(self, n):
        if n == 1:
            raise KeyboardInterrupt
        epoch(self, n)

    monkeypatch.setattr(train._Training, "epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt)
    monkeypatch.undo()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("damaged, damage", [
    ("*optim_states.pt", _cut_short),  # ZeRO's optimizer file, read after the weights were applied
    ("*model_states.pt", _garbage),
    ("*model_states.pt", _flipped_bit),
    (train.COMPLETE, _garbage),
], ids=["optimizer file cut short", "model file garbage", "model file with a flipped bit", "marker garbage"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_generation_trains_from_its_start(
        damaged, damage, lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch, caplog):
    """A step folder marked complete whose files a crash left cut short or garbage stopped every later job
    of the unit on the same error line (a complete.json of garbage: a traceback) until it was deleted by
    hand. Now it is set aside (renamed, kept) with one warning line, and the generation trains from its
    start as a job that never saved would: the same losses, nothing of the damaged step half loaded."""
    import logging

    run = _two_epochs(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path)
    whole = run(tmp_path / "whole")
    ckpt = tmp_path / "ckpt"
    _killed_in_epoch_2(run, ckpt, monkeypatch)
    step = ckpt / "step00000002"
    (target,) = step.glob(damaged)
    damage(target)
    bad = target.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = run(ckpt)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "checkpoint" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"warning: training checkpoint {step} is unreadable ("), said
    assert target.name in said[0] and said[0].endswith(
        "set aside as unreadable-step00000002 (kept with the checkpoints until this generation's model is "
        "published); this generation trains from its start"), said
    assert again["resumed_from"] is None and again["val_loss"] == whole["val_loss"]
    assert again["train_loss"] == whole["train_loss"]
    kept = ckpt / "unreadable-step00000002"
    assert (kept / target.name).read_bytes() == bad  # kept as it was found
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["best", "step00000004", "unreadable-step00000002"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("refused, refusal", [
    ("*model_states.pt", errno.EACCES),  # torch.load's open
    ("*optim_states.pt", errno.EIO),  # zipfile's CRC check, reading its members
    (train.COMPLETE, errno.EACCES),  # the marker's
], ids=["model file not permitted", "optimizer file with an I/O error", "marker not permitted"])
def test_a_checkpoint_the_file_system_will_not_read_now_is_kept_and_resumed_from_once_it_reads(
        refused, refusal, lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch):
    """A read of a whole checkpoint refused by the file system (EACCES, EIO) was taken for damage: the step
    folder was set aside and its training lost. Now it stops the unit in one line naming the file and
    the error, the folder kept as it is; the next job, once the file reads, resumes from it."""
    run = _two_epochs(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path)
    ckpt = tmp_path / "ckpt"
    _killed_in_epoch_2(run, ckpt, monkeypatch)
    step = ckpt / "step00000002"
    (target,) = step.glob(refused)
    before = {p.name: p.read_bytes() for p in step.iterdir()}
    refuse_reads(monkeypatch, target, refusal)
    with pytest.raises(UserError) as said:
        run(ckpt)
    monkeypatch.undo()
    assert str(said.value) == (
        f"training checkpoint {target}: not read ({os.strerror(refusal)}): kept as it is (not set aside); "
        f"training resumes from it once the file reads again (its permissions, the file system): run the same "
        f"command again")
    assert sorted(p.name for p in ckpt.glob("*step*")) == ["step00000002"]  # none set aside
    assert {p.name: p.read_bytes() for p in step.iterdir()} == before
    assert run(ckpt)["resumed_from"] == 2


@pytest.mark.timeout(900)
def test_a_marker_the_file_system_refuses_when_read_again_for_the_layout_stops_the_unit_the_same_way(
        lm_data_dir, lm_tokenizer, lm_blocks, tmp_path, monkeypatch):
    """The layout check reads complete.json again after the checkpoint was found whole: a refusal there (a
    race) ended the unit in a traceback. Now it is the same one line, the checkpoint kept."""
    run = _two_epochs(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path)
    ckpt = tmp_path / "ckpt"
    _killed_in_epoch_2(run, ckpt, monkeypatch)
    marker = ckpt / "step00000002" / train.COMPLETE
    readable = train._Training._readable

    def then_refused(self, tag_dir, then):
        whole = readable(self, tag_dir, then)
        refuse_reads(monkeypatch, marker, errno.EACCES)
        return whole

    monkeypatch.setattr(train._Training, "_readable", then_refused)
    with pytest.raises(UserError, match=re.escape(f"training checkpoint {marker}: not read (Permission denied): "
                                                  f"kept as it is (not set aside)")):
        run(ckpt)
    monkeypatch.undo()
    assert run(ckpt)["resumed_from"] == 2


def test_a_save_that_fails_on_another_rank_leaves_the_step_folder_to_rank_0(tmp_path):
    """A save failed on rank 1 (a full disk on its part) while rank 0 still wrote its own files in the step folder:
    rank 1 removed the folder under it, rank 0 failed on "No such file or directory", and the job's FAILED line
    (the lowest failed rank's) named that, not the full disk. Rank 0, the step folders' only remover, removes it."""
    from types import SimpleNamespace

    step = tmp_path / "ckpt" / "step00000004"
    step.mkdir(parents=True)
    (step / "mp_rank_00_model_states.pt").write_bytes(b"rank 0 writing")

    def refused(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device", str(step / "zero_pp_rank_1_optim_states.pt"))

    def on_rank(rank):
        return SimpleNamespace(state={"global_step": 4, "curve": []}, ckpt_dir=step.parent, rank=rank,
                               curve=SimpleNamespace(flush=lambda _: None),
                               engine=SimpleNamespace(save_checkpoint=refused))

    with pytest.raises(OSError, match="No space left"):
        train._Training.checkpoint(on_rank(1))
    assert (step / "mp_rank_00_model_states.pt").read_bytes() == b"rank 0 writing"
    with pytest.raises(OSError, match="No space left"):
        train._Training.checkpoint(on_rank(0))
    assert not step.exists()
