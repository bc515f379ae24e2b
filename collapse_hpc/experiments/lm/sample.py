"""Sampling the next generation's data: every prompt block (the real training blocks, the paper; or
the generation's training set, config `prompts`), the model writes exactly `block_size` new tokens
after it, and those new tokens become one block of the next generation.

Decoding strategies (config `decoding`, one chain per listed strategy):
  beam         the paper's: beam search, `num_beams` 5, min = max new tokens
  greedy       argmax
  sampling     pure ancestral sampling from the model's distribution
  temperature  sampling at `temperature` (0: greedy)
  top_k        sampling from the `top_k` most likely tokens
  top_p        nucleus sampling: the smallest set of tokens whose mass reaches `top_p`
  min_p        sampling from the tokens at least `min_p` times as likely as the most likely one
Each sampling strategy changes only its own parameter, so strategies compare one knob at a time; a
strategy may name its value, `top_p:0.9`. The repetition penalty (the paper's 3.0) applies to all.

Semantics are HF `generate`'s (processors on log-probs in beam search, on logits otherwise; EOS
blocked until the last token, so every output has exactly `new_tokens` tokens). For OPT models a
hand-written decoder does the work much faster than `generate`: the prompt is encoded once per
prompt (not once per beam) and its keys/values are shared by the beams; the beams' own keys/values
are written once into slots and never reordered - each beam attends to its ancestors' slots through
a mask. Other architectures go through `generate` (with left padding; the last tokens are taken).

The decoder keeps fixed-shape state in buffers reused by every chunk of one shape (each beam's
tokens, the cache slots it sees, the caches, the step's tokens, position and slots as tensors), so a
step needs no concatenation and reads the same tensors every time. On CUDA every step attends over
the whole preallocated cache (one shape per step) and, `sample_graphs` auto or on, replays a CUDA
graph of the step captured once per (batch, beams) shape; on a CPU it attends only over the slots
written so far (less work), unless graphs are on (the same static step, uncaptured: no CUDA).
`sample_compile` torch.compiles the static step (dynamic=False: compiled once per shape). Which of
these ran is the decoding's `step` in each shard's metadata, and in the manifest that of every
shard (shards_decoding: "mixed" after a resume under another sample_graphs, with `steps`). `sample_precision`
(Decoding.precision) bf16 decodes with a bf16 copy of the weights; token_agreement() says how many
tokens it shares with fp32 (fp32: HF generate's tokens).

A shard keeps the sampled tokens (`input_ids`, what the next generation trains on) and their decoded
`text` (for reading and type_token_ratio): a block's edge may cut a multi-byte character, shown as
U+FFFD in the text, so the text does not always re-tokenize to the tokens.

Sharding: prompts are cut into chunks of `batch_size`; rank r samples chunks r, r + world, ... and
writes each as shards/part-<rank>-<chunk>.parquet. A chunk whose file exists is skipped, so a killed
run resumes chunk by chunk, and a fixed config + seed gives the same tokens for any world size. Each
rank keeps the seconds it has sampled for beside them (shards/seconds-<rank>.json), so a resumed
generation's sampling time counts the kept chunks' too.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from collapse_hpc.errors import first_line
from collapse_hpc.logs import count

PRESETS = ("beam", "greedy", "sampling", "temperature", "top_k", "top_p", "min_p")
PARAMETER = ("temperature", "top_k", "top_p", "min_p")  # strategies named after the one knob they set
SAMPLED = ("sampling", *PARAMETER)
PRECISIONS = ("fp32", "bf16")
GRAPHS = ("auto", "on", "off")
# how the OPT decoder's step runs (Decoding.step): over the cache slots written so far (a CPU's
# default: least work), over the whole fixed-shape cache (static), as a CUDA graph of that, compiled
STEPS = ("slots", "static", "graph", "compiled", "compiled-graph")
ORIGINAL = "original.parquet"  # reference --generate: the blocks kept unchanged (source "original")


def parse_strategy(text: str) -> tuple[str, float | None]:
    """'top_p:0.9' or the label 'top_p0.9' -> ('top_p', 0.9); 'greedy' -> ('greedy', None).
    Raises ValueError naming what is wrong."""
    text = str(text).strip()
    for name in sorted(PRESETS, key=len, reverse=True):
        if not text.startswith(name):
            continue
        rest = text[len(name):].removeprefix(":")
        if not rest:
            return name, None
        if name not in PARAMETER:
            raise ValueError(f"decoding {text!r}: {name} takes no value")
        try:
            value = float(rest)
        except ValueError:
            raise ValueError(f"decoding {text!r}: expected {name}:<number>") from None
        _check_value(name, value)
        return name, value
    raise ValueError(f"decoding {text!r}: must be one of {', '.join(PRESETS)} (a sampling one may add "
                     f":value, e.g. top_p:0.9)")


def _check_value(name: str, v: float) -> None:
    ok = {"temperature": v >= 0, "top_k": v >= 1 and float(v).is_integer(), "top_p": 0 < v <= 1,
          "min_p": 0 < v <= 1}[name]
    if not ok:
        need = {"temperature": ">= 0", "top_k": "a whole number >= 1", "top_p": "in (0, 1]",
                "min_p": "in (0, 1]"}[name]
        raise ValueError(f"decoding {name}: must be {need}, got {v:g}")


@dataclass(frozen=True)
class Decoding:
    preset: str = "beam"
    num_beams: int = 5  # beam only
    repetition_penalty: float = 3.0  # 1.0: off
    new_tokens: int = 64  # min = max new tokens
    # the sampling warpers, applied in HF's order; neutral values are off
    temperature: float = 1.0  # 0: argmax (greedy)
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    precision: str = "fp32"  # the weights' dtype while decoding: fp32 or bf16
    graphs: str = "auto"  # the OPT step as a CUDA graph: auto (on CUDA), on, off
    compile: bool = False  # torch.compile the OPT step (static shapes)
    compile_backend: str = "inductor"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"decoding {self.preset!r}: must be one of {', '.join(PRESETS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"sample precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        if self.graphs not in GRAPHS:
            raise ValueError(f"sample graphs {self.graphs!r}: must be one of {', '.join(GRAPHS)}")

    @classmethod
    def from_config(cls, cfg, strategy: str | None = None) -> "Decoding":
        """The decoding of one strategy of the config (default: its first): a sampling strategy sets
        its own knob from the config (or from its `:value`) and leaves the other warpers off."""
        name, value = parse_strategy(strategy or cfg.decoding[0])
        warp = {}
        if name in PARAMETER:
            v = getattr(cfg, name) if value is None else value
            warp[name] = int(v) if name == "top_k" else float(v)
        return cls(preset=name, num_beams=cfg.num_beams, repetition_penalty=cfg.repetition_penalty,
                   new_tokens=cfg.block_size, precision=cfg.sample_precision, graphs=cfg.sample_graphs,
                   compile=cfg.sample_compile, compile_backend=cfg.compile_backend, **warp)

    @property
    def beams(self) -> int:
        return self.num_beams if self.preset == "beam" else 1

    @property
    def label(self) -> str:
        """Folder-safe name of the strategy with its value: beam, greedy, sampling, top_p0.9, ..."""
        if self.preset in PARAMETER:
            return f"{self.preset}{getattr(self, self.preset):g}"
        return self.preset

    def step(self, device) -> str:
        """How the OPT decoder's step runs on `device` (one of STEPS): a CUDA graph where graphs are
        auto or on and the device is CUDA; the static step without one where graphs are on or the
        step is compiled, or on CUDA; else (a CPU's default) over the slots written so far."""
        cuda = getattr(device, "type", device) == "cuda"
        graph = cuda and self.graphs != "off"
        if self.compile:
            return "compiled-graph" if graph else "compiled"
        if graph:
            return "graph"
        return "static" if cuda or self.graphs == "on" else "slots"

    def metadata(self, device) -> dict:
        """The decoding's settings, with the step that runs on `device` (what ran, not the config's
        graphs/compile)."""
        d = asdict(self)
        step = self.step(device)
        for k in ("graphs", "compile", "compile_backend"):
            d.pop(k)
        d["step"] = step
        if step.startswith("compiled"):
            d["compile_backend"] = self.compile_backend
        if self.preset not in SAMPLED:
            for k in PARAMETER:
                d.pop(k)
        if self.preset != "beam":
            d.pop("num_beams")
        return d


def labels(cfg) -> list[str]:
    """The config's strategies as labels (the variants' `decoding` setting), in its order."""
    return [Decoding.from_config(cfg, s).label for s in cfg.decoding]


# ------------------------------------------------------------------ logits processing (HF semantics)

def _repetition_penalty(scores, history, penalty: float):
    """HF RepetitionPenaltyLogitsProcessor: every token seen in the row's history is penalised."""
    import torch

    if penalty == 1.0:
        return scores
    seen = scores.gather(1, history)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter_(1, history, seen)


def _block_eos(scores, eos: list[int]):
    """HF MinNewTokensLengthLogitsProcessor with min = max new tokens: EOS is never chosen."""
    if eos:
        scores[:, eos] = float("-inf")
    return scores


def sampling_warp(logits, d: Decoding):
    """HF's temperature, top-k, top-p and min-p warpers, in that order (one token always kept)."""
    import torch

    if d.temperature != 1.0:
        logits = logits / d.temperature
    if d.top_k and d.top_k < logits.shape[-1]:
        kth = torch.topk(logits, d.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if d.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum <= (1 - d.top_p)
        drop[:, -1] = False  # keep at least one token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    if d.min_p > 0.0:
        probs = logits.softmax(-1)
        drop = probs < d.min_p * probs.amax(-1, keepdim=True)
        drop.scatter_(1, probs.argmax(-1, keepdim=True), False)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _choose(logits, d: Decoding, generator=None):
    """The next token of each row from processed logits: argmax (greedy, temperature 0) or a draw."""
    import torch

    if d.preset == "greedy" or d.temperature == 0:
        return logits.argmax(-1)
    probs = sampling_warp(logits, d).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _eos_ids(model) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


# ------------------------------------------------------------------ the fast OPT decoder

class _OPTDecoder:
    """OPT forward for decoding with a shared-prompt, never-reordered key/value cache."""

    def __init__(self, model):
        import torch

        self.model = model
        self.dec = model.model.decoder
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // self.heads
        self.scaling = self.head_dim ** -0.5
        self.pre_ln = cfg.do_layer_norm_before
        # q, k and v of a layer as one matrix product (one large GEMM instead of three small ones)
        self.qkv = []
        for layer in self.dec.layers:
            a = layer.self_attn
            w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            b = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]) if a.q_proj.bias is not None else None
            self.qkv.append((w, b))

    def new_caches(self, batch: int, cache_len: int):
        """Per-layer (keys, values) of shape (batch, heads, cache_len, head_dim). Zeros, not empty: a
        static step attends over the whole cache, unwritten slots with weight 0 (0 * NaN would not be 0)."""
        w = self.dec.embed_tokens.weight
        shape = (batch, self.heads, cache_len, self.head_dim)
        return [(w.new_zeros(shape), w.new_zeros(shape)) for _ in self.dec.layers]

    def _embed(self, tokens, positions):
        h = self.dec.embed_tokens(tokens)
        if self.dec.project_in is not None:
            h = self.dec.project_in(h)
        return h + self.dec.embed_positions.weight[positions + self.dec.embed_positions.offset]

    def _logits(self, h):
        if self.dec.final_layer_norm is not None:
            h = self.dec.final_layer_norm(h)
        if self.dec.project_out is not None:
            h = self.dec.project_out(h)
        return self.model.lm_head(h).float()

    def _mlp(self, layer, x):
        r = x
        h = layer.final_layer_norm(x) if self.pre_ln else x
        h = r + layer.fc2(layer.activation_fn(layer.fc1(h)))
        return h if self.pre_ln else layer.final_layer_norm(h)

    def _qkv(self, i: int, h):
        import torch.nn.functional as F

        q, k, v = F.linear(h, *self.qkv[i]).chunk(3, dim=-1)
        return q * self.scaling, k, v

    def prefill(self, prompts, caches):
        """Encode (B, P) prompts into the first P slots of `caches`; return next-token logits (B, V)."""
        import torch
        import torch.nn.functional as F

        B, P = prompts.shape
        H, hd = self.heads, self.head_dim
        x = self._embed(prompts, torch.arange(P, device=prompts.device))
        for i, (layer, (kc, vc)) in enumerate(zip(self.dec.layers, caches)):
            attn = layer.self_attn
            r = x
            h = layer.self_attn_layer_norm(x) if self.pre_ln else x
            q, k, v = (t.reshape(B, P, H, hd).transpose(1, 2) for t in self._qkv(i, h))
            kc[:, :, :P] = k
            vc[:, :, :P] = v
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
            x = r + attn.out_proj(a.transpose(1, 2).reshape(B, P, H * hd))
            if not self.pre_ln:
                x = layer.self_attn_layer_norm(x)
            x = self._mlp(layer, x)
        return self._logits(x[:, -1])

    def step(self, tokens, position, caches, slot, mask, span: int | None = None):
        """One token for each of the (B, K) beams at `position` (a (1,) tensor); their keys/values go
        to the cache slots `slot` (a (K,) tensor). mask (B, K, C) says which of the cache's C slots
        each beam sees. Every input is a tensor read in place, so the same step can be replayed (a
        CUDA graph) or compiled once; span None attends over the whole cache (one shape at every
        step), an int over its first `span` slots (less work on a CPU, a new shape each step)."""
        import torch

        B, K = tokens.shape
        H, hd = self.heads, self.head_dim
        x = self._embed(tokens, position).view(B * K, -1)
        span = mask.shape[-1] if span is None else span
        hidden = ~mask[:, None, :, :span]  # (B, 1, K, span)
        for i, (layer, (kc, vc)) in enumerate(zip(self.dec.layers, caches)):
            attn = layer.self_attn
            r = x
            h = layer.self_attn_layer_norm(x) if self.pre_ln else x
            q, k, v = (t.reshape(B, K, H, hd).transpose(1, 2) for t in self._qkv(i, h))
            kc.index_copy_(2, slot, k)
            vc.index_copy_(2, slot, v)
            scores = torch.matmul(q, kc[:, :, :span].transpose(-1, -2))  # (B, H, K, span)
            scores.masked_fill_(hidden, float("-inf"))
            a = torch.matmul(scores.softmax(-1), vc[:, :, :span])  # (B, H, K, hd)
            x = r + attn.out_proj(a.transpose(1, 2).reshape(B * K, H * hd))
            if not self.pre_ln:
                x = layer.self_attn_layer_norm(x)
            x = self._mlp(layer, x)
        return self._logits(x)


