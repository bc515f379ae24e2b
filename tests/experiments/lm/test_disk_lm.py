"""What an LM generation leaves on disk against the plan's estimate (LanguageModel.disk, submit --dry-run)."""
import pytest

from collapse_hpc import engine, experiments
from tests.experiments.lm.test_chain import LM, _execute, _run


def _written(unit) -> int:
    return sum(f.stat().st_size for f in unit.rglob("*") if f.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["replace:0", "accumulate"])
def test_a_generation_that_keeps_no_weights_still_writes_what_its_estimate_says(tmp_path, lm_data_dir, regime):
    """Under keep_models: needed a later generation keeps only its tables (shards, training set, scores):
    the estimate counted weights alone, 0 bytes for it. Its tables are counted now (an accumulate
    generation's training set grows)."""
    blocks = dict(LM, max_train_blocks=256, block_size=32, num_beams=1)
    store, run = _run(tmp_path, lm_data_dir, generations=3, regimes=(regime,), keep_models="needed", **blocks)
    assert _execute(store, run)["done"] == 3
    lm = experiments.get("lm")
    (chain,) = engine.plan(run)
    for job in chain.jobs[1:]:
        unit = store.unit_dir("lm", chain.variant.name, "chain", job.index)
        assert not (unit / "model").exists()
        ratio = _written(unit) / lm.disk(run, chain.variant, job.index)
        assert 0.7 < ratio < 1.3, (job.index, ratio)
