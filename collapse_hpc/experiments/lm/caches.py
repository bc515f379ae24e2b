"""A data set folder shared read-only (a colleague's, a group's): the caches a run's units would build
beside the data set (the BPE, the token blocks, the tiny base) must be there already, checked before
the run starts.

API:
- check_read_only(data_dir, cfg)   a data set folder the user may not write holds every cache a unit needs
- missing_caches(data_dir, cfg) -> {str: Path}   those caches not built yet: a phrase naming each -> where it is built
"""
from __future__ import annotations

from pathlib import Path

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm.corpus import SPLITS
from collapse_hpc.experiments.lm.data import blocks_path
from collapse_hpc.experiments.lm.model import base_fingerprint
from collapse_hpc.experiments.lm.tokenizer import bpe_dir, load_tokenizer
from collapse_hpc.store.cards import sealed_file, sealed_files
from collapse_hpc.store.space import writable


def check_read_only(data_dir: Path, cfg) -> None:
    """Before a run starts: a data set folder the user may only read (a colleague's, a shared
    group folder), or a cache folder in it (blocks/, base/), must hold every cache its units would
    otherwise build there once (the BPE of this vocab_size, the token blocks of this block_size, the
    tiny base of these knobs); else each unit failed on it, one line in its own log."""
    folder = Path(data_dir) / cfg.dataset
    if all(map(writable, [folder, *(p for p in map(folder.joinpath, CACHE_FOLDERS) if p.is_dir()),
                          *folder.glob("blocks/*/")])):
        return
    blocked: dict[Path, list[str]] = {}
    for what, where in missing_caches(Path(data_dir), cfg).items():
        there = next(p for p in (where, *where.parents) if p.exists())  # where a unit would make it
        if not writable(there):
            blocked.setdefault(there, []).append(what)
    if blocked:
        raise UserError("; ".join(
            f"{there.absolute()}: not writable by you, and it lacks {' and '.join(missing)}, which a unit would "
            f"build there" for there, missing in blocked.items())
            + f"; prepare the data set into a data_dir of yours (collapse-hpc data prepare {cfg.dataset} ... "
              f"--data-dir DIR), or use the knob values its caches were built for")


CACHE_FOLDERS = ("blocks", "base")  # where a unit builds its caches inside the data set's folder, besides itself


def missing_caches(data_dir: Path, cfg) -> dict[str, Path]:
    """The caches under the data set that a unit of `cfg` would build, as not yet built: each as a phrase
    naming it -> the folder a unit writes into to build it (its lock file and temporary). The tokenizer is
    loaded for the blocks' and the base's names only once it is there (loading builds nothing then)."""
    bpe = bpe_dir(data_dir, cfg.dataset, cfg.vocab_size)
    if cfg.tokenizer is None and cfg.model == "tiny" and sealed_files(bpe) is None:
        return {f"the BPE tokenizer of lm.vocab_size {cfg.vocab_size} ({bpe.name}/)": bpe.parent}
    tokenizer = load_tokenizer(cfg, data_dir)
    missing = {}
    blocks = [blocks_path(data_dir, cfg.dataset, s, tokenizer, cfg.block_size, cfg.block_grouping) for s in SPLITS]
    if not all(map(sealed_file, blocks)):
        missing[f"the token blocks of lm.block_size {cfg.block_size} (blocks/{blocks[0].parent.name}/)"] = \
            blocks[0].parent
    base = Path(data_dir) / cfg.dataset / "base" / base_fingerprint(cfg, tokenizer)
    if cfg.model == "tiny" and cfg.pretrained and sealed_files(base) is None:
        missing[f"the tiny base model of these lm knobs (base/{base.name}/)"] = base.parent
    return missing