class _DecodeState:
    """The decoding's fixed buffers for one (model, batch, beams, prompt, new tokens) shape, reused by
    every chunk of that shape: `tokens` (B, K, P + n) each beam's prompt and new tokens (slots not
    yet written hold the prompt's first token, already in the history, so the repetition penalty's
    set is the same), `mask` (B, K, P + K*n) the cache slots each beam sees (the prompt's, then its
    ancestors': beam j's token of step t sits in slot P + K*t + j), the key/value caches, and the
    step's inputs (this step's tokens, position, slots). All are written in place, so the step reads
    the same tensors every time: `graph` replays it as a CUDA graph captured at its first run (once
    per shape), `compiled` runs it through torch.compile (static shapes: compiled once)."""

    def __init__(self, dec: _OPTDecoder, B: int, K: int, P: int, n: int, kind: str, backend: str = "inductor"):
        import torch

        self.dec, self.P, self.K, self.kind = dec, P, K, kind
        device = dec.dec.embed_tokens.weight.device
        long = dict(dtype=torch.long, device=device)
        self.caches = dec.new_caches(B, P + K * n)
        self.tokens = torch.zeros(B, K, P + n, **long)
        self.mask = torch.zeros(B, K, P + K * n, dtype=torch.bool, device=device)
        self.step_tokens = torch.zeros(B, K, **long)
        self.position = torch.zeros(1, **long)  # (1,), not 0-d: a 0-d index is a Python number to dynamo
        self.beam_ids = torch.arange(K, **long)
        self.slot = torch.zeros(K, **long)
        self.fn = dec.step
        if kind.startswith("compiled"):
            self.fn = torch.compile(dec.step, dynamic=False, fullgraph=True, backend=backend)
        self.graph, self.logits = None, None

    def start(self, prompts):
        """Encode these (B, P) prompts into the caches and reset the buffers; the prompts' logits."""
        P, K = self.P, self.K
        logits = self.dec.prefill(prompts, self.caches)
        self.tokens[:, :, :P] = prompts.unsqueeze(1)
        self.tokens[:, :, P:] = prompts[:, :1, None]
        self.mask.zero_()
        self.mask[:, :, :P] = True
        self.position.fill_(P - 1)
        self.slot.copy_(self.beam_ids + P - K)  # the first step() moves them to P .. P + K - 1
        return logits

    def step(self, t: int):
        """Feed the tokens chosen at step t - 1 (beam j's lands in slot P + K*(t-1) + j); (B*K, V) logits,
        valid until the next step."""
        self.position.add_(1)
        self.slot.add_(self.K)
        self.mask[:, self.beam_ids, self.slot] = True
        self.step_tokens.copy_(self.tokens[:, :, self.P + t - 1])
        if self.kind == "slots":
            return self._run(self.P + self.K * t)
        if not self.kind.endswith("graph"):
            return self._run()
        return self._replay()

    def _run(self, *span: int):
        """The step over the buffers; a span (see _OPTDecoder.step) only where given, so the static
        step's inputs are tensors alone."""
        return self.fn(self.step_tokens, self.position, self.caches, self.slot, self.mask, *span)

    def _replay(self):
        """The step as a CUDA graph: captured at the first step of this shape, replayed on the
        buffers' GPU (whichever is current); its logits are the graph's own output tensor."""
        import torch

        with torch.cuda.device(self.mask.device):
            if self.graph is None:
                self.graph, self.logits = _capture(self._run)
            self.graph.replay()
        return self.logits

    def reorder(self, src):
        """Beam search: every beam's row of tokens and mask becomes that of its source beam (B, K)."""
        self.tokens.copy_(self.tokens.gather(1, src.unsqueeze(-1).expand_as(self.tokens)))
        self.mask.copy_(self.mask.gather(1, src.unsqueeze(-1).expand_as(self.mask)))


