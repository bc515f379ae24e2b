"""A user's own corpus in the shapes it arrives in: WikiText's file names, compressed text, JSON
lines, CSV, a datasets export; what cannot be read is named, never dropped unsaid."""
import bz2
import csv
import errno
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm import data, sources
from tests.experiments.lm.conftest import corpus_lines


def _lines(n: int, seed: int) -> str:
    return "\n".join(corpus_lines(n, seed)) + "\n"


def test_wikitext_as_shipped_and_valid_or_dev_names_keep_their_splits(tmp_path):
    src = tmp_path / "wikitext-2-raw"
    src.mkdir()
    for name, seed in (("train", 1), ("valid", 2), ("test", 3)):
        (src / f"wiki.{name}.raw").write_text(" = Heading = \n\n" + _lines(300 if name == "train" else 60, seed))
    data.prepare_local("wt", src, tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "wt", "validation") == [" = Heading = "] + corpus_lines(60, 2)
    assert [sources.file_split(tmp_path / n, tmp_path) for n in
            ("dev.txt", "val.jsonl", "ptb.valid.txt", "wiki.test.tokens", "train.txt.gz", "training.csv",
             "validation-00000-of-00001-5c0b2ad0c6cb6a45.parquet", "notes.txt", "contest.txt")] == (
                ["validation"] * 3 + ["test", "train", "train", "validation", None, None])


def test_a_split_word_names_a_split_wherever_it_stands_as_a_word_of_its_own(tmp_path):
    """A name read as a split only where the split's word ended it: train-00000.parquet, test_data.jsonl and
    train.en.txt were named for no split, so a folder of them was split 90/5/5 as one corpus, or refused for
    files named for splits beside others."""
    names = ("train-00000.parquet", "test_data.jsonl", "train.en.txt", "my valid set.txt", "dev-v1.1.json",
             "contest.txt", "latest.txt", "devices.txt", "attest.txt", "libc6-dev.txt")
    assert [sources.file_split(tmp_path / n, tmp_path) for n in names] == (
        ["train", "test", "train", "validation", "validation", None, None, None, None, "validation"])
    with pytest.raises(UserError, match=r"train-test.txt is named for two splits, train and test: rename"):
        sources.file_split(tmp_path / "train-test.txt", tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    for name, seed in (("train-00000", 1), ("train-00001", 2), ("valid_en", 3), ("test_en", 4)):
        (src / f"{name}.txt").write_text(_lines(200 if name.startswith("train") else 40, seed))
    data.prepare_local("shards", src, tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "shards", "test") == corpus_lines(40, 4)


def test_compressed_text_reads_as_the_plain_file(tmp_path):
    body = _lines(50, 1).encode()
    for ext, pack in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        (tmp_path / f"c.txt{ext}").write_bytes(pack(body))
        assert sources.read_rows(tmp_path / f"c.txt{ext}") == corpus_lines(50, 1)
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(body)[:40])
    with pytest.raises(UserError, match="cut.txt.gz: not a readable gz file"):
        sources.read_rows(tmp_path / "cut.txt.gz")


@pytest.mark.parametrize("name, body, said", [
    ("c.txt.gz", _lines(50, 1).encode(), "it is not compressed but text (a browser unpacks a download and keeps its "
                                         "name): name it c.txt"),
    ("c.jsonl.zst", json.dumps({"text": "a row"}).encode(), "it is not compressed but text (a browser unpacks a "
                                                             "download and keeps its name): name it c.jsonl"),
    ("c.jsonl.gz", bz2.compress(json.dumps({"text": "a row"}).encode()), "it is bz2-compressed: name it c.jsonl.bz2"),
    ("c.txt.xz", gzip.compress(b"a row"), "it is gz-compressed: name it c.txt.gz")],
    ids=["plain-named-gz", "plain-named-zst", "bz2-named-gz", "gz-named-xz"])
def test_a_file_not_compressed_as_its_name_says_is_told_what_it_is(tmp_path, name, body, said):
    """A browser saves a .gz download unpacked and keeps its name; a .gz may be bzip2 inside: both were
    "not a readable gz file (Not a gzipped file (b'Th'))" alone, not what the file is nor the name to give it."""
    (tmp_path / name).write_bytes(body)
    with pytest.raises(UserError, match=rf"{re.escape(name)}: not a readable \w+ file \(.*\); {re.escape(said)}$"):
        sources.read_rows(tmp_path / name)
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(_lines(50, 1).encode())[:40])  # its own kind, cut short
    with pytest.raises(UserError, match=r"cut.txt.gz: not a readable gz file \([^;]*\)$"):
        sources.read_rows(tmp_path / "cut.txt.gz")


def test_json_lines_csv_and_tsv_give_their_text_field_and_say_what_they_drop(tmp_path, caplog):
    rows = corpus_lines(5, 1) + ['a "quoted", multi-line\ntext, with commas']
    records = [{"id": i, "text": t} for i, t in enumerate(rows)] + [{"id": 9, "text": None}, {"id": 10, "text": " "}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "a.json").write_text(json.dumps(records))
    for name, delimiter in (("a.csv", ","), ("a.tsv", "\t")):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f, delimiter=delimiter)
            w.writerows([["id", "text"]] + [[r["id"], r["text"] or ""] for r in records])
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        for name in ("a.jsonl", "a.json", "a.csv", "a.tsv"):
            assert sources.read_rows(tmp_path / name) == rows, name
    assert sum("2 null or blank rows of 8 dropped" in r.getMessage() for r in caplog.records) == 4
    (tmp_path / "b.jsonl").write_text(json.dumps({"content": "x", "id": 1}) + "\n")
    with pytest.raises(UserError, match=r"b.jsonl: record 1 has no field 'text' \(content, id\)"):
        sources.read_rows(tmp_path / "b.jsonl")
    (tmp_path / "b.csv").write_text("id,content\n1,x\n")
    with pytest.raises(UserError, match=r"b.csv: no column 'text' in the header row \(id, content\)"):
        sources.read_rows(tmp_path / "b.csv")


@pytest.mark.parametrize("name", ["w.csv", "w.tsv", "w.csv.gz"])
def test_line_endings_inside_a_quoted_field_read_as_a_text_files_do(tmp_path, name):
    """A Windows CSV (Excel, pandas' to_csv there) ends its lines with \\r\\n, inside a quoted field too: the
    field's \\r stayed in the text (a token of its own), where a .txt file's line endings are \\n."""
    sep = "\t" if ".tsv" in name else ","
    body = f'id{sep}text\r\n1{sep}"line one\r\nline two"\r\n2{sep}"an old Mac\rline"\r\n3{sep}plain\r\n'.encode()
    (tmp_path / name).write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
    assert sources.read_rows(tmp_path / name) == ["line one\nline two", "an old Mac\nline", "plain"]


@pytest.mark.parametrize("name", ["nan.jsonl", "nan.json"])
def test_a_json_nan_text_is_a_null_one_as_in_the_same_rows_as_parquet(tmp_path, caplog, name):
    """pandas' missing text is NaN, and json.dumps of its records writes it so: the file was refused ("field
    'text' holds float, not a string") where the same rows as Parquet (NaN written as null) were read."""
    rows = [{"text": t} for t in corpus_lines(5, 1)] + [{"text": float("nan")}]
    body = json.dumps(rows) if name.endswith(".json") else "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / name).write_text(body)
    assert "NaN" in body
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert sources.read_rows(tmp_path / name) == corpus_lines(5, 1)
    assert "1 null or blank row of 6 dropped" in caplog.text
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows)), tmp_path / "nan.parquet")  # NaN as null
    assert sources.read_rows(tmp_path / "nan.parquet") == corpus_lines(5, 1)


