"""A prepared data set's text: its splits' rows, each checked against the data set's card.

The lowest of the language model's data modules: the tokenizer reads the train split here to
learn its BPE, and data.py (preparation, token blocks) reads texts here to cut them into blocks.

API:
- SPLITS                                     the splits every prepared data set has
- long_text(texts)                           whether working through them is worth a progress line
- read_texts(data_dir, dataset, split) -> list[str]   column `text` of data/<dataset>/<split>.parquet
- check_card(split_file)                     UserError if the split is not the file its card recorded
- read_parquet(path, columns=None, schema_only=False, refused=None)  a Parquet table or schema, else a
                                             UserError (NotRead, or the caller's own `refused(path, e)`, where
                                             the file system refuses the read)
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.store.reads import NotRead, refused_read

SPLITS = ("train", "validation", "test")
# text above which training a BPE or cutting blocks takes long enough to say so (10 s on 2 cores);
# below it nothing is said, so that a refused small corpus stays one error line
LONG_TEXT_CHARS = 10_000_000


def long_text(texts: list[str]) -> bool:
    return sum(map(len, texts)) > LONG_TEXT_CHARS


def _utf8(path) -> bool:
    """False for a user's file named in another encoding (latin-1): Python holds its bytes as surrogates."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True


def read_parquet(path: Path, columns=None, schema_only: bool = False,
                 refused: Callable[[Path, OSError], NotRead] | None = None):
    """A Parquet table (of `columns`) or its schema; damaged bytes a UserError, a read the file system refuses
    NotRead: a Parquet file's, kept, or the caller's own (`refused`: a source file of --from's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = path if _utf8(path) else pa.BufferReader(Path(path).read_bytes())  # pyarrow opens UTF-8 paths only
        # ParquetFile, not read_table: the same table of one file, without pyarrow.dataset's import of pandas
        # (a second and more of the check before a run, which reads the held-out splits)
        return pq.read_schema(source) if schema_only else pq.ParquetFile(source).read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        if refused_read(e):  # says nothing of its bytes: not called damaged
            raise (refused(path, e) if refused else
                   NotRead(f"Parquet file {path}", e, "kept as it is; the command goes on with it")) from None
        raise UserError(f"{path}: not a readable Parquet file ({first_line(e)})") from None


def split_file(data_dir: Path, dataset: str, split: str) -> Path:
    """The prepared split's Parquet file; a data set not prepared is one line, before anything is made
    beside it (a cache's lock file would make the data set's folder)."""
    if split not in SPLITS:
        raise UserError(f"split {split!r}: must be one of {', '.join(SPLITS)}")
    path = Path(data_dir) / dataset / f"{split}.parquet"
    if not path.is_file():
        raise UserError(f"{path}: missing; prepare the data set first: collapse-hpc data prepare {dataset}")
    return path


def read_texts(data_dir: Path, dataset: str, split: str) -> list[str]:
    path = split_file(data_dir, dataset, split)
    check_card(path)
    table = read_parquet(path)
    if "text" not in table.column_names:
        raise UserError(f"{path}: no column 'text'; prepare it again with --force")
    return table.column("text").to_pylist()


def check_card(split_file: Path) -> None:
    """The split is the file its card recorded; also where only its cached blocks are read, which
    were made from it."""
    from collapse_hpc.store.cards import check_against_card, read_card

    card = read_card(split_file.parent)
    if card is not None and split_file.is_file():
        check_against_card(split_file, card)
