"""The LM's memory per rank: training's state and the activations of one micro-batch, or sampling's
caches, whichever is larger. The estimate ignored the micro-batch and the sampling batch: the paper's
config (512 prompts x 5 beams) holds 15 GiB of key/value caches while sampling, and it said 1.9 GiB."""
import pytest
import torch

from collapse_hpc import engine, experiments
from collapse_hpc.experiments.lm.config import LMConfig
from collapse_hpc.experiments.lm.loss import LossHead
from collapse_hpc.experiments.lm.memory import activation_bytes, memory, sampling_bytes, state_bytes
from collapse_hpc.experiments.lm.model import shape
from tests.experiments.lm.test_chain import LM
from tests.launch.helpers import REPO


class Tokenizer:  # what tiny_config reads of one
    pad_token_id, bos_token_id, eos_token_id = 1, 2, 2

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def _tiny(cfg):
    from collapse_hpc.experiments.lm.model import random_model, tiny_config

    model = random_model(tiny_config(cfg, Tokenizer(cfg.vocab_size)))
    model.train()
    return model


def _kept(model, ids, chunk: int) -> int:
    """Bytes of the tensors autograd keeps for backward from the training forward (the weights aside)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        LossHead(model, chunk)(ids)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights)


@pytest.mark.parametrize("knobs", [
    {},
    {"hidden_size": 64, "heads": 4, "layers": 3, "ffn_size": 256, "vocab_size": 900, "micro_batch_size": 16},
])
def test_the_activations_match_what_autograd_keeps(knobs):
    """The per-token bytes are measured ones: the estimate is within 5% of a real forward's saved tensors
    (the chunk's transient logits, softmax and gradient aside)."""
    cfg = LMConfig(**{**LM, **knobs})
    dims = shape(cfg)
    model = _tiny(cfg)
    ids = torch.randint(0, cfg.vocab_size, (cfg.micro_batch_size, cfg.block_size))
    tokens = cfg.micro_batch_size * cfg.block_size
    transient = 3 * 4 * min(cfg.loss_chunk_tokens, tokens) * dims.vocab
    assert activation_bytes(cfg, dims) - transient == pytest.approx(_kept(model, ids, cfg.loss_chunk_tokens), rel=0.05)


def test_a_larger_micro_batch_holds_more():
    small, large = (LMConfig(**{**LM, "micro_batch_size": m}) for m in (2, 8))
    assert memory(large) > memory(small) > state_bytes(small)


def test_the_sampling_caches_are_the_decoder_s_own():
    """The OPT decoder's caches for sample_batch_size prompts and num_beams beams, as sample.py allocates
    them; the estimate counts the same bytes."""
    from collapse_hpc.experiments.lm.sample import _OPTDecoder

    cfg = LMConfig(**{**LM, "sample_batch_size": 8, "num_beams": 3})
    dims = shape(cfg)
    P = n = cfg.block_size
    caches = _OPTDecoder(_tiny(cfg)).new_caches(cfg.sample_batch_size, P + cfg.num_beams * n)
    allocated = sum(k.nbytes + v.nbytes for k, v in caches)
    logits = 3 * 4 * cfg.sample_batch_size * cfg.num_beams * dims.vocab
    assert sampling_bytes(cfg, dims) == 4 * sum(p.numel() for p in _tiny(cfg).parameters()) + allocated + logits
    greedy = LMConfig(**{**LM, "sample_batch_size": 8, "num_beams": 3, "decoding": ["greedy"]})
    assert sampling_bytes(greedy, dims) < sampling_bytes(cfg, dims)  # one beam


def test_the_paper_s_lm_peaks_while_sampling_and_the_estimate_says_so():
    run = experiments.load_config(str(REPO / "configs" / "paper.yaml"), [], None)
    chains = [c for c in engine.plan(run) if c.experiment == "lm"]
    cfg = chains[0].variant.section(run)
    dims = shape(cfg)
    assert sampling_bytes(cfg, dims) > state_bytes(cfg) + activation_bytes(cfg, dims)
    assert memory(cfg) == sampling_bytes(cfg, dims) > 14 * 2**30  # 512 prompts of OPT-125M on 5 beams
