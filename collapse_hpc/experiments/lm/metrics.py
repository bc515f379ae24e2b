"""Diversity and tail measures of a generation's generated text (later LM-collapse studies).

Rarity is defined once, over the whole real train split (not the chain's first max_train_blocks):
token types sorted by their count there, ties by token id. A type is *rare* if it is among the
least frequent types that together carry at most `rare_fraction` (10%) of the split's tokens;
types never seen in the split (count 0, e.g. embedding rows no text uses) come first in that order
and carry no mass, so they are always rare. A type is *frequent* if it is among the most frequent
types that together carry at most `frequent_fraction` (50%); the rest is the *middle*.

- distinct_n: unique n-grams / all n-grams of token ids, over the whole generated set (n = 1..4)
- unigram_entropy: entropy in bits of the token distribution of the generated set
- type_token_ratio: unique / all words of the decoded text (lower-cased, split at white space; in
  scripts written without spaces between words, Chinese, Japanese, Thai, Lao, Khmer and Myanmar
  (SPACELESS), every character with the combining marks after it (a vowel sign, a tone mark, a
  consonant a Khmer or Myanmar virama stacks under it) is a word of its own; Tibetan's words are its
  syllables, split at tsheg and shad: split at white space alone, a line of Chinese was one word, a
  ratio near 1 whatever the model wrote). U+FFFD is no part of a word: a block's edge cuts a character
  into it, and a half-trained model writes bytes no text holds; a zero-width space (U+200B) parts
  words as a space does
- rare_token_share, middle_token_share: shares of generated tokens that are rare, and in the
  middle; real_rare_token_share, real_middle_token_share (generation 0 only): the same shares in
  the chain's real training blocks, the levels they are read against (a small model's beam text can
  hold no rare token at all from generation 0 on: the middle is then where the tail still shows)
- test_ppl_rare, test_ppl_middle, test_ppl_frequent (chain.py, evaluate.score): real-test
  perplexity over the predicted tokens of each class
- ppl_p5 ... ppl_p95, ppl_mean: percentiles of the generated sequences' perplexities under the
  generation-0 model (the paper's histogram, summarised)
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from collapse_hpc.experiments.schema import MetricsSchema
from collapse_hpc.plotting.metrics import NONNEGATIVE, PERPLEXITY, SHARE, Metric, specs

PERCENTILES = (5, 25, 50, 75, 95)


def distinct_n(ids: np.ndarray, n: int) -> float:
    """ids: (sequences, length) token ids; n-grams do not cross sequence boundaries."""
    ids = np.asarray(ids, np.int64)
    if ids.ndim != 2 or ids.shape[1] < n or not len(ids):
        return float("nan")
    grams = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1).reshape(-1, n)
    return len(np.unique(grams, axis=0)) / len(grams)


def unigram_entropy(ids: np.ndarray) -> float:
    _, counts = np.unique(np.asarray(ids).ravel(), return_counts=True)
    if not counts.sum():
        return float("nan")
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


# scripts written without spaces between words, a word per character: Thai, Lao, Myanmar, Khmer, CJK
# punctuation, kana, Han (with its extensions and compatibility ideographs), half-width kana
PER_CHARACTER = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
                 "\uff66-\uff9f\U00020000-\U0003ffff")
# their combining marks (Thai's vowel signs and tone marks, Myanmar's and Khmer's vowel signs, kana's voicing):
# part of the character before them, not words of their own
MARKED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3000, 0x30FF))  # the blocks that hold them
MARKS = "".join(chr(c) for lo, hi in MARKED for c in range(lo, hi + 1) if unicodedata.category(chr(c))[0] == "M")
# a virama that stacks the letter after it under the one before, Khmer's coeng (U+17D2) and Myanmar's U+1039: with
# that letter part of the character before, as a mark is (Myanmar's asat U+103A, a mark too, stacks nothing)
STACKED = "\u17d2[\u1780-\u17ff]|\u1039[\u1000-\u109f]"
TSHEG_SHAD = "\u0f0b-\u0f12\u0f14"  # Tibetan's syllable and clause marks: where its words end
SPACELESS = re.compile(f"([\u0f00-\u0f0a\u0f13\u0f15-\u0fff]+|[{PER_CHARACTER}](?:{STACKED}|[{MARKS}])*)"
                       f"|[{TSHEG_SHAD}]")


# what is no part of a word: U+FFFD (a character cut at a block's edge), and the zero-width space, which
# Khmer, Myanmar and Thai text puts between words where it shows no space (str.split keeps it)
NOT_WORD = str.maketrans({"\ufffd": "", "\u200b": " "})


def text_words(text: str) -> list[str]:
    """The words of `text` for type_token_ratio: split at white space (a zero-width one too), each character of
    a SPACELESS script with its combining marks (and STACKED consonants) a word, each Tibetan syllable a word;
    U+FFFD dropped (English text splits as at white space alone)."""
    return SPACELESS.sub(r" \1 ", text.translate(NOT_WORD)).split()


def type_token_ratio(texts: list[str]) -> float:
    words = [w for t in texts for w in text_words(t.lower())]
    return len(set(words)) / len(words) if words else float("nan")


RARE, MIDDLE, FREQUENT = 0, 1, 2
CLASSES = ("rare", "middle", "frequent")  # names of the classes, in their codes' order


def token_counts(ids: np.ndarray, vocab: int) -> np.ndarray:
    """How often each token id 0..vocab-1 occurs in `ids`."""
    return np.bincount(np.asarray(ids, np.int64).ravel(), minlength=vocab)


def token_classes(counts: np.ndarray, rare_fraction: float = 0.1, frequent_fraction: float = 0.5) -> np.ndarray:
    """RARE, MIDDLE or FREQUENT for every token id, from its count in the real train split (module
    docstring); a type both rare and frequent can only be one never seen: it stays rare."""
    counts = np.asarray(counts, np.int64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("token_classes: no real tokens to count")
    ids = np.arange(len(counts))
    classes = np.full(len(counts), MIDDLE, np.int8)
    down = np.lexsort((ids, -counts))  # most frequent first, ties by id
    classes[down[np.cumsum(counts[down]) <= frequent_fraction * total]] = FREQUENT
    up = np.lexsort((ids, counts))  # least frequent first (never seen: count 0), ties by id
    classes[up[np.cumsum(counts[up]) <= rare_fraction * total]] = RARE
    return classes


def class_shares(ids: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Share of the tokens in `ids` in each class; ids beyond the classes' vocabulary (never seen
    in real data) count as rare."""
    flat = np.asarray(ids, np.int64).ravel()
    if not flat.size:
        return {c: float("nan") for c in CLASSES}
    cls = np.where(flat < len(classes), np.asarray(classes)[np.minimum(flat, len(classes) - 1)], RARE)
    return {c: float((cls == k).mean()) for k, c in enumerate(CLASSES)}


