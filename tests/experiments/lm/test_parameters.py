"""The LM's size for the memory and disk estimates: counted from a config.json on this machine (a
local model folder, the HF cache offline) where the name states none, and unknown, said so, where
nothing here states it."""
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.experiments.lm.config import LMConfig
from collapse_hpc.experiments.lm.model import parameters
from collapse_hpc.experiments.lm.memory import state_bytes
from collapse_hpc.launch import estimate
from tests.experiments.lm.test_chain import LM
from tests.launch.helpers import REPO


def _opt(folder):
    """A small OPT's config.json in `folder`, and its parameter count as the built model has them."""
    from transformers import AutoModelForCausalLM, OPTConfig

    config = OPTConfig(vocab_size=120, hidden_size=16, word_embed_proj_dim=16, num_hidden_layers=2,
                       num_attention_heads=2, ffn_dim=40, max_position_embeddings=64)
    config.save_pretrained(folder)
    return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_local_model_folder_is_counted_from_its_config(tmp_path, hub_cache):
    want = _opt(tmp_path / "mine")
    cfg = LMConfig(**{**LM, "model": str(tmp_path / "mine")})
    assert parameters(cfg) == want
    assert state_bytes(cfg) == 16 * want  # fp32 weights and gradients, two AdamW moments, one rank


def test_the_tiny_model_is_counted_from_its_knobs_exactly():
    """The shapes tiny_config builds, for a tokenizer of vocab_size tokens (the trained BPE's)."""
    from collapse_hpc.experiments.lm.model import random_model, tiny_config
    from tests.experiments.lm.test_memory import Tokenizer

    for knobs in ({}, {"hidden_size": 48, "heads": 4, "layers": 3, "ffn_size": 100, "block_size": 200}):
        cfg = LMConfig(**{**LM, "model": "tiny", **knobs})
        model = random_model(tiny_config(cfg, Tokenizer(cfg.vocab_size)))
        assert parameters(cfg) == sum(p.numel() for p in model.parameters()), knobs


def test_a_hub_tag_in_the_hf_cache_is_counted_from_its_config_offline(hub_cache):
    repo = hub_cache / "models--someone--chat"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    want = _opt(repo / "snapshots" / ("0" * 40))
    assert parameters(LMConfig(**{**LM, "model": "someone/chat"})) == want


def test_a_model_nothing_here_sizes_is_unknown_and_the_estimate_says_so(hub_cache):
    assert parameters(LMConfig(**{**LM, "model": "gpt2"})) is None  # uncached, no size in its name
    assert parameters(LMConfig(**{**LM, "model": "facebook/opt-1.3b"})) == 1_300_000_000  # the name's
    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "regimes": ["replace"],
                                        "lm": {**LM, "model": "gpt2"}})
    engine.check(run)  # no bound to hold it to: not refused
    lines = estimate.estimate(run, engine.plan(run)).lines()
    assert "memory: unknown for lm/replace-p0-s0 (nothing here states the size of the model they hold)" in lines


def test_the_estimate_s_disk_is_the_lm_s_weights_and_its_tables():
    """One table of hub models' sizes (the LM's): the estimate's disk is read through the experiment. Beside
    the weights, each generation's training set and shards (test_disk), the same whichever models are kept."""
    from collapse_hpc.experiments.lm.model import PARAMETERS

    run = experiments.load_config(str(REPO / "configs" / "paper.yaml"), [], None)
    chains = engine.plan(run)
    lm = [c for c in chains if c.experiment == "lm"]
    copies = {c.variant.name: 2 if c.variant.section(run).sample_from == "last" else 1 for c in lm}
    weights = sum(4 * PARAMETERS["facebook/opt-125m"] * copies[c.variant.name] * len(c.jobs) for c in lm) / 1e9
    every = estimate.estimate(run, chains).disk_of["lm"]
    tables = every - weights
    assert 0 < tables < 0.05 * weights  # tens of MB a generation against 0.5 GB of weights
    # keep_models: needed keeps generation 0's model of each chain (init: gen0), nothing of the others
    run = experiments.load_config(str(REPO / "configs" / "paper.yaml"), ["lm.keep_models=needed"], None)
    assert run.section("lm").init == "gen0"
    weights = 4 * PARAMETERS["facebook/opt-125m"] * len(lm) / 1e9
    assert estimate.estimate(run, engine.plan(run)).disk_of["lm"] == pytest.approx(weights + tables)


@pytest.mark.parametrize("precision, stage, ranks, per_parameter", [
    ("fp32", 0, 4, 16),           # nothing shared out
    ("fp32", 1, 4, 8 + 8 / 4),    # AdamW's moments shared
    ("fp32", 2, 4, 4 + 12 / 4),   # and the gradients
    ("fp32", 3, 4, 16 / 4),       # and the weights
    ("bf16", 0, 1, 18),           # bf16 weights, fp32 gradients, fp32 masters and moments
    ("bf16", 0, 4, 6 + 12 / 4),   # bf16 runs as ZeRO-1: masters and moments shared
    ("bf16-accumulate", 0, 4, 16),  # bf16 gradients (DeepSpeed's ZeRO-0 bf16 path): nothing shared
])
def test_the_memory_estimate_follows_precision_and_zero_stage(tmp_path, hub_cache, precision, stage, ranks,
                                                              per_parameter):
    n = _opt(tmp_path / "mine")
    bf16_grads = {"deepspeed": {"data_types": {"grad_accum_dtype": "bf16"}}}
    accumulate = bf16_grads if precision.endswith("-accumulate") else {}
    cfg = LMConfig(**{**LM, "model": str(tmp_path / "mine"), "precision": precision.removesuffix("-accumulate"),
                      "zero_stage": stage, "ranks": ranks, **accumulate})
    assert state_bytes(cfg) == pytest.approx(per_parameter * n, abs=3)
