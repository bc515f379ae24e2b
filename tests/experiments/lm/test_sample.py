"""Sampling: the paper's decoding (same tokens as HF generate), presets, shards, resume, ranks."""
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from collapse_hpc.experiments.lm.sample import (PRESETS, STEPS, Decoding, deal_chunks, done_chunks, generate,
                                                 generate_hf, parse_strategy, read_shards, remaining_chunks,
                                                 sample_shards, sampling_warp, shard_name,
                                                 shards_decoding, token_agreement)
from collapse_hpc.store import read_parquet_metadata


def _opt(vocab=300, scale=5.0, seed=0):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
                    max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=1, bos_token_id=0,
                    eos_token_id=2)
    model = OPTForCausalLM(cfg).eval()
    with torch.no_grad():  # peakier than the initialisation, like a trained model
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def model():
    return _opt()


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(3, 300, (6, 16), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("preset", ["beam", "greedy"])
def test_same_tokens_as_hf_generate(model, prompts, preset):
    d = Decoding(preset=preset, new_tokens=12)
    ours = generate(model, prompts, d)
    with torch.inference_mode():
        ref = generate_hf(model, prompts, d)
    assert ours.shape == (6, 12)
    assert torch.equal(ours, ref)


SAMPLED = [Decoding(preset="sampling", new_tokens=10), Decoding(preset="temperature", temperature=0.7, new_tokens=10),
           Decoding(preset="top_k", top_k=20, new_tokens=10), Decoding(preset="top_p", top_p=0.9, new_tokens=10),
           Decoding(preset="min_p", min_p=0.05, new_tokens=10)]


@pytest.mark.parametrize("d", SAMPLED, ids=lambda d: d.preset)
def test_seeded_sampling_draws_hf_generates_tokens(model, prompts, d):
    """The same seed gives the same draws as HF generate (its global generator seeded alike)."""
    ours = generate(model, prompts, d, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = generate_hf(model, prompts, d, generator_seed=7)
    assert torch.equal(ours, ref)


def test_bf16_sampling_decodes_a_copy_and_its_agreement_is_measured(model, prompts):
    """sample_precision bf16: a bf16 copy of the weights decodes (the fp32 model, still needed for
    scoring, is untouched); how many tokens it shares with fp32 is what token_agreement says."""
    fp32 = generate(model, prompts, Decoding(new_tokens=12))
    bf16 = generate(model, prompts, Decoding(new_tokens=12, precision="bf16"))
    assert next(model.parameters()).dtype == torch.float32
    assert torch.equal(generate(model, prompts, Decoding(new_tokens=12)), fp32)
    assert bf16.shape == fp32.shape and bf16.dtype == torch.long
    rate = token_agreement(bf16, fp32)
    assert rate == pytest.approx(float((bf16 == fp32).double().mean()))
    assert rate > 0.5  # the same model: most tokens agree, near-ties may not
    with pytest.raises(ValueError, match="precision"):
        Decoding(precision="fp16")


def test_token_agreement():
    assert token_agreement([[1, 2], [3, 4]], [[1, 2], [3, 5]]) == 0.75
    assert token_agreement(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        token_agreement([[1, 2]], [[1, 2, 3]])


STEPPED = [Decoding(preset="beam", new_tokens=12), Decoding(preset="greedy", new_tokens=12),
           Decoding(preset="top_k", top_k=20, new_tokens=10)]


def _hf(model, prompts, d, seed=7):
    with torch.inference_mode():
        return generate_hf(model, prompts, d, generator_seed=seed)


def _spy_steps(monkeypatch):
    """Record, for every decoder step, its inputs' identities and shapes and the concatenations inside."""
    from collapse_hpc.experiments.lm import sample

    seen, cats, real_cat, step = [], [], torch.cat, sample._OPTDecoder.step

    def spy(self, *args, **kwargs):
        before = len(cats)
        out = step(self, *args, **kwargs)
        flat = [t for a in args for t in (a if isinstance(a, list) else [a])]
        flat = [t for x in flat for t in (x if isinstance(x, tuple) else [x])]
        seen.append((tuple((type(t).__name__, tuple(getattr(t, "shape", ())),
                            t.data_ptr() if isinstance(t, torch.Tensor) else t) for t in flat),
                     tuple(kwargs.items()), tuple(out.shape), len(cats) - before))
        return out

    monkeypatch.setattr(sample._OPTDecoder, "step", spy)
    monkeypatch.setattr(torch, "cat", lambda *a, **k: (cats.append(1), real_cat(*a, **k))[1])
    return seen


@pytest.mark.parametrize("d", STEPPED, ids=lambda d: d.preset)
def test_static_step_reads_the_same_tensors_every_step_and_hf_generates_tokens(model, prompts, d, monkeypatch):
    """graphs on (on a CPU: the step a CUDA graph would capture, uncaptured): every step gets the
    same tensors - tokens, position, slots, caches, mask - in the same buffers, and no Python number
    (a graph or a compiled step would bake one in), and concatenates nothing; the tokens are still
    HF generate's, for beam search, greedy and seeded sampling."""
    from dataclasses import replace

    seen = _spy_steps(monkeypatch)
    d = replace(d, graphs="on")
    assert d.step("cpu") == "static"
    ours = generate(model, prompts, d, generator=torch.Generator().manual_seed(7))
    assert len(seen) == d.new_tokens - 1 and len(set(seen)) == 1, "a step's inputs changed"
    inputs, kwargs, _, cats = seen[0]
    assert all(kind == "Tensor" for kind, _, _ in inputs) and not kwargs and cats == 0
    monkeypatch.undo()
    assert torch.equal(ours, _hf(model, prompts, d))


@pytest.mark.parametrize("d", STEPPED, ids=lambda d: d.preset)
def test_slots_step_is_the_cpu_default_and_hf_generates_tokens(model, prompts, d, monkeypatch):
    """A CPU's default (graphs auto): the step attends over the slots written so far (a span that
    grows: less work than the whole cache), from the same buffers; HF generate's tokens."""
    seen = _spy_steps(monkeypatch)
    assert d.step("cpu") == "slots" and d.step(torch.device("cuda")) == "graph"
    ours = generate(model, prompts, d, generator=torch.Generator().manual_seed(7))
    spans = [dict(kwargs).get("span", inputs[-1][2]) for inputs, kwargs, _, _ in seen]
    K = d.beams
    assert spans == [16 + K * t for t in range(1, d.new_tokens)]
    assert len({inputs[:-1] for inputs, _, _, _ in seen}) == 1  # the same buffers, but the span
    monkeypatch.undo()
    assert torch.equal(ours, _hf(model, prompts, d))


@pytest.mark.parametrize("graphs", ["on", "off"])
def test_decode_state_is_kept_per_shape_across_chunks(model, prompts, graphs):
    """`states` keeps one set of buffers per (model, batch, beams, prompt, new tokens): chunks of one
    shape reuse it (a CUDA graph is captured once per shape) and still give each chunk's own tokens
    (nothing of an earlier chunk leaks through the reused caches); a new shape replaces it (one set
    of caches in memory)."""
    d = Decoding(new_tokens=12, graphs=graphs)
    states = {}
    a = generate(model, prompts[:3], d, states=states)
    (state,) = states.values()
    caches = [(k.data_ptr(), v.data_ptr()) for k, v in state.caches]
    b = generate(model, prompts[3:], d, states=states)
    assert list(states.values()) == [state] and caches == [(k.data_ptr(), v.data_ptr()) for k, v in state.caches]
    assert torch.equal(a, generate(model, prompts[:3], d)) and torch.equal(b, generate(model, prompts[3:], d))
    assert torch.equal(torch.cat([a, b]), _hf(model, prompts, d))
    generate(model, prompts[:2], d, states=states)
    assert len(states) == 1 and state not in states.values()


def test_step_kind_follows_graphs_compile_and_device():
    """Which step runs, as the manifest and shards record it (what ran, not the config's words)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    table = {(g, c, dev): Decoding(graphs=g, compile=c).step(dev) for g in ("auto", "on", "off")
             for c in (False, True) for dev in (cpu, cuda)}
    assert table == {
        ("auto", False, cpu): "slots", ("auto", False, cuda): "graph", ("on", False, cpu): "static",
        ("on", False, cuda): "graph", ("off", False, cpu): "slots", ("off", False, cuda): "static",
        ("auto", True, cpu): "compiled", ("auto", True, cuda): "compiled-graph", ("on", True, cpu): "compiled",
        ("on", True, cuda): "compiled-graph", ("off", True, cpu): "compiled", ("off", True, cuda): "compiled"}
    assert set(table.values()) == set(STEPS)
    meta = Decoding(compile=True, compile_backend="aot_eager").metadata(cuda)
    assert (meta["step"], meta["compile_backend"]) == ("compiled-graph", "aot_eager")
    assert "graphs" not in meta and "compile" not in meta
    with pytest.raises(ValueError, match="graphs"):
        Decoding(graphs="yes")


def test_sample_graphs_and_compile_come_from_the_config_and_a_bad_value_is_one_error_line(tmp_path):
    """lm.sample_graphs (auto, on, off) and lm.sample_compile reach the decoding (with the training's
    compile_backend); any other graphs value stops the command with one error line and exit 2."""
    from tests.experiments.lm.conftest import tiny_cfg
    from tests.test_cli import cli, one_error_line

    d = Decoding.from_config(tiny_cfg(sample_graphs="off", sample_compile=True, compile_backend="aot_eager"))
    assert (d.graphs, d.compile, d.compile_backend) == ("off", True, "aot_eager")
    assert Decoding.from_config(tiny_cfg()).graphs == "auto" and not Decoding.from_config(tiny_cfg()).compile
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\nregimes: [replace]\nlm: {sample_graphs: always}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert "sample_graphs" in line and "always" in line and "auto" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("d", [STEPPED[0], STEPPED[2]], ids=lambda d: d.preset)
def test_compiled_step_gives_eager_tokens_and_never_recompiles(model, prompts, d, tmp_path, monkeypatch):
    """sample_compile (inductor on a CPU; static shapes): the compiled step gives the eager step's
    tokens (and so HF generate's), compiles one graph without a break and never recompiles over
    all decode steps, nor for a second chunk of the same shape."""
    from dataclasses import replace

    import torch._dynamo
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # never the shared /tmp one
    torch._dynamo.reset()
    counters.clear()
    states, seed = {}, torch.Generator().manual_seed
    compiled = replace(d, compile=True)
    assert compiled.step("cpu") == "compiled"
    with torch._dynamo.config.patch(error_on_recompile=True):  # (monkeypatch's undo deletes a config key)
        ours = generate(model, prompts[:3], compiled, generator=seed(7), states=states)
        again = generate(model, prompts[3:], compiled, generator=seed(8), states=states)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    eager = replace(d, graphs="on")
    assert torch.equal(ours, generate(model, prompts[:3], eager, generator=seed(7)))
    assert torch.equal(again, generate(model, prompts[3:], eager, generator=seed(8)))
    assert torch.equal(ours, _hf(model, prompts[:3], d))
    torch._dynamo.reset()


class _GraphOnCPU:
    """Stands in for a CUDA graph on a CPU (a fake for the replay bookkeeping only): the capture
    leaves its output unwritten (NaN) as a real capture runs nothing; each replay reruns the step on
    the buffers as they are then and writes that same output tensor, as a graph's static output."""

    captures = 0

    def __init__(self, run):
        self.run, self.replays = run, 0
        for _ in range(3):  # the warm-up runs
            run()
        self.out = torch.full_like(run(), float("nan"))
        _GraphOnCPU.captures += 1

    def replay(self):
        self.out.copy_(self.run())
        self.replays += 1


@pytest.mark.parametrize("d", STEPPED, ids=lambda d: d.preset)
def test_graph_replay_bookkeeping_gives_hf_generates_tokens(model, prompts, d, monkeypatch):
    """The CUDA-graph path's own logic on a CPU, the graph faked: captured once per shape at the
    first step, replayed at every step and chunk, its one output tensor (rewritten by each replay)
    read after each replay; the tokens are HF generate's. (That the step reads only tensors, which a
    real graph needs, is test_static_step_reads_the_same_tensors_every_step_...)"""
    import contextlib

    from collapse_hpc.experiments.lm import sample

    def capture(run):
        graph = _GraphOnCPU(run)
        return graph, graph.out

    monkeypatch.setattr(sample, "_capture", capture)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(Decoding, "step", lambda self, device: "graph")
    _GraphOnCPU.captures, states, seed = 0, {}, torch.Generator().manual_seed
    ours = torch.cat([generate(model, prompts[:3], d, generator=seed(7), states=states),
                      generate(model, prompts[3:], d, generator=seed(7), states=states)])
    (state,) = states.values()
    assert _GraphOnCPU.captures == 1 and state.graph.replays == 2 * (d.new_tokens - 1)
    monkeypatch.undo()
    assert torch.equal(ours[:3], _hf(model, prompts[:3], d)) and torch.equal(ours[3:], _hf(model, prompts[3:], d))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device; on a CPU the same "
                    "buffers and step bookkeeping run uncaptured (test_static_step_reads_the_same_tensors_...)")
@pytest.mark.parametrize("d", STEPPED, ids=lambda d: d.preset)
def test_cuda_graph_replays_give_the_uncaptured_tokens(model, prompts, d):
    """On CUDA (fp32, TF32 off, torch's default): the graph captured at the first step of a shape and
    replayed for every step and chunk gives the uncaptured static step's tokens, and HF generate's."""
    import copy
    from dataclasses import replace

    cuda = copy.deepcopy(model).cuda()
    p = prompts.cuda()
    states, seed = {}, lambda s: torch.Generator(device="cuda").manual_seed(s)
    graph = replace(d, graphs="on")
    assert graph.step(p.device) == "graph"
    ours = [generate(cuda, p[:3], graph, generator=seed(7), states=states),
            generate(cuda, p[3:], graph, generator=seed(8), states=states)]
    (state,) = states.values()
    assert state.graph is not None
    off = replace(d, graphs="off")
    assert torch.equal(ours[0], generate(cuda, p[:3], off, generator=seed(7)))
    assert torch.equal(ours[1], generate(cuda, p[3:], off, generator=seed(8)))
    assert torch.equal(ours[0], _hf(cuda, p[:3], d))  # HF seeds CUDA's default generator alike


def test_beam_search_differs_from_greedy_and_never_stops_early(model, prompts):
    beam = generate(model, prompts, Decoding(new_tokens=12))
    greedy = generate(model, prompts, Decoding(preset="greedy", new_tokens=12))
    assert not torch.equal(beam, greedy)
    assert not (beam == 2).any()  # EOS is blocked: exactly new_tokens tokens


def test_last_tokens_with_left_padding(model, prompts):
    """HF path: a left-padded shorter prompt yields the same new tokens as alone (the `[:, 64:]` bug)."""
    d = Decoding(preset="greedy", new_tokens=8)
    short = prompts[0, 4:]
    padded = torch.cat([torch.full((4,), 1), short]).unsqueeze(0)
    batch = torch.cat([padded, prompts[1:2]])
    mask = torch.ones_like(batch)
    mask[0, :4] = 0
    with torch.inference_mode():
        out = generate_hf(model, batch, d, attention_mask=mask)
        alone = generate_hf(model, short.unsqueeze(0), d)
    assert out.shape == (2, 8) and torch.equal(out[0], alone[0])


@pytest.mark.parametrize("d", SAMPLED, ids=lambda d: d.preset)
def test_sampling_is_seeded(model, prompts, d):
    a = generate(model, prompts, d, generator=torch.Generator().manual_seed(3))
    b = generate(model, prompts, d, generator=torch.Generator().manual_seed(3))
    c = generate(model, prompts, d, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_temperature_zero_equals_greedy(model, prompts):
    greedy = generate(model, prompts, Decoding(preset="greedy", new_tokens=12))
    cold = generate(model, prompts, Decoding(preset="temperature", temperature=0.0, new_tokens=12),
                    generator=torch.Generator().manual_seed(5))
    assert torch.equal(cold, greedy)
    with torch.inference_mode():  # the HF path for other architectures too
        assert torch.equal(generate_hf(model, prompts, Decoding(preset="temperature", temperature=0.0,
                                                                new_tokens=12)), greedy)


def _kept(logits, **warp):
    return set(torch.isfinite(sampling_warp(logits, Decoding(preset="sampling", **warp)))[0].nonzero()[:, 0].tolist())


def test_truncation_keeps_what_it_should():
    # probabilities 0.5, 0.3, 0.15, 0.05 (shuffled, so order by index does not matter)
    logits = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    assert _kept(logits, top_p=0.75) == {1, 3}  # 0.5 + 0.3 is the smallest set reaching 0.75
    assert _kept(logits, top_p=0.85) == {0, 1, 3}
    assert _kept(logits, top_p=0.4) == {1}
    assert _kept(logits, top_k=2) == {1, 3}
    assert _kept(logits, min_p=0.5) == {1, 3}  # at least half as likely as 0.5
    assert _kept(logits, min_p=0.2) == {0, 1, 3}
    assert _kept(logits, min_p=1.0) == {1}  # the most likely always stays
    assert _kept(logits) == {0, 1, 2, 3}


@pytest.mark.parametrize("warp", [dict(temperature=0.6), dict(top_k=7), dict(top_p=0.8), dict(min_p=0.1),
                                  dict(temperature=1.5, top_k=30, top_p=0.9, min_p=0.05)])
def test_warpers_match_hf(warp):
    """The same processed logits as transformers' warpers, applied in generate's order."""
    from transformers.generation import logits_process as lp

    logits = torch.randn(8, 300, generator=torch.Generator().manual_seed(0)) * 3
    hf = logits.clone()
    if warp.get("temperature", 1.0) != 1.0:
        hf = lp.TemperatureLogitsWarper(warp["temperature"])(None, hf)
    if warp.get("top_k"):
        hf = lp.TopKLogitsWarper(warp["top_k"])(None, hf)
    if warp.get("top_p"):
        hf = lp.TopPLogitsWarper(warp["top_p"])(None, hf)
    if warp.get("min_p"):
        hf = lp.MinPLogitsWarper(warp["min_p"])(None, hf)
    ours = sampling_warp(logits.clone(), Decoding(preset="sampling", **warp))
    assert torch.equal(torch.isfinite(ours), torch.isfinite(hf))
    assert torch.allclose(ours[torch.isfinite(ours)], hf[torch.isfinite(hf)])


@pytest.mark.parametrize("d", SAMPLED, ids=lambda d: d.preset)
def test_hf_path_samples_each_strategy(model, prompts, d):
    with torch.inference_mode():
        a = generate_hf(model, prompts, d, generator_seed=7)
        b = generate_hf(model, prompts, d, generator_seed=7)
    assert a.shape == (6, 10) and torch.equal(a, b)


def test_strategies_parse_and_label():
    from tests.experiments.lm.conftest import tiny_cfg

    assert parse_strategy("top_p:0.9") == ("top_p", 0.9) == parse_strategy("top_p0.9")
    assert parse_strategy("greedy") == ("greedy", None)
    cfg = tiny_cfg(decoding=list(PRESETS) + ["top_p:0.5", "temperature:0"])
    assert [Decoding.from_config(cfg, s).label for s in cfg.decoding] == [
        "beam", "greedy", "sampling", "temperature0.7", "top_k50", "top_p0.95", "min_p0.1", "top_p0.5",
        "temperature0"]
    d = Decoding.from_config(cfg, "top_p0.5")  # a label reads back as the same strategy
    assert (d.preset, d.top_p, d.top_k, d.temperature, d.min_p) == ("top_p", 0.5, 0, 1.0, 0.0)
    assert Decoding.from_config(cfg, "top_k:20").metadata("cpu") == {
        "preset": "top_k", "repetition_penalty": 3.0, "new_tokens": 16, "temperature": 1.0, "top_k": 20,
        "top_p": 1.0, "min_p": 0.0, "precision": "fp32", "step": "slots"}
    for bad in ("nucleus", "greedy:1", "top_p:2", "top_k:2.5", "min_p:0", "temperature:-1", "top_p:x"):
        with pytest.raises(ValueError, match="decoding"):
            parse_strategy(bad)


class _Tok:
    def batch_decode(self, rows):
        return [" ".join(map(str, r)) for r in rows]


def _blocks(n=20, length=16):
    ids = np.random.default_rng(0).integers(3, 300, (n, length)).astype(np.int32)
    return pa.table({"block_id": np.arange(100, 100 + n), "input_ids": pa.array(list(ids), pa.list_(pa.int32()))})


def _tables(folder):
    return {p.name: pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))}


def test_shards_columns_metadata_resume_and_ranks(tmp_path, model):
    d = Decoding(num_beams=3, new_tokens=16)
    blocks = _blocks()
    one = tmp_path / "one"
    assert sample_shards(model, _Tok(), blocks, d, one, generation=2, batch_size=8, model_hash="abc") == 3
    first = _tables(one)
    assert sorted(first) == ["part-000-00000.parquet", "part-000-00001.parquet", "part-000-00002.parquet"]
    t = read_shards(one)
    assert t.column_names == ["block_id", "prompt_block_id", "input_ids", "text", "generation", "source",
                              "prompt_source"]
    assert set(t.column("prompt_source").to_pylist()) == {"train_set"}  # what these prompts' ids name
    assert t.column("block_id").to_pylist() == list(range(100, 120))
    assert t.schema.field("input_ids").type == pa.list_(pa.int32())
    assert set(t.column("source").to_pylist()) == {"generated"} and set(t.column("generation").to_pylist()) == {2}
    meta = read_parquet_metadata(one / "part-000-00001.parquet")
    assert meta["decoding"] == {"preset": "beam", "num_beams": 3, "repetition_penalty": 3.0, "new_tokens": 16,
                                "precision": "fp32", "step": "slots"}
    assert meta["model_sha256"] == "abc" and meta["prompts"] == [8, 16]
    # resume: only the missing chunk is sampled again, and it comes out the same
    (one / "part-000-00001.parquet").unlink()
    assert done_chunks(one) == {0, 2}
    assert sample_shards(model, _Tok(), blocks, d, one, generation=2, batch_size=8, model_hash="abc") == 1
    assert all(first[k].equals(v) for k, v in _tables(one).items())
    # a shard cut short after its rename (a node's crash, a copy stopped): sampled again, not a failure at
    # every resume
    whole = (one / "part-000-00002.parquet").read_bytes()
    (one / "part-000-00002.parquet").write_bytes(whole[:200])
    assert done_chunks(one, "abc") == {0, 1}
    (one / "part-000-00002.parquet").write_bytes(b"")
    assert done_chunks(one) == {0, 1}
    # bytes changed inside a page, the footer whole: decoded to other tokens, silently (or failed every resume)
    group = pq.ParquetFile(pa.BufferReader(whole)).metadata.row_group(0)
    tokens = next(c for c in map(group.column, range(group.num_columns)) if c.path_in_schema.startswith("input_ids"))
    at, damaged = tokens.data_page_offset + tokens.total_compressed_size // 2, bytearray(whole)
    damaged[at:at + 2] = bytes(255 - b for b in damaged[at:at + 2])
    (one / "part-000-00002.parquet").write_bytes(bytes(damaged))
    assert done_chunks(one) == {0, 1}
    assert sample_shards(model, _Tok(), blocks, d, one, generation=2, batch_size=8, model_hash="abc") == 1
    assert all(first[k].equals(v) for k, v in _tables(one).items())
    # weights since retrained: every shard of the old model is sampled again, none is mixed in
    assert done_chunks(one, "retrained") == set()
    assert sample_shards(model, _Tok(), blocks, d, one, generation=2, batch_size=8, model_hash="retrained") == 3
    assert {read_parquet_metadata(f)["model_sha256"] for f in one.glob("part-*")} == {"retrained"}
    # two ranks take disjoint chunks; together the same tokens as one rank
    two = tmp_path / "two"
    remaining = remaining_chunks(two, blocks.num_rows, 8)  # read by every rank before any writes
    for rank in (0, 1):
        sample_shards(model, _Tok(), blocks, d, two, generation=2, rank=rank, world_size=2, batch_size=8,
                      remaining=remaining)
    assert sorted(_tables(two)) == ["part-000-00000.parquet", "part-000-00002.parquet", "part-001-00001.parquet"]
    assert read_shards(two).column("input_ids").equals(t.column("input_ids"))


def test_a_resumed_sampling_counts_the_seconds_its_kept_shards_took(tmp_path, model, monkeypatch):
    """Sampling resumes chunk by chunk (the shards kept are not sampled again), but sample_seconds (and
    sample_tokens_per_s, the phase's seconds) counted the last attempt's alone: a generation killed after most of
    its chunks seemed to sample them all in seconds. Each rank's seconds so far are kept beside the shards now."""
    import logging
    import time

    from collapse_hpc.experiments.lm import sample
    from collapse_hpc.experiments.lm.pipeline import Pipeline
    from tests.experiments.lm.conftest import tiny_cfg

    class Killed(Exception):
        pass

    took, decode = [], sample.generate

    def slow(*args, **kwargs):  # each chunk takes half a second at least; the first attempt dies at its 3rd
        started = time.time()
        time.sleep(0.5)
        if len(took) == 2 and not (tmp_path / "resumed").exists():
            raise Killed
        out = decode(*args, **kwargs)
        took.append(time.time() - started)
        return out

    monkeypatch.setattr(sample, "generate", slow)
    lm = Pipeline(tiny_cfg(sample_batch_size=8), None, _Tok(), 0, 1, 0, torch.device("cpu"),
                  logging.getLogger("collapse_hpc.lm"), {})
    shards, d = tmp_path / "shards", Decoding(num_beams=2, new_tokens=8)

    def attempt(model_hash="abc"):
        return lm.sample(model, _blocks(n=32), d, shards, generation=1, seed=0, model_hash=model_hash)

    with pytest.raises(Killed):
        attempt()
    assert done_chunks(shards) == {0, 1}
    (tmp_path / "resumed").touch()
    seconds = attempt()
    assert len(took) == 4 and seconds >= sum(took) > 2.0  # the resumed attempt's alone: 2 chunks, ~1 s
    assert read_shards(shards).num_rows == 32 and sorted(p.name for p in shards.glob("part-*")) == \
        [shard_name(0, k) for k in range(4)]
    took.clear()  # weights since retrained: their shards are all sampled again, and only their seconds count
    again = attempt("retrained")
    assert len(took) == 4 and sum(took) <= again < sum(took) + seconds


def test_the_chunks_left_are_dealt_evenly_over_the_ranks():
    """Chunk k was rank k % world's: a resume whose earlier attempt finished rank 0's chunks left rank 0
    nothing and rank 1 all, rank 0 idle at the barrier for rank 1's whole share."""
    left = [1, 3, 5, 7, 9, 11, 13]  # rank 0's of 14 on two ranks done
    shares = [deal_chunks(left, rank, 2) for rank in (0, 1)]
    assert shares == [[1, 5, 9, 13], [3, 7, 11]]
    for world in (1, 3, 4):  # a resume on another number of ranks: each chunk once, within one of its peers
        shares = [deal_chunks(left, rank, world) for rank in range(world)]
        assert sorted(sum(shares, [])) == left and max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_resume_whose_rank_had_finished_its_chunks_samples_its_share_of_its_peers(tmp_path, model):
    """Rank 0's chunks all sampled before (its peer died early): rank 0 now samples half of those left, and
    each comes out as in an uninterrupted run, whichever rank samples it; on three ranks too."""
    d, blocks = Decoding(num_beams=2, new_tokens=8), _blocks(n=32)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert sample_shards(model, _Tok(), blocks, d, whole, generation=2, batch_size=8, model_hash="abc") == 4
    for world in (2, 3):
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir()
        for k in (0, 2):  # rank 0's of two ranks
            shutil.copy(whole / shard_name(0, k), part / shard_name(0, k))
        remaining = remaining_chunks(part, blocks.num_rows, 8, "abc")
        assert remaining == [1, 3]
        # rank 0 reads what is left itself (before any rank wrote); its peers take the same list
        sampled = [sample_shards(model, _Tok(), blocks, d, part, generation=2, rank=rank, world_size=world,
                                 batch_size=8, model_hash="abc", remaining=remaining if rank else None)
                   for rank in range(world)]
        assert sampled == [1, 1, 0][:world]
        assert read_shards(part).equals(read_shards(whole))


def test_a_chunk_sampled_again_by_another_rank_leaves_one_shard(tmp_path, model):
    """A chunk whose shard was cut short, or sampled by an older model, may now fall to another rank (as
    after a resume on another number of ranks before): its old shard, under the other rank's name, stayed
    and was read with the new one, the chunk's blocks twice (or the cut one failed the read)."""
    d, blocks, shards = Decoding(num_beams=2, new_tokens=8), _blocks(n=16), tmp_path / "shards"
    assert sample_shards(model, _Tok(), blocks, d, shards, generation=2, batch_size=8, model_hash="old") == 2
    # chunk 1 stays rank 0's of that one-rank attempt; chunk 0 was rank 1's of a later one, cut short
    (shards / shard_name(0, 0)).rename(shards / shard_name(1, 0))
    (shards / shard_name(1, 0)).write_bytes(b"")
    assert sample_shards(model, _Tok(), blocks, d, shards, generation=2, rank=1, world_size=2, batch_size=8,
                         model_hash="new", remaining=[0, 1]) == 1
    assert sample_shards(model, _Tok(), blocks, d, shards, generation=2, rank=0, world_size=2, batch_size=8,
                         model_hash="new", remaining=[0, 1]) == 1
    assert sorted(p.name for p in shards.iterdir()) == [shard_name(0, 0), shard_name(1, 1)]
    assert read_shards(shards).column("block_id").to_pylist() == list(range(100, 116))


def test_the_manifests_decoding_names_the_step_of_every_shard_kept(tmp_path, model):
    """A resume under another sample_graphs keeps the shards sampled before; the manifest's decoding.step
    named only the step of the last attempt, though the shards held two. It says "mixed" now and counts
    the shards of each; where one step wrote them all it is that one, a kept shards' too."""
    blocks = _blocks()
    slots, static = Decoding(num_beams=3, new_tokens=16), Decoding(num_beams=3, new_tokens=16, graphs="on")
    shards = tmp_path / "shards"
    sample_shards(model, _Tok(), blocks, slots, shards, generation=2, batch_size=8, model_hash="abc")
    assert shards_decoding(shards, slots.metadata("cpu")) == slots.metadata("cpu")
    assert shards_decoding(shards, static.metadata("cpu"))["step"] == "slots"  # none sampled by this attempt
    (shards / "part-000-00001.parquet").unlink()  # killed before its last chunks; resumed with graphs on
    (shards / "part-000-00002.parquet").unlink()
    sample_shards(model, _Tok(), blocks, static, shards, generation=2, batch_size=8, model_hash="abc")
    merged = shards_decoding(shards, static.metadata("cpu"))
    assert merged == {**static.metadata("cpu"), "step": "mixed", "steps": {"slots": 1, "static": 2}}
    assert [read_parquet_metadata(f)["decoding"]["step"] for f in sorted(shards.glob("part-*"))] == \
        ["slots", "static", "static"]  # each shard its own
    assert shards_decoding(tmp_path / "none", slots.metadata("cpu")) == slots.metadata("cpu")


def test_config_sweeps_decoding_one_chain_each():
    from collapse_hpc import experiments
    from collapse_hpc.errors import ConfigError
    from collapse_hpc.experiments.lm import EXPERIMENT

    def run(decoding=None):
        lm = {} if decoding is None else {"decoding": decoding}
        return experiments.config_from_dict({"regimes": ["replace", "accumulate"], "lm": lm})

    assert [v.name for v in EXPERIMENT.variants(run())] == ["replace-p0-s0", "accumulate-s0"]
    assert run("greedy").section("lm").decoding == ["greedy"]  # one name is a list of one
    assert run(["greedy"]).section("lm").decoding == ["greedy"]
    names = [v.name for v in EXPERIMENT.variants(run(["beam", "top_p:0.9", "min_p"]))]
    assert names == ["replace-p0-decodingbeam-s0", "accumulate-decodingbeam-s0", "replace-p0-decodingtop_p0.9-s0",
                     "accumulate-decodingtop_p0.9-s0", "replace-p0-decodingmin_p0.1-s0",
                     "accumulate-decodingmin_p0.1-s0"]
    for bad, msg in ((["nucleus"], "must be one of"), (["top_p", "top_p:0.95"], "listed twice"),
                     (["top_k:0"], "whole number"), ([], "at least one")):
        with pytest.raises(ConfigError, match=msg) as e:
            run(bad)
        assert "\n" not in str(e.value) and str(e.value).startswith("<config>: lm")


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO, errno.ESTALE])
def test_a_shard_the_file_system_will_not_read_now_is_kept_not_sampled_again(tmp_path, monkeypatch, refusal):
    """A shard whose read the file system refused was taken for one cut short: sampled again, written over.
    Now the unit stops in one line naming the shard and the error, the shard kept; once it reads, it is done."""
    from collapse_hpc.errors import UserError
    from collapse_hpc.store import atomic

    for chunk in (0, 1):
        atomic.write_parquet(tmp_path / f"part-000-0000{chunk}.parquet", pa.table({"block_id": [chunk]}),
                             {"model_sha256": "abc"})
    refused = tmp_path / "part-000-00001.parquet"
    real = pq.read_schema

    def read_schema(where, *args, **kwargs):  # as pyarrow says it, its errno kept
        if Path(where) == refused:
            raise OSError(refusal, f"Failed to open local file '{where}'. Detail: [errno {refusal}] "
                                   f"{os.strerror(refusal)}")
        return real(where, *args, **kwargs)

    monkeypatch.setattr(pq, "read_schema", read_schema)
    with pytest.raises(UserError) as said:
        done_chunks(tmp_path, "abc")
    monkeypatch.undo()
    assert str(said.value) == (f"sampling shard {refused}: not read ({os.strerror(refusal)}): kept as it is (not "
                               f"sampled again); sampling goes on from it once the file reads again (its "
                               f"permissions, the file system): run the same command again")
    assert done_chunks(tmp_path, "abc") == {0, 1}