def rare_token_share(ids: np.ndarray, classes: np.ndarray) -> float:
    return class_shares(ids, classes)["rare"]


def ppl_percentiles(ppl: np.ndarray) -> dict[str, float]:
    ppl = np.asarray(ppl, np.float64)
    out = {f"ppl_p{q}": float(np.percentile(ppl, q)) if ppl.size else float("nan") for q in PERCENTILES}
    out["ppl_mean"] = float(ppl.mean()) if ppl.size else float("nan")
    return out


def diversity(ids: np.ndarray, texts: list[str], classes: np.ndarray) -> dict[str, float]:
    out = {f"distinct_{n}": distinct_n(ids, n) for n in (1, 2, 3, 4)}
    out["unigram_entropy"] = unigram_entropy(ids)
    out["type_token_ratio"] = type_token_ratio(texts)
    shares = class_shares(ids, classes)
    out["rare_token_share"], out["middle_token_share"] = shares["rare"], shares["middle"]
    return out


def metrics_table(generation: int, values: dict[str, float]):
    """The wide one-row metrics.parquet: int `generation`, then one float64 column per metric."""
    import pyarrow as pa

    cols = {"generation": pa.array([generation], pa.int64())}
    for k, v in values.items():
        cols[k] = pa.array([float(v)], pa.float64())
    return pa.table(cols)