def test_json_records_that_are_bare_strings_are_told_the_jq_line_that_makes_them_objects(tmp_path):
    """A JSON array of strings (or JSON lines of strings) was told "record 1 has no field 'text' (str); name the
    field that holds the text 'text' (e.g. jq -c '{text: .FIELD}')": a string has no field to name."""
    rows = corpus_lines(3, 2)
    (tmp_path / "array.json").write_text(json.dumps(rows))
    (tmp_path / "lines.jsonl").write_text("".join(json.dumps(t) + "\n" for t in rows))
    for name, jq in (("array.json", ".[] | {text: .}"), ("lines.jsonl", "{text: .}")):
        with pytest.raises(UserError) as refused:
            sources.read_rows(tmp_path / name)
        assert str(refused.value) == (f"{tmp_path / name}: record 1 is a string, not an object with a field text; "
                                      f"make each one so: jq -c '{jq}' {name} > text.jsonl")


def test_half_an_escaped_utf16_pair_in_json_becomes_u_fffd_not_a_traceback(tmp_path, caplog):
    """json.dumps (ensure_ascii) of a text cut inside an emoji writes its first half alone: "\\ud83d"."""
    rows = corpus_lines(300, 1)
    cut = [t + (' \\ud83d' if i % 50 == 0 else ' \\ud83d\\ude00') for i, t in enumerate(rows)]
    (tmp_path / "cut.jsonl").write_text("".join('{"text": "%s"}\n' % t for t in cut))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        read = sources.read_rows(tmp_path / "cut.jsonl")
    assert read[:2] == [rows[0] + " \ufffd", rows[1] + " \U0001f600"]
    assert "cut.jsonl: 6 lone surrogate escapes" in caplog.text
    data.prepare_local("cut", tmp_path / "cut.jsonl", tmp_path / "data")  # hashed and written as UTF-8
    texts = [t for s in ("train", "validation", "test") for t in data.read_texts(tmp_path / "data", "cut", s)]
    assert sorted(texts) == sorted(read)


def test_a_datasets_save_to_disk_folder_keeps_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    parts = {"train": corpus_lines(300, 1), "validation": corpus_lines(60, 2), "test": corpus_lines(60, 3)}
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": t, "n": list(range(len(t)))})
                          for s, t in parts.items()}).save_to_disk(str(tmp_path / "hf"))
    data.prepare_local("hf", tmp_path / "hf", tmp_path / "data")
    assert {s: data.read_texts(tmp_path / "data", "hf", s) for s in data.SPLITS} == parts


def test_a_datasets_folders_cache_files_are_skipped_not_read_as_more_rows(tmp_path, caplog):
    """A map on a data set loaded from a save_to_disk folder writes its result beside the saved data, as
    cache-<fingerprint>.arrow in each split's folder: read as more rows, the train split was twice as long,
    its second half the map's changed text."""
    datasets = pytest.importorskip("datasets")
    parts = {"train": corpus_lines(300, 1), "validation": corpus_lines(60, 2), "test": corpus_lines(60, 3)}
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": t}) for s, t in parts.items()}).save_to_disk(
        str(tmp_path / "hf"))
    datasets.load_from_disk(str(tmp_path / "hf")).map(lambda r: {"text": r["text"].upper()})
    caches = sorted(str(p.relative_to(tmp_path / "hf")) for p in (tmp_path / "hf").rglob("cache-*.arrow"))
    assert len(caches) == 3, caches
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("hf", tmp_path / "hf", tmp_path / "data")
    assert {s: data.read_texts(tmp_path / "data", "hf", s) for s in data.SPLITS} == parts
    assert f"3 .arrow files skipped ({', '.join(caches)}): a datasets cache beside the data" in caplog.text
    # datasets' own cache (~/.cache/huggingface/datasets/…): no state.json, the caches named by their fingerprint
    cached = tmp_path / "hub-cache" / "wikitext" / "wikitext-2-raw-v1" / "0.0.0" / "b08601e04326c79d"
    cached.mkdir(parents=True)
    (cached / "dataset_info.json").write_text(json.dumps({"dataset_name": "wikitext"}))
    for split, rows in parts.items():
        (cached / f"wikitext-{split}.arrow").write_bytes((tmp_path / "hf" / split / "data-00000-of-00001.arrow")
                                                         .read_bytes())
    (cached / "cache-0123456789abcdef.arrow").write_bytes((tmp_path / "hf" / caches[1]).read_bytes())
    data.prepare_local("cached", cached, tmp_path / "data")
    assert {s: data.read_texts(tmp_path / "data", "cached", s) for s in data.SPLITS} == parts


def test_data_sets_side_by_side_are_refused_not_read_as_one_corpus(tmp_path):
    """A hub download of WikiText holds its configs side by side (wikitext-2-raw-v1/, wikitext-103-raw-v1/), each
    with its train, validation and test files; so do WikiText's two zips unpacked in one folder (wiki.*.tokens
    and wiki.*.raw). Given whole, its train split was two data sets, each held-out row there twice. A folder
    per split (save_to_disk's) is one data set, its validation and test rows the same where the user wants."""
    for config, n in (("wikitext-2-raw-v1", 200), ("wikitext-103-raw-v1", 400)):
        (tmp_path / "hub" / config).mkdir(parents=True)
        for split, rows in (("train", corpus_lines(n, 1)), ("validation", corpus_lines(60, 2)),
                            ("test", corpus_lines(60, 3))):
            pq.write_table(pa.table({"text": rows}), tmp_path / "hub" / config / f"{split}-00000-of-00001.parquet")
    with pytest.raises(UserError, match=r"hub: wikitext-103-raw-v1/ and wikitext-2-raw-v1/ each hold a train, "
                                        r"validation and test file: two data sets side by side .* give one's "
                                        rf"folder \(--from {tmp_path / 'hub' / 'wikitext-103-raw-v1'}\)"):
        data.prepare_local("hub", tmp_path / "hub", tmp_path / "data")
    assert not (tmp_path / "data" / "hub").exists()
    data.prepare_local("hub", tmp_path / "hub" / "wikitext-103-raw-v1", tmp_path / "data")  # as told
    assert data.read_texts(tmp_path / "data", "hub", "train") == corpus_lines(400, 1)
    for folder, ext in (("wikitext-103", "tokens"), ("wikitext-103-raw", "raw")):
        (tmp_path / "zips" / folder).mkdir(parents=True)
        for split, seed in (("train", 1), ("valid", 2), ("test", 3)):
            (tmp_path / "zips" / folder / f"wiki.{split}.{ext}").write_text(_lines(300 if seed == 1 else 60, seed))
    with pytest.raises(UserError, match=r"zips: wikitext-103/ and wikitext-103-raw/ each hold a train, validation"):
        data.prepare_local("zips", tmp_path / "zips", tmp_path / "data")
    held_out = corpus_lines(60, 2)
    for split, rows in (("train", corpus_lines(300, 1)), ("validation", held_out), ("test", held_out)):
        (tmp_path / "own" / split).mkdir(parents=True)
        (tmp_path / "own" / split / "part.txt").write_text("\n".join(rows) + "\n")
    data.prepare_local("own", tmp_path / "own", tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "own", "test") == held_out


