"""Diversity and tail metrics of generated text."""
import math

import numpy as np
import pyarrow as pa

from collapse_hpc.experiments.lm import metrics


def test_distinct_n_counts_within_sequences():
    ids = np.array([[1, 2, 1, 2], [1, 2, 3, 4]])
    assert metrics.distinct_n(ids, 1) == 4 / 8
    assert metrics.distinct_n(ids, 2) == 4 / 6  # (1,2) (2,1) (2,3) (3,4); none across rows
    assert metrics.distinct_n(ids, 4) == 1.0
    assert math.isnan(metrics.distinct_n(ids, 5))


def test_entropy_ttr_rare_share_and_percentiles():
    assert metrics.unigram_entropy(np.array([[1, 2, 3, 4]])) == 2.0
    assert metrics.unigram_entropy(np.array([[7, 7, 7]])) == 0.0
    assert metrics.type_token_ratio(["The cat", "the dog"]) == 3 / 4
    # 103 real tokens over ids 1..10; ids 0 and 11 never occur (vocabulary of 12)
    real = np.array([[1] * 50 + [2] * 30 + [3] * 10 + [4] * 5 + [5] * 3 + [6] * 1 + [7] * 1 + [8] * 1 + [9] * 1
                      + [10] * 1])
    classes = metrics.token_classes(metrics.token_counts(real, 12), 0.1, 0.5)
    rare = np.flatnonzero(classes == metrics.RARE).tolist()
    assert rare == [0, 5, 6, 7, 8, 9, 10, 11]  # unseen types, then the rarest up to 8 of 103 tokens (<= 10%)
    assert np.flatnonzero(classes == metrics.FREQUENT).tolist() == [1]  # 50 of 103 tokens (<= 50%)
    assert np.flatnonzero(classes == metrics.MIDDLE).tolist() == [2, 3, 4]
    assert metrics.class_shares(real, classes) == {"rare": 8 / 103, "middle": 45 / 103, "frequent": 50 / 103}
    assert metrics.rare_token_share(np.array([[6, 11, 1, 12]]), classes) == 0.75  # 12: beyond the vocabulary
    p = metrics.ppl_percentiles(np.arange(1, 102, dtype=float))
    assert p["ppl_p50"] == 51 and p["ppl_p5"] == 6 and p["ppl_mean"] == 51


def test_type_token_ratio_of_english_is_its_words_at_white_space():
    # pinned: the value before scripts without spaces were counted by character (Korean has spaces)
    texts = ["The cat sat on the mat. The dog -- a café regular -- sat too!",
             "Naïve résumé: the cat's mat, 2023; the END.", "한국어 문장 한국어"]
    assert metrics.type_token_ratio(texts) == 19 / 26


def test_type_token_ratio_counts_characters_of_scripts_without_spaces():
    # split at white space alone, each line was one word: 1.0 whatever the text
    assert metrics.type_token_ratio(["我爱猫。我爱狗。"]) == 5 / 8
    assert metrics.type_token_ratio(["猫が好きです", "猫が好き"]) == 6 / 10
    assert metrics.text_words("OPT模型 (125M)") == ["OPT", "模", "型", "(125M)"]
    assert metrics.type_token_ratio(["สวัสดี สวัสดี"]) == 3 / 8  # ส วั ส ดี, twice


def test_a_combining_mark_is_part_of_the_character_before_it_not_a_word():
    # a vowel sign or tone mark counted as a word of its own: Thai's ั and ี, Myanmar's ြ ် ာ (Mc and Mn)
    assert metrics.text_words("สวัสดี") == ["ส", "วั", "ส", "ดี"]
    assert metrics.text_words("ເມືອງ") == ["ເ", "ມື", "ອ", "ງ"]  # Lao: ເ is a letter, ື a mark
    assert metrics.text_words("မြန်မာ") == ["မြ", "န်", "မာ"]
    assert metrics.text_words("ខ្មែរ") == ["ខ្មែ", "រ"]
    assert metrics.text_words("か\u3099") == ["か\u3099"]  # が, decomposed: kana's voicing mark
    assert metrics.type_token_ratio(["ที่นี่ ที่นั่น"]) == 4 / 5  # ที่ นี่ ที่ นั่ น: ที่ twice