# ------------------------------------------------------------------ how the report shows them

def _specs():
    paper = (("model", "facebook/opt-125m"), ("dataset", "wikitext2"))  # the paper's own setting
    tails = [Metric(f"test_ppl_{c}", f"test ppl, {c} tokens", worse="higher", bounds=PERPLEXITY) for c in CLASSES]
    shares = [Metric(f"{c}_token_share", f"{c}-token share", worse="lower", bounds=SHARE) for c in CLASSES[:2]]
    real_shares = [Metric(f"real_{c}_token_share", f"real {c}-token share", bounds=SHARE) for c in CLASSES[:2]]
    percentiles = [Metric(f"ppl_p{q}", f"generated ppl p{q}", bounds=PERPLEXITY) for q in PERCENTILES]
    return specs(
        Metric("test_ppl", "test perplexity", worse="higher", paper=((34.0, "paper: OPT-125M, generation 0"),),
               paper_setting=paper, bounds=PERPLEXITY),
        Metric("zero_shot_test_ppl", "zero-shot test ppl", paper=((115.0, "paper: OPT-125M zero-shot"),),
               paper_setting=paper, bounds=PERPLEXITY),
        *tails, *shares, *real_shares, *percentiles,
        Metric("ppl_mean", "generated ppl, mean", bounds=PERPLEXITY),
        Metric("real_train_ppl", "real-train perplexity", worse="higher", bounds=PERPLEXITY),
        Metric("val_loss", "validation loss", "nats per token", bounds=NONNEGATIVE),
        *(Metric(f"distinct_{n}", f"distinct-{n}", worse="lower", bounds=SHARE) for n in (1, 2, 3, 4)),
        Metric("unigram_entropy", "unigram entropy", "bits", worse="lower", bounds=NONNEGATIVE),
        Metric("type_token_ratio", "type-token ratio", worse="lower", bounds=SHARE),
        Metric("train_seconds", "training", "s", kind="compute", bounds=NONNEGATIVE),
        Metric("sample_seconds", "sampling", "s", kind="compute", bounds=NONNEGATIVE),
        Metric("sample_tokens_per_s", "sampling throughput", "tokens/s", kind="compute", bounds=NONNEGATIVE),
        Metric("train_real_share", "real share trained on", kind="bookkeeping", bounds=SHARE),
        Metric("train_distinct_share", "distinct share trained on", kind="bookkeeping", bounds=SHARE),
        Metric("detector_accuracy", "detector accuracy", kind="bookkeeping", bounds=SHARE),
        Metric("detector_auc", "detector AUC", kind="bookkeeping", bounds=SHARE),
        Metric("detector_real_weight_share", "detector weight on real", kind="bookkeeping", bounds=SHARE),
        Metric("verifier_threshold_ppl", "verifier ppl threshold", kind="bookkeeping", bounds=PERPLEXITY),
    )


SPECS = _specs()  # the report's display name, unit and direction of every column above
# written by generation 0 only (its reference lines), or only under a curated regime (what it let through)
SOMETIMES = frozenset({"zero_shot_test_ppl", "real_rare_token_share", "real_middle_token_share", "train_real_share",
                       "train_distinct_share", "detector_accuracy", "detector_auc", "detector_real_weight_share",
                       "verifier_threshold_ppl"})
SCHEMA = MetricsSchema(per_replicate=False, metrics=SPECS, optional=SOMETIMES)  # one row per generation