def _capture(run, warmup: int = 3):
    """(CUDA graph, its output) of run() on the current GPU, as the PyTorch docs do it: warm-up
    runs on a side stream (they also compile a compiled step), then one capture. The step is
    idempotent (it rewrites the same slots from the same inputs), so the warm-up leaves the state as
    one run would; a capture runs nothing, so the caller replays it once for this step."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    return graph, out


def _decode_opt(model, prompts, d: Decoding, generator=None, states: dict | None = None):
    """The decoding loop over a _DecodeState (from `states`, kept across calls, when it has this
    shape): the prompt's logits choose each beam's first token, every further step feeds the chosen
    tokens; a beam search step reorders the beams' rows by their sources. `states` keeps the last
    shape's only (a chain's chunks share one shape but the last; one set of caches in memory)."""
    B, P = prompts.shape
    K, n = d.beams, d.new_tokens
    kind = d.step(prompts.device)
    states = {} if states is None else states
    key = (id(model), B, K, P, n, kind)  # a state holds its model, so the id is not reused meanwhile
    if key not in states:
        states.clear()  # frees the previous shape's caches (and graph) before allocating these
        states[key] = _DecodeState(_OPTDecoder(model), B, K, P, n, kind, d.compile_backend)
    state = states[key]
    logits, eos = state.start(prompts), _eos_ids(model)
    scores = None
    for t in range(n):
        if t > 0:
            logits = state.step(t)
        rows = logits.shape[0] // B  # 1 at t = 0 (the prompt's logits), else K
        history = state.tokens[:, :rows].reshape(B * rows, -1)
        if d.preset == "beam":
            src, tok, scores = _beam_choice(logits, history, scores, B, K, d, eos)
            state.reorder(src)
            state.tokens[:, :, P + t] = tok
        else:
            lg = _block_eos(_repetition_penalty(logits, history, d.repetition_penalty), eos)
            state.tokens[:, 0, P + t] = _choose(lg, d, generator)
    return state.tokens[:, 0, P:].clone()  # beams are sorted by score: beam 0 is the best (all have the same length)


def _beam_choice(logits, history, scores, B: int, K: int, d: Decoding, eos: list[int]):
    """One beam-search step as HF's: log-probs, repetition penalty, EOS blocked, added to the beams'
    scores; of the top 2K candidates the best K that did not end -> (source beam, token, scores)."""
    import torch

    V = logits.shape[-1]
    lp = _repetition_penalty(logits.log_softmax(-1), history, d.repetition_penalty)
    lp = _block_eos(lp, eos).view(B, -1, V)
    if scores is not None:
        lp.add_(scores.unsqueeze(-1))
    top_v, top_i = torch.topk(lp.reshape(B, -1), 2 * K)
    scores, top_i = top_v[:, :K], top_i[:, :K]
    return top_i // V, top_i % V, scores


def generate_hf(model, prompts, d: Decoding, attention_mask=None, generator_seed: int | None = None):
    """Reference path: HF `generate`, then the LAST new_tokens of each output (right with left padding)."""
    import torch

    if attention_mask is None:
        attention_mask = torch.ones_like(prompts)
    kw = dict(max_new_tokens=d.new_tokens, min_new_tokens=d.new_tokens, repetition_penalty=d.repetition_penalty)
    if d.preset == "beam":
        kw.update(num_beams=d.num_beams, do_sample=False)
    elif d.preset == "greedy" or d.temperature == 0:
        kw.update(num_beams=1, do_sample=False)
    else:
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        kw.update(num_beams=1, do_sample=True, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p,
                  min_p=d.min_p or None)
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = (_eos_ids(model) or [0])[0]
    out = model.generate(prompts, attention_mask=attention_mask, pad_token_id=pad, **kw)
    return out[:, -d.new_tokens:]


def in_precision(model, precision: str):
    """The model with its weights in `precision` (fp32 or bf16): itself if they are, else a copy in
    eval mode (the model is still needed in fp32 for scoring)."""
    import copy

    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    if next(model.parameters()).dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype).eval()


def token_agreement(a, b) -> float:
    """The share of positions at which two (B, T) token arrays agree (1.0: identical)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"token arrays of shapes {a.shape} and {b.shape} cannot be compared")
    return float((a == b).mean()) if a.size else 1.0