def test_a_datasets_folders_description_given_as_the_source_is_told_to_give_the_folder(tmp_path):
    # "not a format prepare reads; give … JSON lines (.jsonl, .json)", of a .json file
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": corpus_lines(20, 1)}) for s in data.SPLITS}
                         ).save_to_disk(str(tmp_path / "hf"))
    datasets.Dataset.from_dict({"text": corpus_lines(20, 1)}).save_to_disk(str(tmp_path / "one"))
    for given, folder in (("hf/dataset_dict.json", "hf"), ("hf/train/state.json", "hf"),
                          ("hf/test/dataset_info.json", "hf"), ("one/state.json", "one")):
        with pytest.raises(UserError, match=rf"^--from .*{given}: datasets' description of the data set saved in "
                                            rf"{tmp_path / folder}, not its text; give the folder: --from "
                                            rf"{tmp_path / folder}$"):
            data.prepare_local("x", tmp_path / given, tmp_path / "data")


def test_a_datasets_folder_with_a_train_split_alone_is_told_how_to_split_it(tmp_path):
    # a hub data set with only a train split, saved with save_to_disk, was told to rename its files; the
    # train file or folder given alone is split 90/5/5 as it is
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": corpus_lines(400, 1)})}).save_to_disk(
        str(tmp_path / "hf"))
    with pytest.raises(UserError, match=r"no validation or test file beside the train file: give all three "
                                        r"splits, or the train split alone \(--from .*hf/train/data-00000-of-00001"
                                        r"\.arrow: its rows are then split 90/5/5\)$"):
        data.prepare_local("hf", tmp_path / "hf", tmp_path / "data")
    (tmp_path / "shards" / "train").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "shards" / "train" / f"{i}.txt").write_text(_lines(200, i))
    with pytest.raises(UserError, match=rf"or the train split alone \(--from {tmp_path / 'shards' / 'train'}: "):
        data.prepare_local("shards", tmp_path / "shards", tmp_path / "data")
    data.prepare_local("shards", tmp_path / "shards" / "train", tmp_path / "data")  # as told: 90/5/5
    assert all(data.read_texts(tmp_path / "data", "shards", s) for s in data.SPLITS)


def test_an_empty_split_of_a_datasets_folder_is_named_as_empty(tmp_path):
    # save_to_disk writes a split of 0 rows as a folder without an .arrow file: "no validation file" read
    # as if it were not there, beside the validation/ folder the user can see
    datasets = pytest.importorskip("datasets")
    rows = {"train": corpus_lines(400, 1), "validation": [], "test": corpus_lines(40, 2)}
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"text": t}, features=datasets.Features(
        {"text": datasets.Value("string")})) for s, t in rows.items()}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(UserError, match=r"no validation file beside the test, train files \(validation/: no data "
                                        r"file, an empty split\): give all three splits, or the train split alone"):
        data.prepare_local("hf", tmp_path / "hf", tmp_path / "data")


def test_a_file_named_for_one_split_in_a_folder_named_for_another_is_one_line(tmp_path, capsys):
    # test/train.txt beside train/ and validation/: the file's name won, its held-out rows went to train, and
    # the refusal called the folder test/ "no data file, an empty split" although train.txt lay in it
    from collapse_hpc.cli import main

    for rel, seed in (("train/a.txt", 1), ("validation/a.txt", 2), ("test/train.txt", 3)):
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_text(_lines(100, seed))
    (tmp_path / "src" / "valid").mkdir()
    (tmp_path / "src" / "valid" / "validation.txt").write_text(_lines(40, 4))  # two names, one split: fine
    assert sources.file_split(tmp_path / "src" / "valid" / "validation.txt", tmp_path / "src") == "validation"
    assert main(["data", "prepare", "mine", "--from", str(tmp_path / "src"),
                 "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --from {tmp_path / 'src'}: test/train.txt is named for two splits, train (train.txt) "
                   f"and test (test/): rename the file or its folder for the one it is"], err
    assert not (tmp_path / "data" / "mine").exists()


def test_files_of_other_formats_in_a_folder_are_named_not_skipped_unsaid(tmp_path, caplog):
    (tmp_path / "a.txt").write_text(_lines(5, 1))
    (tmp_path / "b.JSONL").write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus_lines(5, 2)))
    pq.write_table(pa.table({"text": corpus_lines(5, 3)}), tmp_path / "c.parquet")
    (tmp_path / "notes.md").write_text("# notes\n")
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        files = sources.source_files(tmp_path)
    assert [p.name for p in files] == ["a.txt", "b.JSONL", "c.parquet"]
    assert [r.getMessage() for r in caplog.records if "1 file of other formats skipped (notes.md)" in r.getMessage()]


def test_a_json_description_beside_the_text_is_skipped_and_named(tmp_path, caplog):
    """train.txt, validation.txt and test.txt beside a README.json (a hub download's card, dataset_info.json
    from another tool, a metadata file): the JSON was read as corpus, and refused the folder as a stray file
    beside split files, or as a record without a field text. One JSON object without a field text describes
    the data: skipped with a warning naming it. JSON lines and arrays of records are still read, and one
    lacking the field is still refused."""
    src = tmp_path / "corpus"
    src.mkdir()
    for split, n in (("train", 300), ("validation", 60), ("test", 60)):
        (src / f"{split}.txt").write_text(_lines(n, 1))
    (src / "README.json").write_text(json.dumps({"name": "corpus", "licence": "CC0", "rows": 420}, indent=2))
    (src / "meta").mkdir()
    (src / "meta" / "info.json.gz").write_bytes(gzip.compress(json.dumps({"source": "web"}).encode()))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("described", src, tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "described", "validation") == corpus_lines(60, 1)
    said = [r.getMessage() for r in caplog.records if "JSON files skipped" in r.getMessage()]
    assert said and "(README.json, meta/info.json.gz)" in said[0] and "without a field 'text'" in said[0], said

    records = [{"text": t} for t in corpus_lines(3, 2)]
    for name, body in (("lines.json", "".join(json.dumps(r) + "\n" for r in records)),
                       ("array.json", json.dumps(records, indent=2)), ("one.json", json.dumps(records[0]))):
        (tmp_path / name).write_text(body)
        assert not sources.describes(tmp_path / name) and sources.source_files(tmp_path / name), name
    (tmp_path / "fields.json").write_text("".join(json.dumps({"content": t}) + "\n" for t in corpus_lines(3, 2)))
    assert not sources.describes(tmp_path / "fields.json")  # records under another field: told to rename it
    with pytest.raises(UserError, match=r"fields.json: record 1 has no field 'text' \(content\)"):
        sources.read_rows(tmp_path / "fields.json")
    with pytest.raises(UserError, match=r"README.json: one JSON object without a field 'text', which describes the "
                                        r"data .*not records of text"):
        data.prepare_local("x", src / "README.json", tmp_path / "data")
    (src / "train.txt").rename(tmp_path / "elsewhere.txt")
    for split in ("validation", "test"):
        (src / f"{split}.txt").unlink()
    with pytest.raises(UserError, match=r"no file of a format prepare reads \(.*\); found README.json"):
        data.prepare_local("y", src, tmp_path / "data")


@pytest.mark.parametrize("name, says", [("corpus.zip", r"unpack it first \(unzip .*corpus.zip -d DIR\)"),
                                        ("corpus.tar.gz", r"unpack it first \(tar xzf"),
                                        ("corpus.docx", r"not a format prepare reads; give text \(.txt"),
                                        # was "not a format prepare reads", .parquet and .gz among what it reads
                                        ("corpus.parquet.gz", r"gz-compressed Parquet, which compresses its own "
                                                              r"columns: unpack it \(zcat .*corpus.parquet.gz > "
                                                              r"corpus.parquet\) and give corpus.parquet"),
                                        ("corpus.gz", r"gz-compressed, of what its name does not say: name it for the "
                                                      r"format inside, e.g. corpus.txt.gz \(a row per line\) or "
                                                      r"corpus.jsonl.gz")])
