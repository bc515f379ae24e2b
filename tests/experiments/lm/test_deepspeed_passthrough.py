"""lm.deepspeed: a mapping (or a JSON file) merged over the generated DeepSpeed config, reaching
the real engine: ZeRO-3 and DeepSpeed's csv monitor on two CPU ranks over gloo."""
import json
import subprocess
import sys

import numpy as np
import pytest

from collapse_hpc import experiments
from collapse_hpc.errors import ConfigError
from collapse_hpc.experiments.lm import train
from tests.experiments.lm.conftest import tiny_cfg
from tests.experiments.lm.test_train import REPO, _launch, _no_gloo_thread_left, _tail, _wait


def test_passthrough_merges_over_the_generated_config():
    over = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}, "gradient_clipping": 1.0,
            "csv_monitor": {"enabled": True, "output_path": "mon/"}}
    conf = train.ds_config(tiny_cfg(deepspeed=over), 16, 4, 2, "fp32")
    assert conf["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"}}
    assert conf["gradient_clipping"] == 1.0 and conf["csv_monitor"]["enabled"]
    assert conf["train_batch_size"] == 128 and conf["bf16"] == {"enabled": False}  # the generated rest stays
    assert train.ds_config(tiny_cfg(), 16, 4, 2, "fp32")["gradient_clipping"] == 0.0


def _load(tmp_path, deepspeed):
    return experiments.config_from_dict({"lm": {"deepspeed": deepspeed}}, str(tmp_path / "c.yaml")).sections["lm"]


def test_a_json_file_is_read_when_the_config_loads(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}, "wall_clock_breakdown": True}))
    section = _load(tmp_path, str(path))
    assert section.deepspeed == {"zero_optimization": {"stage": 3}, "wall_clock_breakdown": True}
    assert _load(tmp_path, {"gradient_clipping": 0.5}).deepspeed == {"gradient_clipping": 0.5}


@pytest.mark.parametrize("content, message", [
    (None, "lm.deepspeed: deepspeed: cannot read {path}: No such file or directory"),
    ("{not json", "lm.deepspeed: deepspeed: {path} is not valid JSON: Expecting property name"),
    ("[1, 2]", "lm.deepspeed: deepspeed: {path} holds list, not a mapping of DeepSpeed keys"),
    ('{"train_batch_size": 64}', "lm.deepspeed: deepspeed: train_batch_size follow from batch_size"),
])
def test_a_bad_file_is_one_error_line(tmp_path, content, message):
    path = tmp_path / "ds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, str(path))
    assert message.format(path=path).replace("lm.deepspeed: ", "") in str(e.value)
    assert "\n" not in str(e.value)


def test_the_keys_help_says_what_a_batch_key_meets(tmp_path):
    # it read "... the run keeps its contents). Batch sizes: batch_size", cut off before saying what happens
    import dataclasses

    from collapse_hpc.experiments.lm.config import DERIVED_DEEPSPEED_KEYS, LMConfig

    help = next(f for f in dataclasses.fields(LMConfig) if f.name == "deepspeed").metadata["help"]
    assert "batch keys are refused" in help and "batch_size, micro_batch_size and ranks" in help
    with pytest.raises(ConfigError, match="follow from batch_size, micro_batch_size"):
        _load(tmp_path, {DERIVED_DEEPSPEED_KEYS[0]: 64})