def generate(model, prompts, d: Decoding, generator=None, generator_seed: int | None = None,
             states: dict | None = None):
    """(B, P) equal-length prompts -> (B, new_tokens) new tokens, under inference mode, with the
    weights in d.precision (a copy if the model's are not). `states` (a dict the caller keeps) holds
    the OPT decoder's buffers across calls, so a CUDA graph or a compiled step is made once per shape."""
    import torch

    model = in_precision(model, d.precision)
    with torch.inference_mode():
        if getattr(model.config, "model_type", "") == "opt":
            return _decode_opt(model, prompts, d, generator, states)
        return generate_hf(model, prompts, d, generator_seed=generator_seed)


# ------------------------------------------------------------------ shards

def shard_name(rank: int, chunk: int) -> str:
    return f"part-{rank:03d}-{chunk:05d}.parquet"


def seconds_name(rank: int) -> str:
    """The record of the seconds rank `rank` has sampled a generation's shards for, over its attempts: the shards
    are kept across attempts, so their time is too (not in a shard's metadata: a shard's bytes stay its tokens')."""
    return f"seconds-{rank:03d}.json"


def sampled_before(shard_dir: Path, rank: int, model_hash: str) -> float:
    """The seconds rank `rank` sampled shards of `model_hash` in earlier attempts (seconds_name's record); 0 with
    none, another model's (retrained weights: their shards are sampled again) or one that does not read (a
    timing, not a result: counted from 0, as before it was kept)."""
    import json

    try:
        record = json.loads((Path(shard_dir) / seconds_name(rank)).read_text())
        return float(record["seconds"]) if record.get("model_sha256") == model_hash else 0.0
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return 0.0


