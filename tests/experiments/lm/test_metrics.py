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
    real = np.array([[1] * 50 + [2] * 30 + [3] * 10 + [4] * 5 + [5] * 3 + [6] * 1 + [7] * 1 + [8] * 1 + [9] * 1
                      + [10] * 1])
    rare = metrics.rare_vocabulary(real, 0.2)  # 10 types: the 2 rarest, ties by id
    assert rare.tolist() == [6, 7]
    assert metrics.rare_token_share(np.array([[6, 7, 1, 1]]), rare) == 0.5
    p = metrics.ppl_percentiles(np.arange(1, 102, dtype=float))
    assert p["ppl_p50"] == 51 and p["ppl_p5"] == 6 and p["ppl_mean"] == 51


def test_metrics_table_is_wide_with_float_columns():
    t = metrics.metrics_table(3, {"test_ppl": 12.5, "distinct_1": 0.4, "train_blocks": 512})
    assert t.num_rows == 1 and t.column_names == ["generation", "test_ppl", "distinct_1", "train_blocks"]
    assert t.schema.field("generation").type == pa.int64()
    assert all(t.schema.field(c).type == pa.float64() for c in t.column_names[1:])