def test_the_cli_exits_2_with_one_error_line_on_bad_json(tmp_path):
    (tmp_path / "ds.json").write_text("{oops")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"lm:\n  deepspeed: {tmp_path / 'ds.json'}\n")
    r = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(cfg), "--run", str(tmp_path / "run")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is not valid JSON" in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zero3_and_csv_monitor_reach_the_engine_on_two_ranks(lm_data_dir, tmp_path):
    """ZeRO-3 partitions the weights (gathered to evaluate and save), and the csv monitor, which
    nothing in collapse_hpc knows of, writes DeepSpeed's per-step learning rate and loss."""
    from collapse_hpc.experiments.lm.model import load_model

    monitor = tmp_path / "monitor"
    over = {"deepspeed": {"zero_optimization": {"stage": 3},
                          "csv_monitor": {"enabled": True, "output_path": str(monitor), "job_name": "gen"}},
            "epochs": 2, "batch_size": 64}  # fewer, larger steps: each step gathers every weight
    codes, (r0, r1) = _wait(_launch(lm_data_dir, tmp_path, over, world=2), tmp_path, timeout=540)
    assert codes == [0, 0], _tail(tmp_path)
    assert r0["zero_stage"] == 3 and r0["params"] == r1["params"]
    _no_gloo_thread_left(r0, r1)
    assert (r0["master_dtype"], r0["saved_dtype"]) == ("float32", "float32")  # ZeRO-3's own fp32 partitions
    assert r0["val_loss"] == r1["val_loss"] and r0["val_loss"][-1] < r0["initial_val_loss"]
    saved = load_model(tmp_path / "model")
    assert all(p.numel() > 0 for p in saved.parameters())  # whole weights, not ZeRO-3's empty shards
    rows = [line.split(",") for line in (monitor / "gen" / "Train_Samples_lr.csv").read_text().splitlines()]
    assert rows[0] == ["step", "lr"] and len(rows) - 1 == r0["steps"]  # one row per optimizer step
    lrs = sorted({float(lr) for _, lr in rows[1:]}, reverse=True)
    cfg = tiny_cfg()
    # our cosine, as DeepSpeed reads it after each step: the last step of an epoch shows the next one's
    assert lrs == pytest.approx([cfg.lr * train.epoch_lr_factor(cfg, e) for e in range(3)])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tensorboard_monitor_writes_its_event_file(lm_data_dir, tmp_path):
    """tensorboard is in the runtime lock (and so the image): DeepSpeed's monitor, enabled through
    lm.deepspeed alone, writes an event file with the per-step learning rate on a gloo rank."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "board"
    over = {"deepspeed": {"tensorboard": {"enabled": True, "output_path": str(board), "job_name": "gen"}},
            "epochs": 1, "batch_size": 64}
    codes, (r0,) = _wait(_launch(lm_data_dir, tmp_path, over, world=1), tmp_path, timeout=540)
    assert codes == [0], _tail(tmp_path)
    events = list((board / "gen").glob("events.out.tfevents.*"))
    assert len(events) == 1, list(board.rglob("*"))
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    lr = acc.Scalars("Train/Samples/lr")
    assert len(lr) == r0["steps"] and lr[0].value == pytest.approx(tiny_cfg().lr)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zero3_trains_on_the_chunked_loss_as_on_hf_loss(lm_data_dir, tmp_path):
    """Under ZeRO-3 the output embedding is partitioned outside lm_head's forward; registered as the
    loss head's external parameter it is gathered whole, so the chunked loss runs (the summary, and
    so training.json, says so) and takes HF's steps: the same per-step losses, validation loss and
    perplexity on two gloo ranks; and leaves no gloo thread running after the unit leaves its group."""
    runs = {}
    for chunk in (40, 0):  # 40 tokens: several chunks per micro-batch of 8 x 15 predicted tokens
        out = tmp_path / f"chunk{chunk}"
        over = {"zero_stage": 3, "loss_chunk_tokens": chunk, "epochs": 2, "batch_size": 32, "max_train_blocks": 128}
        codes, (r0, r1) = _wait(_launch(lm_data_dir, out, over, world=2), out, timeout=540)
        assert codes == [0, 0], _tail(out)
        assert r0["zero_stage"] == 3 and r0["params"] == r1["params"]
        # nothing of ZeRO-3's (its backward Functions on every module, the loss head's engine hooks) keeps
        # a group, and so gloo's threads, running into the interpreter's exit
        _no_gloo_thread_left(r0, r1)
        runs[chunk] = r0
    chunked, hf = runs[40], runs[0]
    assert (chunked["loss"], hf["loss"]) == ("chunked (40 tokens)", "hf")
    assert len(chunked["curve"]["loss"]) == chunked["steps"] == 8  # beyond a few steps, rounding compounds
    np.testing.assert_allclose(chunked["curve"]["loss"], hf["curve"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(chunked["val_loss"], hf["val_loss"], rtol=1e-5)
    assert chunked["ppl"] == pytest.approx(hf["ppl"], rel=1e-5)
    assert chunked["val_loss"][-1] < chunked["initial_val_loss"]


def test_a_key_deepspeed_refuses_is_one_line_before_the_run(tmp_path, lm_data_dir):
    """A nested typo or a value of the wrong type under lm.deepspeed passed the config's checks and failed
    each generation's job with pydantic's traceback once it started (on Slurm: once queued). Now the run
    refuses it before it writes anything, in one line naming the key, a regime's override too."""
    from tests.test_cli import cli, one_error_line

    cfg = tmp_path / "c.yaml"
    for lm, key, said in (
            ("{dataset: tiny, deepspeed: {zero_optimization: {stag: 1}}}", "lm.deepspeed",
             "DeepSpeedZeroConfig: stag: Extra inputs are not permitted"),
            ("{dataset: tiny, deepspeed: {bf16: {enabled: maybe}}}", "lm.deepspeed",
             "DeepSpeedBF16Config: enabled: Input should be a valid boolean"),
            ("{dataset: tiny}\nregimes: [replace, {name: replace, keep_fraction: 0.1, lm: {deepspeed: "
             "{fp16: {enabled: true}, bf16: {enabled: true}}}}]", "regimes[1].lm.deepspeed",
             "bfloat16 and fp16 modes cannot be simultaneously enabled")):
        cfg.write_text(f"generations: 1\nexecutor: local\ndata_dir: {lm_data_dir}\nlm: {lm}\n")
        line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
        assert f"{key}: DeepSpeed refuses it (" in line and said in line, line
        assert not (tmp_path / "r").exists()
    cfg.write_text(f"generations: 1\ndata_dir: {lm_data_dir}\nlm: {{dataset: tiny, deepspeed: "
                   f"{{zero_optimization: {{stage: 1}}}}}}\n")
    train.check_deepspeed("lm.deepspeed", experiments.load_config(cfg).section("lm"))  # what DeepSpeed takes