def rank_files(shard_dir: Path, rank: int) -> list[Path]:
    """The files in `shard_dir` that rank `rank` wrote: its shards (shard_name's) and its seconds' record."""
    record = Path(shard_dir) / seconds_name(rank)
    return sorted(Path(shard_dir).glob(f"part-{rank:03d}-*.parquet")) + ([record] if record.exists() else [])


def done_chunks(shard_dir: Path, model_hash: str | None = None) -> set[int]:
    """The chunks with a shard; with model_hash, only those sampled by that model (a shard left by
    weights since retrained is sampled again, never mixed with the new model's). A shard that does not
    read as Parquet, its footer or a page (its CRC), is not done: each is written whole under a temporary
    name, so it was cut short or damaged after (a node's crash before its data reached the disk, a copy of
    the run folder stopped), and a resume that read it failed on it at every try, or took a changed page's
    other tokens silently; it is sampled again. One whose read the file system refuses (permissions, an I/O
    error) is kept: NotRead."""
    import logging

    from collapse_hpc.store.reads import NotRead, refused_read

    done = set()
    for p in Path(shard_dir).glob("part-*-*.parquet"):
        try:
            meta = _whole_shard_metadata(p)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            if refused_read(e):
                raise NotRead(f"sampling shard {p}", e, "kept as it is (not sampled again); sampling goes on "
                              "from it") from None
            logging.getLogger("collapse_hpc").warning("warning: %s: not a readable shard (%s); sampled again",
                                                      p, first_line(e))
            continue
        if model_hash is not None and meta.get("model_sha256") != model_hash:
            continue
        done.add(int(p.stem.split("-")[2]))
    return done


