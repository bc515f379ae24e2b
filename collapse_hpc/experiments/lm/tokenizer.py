"""Tokenizers: a hub tag's own, or a byte-level BPE trained locally on a data set's train split.

The BPE mirrors OPT's conventions (<s>=0, <pad>=1, </s>=2, <unk>=3; '</s>' is prepended to every
text, as OPT's tokenizer does), is wrapped as PreTrainedTokenizerFast and saved to a folder that
AutoTokenizer.from_pretrained(folder) reloads: data/<dataset>/tokenizer-bpe<vocab>/.

API:
- load_tokenizer(cfg, data_dir) -> tokenizer  (cfg.tokenizer, else the model's tag, else tiny's BPE)
- bpe_tokenizer(data_dir, dataset, vocab_size, save=True) -> tokenizer  (trained once, then cached: sealed by its card)
- train_bpe(texts, vocab_size) -> PreTrainedTokenizerFast
- fingerprint(tokenizer) -> str  (12 hex chars; names the block caches)
- check_trained_with(folder, tokenizer, flag)  (a saved model's own tokenizer is this one, or UserError)
- own_tokenizer(model) -> tokenizer | None  (the one saved with a model, where it is here)
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.experiments.lm.corpus import long_text, read_texts, split_file
from collapse_hpc.experiments.lm.hub import VOCABULARY, cached_snapshot, hub_offline, hub_tag
from collapse_hpc.store import atomic
from collapse_hpc.store.cards import seal, sealed_files
from collapse_hpc.store.lock import file_lock
from collapse_hpc.logs import count
from collapse_hpc.machine import heeding_signals

log = logging.getLogger("collapse_hpc")

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
MAX_WORD = 1000  # characters of a space-free run BPE training sees whole (wikivital's longest: 43)


LONG_RUN = re.compile(r"\S{%d,}" % (MAX_WORD + 1))


def _words_cut(texts):
    """The texts as BPE training sees them: a run of more than MAX_WORD characters without a space (a DNA
    sequence, Chinese without punctuation, a base64 blob) cut into pieces of MAX_WORD. The trainer's
    merges over one word cost about its length squared: one line of 300,000 Chinese characters ran
    for over 10 minutes, deaf to SIGTERM; a text without such a run is passed whole, its BPE unchanged."""
    for text in texts:
        cuts = [i for m in LONG_RUN.finditer(text) for i in range(m.start() + MAX_WORD, m.end(), MAX_WORD)]
        yield from (text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]))


def train_bpe(texts, vocab_size: int = 8000):
    """A byte-level BPE over `texts` (an iterable of strings), deterministic for the same input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # its merges are Rust's, deaf to signals: a SIGTERM stops the unit during them, not after
    heeding_signals(tok.train_from_iterator, _words_cut(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def bpe_dir(data_dir: Path, dataset: str, vocab_size: int) -> Path:
    return Path(data_dir) / dataset / f"tokenizer-bpe{vocab_size}"


def bpe_tokenizer(data_dir: Path, dataset: str, vocab_size: int = 8000, save: bool = True):
    """The data set's BPE of this size: trained on its train split the first time, then reloaded; not
    `save`: one not built yet is trained in memory only (as deterministic), writing nothing."""
    from transformers import AutoTokenizer

    # reused only as its card recorded it (a changed byte would change every later run's tokens);
    # one without a card (unfinished, or from before cards) is trained again: the same BPE
    folder = bpe_dir(data_dir, dataset, vocab_size)
    if sealed_files(folder) is None:
        if not save:
            return train_bpe(read_texts(data_dir, dataset, "train"), vocab_size)
        split_file(data_dir, dataset, "train")  # an unprepared data set: said before its lock file is made
        with file_lock(folder.parent / f".lock-{folder.name}") as locked:  # other ranks and chains wait, then reuse
            if locked:  # no other writer of it is alive: a temporary there is a killed one's
                atomic.sweep(folder.parent, folder.name)
            if sealed_files(folder) is None:
                texts = read_texts(data_dir, dataset, "train")
                # minutes on a large corpus, once: say so (a 50 MB one was 25 s without a line)
                if long_text(texts):
                    log.info("%s: training a byte-level BPE of %d tokens on the %s of the train split (once)",
                             folder, vocab_size, count(len(texts), "row"))
                save_atomic(train_bpe(texts, vocab_size), folder)
    return AutoTokenizer.from_pretrained(str(folder))


def save_atomic(tokenizer, folder: Path) -> None:
    """save_pretrained into a temporary sibling, sealed (its card: each file's sha256), then swap it
    in (atomic.atomic_dir)."""
    with atomic.atomic_dir(folder) as tmp:
        tokenizer.save_pretrained(str(tmp))
        seal(tmp)


def tokenizer_tag(cfg) -> str | None:
    """The folder or hub tag whose tokenizer a unit loads: lm.tokenizer, else the model's; None for the
    tiny model without one (the BPE trained on the data set)."""
    return cfg.tokenizer or (None if cfg.model == "tiny" else cfg.model)


def load_tokenizer(cfg, data_dir: Path):
    tag = tokenizer_tag(cfg)
    if tag is None:
        return bpe_tokenizer(data_dir, cfg.dataset, cfg.vocab_size)
    try:
        tok = _with_vocabulary(tag)
    except (OSError, ValueError) as e:
        raise UserError(f"tokenizer {tag!r} cannot be loaded (not a folder, not in the HF cache"
                        f"{', hub offline' if hub_offline() else ''}): "
                        f"{first_line(e, None)}") from None
    if tok is None:
        raise UserError(f"tokenizer {tag!r}: no vocabulary (it turns text into no tokens): its files are not all "
                        f"there (a config.json without tokenizer.json, or vocab.json and merges.txt); copy or "
                        f"download the tokenizer whole")
    if tok.pad_token is None:  # gpt2 and friends: pad with eos (padding is masked anyway)
        tok.pad_token = tok.eos_token
    return tok


def _with_vocabulary(source):
    """AutoTokenizer.from_pretrained(source) (a folder, or a hub tag), or None where it has no vocabulary:
    transformers loads a tokenizer without its files (from a config.json alone), turning text into no tokens."""
    from transformers import AutoTokenizer  # seconds to import: only where there is one to load

    tok = AutoTokenizer.from_pretrained(str(source))
    return tok if tok("a", add_special_tokens=False)["input_ids"] else None


def missing_tokenizer(folder: Path) -> str | None:
    """What of a tokenizer's files is not in `folder` (a dangling link of the HF cache is not there);
    None where its vocabulary is there. transformers loads a tokenizer without them (from a config.json
    alone) whose vocabulary is one token: load_tokenizer's own check meets it only in the job."""
    if any(p.is_file() for pattern in VOCABULARY for p in folder.glob(pattern)):
        return None
    if (folder / "vocab.json").is_file():
        return None if (folder / "merges.txt").is_file() else "merges.txt (its vocab.json's merges)"
    return "a tokenizer's files (tokenizer.json, or vocab.json and merges.txt)"


def _saved_with(folder: Path):
    """The tokenizer saved in model folder `folder` (_with_vocabulary's); None where its files are not all there
    (missing_tokenizer), or it has no vocabulary."""
    return None if missing_tokenizer(folder) else _with_vocabulary(folder)


def check_tokenizer(key: str, tag: str, model: bool = False) -> None:
    """UserError where `tag` (config key `key`; if `model`, the model's tag, whose tokenizer is used as
    lm.tokenizer names none) is a folder, or with the hub offline the HF cache's copy of a hub tag, that
    lacks a tokenizer's files: said before a run folder or job exists. Online, a load fills the cache."""
    folder = Path(tag).expanduser()
    local = folder.is_dir()
    # online a load fills the cache: only offline is the cache's copy all a job will have
    cached = None if local or not hub_offline() else _local_copy(tag, hub_only=True)
    lacks = missing_tokenizer(cached or folder) if local or cached else None
    if lacks is None:
        return
    where = f"the HF cache's copy of {tag!r} ({cached})" if cached else \
        f"the {'model' if model else 'tokenizer'} folder {folder}"
    fix = "copy or download it whole" + (f" (hf download {tag}, where the hub is reachable)" if cached else "")
    raise UserError(f"{key}: {where} lacks {lacks}" + (
        f", and lm.tokenizer names no other; {fix}, or name a tokenizer (lm.tokenizer)" if model else f"; {fix}"))


def check_trained_with(folder: Path, tokenizer, flag: str) -> None:
    """UserError where the model folder `folder` holds the tokenizer it was trained with (train saves it
    beside the weights) and its vocabulary is not `tokenizer`'s: the same ids would be other tokens, and
    every perplexity and sampled text meaningless, with nothing else to say so. A folder without one passes."""
    own = _saved_with(folder)
    if other_vocabulary(own, tokenizer):
        raise UserError(f"{flag} {folder}: the model was trained with another tokenizer ({len(own)} tokens, "
                        f"saved beside it) than this call's ({len(tokenizer)} tokens): give the --model_tag (tiny: "
                        f"also the --dataset and --set vocab_size) it was trained with, or --set tokenizer={folder} "
                        f"to read any data set with its own")


def other_vocabulary(own, tokenizer) -> bool:
    """Whether `own`, the tokenizer saved with a model (None: none saved), has another vocabulary than
    `tokenizer`: its ids would be read as other tokens."""
    return own is not None and own.get_vocab() != tokenizer.get_vocab()


def fewest_tokens(texts: list[str]) -> list[int]:
    """Per text, the fewest tokens any BPE of train_bpe makes of it, whatever its vocab_size: its leading
    '</s>' and one a pre-token (a merge never joins two of the byte-level pre-tokenizer's words)."""
    from tokenizers import pre_tokenizers

    words = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return [1 + len(words.pre_tokenize_str(text)) for text in texts]


def tokens_at_least(cfg):
    """texts -> per text, at least the tokens the tokenizer of a unit of `cfg` makes of it, counted without
    transformers (seconds to import); None where no such bound is known. The data set's BPE: fewest_tokens;
    a byte-level BPE's pair (vocab.json, merges.txt: GPT-2, OPT), as many as its pre-tokens; a tokenizer.json,
    its own encoding less one (transformers may leave out a special token, or the prefix space)."""
    tag = tokenizer_tag(cfg)
    if tag is None:
        return fewest_tokens
    folder = _local_copy(tag)
    if folder and (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            own = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception:  # noqa: BLE001 - the tokenizers library's errors have no common type
            return None
        return lambda texts: [len(e.ids) - 1 for e in own.encode_batch(texts, add_special_tokens=False)]
    if folder and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return lambda texts: [n - 1 for n in fewest_tokens(texts)]
    return None


def _local_copy(tag: str, hub_only: bool = False) -> Path | None:
    """The folder tokenizer tag `tag` loads from on this machine: the (jobs') HF cache's snapshot of a hub tag,
    else (unless `hub_only`) `tag` itself; None where there is none, or `tag` is no hub name (check_source's)."""
    if not hub_tag(tag):
        return None if hub_only else Path(tag).expanduser()
    try:
        return cached_snapshot(tag)
    except ValueError:  # no hub name
        return None


def own_tokenizer(model: str):
    """The tokenizer saved with model folder or hub tag `model` (the HF cache's copy), from what is here;
    None where it has none, or it does not load."""
    folder = _local_copy(model)
    try:
        return _saved_with(folder) if folder is not None else None
    except Exception:  # noqa: BLE001 - one that does not load is said where it is loaded
        return None


def ready_tokenizer(cfg, data_dir: Path):
    """The tokenizer a unit of `cfg` loads, from what is here, writing and fetching nothing: the data set's
    BPE of lm.vocab_size (trained in memory where it is not built yet), a tokenizer folder, or the jobs' HF
    cache's copy of a hub tag; None where it is not here or does not load (check_source, check_tokenizer or
    the unit say why)."""
    tag = tokenizer_tag(cfg)
    try:
        if tag is None:
            return bpe_tokenizer(data_dir, cfg.dataset, cfg.vocab_size, save=False)
        folder = _local_copy(tag)
        return _with_vocabulary(folder) if folder else None
    except Exception:  # noqa: BLE001 - a tokenizer that does not load (any of transformers' errors) is said elsewhere
        return None


def fingerprint(tokenizer) -> str:
    """Hash of the full tokenizer definition (vocabulary, merges, normaliser, post-processor)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
