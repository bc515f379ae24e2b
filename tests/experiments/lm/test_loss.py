"""The chunked LM loss: HF's loss in value and gradient, without the whole batch's logits."""
import numpy as np
import pytest
import torch

from collapse_hpc.experiments.lm.loss import LossHead, chunked_lm_loss, supports, token_losses
from tests.experiments.lm.conftest import tiny_cfg


def _opt(vocab=300):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                    max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0)
    return OPTForCausalLM(cfg)


def _grads(model):
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("chunk", [1, 7, 60, 10_000])  # one token, ragged, several, all at once
def test_equals_hf_loss_in_value_and_gradient(chunk):
    model = _opt()
    ids = torch.randint(3, 300, (4, 16), generator=torch.Generator().manual_seed(1))
    ref = model(input_ids=ids, labels=ids, use_cache=False).loss
    ref.backward()
    want = _grads(model)
    loss = LossHead(model, chunk)(ids)
    loss.backward()
    got = _grads(model)
    assert abs(loss.item() - ref.item()) <= 1e-5 * abs(ref.item())
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)


def test_scaled_gradient_and_no_grad_path():
    """Backward scales by the incoming gradient; without grad it only computes the value."""
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 8, requires_grad=True)
    weight = torch.randn(50, 8, requires_grad=True)
    ids = torch.randint(0, 50, (2, 9))
    full = torch.nn.functional.cross_entropy((hidden[:, :-1] @ weight.t()).reshape(-1, 50), ids[:, 1:].reshape(-1))
    (3 * full).backward()
    want = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    (3 * chunked_lm_loss(hidden, weight, ids, 5)).backward()
    torch.testing.assert_close((hidden.grad, weight.grad), want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert abs(chunked_lm_loss(hidden, weight, ids, 4).item() - full.item()) < 1e-5
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_lm_loss(hidden, weight, ids, 0)


@pytest.mark.parametrize("chunk", [7, 10_000])
def test_token_losses_for_scoring_equal_the_full_logits_ones(chunk):
    """Scoring's per-token losses: HF's cross entropy of each next token, the head run a chunk at a time."""
    model = _opt().eval()
    ids = torch.randint(3, 300, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
        want = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        rows = []
        model.lm_head.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[0]))
        got = token_losses(model, ids, chunk)
    assert got.shape == (3, 11) and got.dtype == torch.float32
    assert max(rows) == min(chunk, 33) and sum(rows) == 33  # 3 x 11 predicted tokens
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_supported_models():
    from transformers import GPT2Config, GPT2LMHeadModel

    assert supports(_opt())
    assert supports(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=100, n_positions=32)))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_training_uses_it_and_learns_as_with_hf_loss(lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """The engine trains on the chunked loss (the full-vocabulary head never runs in a training
    forward) and takes the same steps as with HF's loss."""
    from collapse_hpc.experiments.lm import train
    from collapse_hpc.experiments.lm.model import build_model

    curves, head_calls = {}, {}
    for chunk in (0, 24):  # 24 tokens: several chunks per micro-batch of 8 x 15 predicted tokens
        cfg = tiny_cfg(epochs=1, dropout=0.0, loss_chunk_tokens=chunk)
        model = build_model(cfg, lm_tokenizer, lm_data_dir)
        calls = head_calls[chunk] = []
        model.lm_head.register_forward_hook(lambda m, _a, _o, calls=calls: calls.append(m.training))
        s = train.train_generation(model, lm_tokenizer, lm_blocks["train"].slice(0, 64), lm_blocks["validation"],
                                   cfg, tmp_path / f"m{chunk}", tmp_path / f"c{chunk}", seed=0, rank=0,
                                   world_size=1, local_rank=0)
        curves[chunk] = s["curve"]["loss"]
        assert s["loss"] == ("hf" if chunk == 0 else "chunked (24 tokens)")
    assert True in head_calls[0] and True not in head_calls[24]  # chunked: the head ran only to validate
    assert len(curves[24]) == len(curves[0]) == 4
    np.testing.assert_allclose(curves[24], curves[0], rtol=1e-5)