def test_a_misspelt_top_level_key_is_one_line_naming_the_closest_before_the_run(tmp_path, lm_data_dir):
    """DeepSpeed ignores a top-level key it does not read: zero_optimisation: {stage: 3} trained at ZeRO 0,
    gradient_clippin: 1.0 without clipping, and nothing said so. Now the run refuses it before it writes."""
    from tests.test_cli import cli, one_error_line

    cfg = tmp_path / "c.yaml"
    for deepspeed, said in (
            ("{zero_optimisation: {stage: 3}}", "DeepSpeed reads no top-level key zero_optimisation (did you mean "
                                                "zero_optimization?): it would train without it, silently"),
            ("{gradient_clippin: 1.0, bf16: {enabled: false}, wall_clock_breakdwon: true}",
             "DeepSpeed reads no top-level key gradient_clippin (did you mean gradient_clipping?), "
             "wall_clock_breakdwon (did you mean wall_clock_breakdown?): it would train without them")):
        cfg.write_text(f"generations: 1\nexecutor: local\ndata_dir: {lm_data_dir}\n"
                       f"lm: {{dataset: tiny, deepspeed: {deepspeed}}}\n")
        line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
        assert line.startswith("error: ") and f"lm.deepspeed: {said}" in line, line
        assert not (tmp_path / "r").exists()


# top-level keys of DeepSpeed's own documentation (its config-json page), with a value it takes
VALID = {"zero_optimization": {"stage": 2}, "bf16": {"enabled": False}, "fp16": {"enabled": False},
         "gradient_clipping": 1.0, "wall_clock_breakdown": True, "activation_checkpointing": {},
         "flops_profiler": {"enabled": False}, "comms_logger": {"enabled": False}, "steps_per_print": 10,
         "aio": {}, "compile": {}, "checkpoint": {}, "data_types": {"grad_accum_dtype": "fp32"},
         "tensorboard": {"enabled": False}, "wandb": {"enabled": False}, "csv_monitor": {"enabled": False},
         "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}}, "scheduler": {"type": "WarmupLR", "params": {}},
         "communication_data_type": "fp32", "seq_parallel_communication_data_type": "fp32", "autotuning": {},
         "pipeline": {}, "data_efficiency": {"enabled": False}, "torch_autocast": {"enabled": False},
         "zero_allow_untested_optimizer": True, "prescale_gradients": False, "gradient_predivide_factor": 1.0,
         "memory_breakdown": False, "dump_state": False, "dataloader_drop_last": False, "timers": {},
         "tensor_parallel": {}, "hybrid_engine": {}, "sequence_parallel_size": 1, "data_parallel_size": 1}


@pytest.mark.parametrize("key", sorted(VALID))
def test_every_key_deepspeed_reads_passes(key):
    train.check_deepspeed("lm.deepspeed", tiny_cfg(deepspeed={key: VALID[key]}))


@pytest.mark.parametrize("key", ["elasticity", "nebula", "curriculum_learning", "compression_training",
                                 "sparse_attention", "amp"])
def test_a_block_deepspeed_removed_is_refused_in_its_own_words(key):
    """Blocks this DeepSpeed refuses itself (removed features): its message, not "reads no key"."""
    from collapse_hpc.errors import UserError

    with pytest.raises(UserError, match=f"(?i)lm.deepspeed: DeepSpeed refuses it \\(.*{key}") as e:
        train.check_deepspeed("lm.deepspeed", tiny_cfg(deepspeed={key: {}}))
    assert "reads no top-level key" not in str(e.value)