def test_a_consonant_a_virama_stacks_is_part_of_the_character_before_it():
    # Khmer's coeng and Myanmar's U+1039 write the consonant after them under the one before: it was a word of its
    # own, ស្ត្រី three words (ស្ ត្ រី), not the one cluster it is
    assert metrics.text_words("ស្ត្រី") == ["ស្ត្រី"]
    assert metrics.text_words("ក្សត្រ") == ["ក្ស", "ត្រ"]
    assert metrics.type_token_ratio(["ខ្មែរ មែ"]) == 3 / 3  # ខ្មែ រ មែ: the ម stacked in ខ្មែ was a second មែ
    assert metrics.text_words("ပစ္စည်း") == ["ပ", "စ္စ", "ည်း"]
    assert metrics.text_words("မင်္ဂလာ") == ["မ", "င်္ဂ", "လာ"]  # kinzi: asat, then the virama that stacks ဂ
    # Myanmar's asat (U+103A) ends a syllable and stacks nothing: the consonant after it is a character of its own
    assert metrics.text_words("န်မ") == ["န်", "မ"]
    assert metrics.text_words("ខ្ a") == ["ខ្", "a"]  # a coeng at a block's edge, before no consonant


def test_tibetan_words_are_its_syllables_split_at_tsheg_and_shad():
    # no spaces between its words: a sentence was one word
    sentence = "བོད་སྐད་ནི་བོད་ཀྱི་སྐད་ཡིན།"
    assert metrics.text_words(sentence) == ["བོད", "སྐད", "ནི", "བོད", "ཀྱི", "སྐད", "ཡིན"]
    assert metrics.type_token_ratio([sentence]) == 5 / 7
    assert metrics.text_words("OPTབོད་སྐད། ok") == ["OPT", "བོད", "སྐད", "ok"]


def test_replacement_characters_are_no_part_of_a_word():
    # a character cut at a block's edge, or bytes a half-trained model writes, shown as U+FFFD
    assert metrics.text_words("\ufffdthe cat\ufffd \ufffd\ufffd") == ["the", "cat"]
    assert metrics.text_words("猫\ufffd狗") == ["猫", "狗"]
    assert metrics.type_token_ratio(["the cat\ufffd", "\ufffd\ufffd the cat"]) == 2 / 4
    assert math.isnan(metrics.type_token_ratio(["\ufffd"]))


def test_a_zero_width_space_parts_words_and_is_none():
    # Khmer, Myanmar and Thai text puts U+200B between words: each one counted as a word, the text's most frequent
    assert metrics.text_words("ខ្មែរ\u200bភាសា") == ["ខ្មែ", "រ", "ភា", "សា"]
    assert metrics.text_words("word\u200bother word") == ["word", "other", "word"]


def test_metrics_table_is_wide_with_float_columns():
    t = metrics.metrics_table(3, {"test_ppl": 12.5, "distinct_1": 0.4, "test_ppl_rare": 512})
    assert t.num_rows == 1 and t.column_names == ["generation", "test_ppl", "distinct_1", "test_ppl_rare"]
    assert t.schema.field("generation").type == pa.int64()
    assert all(t.schema.field(c).type == pa.float64() for c in t.column_names[1:])


def test_rarity_is_a_share_of_the_token_mass_whatever_the_vocabulary():
    """Zipf-like counts over 1000 types: the rare types carry at most 10% of the tokens and adding
    one more type to them would pass 10%; the frequent ones at most 50%."""
    counts = (1e5 / np.arange(1, 1001) ** 1.1).astype(np.int64)
    classes = metrics.token_classes(counts, 0.1, 0.5)
    mass = {k: counts[classes == k].sum() / counts.sum() for k in (metrics.RARE, metrics.FREQUENT)}
    assert 0.09 < mass[metrics.RARE] <= 0.1 and 0.45 < mass[metrics.FREQUENT] <= 0.5
    rarest_common = counts[classes != metrics.RARE].min()
    assert counts[classes == metrics.RARE].max() <= rarest_common