def test_an_unreadable_file_says_what_is_read_and_how_to_get_there(tmp_path, name, says):
    (tmp_path / name).write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match=says):
        data.prepare_local("x", tmp_path / name, tmp_path / "data")
    with pytest.raises(UserError, match=r"no file of a format prepare reads \(.*\); found " + name):
        data.prepare_local("x", tmp_path, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_compressed_file_under_a_text_name_is_told_its_name(tmp_path):
    (tmp_path / "train.txt").write_bytes(gzip.compress(_lines(5, 1).encode()))
    with pytest.raises(UserError, match=r"train.txt: gz-compressed, not text; name it train.txt.gz"):
        sources.read_rows(tmp_path / "train.txt")
    (tmp_path / "b.txt").write_text("BZh is how a bz2 stream starts\n")
    assert sources.read_rows(tmp_path / "b.txt") == ["BZh is how a bz2 stream starts"]


def test_a_hand_made_tsv_with_a_stray_quote_is_refused_with_how_to_quote(tmp_path):
    (tmp_path / "q.tsv").write_text('id\ttext\n1\t"Hello," he said.\n2\tplain line\n')
    with pytest.raises(UserError, match=r"q.tsv: not TSV \(near line 2: .*\); a field that starts with a quote is "
                                        r"quoted whole"):
        sources.read_rows(tmp_path / "q.tsv")


def test_a_file_of_blank_lines_is_refused_as_blank(tmp_path):
    # it said "no training text", as for a corpus too small to split
    (tmp_path / "ws.txt").write_text("   \n\t\n\n" * 100)
    with pytest.raises(UserError, match=r"ws.txt: no text: every line or row of 1 file is blank"):
        data.prepare_local("ws", tmp_path / "ws.txt", tmp_path / "data")


@pytest.mark.parametrize("files, said", [
    ({"t.parquet": []}, "no text: the file holds no line or row at all$"),
    ({"a.txt": None, "b.txt": "\n \n", "t.parquet": [" ", None]},
     "no text: every line or row of 2 files is blank or null; 1 file holds no line or row at all$")])
def test_files_without_a_row_are_told_from_blank_ones(tmp_path, files, said):
    # a zero-row Parquet file was refused as "every line or row of 1 file is blank"
    src = tmp_path / "src"
    src.mkdir()
    for name, rows in files.items():
        if name.endswith(".parquet"):
            pq.write_table(pa.table({"text": pa.array(rows, pa.string())}), src / name)
        else:
            (src / name).write_text(rows or "")
    target = src / next(iter(files)) if len(files) == 1 else src
    with pytest.raises(UserError, match=said):
        data.prepare_local("none", target, tmp_path / "data")


def test_a_parquet_file_of_null_texts_is_one_line_saying_so(tmp_path, caplog):
    # it was a warning ("50 null or blank rows of 50 dropped"), then "every line or row of 1 file is blank"
    pq.write_table(pa.table({"text": pa.array([None] * 50, pa.string())}), tmp_path / "nulls.parquet")
    with caplog.at_level("WARNING", logger="collapse_hpc"), pytest.raises(UserError) as refused:
        data.prepare_local("nulls", tmp_path / "nulls.parquet", tmp_path / "data")
    said = f"--from {tmp_path / 'nulls.parquet'}: no text: every line or row of 1 file is blank or null"
    assert str(refused.value) == said
    assert not [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert not (tmp_path / "data").exists()


def test_a_split_file_of_null_texts_is_one_line_naming_it(tmp_path, caplog):
    # a warning ("20 null or blank rows of 20 dropped"), then "… the validation file (validation.parquet) is blank"
    (tmp_path / "train.txt").write_text("\n".join(corpus_lines(200, seed=7)))
    (tmp_path / "test.txt").write_text("\n".join(corpus_lines(30, seed=8)))
    pq.write_table(pa.table({"text": pa.array([None] * 20, pa.string())}), tmp_path / "validation.parquet")
    with caplog.at_level("WARNING", logger="collapse_hpc"), pytest.raises(UserError) as refused:
        data.prepare_local("nullheld", tmp_path, tmp_path / "data")
    assert "the validation file (validation.parquet) is blank or null, the text is only in train" in str(refused.value)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert not (tmp_path / "data").exists()


def test_the_conversion_a_compressed_latin1_file_is_told_works_on_it(tmp_path, caplog):
    # the hint was 'iconv -f latin1 -t utf-8', which on corpus.txt.gz converts its compressed bytes
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "corpus.txt.gz", "wb") as f:
        f.write(("\n".join(corpus_lines(300, seed=1)) + "\nCafé déjà vu\n").encode("latin-1"))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("packed", src, tmp_path / "data")
    (said,) = [r.getMessage() for r in caplog.records if "is not UTF-8" in r.getMessage()]
    hint = said.split("convert it first, e.g. ")[1].removesuffix(")")
    assert hint == "zcat corpus.txt.gz | iconv -f latin1 -t utf-8 | gzip > corpus.utf8.txt.gz", said
    subprocess.run(hint, shell=True, cwd=src, check=True, executable="/bin/bash")
    assert gzip.open(src / "corpus.utf8.txt.gz").read().decode("utf-8").endswith("Café déjà vu\n")


def test_a_100_word_corpus_is_refused_in_words_that_count_right(tmp_path):
    (tmp_path / "tiny.txt").write_text(" ".join(" ".join(corpus_lines(20, 1)).split()[:100]))
    with pytest.raises(UserError, match=r"too little text for the (validation|test) split .*the 1 row holds 1 "
                                        r"distinct text,"):  # it said "the 1 rows hold"
        data.prepare_local("tiny", tmp_path / "tiny.txt", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_text_beside_its_compressed_copy_is_refused_not_read_twice(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    text = "\n".join(corpus_lines(50, 0)) + "\n"
    (src / "train.txt").write_text(text)
    with gzip.open(src / "train.txt.gz", "wt") as f:
        f.write(text)
    with pytest.raises(UserError, match=r"train.txt beside train.txt.gz: the same text twice\? give one of them"):
        sources.source_files(src)


def test_one_text_in_two_formats_in_a_folder_is_refused_not_read_twice(tmp_path):
    """A corpus converted and kept beside its source (train.txt and train.jsonl, corpus.txt.gz and corpus.jsonl.gz,
    WikiText's wiki.train.tokens and wiki.train.raw) was read as two files: each row twice, in one split or,
    split by row, the same row's two copies in train and test alike. Names differing in more than their format
    are other texts; so is a file in another folder."""
    rows = corpus_lines(50, 0)
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "corpus.txt.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    with gzip.open(src / "corpus.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"text": r}) + "\n" for r in rows)
    with pytest.raises(UserError, match=r"^--from .*src: corpus.jsonl.gz beside corpus.txt.gz: the same text "
                                        r"twice\? give one of them \(move the other out of the folder\)$"):
        sources.source_files(src)
    splits = tmp_path / "splits" / "wiki"
    splits.mkdir(parents=True)
    for split, seed in (("train", 1), ("valid", 2), ("test", 3)):
        for ext in ("tokens", "raw"):
            (splits / f"wiki.{split}.{ext}").write_text(_lines(300 if seed == 1 else 60, seed))
    with pytest.raises(UserError, match=r"splits: wiki/wiki.test.raw beside wiki.test.tokens \(also "
                                        r"wiki/wiki.train.\*, wiki/wiki.valid.\*\): the same text twice\?"):
        data.prepare_local("wiki", tmp_path / "splits", tmp_path / "data")
    assert not (tmp_path / "data" / "wiki").exists()
    pq.write_table(pa.table({"text": rows}), src / "corpus.parquet")
    with pytest.raises(UserError, match=r"corpus.jsonl.gz beside corpus.parquet, corpus.txt.gz: the same text 3 "
                                        r"times\? give one of them \(move the others out of the folder\)"):
        sources.source_files(src)
    other = tmp_path / "other"
    for name in ("a/part.txt", "b/part.jsonl", "corpus.txt", "corpus.text.jsonl", "corpus.en.txt"):
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_text("\n".join(json.dumps({"text": r}) if name.endswith("jsonl") else r for r in rows))
    (other / "corpus.json").write_text(json.dumps({"description": "a card", "licence": "cc-by"}))  # no text: skipped
    assert [p.relative_to(other).as_posix() for p in sources.source_files(other)] == [
        "a/part.txt", "b/part.jsonl", "corpus.en.txt", "corpus.text.jsonl", "corpus.txt"]


