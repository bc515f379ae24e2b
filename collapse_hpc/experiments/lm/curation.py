"""Scores of the pooled blocks for the curated regimes (collapse_hpc.regimes.scores: how mix reads them).

detector-resample (Drayson & Lampos 2025): a small machine-text detector, trained here on blocks
of known origin - the real blocks (human) against every generated block of the pool (machine) -
gives each pooled block its probability of being real (regimes.scores turns it into the importance
weight). The detector is a
logistic regression on TF-IDF of token uni- and bigrams (scikit-learn, no hub model), with
balanced class weights (so the ratio does not depend on how much of the pool is generated) and
cross-fitted over two folds: no block is weighed by a detector that saw it in training.

verifier-filter (Feng et al. 2024): each block of the newest generation is scored by its perplexity
under the verifier (lm.verifier): the generation-0 model, trained on real data (gen0; the chain
already stores these perplexities as that generation's sequence_ppl.parquet), or the model every
generation starts from before seeing any of the chain's data (base). Lower passes.
"""
from __future__ import annotations

import numpy as np

from collapse_hpc.regimes import REAL
from collapse_hpc.regimes import scores as curation

FOLDS = 2


def _texts(blocks) -> list[str]:
    return [" ".join(map(str, ids)) for ids in blocks.column("input_ids").to_pylist()]


def detector_weights(real, generated: list, seed: int) -> tuple[dict[int, np.ndarray], dict]:
    """Importance weights of every pooled block, by source (-1 real, g generated), and the
    detector's cross-fitted accuracy and ROC AUC on the pool."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    pools = [(REAL, real)] + list(enumerate(generated))
    texts = [t for _, pool in pools for t in _texts(pool)]
    human = np.concatenate([np.full(pool.num_rows, src == REAL) for src, pool in pools]).astype(int)
    p_human = np.zeros(len(texts))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed % 2**32)
    for train, held in folds.split(texts, human):
        vec = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x = vec.fit_transform([texts[i] for i in train])
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        clf.fit(x, human[train])
        p_human[held] = clf.predict_proba(vec.transform([texts[i] for i in held]))[:, 1]
    weights = curation.importance_weights(p_human)
    out, start = {}, 0
    for src, pool in pools:
        out[src] = weights[start:start + pool.num_rows]
        start += pool.num_rows
    info = {"detector_accuracy": float(((p_human >= 0.5) == human).mean()),
            "detector_auc": float(roc_auc_score(human, p_human)),
            "detector_real_weight_share": float(out[REAL].sum() / weights.sum())}
    return out, info


def verifier_scores(ctx, newest, tokenizer, device) -> tuple[np.ndarray, dict]:
    """Perplexity of each block of the newest generated pool (generation g-1) under the verifier."""
    import pyarrow.parquet as pq

    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import build_model

    cfg = ctx.config
    if cfg.verifier == "gen0":  # stored by generation g-1 itself: each of its blocks under gen 0
        table = pq.read_table(ctx.previous[-1] / "sequence_ppl.parquet")
        by_id = dict(zip(table.column("block_id").to_pylist(), table.column("ppl").to_pylist()))
        ppl = np.array([by_id[b] for b in newest.column("block_id").to_pylist()], dtype=float)
    else:
        model = build_model(cfg, tokenizer, ctx.data_dir).to(device).eval()
        _, ppl = perplexity(model, newest, batch_size=cfg.eval_batch_size, device=device, rank=ctx.rank,
                            world_size=ctx.world_size)
    # the share passing is the quantile by construction (of these very scores): not a metric
    return ppl, {"verifier_threshold_ppl": curation.threshold(ctx.variant.regime, ppl)}


def scores(ctx, real, generated: list, tokenizer, device) -> tuple[dict | None, dict]:
    """What regimes.mix needs for this variant's regime (None for the uncurated ones), and figures
    about it for metrics.parquet."""
    return curation.curated(ctx.variant.regime, len(generated),
                            detector=lambda: detector_weights(real, generated, ctx.seed(5)),
                            verifier=lambda source: verifier_scores(ctx, generated[source], tokenizer, device))
