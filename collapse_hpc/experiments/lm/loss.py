"""The causal-LM loss computed chunk by chunk from the last hidden states and the output embedding.

HF's models compute the logits of the whole batch (tokens x vocabulary: for OPT-125M at the
paper's batch 8064 x 50272, 1.6 GB in fp32) and keep them, and their softmax, for backward. Here
the tokens are cut into chunks of `chunk_tokens`: each chunk's logits are computed, turned into its
loss and, in the same pass, into the gradients of the hidden states and the embedding (softmax
minus the one-hot target); then they are dropped. Backward only scales those gradients by the
incoming one. Same value and gradients as HF's loss (mean over the predicted tokens of the cross
entropy of logits[:, :-1] against input_ids[:, 1:]) up to the order of floating-point sums; the
matrix products run in the autocast dtype when autocast is on (as HF's lm_head would), the
softmax in fp32 (as HF's loss upcasts the logits).

API:
- chunked_lm_loss(hidden, weight, input_ids, chunk_tokens) -> scalar loss (autograd through both)
- LossHead(model, chunk_tokens): the model's training forward with this loss: module(input_ids)
      -> loss; what the DeepSpeed engine wraps (the HF model stays `.lm`)
- token_losses(model, input_ids, chunk_tokens) -> (B, T-1) fp32 per-token losses (evaluation, no
      grad): the same chunks, HF's full logits for unsupported models
- supports(model) -> bool: an OPT or GPT-2 causal LM whose output embedding has no bias
"""
from __future__ import annotations

import torch

from collapse_hpc.experiments.lm.model import CHUNKED_LOSS as SUPPORTED


def supports(model) -> bool:
    head = model.get_output_embeddings()
    return getattr(model.config, "model_type", "") in SUPPORTED and getattr(head, "bias", None) is None


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


def _losses(logits, target):
    """One chunk's logits in fp32, their logsumexp and each token's cross entropy."""
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)
    return logits, lse, lse - logits.gather(1, target[:, None]).squeeze(1)


def _chunk(h, w, target, scale: float, grads: bool):
    """One chunk: (sum of token losses, grad of h, grad of w) with grads scaled by `scale`."""
    logits, lse, losses = _losses(h @ w.t(), target)
    loss = losses.sum()
    if not grads:
        return loss, None, None
    d = torch.exp(logits - lse[:, None])  # the softmax, in place of the logits
    d.scatter_add_(1, target[:, None], torch.full_like(d[:, :1], -1.0))
    d = (d * scale).to(h.dtype)
    return loss, d @ w, d.t() @ h


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens: int):
        dtype = _compute_dtype(hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            grads = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if grads else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if grads else None
            scale = 1.0 / len(targets)
            for lo in range(0, len(targets), chunk_tokens):
                hi = min(lo + chunk_tokens, len(targets))
                loss, gh, gw = _chunk(h[lo:hi], w, targets[lo:hi], scale, grads)
                total += loss
                if grads:
                    grad_h[lo:hi] = gh
                    grad_w += gw.float()
        if grads:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), grad_w * grad_out.to(grad_w.dtype), None, None


def chunked_lm_loss(hidden, weight, input_ids, chunk_tokens: int = 2048):
    """Mean cross entropy of the next token: hidden (B, T, D) at positions 0..T-2 predict
    input_ids[:, 1:] through logits = hidden @ weight.T (weight: the output embedding, (V, D))."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = input_ids[:, 1:].reshape(-1)
    return _ChunkedCE.apply(h, weight, targets, chunk_tokens)


def token_losses(model, input_ids, chunk_tokens: int = 2048):
    """(B, T-1) fp32 cross entropy of each next token (what HF's loss averages) with the logits
    computed chunk by chunk by the model's own output layer (autocast applies as in HF's forward,
    and under ZeRO-3 each call gathers its weight); models without chunked support: from their
    full logits."""
    import torch.nn.functional as F

    if not supports(model):
        logits = model(input_ids=input_ids, use_cache=False).logits
        return F.cross_entropy(logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:], reduction="none")
    hidden = model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    h, targets = hidden.reshape(-1, hidden.shape[-1]), input_ids[:, 1:].reshape(-1)
    head = model.get_output_embeddings()
    out = torch.empty(len(targets), dtype=torch.float32, device=h.device)
    for lo in range(0, len(targets), chunk_tokens):
        out[lo:lo + chunk_tokens] = _losses(head(h[lo:lo + chunk_tokens]), targets[lo:lo + chunk_tokens])[2]
    return out.view(hidden.shape[:2])


class LossHead(torch.nn.Module):
    """The training forward of a causal LM with the chunked loss: its decoder's last hidden
    states (no KV cache), then chunked_lm_loss with the output embedding. Dropout and everything
    before the head are the model's own."""

    def __init__(self, lm, chunk_tokens: int):
        super().__init__()
        self.lm, self.chunk_tokens = lm, chunk_tokens

    def forward(self, input_ids):
        hidden = self.lm.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        return chunked_lm_loss(hidden, self.lm.get_output_embeddings().weight, input_ids, self.chunk_tokens)