def test_the_source_digest_reads_a_large_file_in_pieces(tmp_path):
    """prepare_local hashed each source file through read_bytes: a corpus file of many GB was whole in
    memory for its digest alone. The digest is the same (what card.json recorded before)."""
    import hashlib
    import tracemalloc

    from collapse_hpc.experiments.lm.data import source_digest

    big, small = tmp_path / "train.txt", tmp_path / "test.txt"
    big.write_bytes(b"a line of the corpus\n" * 2_000_000)  # 42 MB
    small.write_bytes(b"the test split\n")
    tracemalloc.start()
    try:
        digest = source_digest([big, small])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak
    want = hashlib.sha256(b"train.txt\0" + big.read_bytes() + b"test.txt\0" + small.read_bytes()).hexdigest()
    assert digest == want


def test_files_named_in_latin1_are_read_and_hashed_by_their_bytes(tmp_path):
    """Files unpacked from an old archive keep names that are not UTF-8 (b'caf\\xe9.txt'); Python holds
    them as surrogate escapes, which str.encode refused: prepare stopped on a traceback. A folder of
    20 files or more goes through by_file's hash of the names too."""
    import os

    src = tmp_path / "docs"
    src.mkdir()
    for i in range(21):
        name = os.fsdecode(b"caf\xe9-%02d.txt" % i) if i % 10 == 0 else f"doc-{i:02d}.txt"
        (src / name).write_text(_lines(20, i))
    data.prepare_local("latin1", src, tmp_path / "data")
    texts = [t for s in ("train", "validation", "test") for t in data.read_texts(tmp_path / "data", "latin1", s)]
    assert sorted(texts) == sorted(t for i in range(21) for t in corpus_lines(20, i))
    assert data.source_digest([src / os.fsdecode(b"caf\xe9-00.txt")]) == data.hashlib.sha256(
        b"caf\xe9-00.txt\0" + _lines(20, 0).encode()).hexdigest()