def _whole_shard_metadata(path: Path) -> dict:
    """A shard's metadata (write_parquet's), once its every page reads as read_shards will read it."""
    import pyarrow.parquet as pq

    from collapse_hpc.store import read_parquet_metadata

    pq.read_table(path, page_checksum_verification=True)  # a shard from before page checksums: its pages decode
    return read_parquet_metadata(path)


def shards_decoding(shard_dir: Path, ran: dict) -> dict:
    """The decoding a generation's shards record, for its manifest and tables: `ran` (this attempt's
    Decoding.metadata) with the step of the shards. A resume after sample_graphs or sample_compile
    changed keeps the shards sampled before (LanguageModel.redone_after), so they may hold several
    steps: `step` is then "mixed" and `steps` counts the shards of each (a compiled one with its
    backend); each shard's own metadata names its step."""
    from collapse_hpc.store import read_parquet_metadata

    seen: dict[tuple[str, str], int] = {}
    for p in sorted(Path(shard_dir).glob("part-*-*.parquet")):
        d = read_parquet_metadata(p).get("decoding")
        if isinstance(d, dict) and isinstance(d.get("step"), str):
            key = (d["step"], str(d.get("compile_backend") or ""))
            seen[key] = seen.get(key, 0) + 1
    if not seen:
        return ran
    out = {k: v for k, v in ran.items() if k not in ("step", "compile_backend")}
    if len(seen) == 1:  # every shard one step: the kept ones' where none was sampled now
        ((step, backend),) = seen
        return out | {"step": step} | ({"compile_backend": backend} if backend else {})
    return out | {"step": "mixed", "steps": {f"{s} ({b})" if b else s: n for (s, b), n in sorted(seen.items())}}


