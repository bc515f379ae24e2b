"""Sampling: the paper's decoding (same tokens as HF generate), presets, shards, resume, ranks."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from collapse_hpc.experiments.lm.sample import (Decoding, done_chunks, generate, generate_hf, read_shards,
                                                 sample_shards)
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


def test_sampling_is_seeded(model, prompts):
    d = Decoding(preset="sampling", new_tokens=10)
    a = generate(model, prompts, d, generator=torch.Generator().manual_seed(3))
    b = generate(model, prompts, d, generator=torch.Generator().manual_seed(3))
    c = generate(model, prompts, d, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


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
    assert t.column_names == ["block_id", "prompt_block_id", "input_ids", "text", "generation", "source"]
    assert t.column("block_id").to_pylist() == list(range(100, 120))
    assert t.schema.field("input_ids").type == pa.list_(pa.int32())
    assert set(t.column("source").to_pylist()) == {"generated"} and set(t.column("generation").to_pylist()) == {2}
    meta = read_parquet_metadata(one / "part-000-00001.parquet")
    assert meta["decoding"] == {"preset": "beam", "num_beams": 3, "repetition_penalty": 3.0, "new_tokens": 16}
    assert meta["model_sha256"] == "abc" and meta["prompts"] == [8, 16]
    # resume: only the missing chunk is sampled again, and it comes out the same
    (one / "part-000-00001.parquet").unlink()
    assert done_chunks(one) == {0, 2}
    assert sample_shards(model, _Tok(), blocks, d, one, generation=2, batch_size=8, model_hash="abc") == 1
    assert all(first[k].equals(v) for k, v in _tables(one).items())
    # two ranks take disjoint chunks; together the same tokens as one rank
    two = tmp_path / "two"
    for rank in (0, 1):
        sample_shards(model, _Tok(), blocks, d, two, generation=2, rank=rank, world_size=2, batch_size=8)
    assert sorted(_tables(two)) == ["part-000-00000.parquet", "part-000-00002.parquet", "part-001-00001.parquet"]
    assert read_shards(two).column("input_ids").equals(t.column("input_ids"))