def test_json_nested_past_the_readers_depth_is_one_line(tmp_path):
    """[[[[…]]]] of 100,000 levels: json.loads recurses once a level, and its RecursionError was a traceback."""
    (tmp_path / "deep.json").write_text('{"meta": ' + "[" * 100_000 + "]" * 100_000 + "}")  # describes() reads it
    (tmp_path / "deep.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    for name in ("deep.json", "deep.jsonl"):
        assert sources.source_files(tmp_path / name) == [tmp_path / name]
        with pytest.raises(UserError, match=f"{name}: JSON nested deeper than"):
            sources.read_rows(tmp_path / name)


def test_a_csv_field_past_the_row_limit_is_said_as_too_long_not_as_bad_quoting(tmp_path):
    (tmp_path / "long.csv").write_text('id,text\n1,"a line"\n2,"' + "x" * (sources.MAX_ROW_CHARS + 10) + '"\n')
    with pytest.raises(UserError, match=r"long.csv: near line \d+: a field of more than 1048576 characters") as e:
        sources.read_rows(tmp_path / "long.csv")
    assert "quote" not in str(e.value)


LFS = ("version https://git-lfs.github.com/spec/v1\noid sha256:4d7d8e5c2a1b0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9"
       "c8b7a6f5e\nsize 6068114\n")


def test_a_clone_without_its_large_files_content_is_refused_not_prepared_from_its_stand_ins(tmp_path):
    """Cloned without git-lfs, valid.txt and test.txt are pointers of three lines: they were prepared as
    the validation and test splits. A git-annex link to an object not fetched was skipped unsaid."""
    src = tmp_path / "clone"
    src.mkdir()
    (src / "train.txt").write_text(_lines(600, 1))
    (src / "valid.txt").write_text(LFS)
    (src / "test.txt").write_text(LFS)
    with pytest.raises(UserError, match=r"--from .*clone: test.txt, valid.txt are Git LFS pointers, not the content"):
        data.prepare_local("clone", src, tmp_path / "data")
    (tmp_path / "train-00000-of-00001.parquet").write_text(LFS)
    with pytest.raises(UserError, match=r"parquet is a Git LFS pointer.*git lfs pull"):
        data.prepare_local("shard", tmp_path / "train-00000-of-00001.parquet", tmp_path / "data")
    (src / "valid.txt").write_text(_lines(60, 2))
    (src / "test.txt").unlink()
    (src / "test.txt").symlink_to("../.git/annex/objects/Xk/SHA256E-s4096--0a1b.txt")
    with pytest.raises(UserError, match=r"clone: test.txt is a link to a file that is not there; fetch the content"):
        data.prepare_local("clone", src, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_zstd_json_lines_as_the_pile_ships_them_read_as_the_plain_file(tmp_path):
    """The Pile, Dolma and RedPajama ship .jsonl.zst: it was refused as not a format prepare reads."""
    rows = corpus_lines(300, 1)
    src = tmp_path / "pile"
    src.mkdir()
    for split, part in (("train", rows[:200]), ("val", rows[200:250]), ("test", rows[250:])):
        with pa.output_stream(str(src / f"{split}.jsonl.zst"), compression="zstd") as f:
            f.write("".join(json.dumps({"text": t, "meta": {"pile_set_name": "Wikipedia"}}) + "\n"
                            for t in part).encode())
    assert sources.read_rows(src / "val.jsonl.zst") == rows[200:250]
    data.prepare_local("pile", src, tmp_path / "data")
    assert data.read_texts(tmp_path / "data", "pile", "validation") == rows[200:250]
    (src / "cut.jsonl.zst").write_bytes((src / "test.jsonl.zst").read_bytes()[:100])
    with pytest.raises(UserError, match="cut.jsonl.zst: not a readable zst file"):
        sources.read_rows(src / "cut.jsonl.zst")


def test_a_parquet_file_named_in_latin1_is_read(tmp_path):
    """pyarrow opens only UTF-8 paths: a Parquet file named b'caf\\xe9.parquet' stopped prepare on a traceback."""
    import os

    path = tmp_path / os.fsdecode(b"caf\xe9.parquet")
    pq.write_table(pa.table({"text": corpus_lines(20, 1)}), tmp_path / "plain.parquet")
    (tmp_path / "plain.parquet").rename(path)
    assert sources.read_rows(path) == corpus_lines(20, 1)


def test_objects_over_several_lines_each_as_jq_writes_without_c_are_records(tmp_path):
    """`jq '{text: .content}' in.jsonl > out.jsonl` (no -c) writes each object over three lines: it was
    refused as neither JSON lines nor an array."""
    rows = corpus_lines(20, 1)
    (tmp_path / "out.jsonl").write_text("".join(json.dumps({"text": t, "id": i}, indent=2) + "\n"
                                                for i, t in enumerate(rows)))
    assert sources.read_rows(tmp_path / "out.jsonl") == rows
    (tmp_path / "cut.jsonl").write_text('{"text": "a"}\n{\n  "text": \n')
    with pytest.raises(UserError, match=r"cut.jsonl: neither JSON lines nor one JSON array of objects \(.*line 4\)"):
        sources.read_rows(tmp_path / "cut.jsonl")


def test_a_source_folder_named_in_latin1_is_recorded_as_strict_json(tmp_path, capsys):
    """The folder's name b'caf\\xe9' went into card.json as the escape "\\udce9", a lone surrogate, which
    strict JSON readers (serde_json, Go's encoding/json, jq's) refuse. The card now holds text that is
    Unicode, the name's bytes in hex beside it; a card written before is still read and listed."""
    import os

    from collapse_hpc.data import list_prepared

    src = tmp_path / os.fsdecode(b"caf\xe9")
    src.mkdir()
    (src / "a.txt").write_text(_lines(400, 1))
    data.prepare_local("latin1", src, tmp_path / "data")
    card_file = tmp_path / "data" / "latin1" / "card.json"
    source = json.loads(card_file.read_text())["source"]
    source.encode()  # a lone surrogate raises here
    assert source == "local files: caf\ufffd (bytes 636166e9)"
    card = json.loads(card_file.read_text())
    card["source"] = "local files: caf\udce9"  # an older card's
    card_file.write_text(json.dumps(card))
    assert list_prepared(tmp_path / "data") == 0
    assert "latin1" in capsys.readouterr().out


def test_a_linked_folder_is_read_once_and_a_link_loop_is_one_line(tmp_path):
    """Part of a corpus on another disk, linked into the folder, was skipped unsaid; a link back up the
    tree adds nothing; links in a loop ended in a RuntimeError traceback."""
    other = tmp_path / "scratch"
    other.mkdir()
    (other / "more.txt").write_text(_lines(300, 2))
    src = tmp_path / "corpus"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(_lines(300, 1))
    (src / "linked").symlink_to(other)
    (src / "again").symlink_to(other)
    (src / "sub" / "up").symlink_to("..")
    assert [p.relative_to(src).as_posix() for p in sources.source_files(src)] == ["a.txt", "again/more.txt"]
    (src / "x.txt").symlink_to("y.txt")
    (src / "y.txt").symlink_to("x.txt")
    with pytest.raises(UserError, match=r"--from .*corpus: x.txt, y.txt are links in a loop"):
        data.prepare_local("looped", src, tmp_path / "data")


@pytest.mark.parametrize("name", ["all.jsonl", "all.txt", "all.csv"])
def test_files_joined_with_their_byte_order_marks_read_as_one(tmp_path, name):
    """`cat a.jsonl b.jsonl > all.jsonl` of files a Windows editor saved with a BOM: the second BOM, at a
    line's start, broke that JSON line (the file refused as "neither JSON lines nor …") and began a row
    of a text or CSV file with an invisible U+FEFF. One inside a line is the text's own, and stays."""
    parts = [["first part one", "first part two"], ["second part one", "second\ufeffpart two"]]
    row = (lambda t: json.dumps({"text": t})) if name.endswith(".jsonl") else str
    head = "text\r\n" if name.endswith(".csv") else ""
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + (head + "".join(row(t) + "\r\n" for t in parts[0])).encode()
                                  + b"\xef\xbb\xbf" + "".join(row(t) + "\r\n" for t in parts[1]).encode())
    assert sources.read_rows(tmp_path / name) == parts[0] + parts[1]


@pytest.mark.parametrize("name, body, said", [
    ("eu.csv", "id;text\n1;Hallo Welt\n", "not separated by commas but by ';'? convert it to commas (e.g. pandas' "
                                          "read_csv(sep=';').to_csv(index=False))"),
    ("tabs.csv", "id\ttext\n1\thello\n", "not separated by commas but by '\\t'? name it .tsv"),
    ("commas.tsv", "id,text\n1,hello\n", "not separated by tabs but by ','? name it .csv")],
    ids=["semicolons", "tabs-named-csv", "commas-named-tsv"])
def test_a_table_separated_otherwise_than_its_name_says_is_told_so(tmp_path, name, body, said):
    """A European CSV (semicolons) or a TSV named .csv reads as one column named by the whole header line:
    the line said only that no column was named 'text', the header it quoted holding 'text'."""
    (tmp_path / name).write_text(body)
    with pytest.raises(UserError) as refused:
        sources.read_rows(tmp_path / name)
    assert str(refused.value).endswith(f"): one column, as the file is {said}"), str(refused.value)


@pytest.mark.parametrize("order", ["LE", "BE"])
def test_utf16_without_a_byte_order_mark_is_named_with_its_conversion(tmp_path, order):
    """Windows tools' "Unicode" text without its BOM was refused as binary data (NUL bytes) alone."""
    (tmp_path / "u.txt").write_bytes("first line\nsecond line\n".encode(f"utf-16-{order.lower()}"))
    with pytest.raises(UserError, match=rf"u.txt: binary data \(NUL bytes\), not text; UTF-16 \({order}\) without a "
                                        rf"byte-order mark\? convert it first: iconv -f UTF-16{order} -t UTF-8$"):
        sources.read_rows(tmp_path / "u.txt")
    (tmp_path / "b.txt").write_bytes(b"text\x00\x01\x02\xff" * 20)
    with pytest.raises(UserError, match=r"b.txt: binary data \(NUL bytes\), not text$"):
        sources.read_rows(tmp_path / "b.txt")


def test_the_conversion_a_compressed_utf16_file_is_told_works_on_it(tmp_path):
    # the hint was 'iconv -f UTF-16LE -t UTF-8', which on u.txt.gz converts its compressed bytes
    with gzip.open(tmp_path / "u.txt.gz", "wb") as f:
        f.write("first line\nzweite Zeile, grün\n".encode("utf-16-le"))
    with pytest.raises(UserError) as refused:
        sources.read_rows(tmp_path / "u.txt.gz")
    hint = str(refused.value).split("convert it first: ")[1]
    assert hint == "zcat u.txt.gz | iconv -f UTF-16LE -t UTF-8 | gzip > u.utf8.txt.gz", str(refused.value)
    subprocess.run(hint, shell=True, cwd=tmp_path, check=True, executable="/bin/bash")
    assert sources.read_rows(tmp_path / "u.utf8.txt.gz") == ["first line", "zweite Zeile, grün"]


def test_one_json_object_whose_field_holds_the_records_is_told_how_to_give_them(tmp_path):
    """{"data": [{"text": …}, …]} (what datasets' json loader reads with field="data") was refused as a
    description of the data, not records of text, and in a folder skipped as one."""
    records = {"version": "1", "data": [{"text": f"row {i} of the corpus"} for i in range(30)]}
    said = (r"wrapped.json: one JSON object whose field 'data' holds the records of text, not JSON lines or an array "
            r"of them; give those records as JSON lines: jq -c '.data\[\]' wrapped.json > data.jsonl$")
    for indent in (None, 2):
        (tmp_path / "wrapped.json").write_text(json.dumps(records, indent=indent))
        assert not sources.describes(tmp_path / "wrapped.json")
        with pytest.raises(UserError, match=said):
            data.prepare_local("w", tmp_path / "wrapped.json", tmp_path / "data")
    (tmp_path / "info.json").write_text(json.dumps({"description": "a corpus", "splits": ["train"]}))
    assert sources.describes(tmp_path / "info.json")  # a description is still skipped


def test_the_columns_pandas_to_json_writes_by_default_are_told_how_to_write_records(tmp_path):
    # DataFrame.to_json(path) writes {"text": {"0": …, "1": …}}: "field 'text' holds dict, not a string"
    (tmp_path / "df.json").write_text(json.dumps({"text": {str(i): f"row {i}" for i in range(30)}}))
    with pytest.raises(UserError, match=r"df.json: record 1: field 'text' holds dict, not a string; the columns "
                                        r"pandas' to_json writes by default\? write records: "
                                        r"df.to_json\(PATH, orient='records', lines=True\)$"):
        sources.read_rows(tmp_path / "df.json")
    (tmp_path / "nested.jsonl").write_text(json.dumps({"text": {"en": "hello"}}) + "\n")
    with pytest.raises(UserError, match=r"nested.jsonl: record 1: field 'text' holds dict, not a string$"):
        sources.read_rows(tmp_path / "nested.jsonl")


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
@pytest.mark.parametrize("name", ["corpus.txt", "corpus.jsonl", "corpus.json", "corpus.txt.gz", "corpus.arrow",
                                  "corpus.csv", "stub.tokens", "corpus.parquet"])
@pytest.mark.parametrize("when", ["first read", "rows read"])
def test_a_source_file_the_file_system_will_not_read_is_one_line_naming_it(tmp_path, monkeypatch, capsys, refusal,
                                                                           name, when):
    """A source file of --from that is there but will not read (permissions, an I/O error) went up as a raw
    OSError, an EIO's line naming no file, or, compressed, was said to be no readable gz file. It is one line
    naming it, wherever it is read (the stand-in check, the digest, the rows), and nothing is prepared; a Parquet
    file's rows refused were said as a prepared split's ("Parquet file …: kept as it is")."""

    from collapse_hpc.cli import main
    from tests.helpers import refuse_reads

    src = tmp_path / "src"
    src.mkdir()
    path, rows = src / name, corpus_lines(300, 1)
    body = "".join(json.dumps({"text": t}) + "\n" for t in rows) if ".json" in name else \
        "text\n" + "\n".join(rows) if name.endswith(".csv") else "a b c\n" if name == "stub.tokens" else _lines(300, 1)
    if name.endswith(".arrow"):
        with pa.ipc.new_stream(str(path), pa.schema([("text", pa.string())])) as stream:
            stream.write_table(pa.table({"text": rows}))
    elif name.endswith(".parquet"):
        pq.write_table(pa.table({"text": rows}), path)
        _pyarrow_refuses(monkeypatch, path, refusal)
    else:
        path.write_bytes(gzip.compress(body.encode()) if name.endswith(".gz") else body.encode())
    if when == "rows read":  # the file read well until then (an I/O error on its second read)
        monkeypatch.setattr(data, "source_digest", lambda files: "0" * 64)
        monkeypatch.setattr(sources, "_check_fetched", lambda source, files: None)
        monkeypatch.setattr(sources, "describes", lambda p: False)
    refuse_reads(monkeypatch, path, refusal)
    assert main(["data", "prepare", "mine", "--from", str(src), "--data-dir", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err == (f"error: source file {path}: not read ({os.strerror(refusal)}): nothing is "
                                       f"prepared; it is prepared once the file reads again (its permissions, the "
                                       f"file system): run the same command again\n")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("name", ["c.csv", "c.tsv", "c.csv.gz", "c.parquet", "c.jsonl", "c.json"])
def test_a_text_column_named_otherwise_is_told_the_line_that_renames_it(tmp_path, name):
    """A CSV with its text in 'content', JSON lines in 'body', Parquet in 'sentence' were told to name the
    column 'text', and a JSON file given jq '{text: .FIELD}', with nothing to paste: the line now names the
    column whose values look like text (not an id or a label) and renames it in a copy prepare then reads."""
    rows = corpus_lines(40, seed=3)
    table = pa.table({"id": [str(i) for i in range(40)], "content": rows, "label": ["0"] * 40})
    if name.endswith(".parquet"):
        pq.write_table(table, tmp_path / name)
    elif ".json" in name:
        records = [{"id": i, "content": r, "label": 0} for i, r in enumerate(rows)]
        (tmp_path / name).write_text(json.dumps(records) if name.endswith(".json") else
                                     "\n".join(map(json.dumps, records)))
    else:
        table.to_pandas().to_csv(tmp_path / name, sep="\t" if ".tsv" in name else ",", index=False)
    with pytest.raises(UserError) as refused:
        sources.read_rows(tmp_path / name)
    fix = re.search(r" \(content looks like it: (.*), then prepare from (\S+)\)$|\(e\.g\. (jq .*)\)$",
                    str(refused.value))
    assert fix, str(refused.value)
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # python3 with pandas, as in the user's .venv
    subprocess.run(fix[1] or fix[3], shell=True, cwd=tmp_path, check=True, executable="/bin/bash", env={"PATH": path})
    made = fix[2] or fix[3].rsplit("> ", 1)[1]
    assert sources.read_rows(tmp_path / made) == rows


def test_a_datasets_folder_with_its_text_in_another_column_is_told_the_line_that_renames_it(tmp_path):
    """A save_to_disk folder whose text is in 'content' was told to name the column 'text', with nothing to paste
    (the line of a CSV or Parquet file names pandas; its .arrow files are streams pandas does not write): the
    line now renames it in a copy of the whole folder with datasets, which prepare then reads."""
    datasets = pytest.importorskip("datasets")
    parts = {"train": corpus_lines(300, 1), "validation": corpus_lines(60, 2), "test": corpus_lines(60, 3)}
    datasets.DatasetDict({s: datasets.Dataset.from_dict({"id": list(range(len(t))), "content": t})
                          for s, t in parts.items()}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(UserError) as refused:
        data.prepare_local("hf", tmp_path / "hf", tmp_path / "data")
    fix = re.search(r" \(content looks like it: (python3 -c .*), then prepare from (\S+)\)$", str(refused.value))
    assert fix, str(refused.value)
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # python3 with datasets, as in the user's .venv
    subprocess.run(fix[1], shell=True, cwd=tmp_path, check=True, executable="/bin/bash", env={"PATH": path},
                   capture_output=True)
    data.prepare_local("hf", Path(fix[2]), tmp_path / "data")
    assert {s: data.read_texts(tmp_path / "data", "hf", s) for s in data.SPLITS} == parts


def test_a_folder_of_markdown_files_is_told_how_to_have_them_read_as_text(tmp_path):
    """A folder of Markdown notes was refused as no format prepare reads, found doc0.md …: nothing said that
    Markdown is plain text, read a row per line once named .txt (a README.md beside a corpus stays skipped)."""
    docs = tmp_path / "notes"
    (docs / "more").mkdir(parents=True)
    for i in range(3):
        (docs / ("more" if i else ".") / f"doc{i}.md").write_text("# Title\n\n" + _lines(120, i))
    with pytest.raises(UserError) as refused:
        data.prepare_local("notes", docs, tmp_path / "data")
    fix = re.search(r"\.md files are plain text, read as a row per line when named \.txt: (find .* \\;)",
                    str(refused.value))
    assert fix, str(refused.value)
    subprocess.run(fix[1], shell=True, cwd=tmp_path, check=True)
    data.prepare_local("notes", docs, tmp_path / "data")
    rows = [t for s in ("train", "validation", "test") for t in data.read_texts(tmp_path / "data", "notes", s)]
    assert sorted(rows) == sorted(["# Title"] * 3 + [r for i in range(3) for r in corpus_lines(120, i)])
    with pytest.raises(UserError, match=r"\.md is plain text, read as a row per line when named \.txt: cp "):
        sources.source_files(docs / "doc0.md")


def _pyarrow_refuses(monkeypatch, path, refusal: int) -> None:
    """pyarrow's own opens of `path` (its schema, its table) refused as pyarrow says it, the errno in its text."""
    for name in ("read_schema", "ParquetFile"):
        real = getattr(pq, name)

        def opened(where, *args, real=real, **kwargs):
            if Path(where) == path:
                raise OSError(f"Failed to open local file '{where}'. Detail: [errno {refusal}] {os.strerror(refusal)}")
            return real(where, *args, **kwargs)

        monkeypatch.setattr(pq, name, opened)


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_parquet_source_without_a_text_column_refused_at_its_head_is_one_line_naming_it(tmp_path, refusal):
    """The rename hint reads a Parquet file's first rows (after its schema read well): a refused read there was
    a raw OSError, not the source file's one line."""
    from tests.helpers import refuse_reads

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": corpus_lines(40, seed=3)}), path)
    with pytest.MonkeyPatch.context() as mp:
        refuse_reads(mp, path, refusal)
        with pytest.raises(UserError) as refused:
            sources.read_rows(path)
    assert str(refused.value).startswith(f"source file {path}: not read ({os.strerror(refusal)}): nothing is prepared")


@pytest.mark.parametrize("refused", ["no validation or test file", "already prepared from other files"])
def test_a_refused_folder_is_its_refusal_alone_not_after_the_files_it_skipped(tmp_path, caplog, refused):
    """"README.md skipped" was said, then the refusal: two lines where nothing is prepared. Prepared, the folder
    still says the files it skipped."""
    src = tmp_path / "corpus"
    src.mkdir()
    (src / "README.md").write_text("# my corpus\n")
    (src / "notes.json").write_text('{"license": "mine"}')
    (src / "train.txt").write_text(_lines(200, seed=3))
    if refused.startswith("already"):
        (src / "validation.txt").write_text(_lines(30, seed=4))
        (src / "test.txt").write_text(_lines(30, seed=5))
        data.prepare_local("mine", src / "train.txt", tmp_path / "data")
    with caplog.at_level("WARNING", logger="collapse_hpc"), pytest.raises(UserError, match=refused):
        data.prepare_local("mine", src, tmp_path / "data")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= 30]
    (src / "validation.txt").write_text(_lines(30, seed=4))
    (src / "test.txt").write_text(_lines(30, seed=5))
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("mine", src, tmp_path / "data", force=True)
    said = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert sum("1 file of other formats skipped (README.md)" in s for s in said) == 1, said
    assert sum("1 JSON file skipped (notes.json)" in s for s in said) == 1, said


def _write_texts(path: Path, texts: list[str]) -> None:
    """Texts as records of JSON lines (raw characters, not \\u escapes: "\\u0000" still one), a JSON array,
    Parquet or an Arrow stream."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), newline="")
    elif path.suffix == ".json":
        path.write_text(json.dumps([{"text": t} for t in texts]))
    elif path.suffix == ".parquet":
        pq.write_table(pa.table({"text": texts}), path)
    else:
        table = pa.table({"text": texts})
        with pa.ipc.new_stream(path, table.schema) as out:
            out.write_table(table)


@pytest.mark.parametrize("name", ["n.jsonl", "n.json", "n.parquet", "n.arrow"])
def test_nul_characters_in_record_texts_are_removed_with_a_warning(tmp_path, caplog, name):
    """A JSON "\\u0000" or a NUL in a Parquet column went into the Parquet shards and the tokenizer's training
    (byte 0, a token of its own), and a row of a NUL alone was a row; a text file with NUL bytes is refused as
    binary. They are removed, said in one warning, and a row left blank is dropped as blank."""
    _write_texts(tmp_path / name, ["before\x00after", "\x00", "plain", "two\x00\x00"])
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert sources.read_rows(tmp_path / name) == ["beforeafter", "plain", "two"]
    said = [r.getMessage() for r in caplog.records]
    assert sum(f"{name}: 4 NUL characters (U+0000) removed from the text" in s for s in said) == 1, said
    assert sum(f"{name}: 1 null or blank row of 4 dropped" in s for s in said) == 1, said


def test_a_corpus_of_nul_characters_prepares_without_them_and_says_so_once(tmp_path, caplog):
    src = tmp_path / "corpus"
    src.mkdir()
    rows = {s: [t.replace(" ", "\x00 ", 1) for t in corpus_lines(n, seed)]
            for s, n, seed in (("train", 300, 1), ("validation", 40, 2), ("test", 40, 3))}
    _write_texts(src / "train.jsonl", rows["train"])
    _write_texts(src / "validation.parquet", rows["validation"])
    _write_texts(src / "test.parquet", rows["test"])
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        data.prepare_local("mine", src, tmp_path / "data")
    for split, seed in (("train", 1), ("test", 3)):
        assert data.read_texts(tmp_path / "data", "mine", split) == corpus_lines(len(rows[split]), seed)
    said = [r.getMessage() for r in caplog.records if "NUL" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("test.parquet: 40 NUL characters (U+0000) removed from the text; "
                                               "the same for 2 other files (train.jsonl, validation.parquet)"), said


@pytest.mark.parametrize("name", ["w.jsonl", "w.json", "w.parquet", "w.arrow"])
def test_line_endings_inside_a_record_text_read_as_a_text_files_do(tmp_path, name):
    """A JSON "\\r\\n" (a Windows text dumped as is) or a Parquet column's kept its \\r, a token of its own,
    where the same text's line endings are \\n in a CSV's quoted field and end a .txt file's rows."""
    _write_texts(tmp_path / name, ["line one\r\nline two", "an old Mac\rline", "plain\r\n"])
    assert sources.read_rows(tmp_path / name) == ["line one\nline two", "an old Mac\nline", "plain\n"]


def test_a_text_files_rows_end_at_its_line_endings_only_as_json_rows_do(tmp_path):
    """A line with a U+2028, U+0085, a form feed (Project Gutenberg's page breaks) or a vertical tab was two rows
    of a .txt file (str.splitlines ends a line at each), where the same text is one JSON record's row."""
    texts = ["a line\u2028separated", "a next\x85line", "page one\x0cpage two", "a\x0bvertical tab",
             "file\x1cgroup and\u2029paragraph", "plain"]
    (tmp_path / "t.txt").write_bytes(("\n".join(texts[:3]) + "\r\n" + "\r".join(texts[3:]) + "\n").encode())
    _write_texts(tmp_path / "t.jsonl", texts)
    assert sources.read_rows(tmp_path / "t.txt") == texts
    assert sources.read_rows(tmp_path / "t.jsonl") == texts