def remaining_chunks(shard_dir: Path, n_prompts: int, batch_size: int, model_hash: str | None = None) -> list[int]:
    """The chunks of `n_prompts` prompts with no shard of `model_hash` yet, sorted (a missing folder: all)."""
    return sorted(set(range(-(-n_prompts // batch_size))) - done_chunks(shard_dir, model_hash))


def deal_chunks(remaining: list[int], rank: int, world_size: int) -> list[int]:
    """Rank `rank`'s share of the chunks still to sample: dealt in turn, so each rank gets as many as its
    peers (within one). Chunk k fixed to rank k % world_size left a resume whose earlier attempt finished one
    rank's chunks with that rank idle at the barrier for its peer's whole share, past collective_timeout_s
    at scale. A chunk's tokens depend on its id alone (its seed), so which rank samples it changes none."""
    return [k for i, k in enumerate(remaining) if i % world_size == rank]


def sample_shards(model, tokenizer, prompts, d: Decoding, shard_dir: Path, *, generation: int, rank: int = 0,
                  world_size: int = 1, batch_size: int = 128, seed: int = 0, model_hash: str = "",
                  device=None, log=None, prompt_source: str = "train_set", remaining: list[int] | None = None,
                  seconds_before: float | None = None) -> int:
    """Sample this rank's share of the chunks of `prompts` (pa.Table block_id, input_ids) still to do into shards,
    each written atomically (then, with `seconds_before`, seconds_name's record); prompt_source: what the prompts'
    block_ids name (real: real training blocks; train_set: the training set's rows). `remaining` (remaining_chunks,
    read before any rank writes; None: here, for a lone rank) is every rank's. Returns how many it sampled now."""
    import torch
    from tqdm import tqdm

    shard_dir, n = Path(shard_dir), prompts.num_rows
    if remaining is None:
        remaining = remaining_chunks(shard_dir, n, batch_size, model_hash)
    todo, chunks = deal_chunks(remaining, rank, world_size), -(-n // batch_size)
    if log and len(remaining) < chunks:
        log.info("sampling: %d of %d chunks already done; rank %d samples %d of the %d left",
                 chunks - len(remaining), chunks, rank, len(todo), len(remaining))
    ids, tokens = prompts.column("block_id").to_numpy(), prompts.column("input_ids")
    model = in_precision(model.eval(), d.precision)  # converted once, not per chunk
    device = device or next(model.parameters()).device
    started, produced, states = time.time(), 0, {}
    for k in tqdm(todo, desc=f"sample gen {generation} rank {rank}", unit="chunk", disable=not todo,
                  dynamic_ncols=True):
        lo, hi = k * batch_size, min(n, (k + 1) * batch_size)
        batch = torch.tensor(np.stack(tokens.slice(lo, hi - lo).to_numpy(zero_copy_only=False)), dtype=torch.long,
                             device=device)
        chunk_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        gen = torch.Generator(device=device).manual_seed(chunk_seed)
        out = generate(model, batch, d, gen, chunk_seed, states).cpu().numpy().astype(np.int32)
        produced += out.size
        _write_shard(shard_dir, rank, k, _shard_table(ids[lo:hi], out, tokenizer, generation, prompt_source),
                     {"decoding": d.metadata(device), "model_sha256": model_hash, "generation": generation,
                      "chunk": k, "prompts": [lo, hi], "seed": chunk_seed})
        _record_seconds(shard_dir, rank, model_hash, seconds_before, started)
    if log and todo:
        dt = time.time() - started
        log.info("sampled %s (%d tokens) in %.1f s: %.0f tokens/s", count(len(todo), "chunk"), produced, dt,
                 produced / max(dt, 1e-9))
    return len(todo)


def _record_seconds(shard_dir: Path, rank: int, model_hash: str, before: float | None, started: float) -> None:
    """After each shard: seconds_name's record of `before` (None: none kept) and the seconds since `started`."""
    if before is not None:
        from collapse_hpc.store import atomic

        atomic.write_json(shard_dir / seconds_name(rank), {"model_sha256": model_hash,
                                                          "seconds": before + time.time() - started})


def _write_shard(shard_dir: Path, rank: int, chunk: int, table, metadata: dict) -> None:
    """Chunk `chunk`'s shard, atomically; any other of that chunk (a stale model's, one cut short, written
    by another rank of an earlier attempt) is removed after, so read_shards reads the chunk once. The chunk
    is this rank's alone in this attempt (deal_chunks): no peer writes or reads it meanwhile."""
    from collapse_hpc.store import write_parquet

    name = shard_name(rank, chunk)
    write_parquet(shard_dir / name, table, metadata, checksums=True)
    for other in shard_dir.glob(f"part-*-{chunk:05d}.parquet"):
        if other.name != name:
            other.unlink(missing_ok=True)


def _shard_table(block_ids, out: np.ndarray, tokenizer, generation: int, prompt_source: str):
    """One chunk's continuations (int32, one row per prompt) as a shard: lineage, tokens and text. The text is
    for reading: a byte-level BPE block may begin or end inside a character, or a model write bytes that
    are no UTF-8, each shown as U+FFFD, so it may not re-tokenize to input_ids; training reads input_ids."""
    import pyarrow as pa

    n = len(block_ids)
    return pa.table({
        "block_id": pa.array(block_ids, pa.int64()),
        "prompt_block_id": pa.array(block_ids, pa.int64()),
        "input_ids": pa.array(list(out), pa.list_(pa.int32())),
        "text": pa.array(tokenizer.batch_decode(out.tolist()), pa.string()),
        "generation": pa.array(np.full(n, generation), pa.int32()),
        "source": pa.array(["generated"] * n, pa.string()),
        "prompt_source": pa.array([prompt_source] * n, pa.string()),
    })


def read_shards(shard_dir: Path):
    """Every shard of a generation as one table, in block order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from collapse_hpc.errors import UserError

    files = sorted(Path(shard_dir).glob("part-*-*.parquet"))
    if (Path(shard_dir) / ORIGINAL).is_file():
        files.append(Path(shard_dir) / ORIGINAL)
    if not files:
        raise UserError(f"{shard_dir}: no generated shards (part-*.parquet)")
    # the reference CLI's original.parquet (and shards from before prompt_source) lack columns: nulls
    table = pa.concat_tables([pq.read_table(f, page_checksum_verification=True) for f in files],
                             promote_options="default")
    return table.sort_by("block_id")
