"""How each generation's training data is assembled from real and generated data.

- replace: the previous generation's samples only, except that a fraction `keep_fraction`
  of the real data is kept (the paper's generate_percentage: p = 0 and p = 0.1);
- accumulate: real data plus the samples of every earlier generation (Gerstgrasser et al. 2024);
- accumulate-subsample: the same pool as accumulate, subsampled to the size of the real data
  (Kazdan/Schaeffer et al., "Collapse or Thrive");
- detector-resample: the same pool, resampled (with replacement) to the size of the real data with
  importance weights from a machine-text detector (Drayson & Lampos 2025);
- verifier-filter: the previous generation's samples that pass a verifier (score at most the
  `verifier_quantile` quantile of that generation's scores, lower is better), refilled to the
  size of the real data by drawing passing items again (Feng et al. 2024).
The last two need per-item scores only the experiment can give (SCORED, scores.py): an experiment
that supports them lists them in its `scored_regimes` and hands mix() the scores.

Experiments mix pools of their own items (points, token blocks, images); this package only
decides which items of which pool (mix.py), and holds an in-memory recursion's pools (pool.py),
so every experiment mixes the same way.

A regime may also carry overrides of an experiment's config keys, e.g.
`{name: replace, keep_fraction: 0.1, lm: {epochs: 10}}` (the paper trains p = 0.1 for 10 epochs):
only that experiment's variants of this regime see them (config.RunConfig.section_for); other
experiments ignore them. config.py checks them against the experiment's section.
"""
from collapse_hpc.regimes.mix import REAL, kept, mix, slot_order
from collapse_hpc.regimes.pool import Pool, items_held, pooled
from collapse_hpc.regimes.regime import KINDS, NEWEST_ONLY, SCORED, VALUES, Regime, legend, order, values_of

__all__ = ["KINDS", "NEWEST_ONLY", "REAL", "SCORED", "VALUES", "Pool", "Regime", "items_held", "kept", "legend", "mix",
           "order", "pooled", "slot_order", "values_of"]
