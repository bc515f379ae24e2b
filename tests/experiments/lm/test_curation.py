"""The curated regimes' scores: the detector weighs real-looking blocks up, the verifier reads gen 0's."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from collapse_hpc.experiments.lm import curation
from collapse_hpc.regimes import Regime


def _blocks(tokens: np.ndarray, start=0):
    return pa.table({"block_id": np.arange(start, start + len(tokens)),
                     "input_ids": pa.array(list(tokens.astype(np.int32)), pa.list_(pa.int32()))})


def test_detector_weighs_real_up_and_generated_down():
    rng = np.random.default_rng(0)
    real = _blocks(rng.integers(10, 200, (120, 16)))  # varied text
    repetitive = _blocks(rng.integers(10, 30, (120, 16)), 1000)  # a collapsed model's: few tokens
    weights, info = curation.detector_weights(real, [repetitive], seed=0)
    assert info["detector_accuracy"] > 0.95 and info["detector_auc"] > 0.99
    assert weights[-1].min() > weights[0].max()  # every real block weighs more than any generated one
    assert np.median(weights[-1]) > 2 and np.median(weights[0]) < 0.5
    assert info["detector_real_weight_share"] > 0.85
    # generated text from the real distribution cannot be told apart: weights stay near 1
    alike = _blocks(rng.integers(10, 200, (120, 16)), 2000)
    weights, info = curation.detector_weights(real, [alike], seed=0)
    assert 0.3 < info["detector_auc"] < 0.7
    assert 0.5 < np.median(np.concatenate([weights[-1], weights[0]])) < 2
    # the same seed gives the same weights
    again, _ = curation.detector_weights(real, [alike], seed=0)
    assert all(np.array_equal(weights[k], again[k]) for k in weights)


def test_verifier_gen0_reads_the_stored_perplexities_by_block(tmp_path):
    import pyarrow.parquet as pq

    gen = tmp_path / "gen_000"
    gen.mkdir()
    pq.write_table(pa.table({"block_id": pa.array([12, 10, 11], pa.int64()), "ppl": [30.0, 10.0, 20.0]}),
                   gen / "sequence_ppl.parquet")
    newest = _blocks(np.zeros((3, 4)), 10)  # block ids 10, 11, 12
    ctx = SimpleNamespace(config=SimpleNamespace(verifier="gen0"), previous=[Path(gen)],
                          variant=SimpleNamespace(regime=Regime("verifier-filter", verifier_quantile=0.5)))
    scores, info = curation.scores(ctx, None, [newest], tokenizer=None, device=None)
    assert list(scores) == [0] and scores[0].tolist() == [10.0, 20.0, 30.0]
    assert info == {"verifier_threshold_ppl": 20.0}  # the share passing is the quantile: not a metric
