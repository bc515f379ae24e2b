"""The gaussian experiment through the engine, in-process: one variant per sample size."""
import json

import pyarrow.parquet as pq
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch.debug import execute
from collapse_hpc.store import RunStore
from collapse_hpc.verify import verify_run
from tests.helpers import traced_peak_and_estimate

SECTION = {"generations": 6, "samples": [20, 50], "replicates": 5, "chunk_replicates": 3}


def _run(tmp_path, name, **section):
    run = experiments.config_from_dict({"name": "t", "generations": 6, "seeds": [0], "executor": "debug",
                                        "regimes": ["replace", "accumulate", "accumulate-subsample"],
                                        "gaussian": {**SECTION, **section}})
    store = RunStore(tmp_path / name)
    engine.open_run(store, run)
    chains = engine.plan(run)
    execute(store, run, chains)
    return store, chains


def test_runs_through_the_engine(tmp_path):
    store, chains = _run(tmp_path, "a")
    assert sorted(c.variant.name for c in chains) == sorted(
        f"{r}-samples{n}-s0" for r in ("replace-p0", "accumulate", "accumulate-subsample") for n in (20, 50))
    assert all(len(c.jobs) == 2 for c in chains)
    assert verify_run(store.root) == 0
    for chain in chains:
        folder = store.variant_dir("gaussian", chain.variant.name)
        t = pq.read_table(folder / "part_000" / "metrics.parquet").to_pandas()
        assert len(t) == 6 * 3 and set(t["samples"]) == {chain.variant.settings["samples"]}
        assert list(t.columns[:3]) == ["generation", "replicate", "samples"]
        assert (t["mu_error"] == t["mu_hat"].abs()).all() and (t["sigma_hat"] > 0).all()
        t1 = pq.read_table(folder / "part_001" / "metrics.parquet").to_pandas()
        assert set(t1["replicate"]) == {3, 4}
        # the table's metadata carries the regime as values, not only its label
        meta = json.loads(pq.read_schema(folder / "part_000" / "metrics.parquet").metadata[b"regime"])
        assert meta == chain.variant.regime.record() and meta["kind"] == chain.variant.regime.name


def test_same_seed_gives_bit_identical_parquet(tmp_path):
    a, chains = _run(tmp_path, "a", samples=[20])
    b, _ = _run(tmp_path, "b", samples=[20])
    for chain in chains:
        rel = f"gaussian/{chain.variant.name}/part_001/metrics.parquet"
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes()


@pytest.mark.parametrize("bad, message", [
    ({"samples": [1]}, "gaussian.samples: must be >= 2"),
    ({"estimator": "bayes"}, "gaussian.estimator: must be one of"),
    ({"sigma": 0}, "gaussian.sigma: must be > 1e-100"),
    ({"samples": []}, "at least one sample size"),
])
def test_bad_parameters_give_one_clear_error(bad, message):
    with pytest.raises(UserError, match=message):
        experiments.config_from_dict({"gaussian": {**SECTION, **bad}})


@pytest.mark.parametrize("key, value", [("sigma", 1e300), ("sigma", 1e-320), ("mu", -1e300)])
def test_scales_that_overflow_float64_are_refused(key, value):
    # sigma 1e300 gave NaN metrics and an OverflowError in the W2 figure; 1e-320 a log variance of -inf
    from collapse_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match=f"gaussian.{key}: must be"):
        experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug", "gaussian": {key: value}})


def test_a_sigma_float64_cannot_resolve_around_mu_is_refused(tmp_path):
    # mu 1e90 with sigma 1e-90: every draw rounded to mu, so sigma_hat was 0 at generation 0 (a collapse of
    # rounding, not of the recursion) and the error-of-the-mean figure failed on its all-zero log axis
    from collapse_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gaussian: sigma: 1e-90 is below what float64 resolves around mu = "
                                          r"1e\+90 .*give sigma of at least 1e\+81"):
        experiments.config_from_dict({"gaussian": {**SECTION, "mu": 1e90, "sigma": 1e-90}})
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug",
                                        "gaussian": {**SECTION, "mu": 1e9, "sigma": 1.0}})  # resolved: runs
    store = RunStore(tmp_path / "run")
    execute(store, run, engine.open_run(store, run))
    metrics = pq.read_table(next(store.root.glob("gaussian/*/part_000/metrics.parquet"))).to_pandas()
    assert (metrics.loc[metrics["generation"] == 0, "sigma_hat"] > 0.1).all(), metrics


@pytest.mark.parametrize("regime", ["replace", "replace:0.1", "accumulate", "accumulate-subsample"])
def test_a_part_holds_no_more_memory_than_its_estimate(tmp_path, regime):
    """The estimate counted one (replicates, n) array beside the pool; a generation holds up to 4.5 more
    at its peak (the training copy, its centred square, the draw …), so a part the size of the machine
    passed the memory check and was killed. numpy's allocations (tracemalloc) within the estimate."""
    _run(tmp_path, "warm")  # the modules a part imports, which tracemalloc would count, imported before
    peak, estimate = traced_peak_and_estimate(tmp_path / "m", {
        "regimes": [regime], "gaussian": {"generations": 4, "samples": [500_000], "replicates": 2,
                                          "chunk_replicates": 2}})
    assert 0.5 * estimate < peak <= estimate, (peak, estimate)


def test_an_accumulate_part_is_sized_by_its_whole_estimate():
    """Under accumulate-subsample a replicate's pool is every generation's draws, and beside it a part holds
    its metrics table and working arrays: sized by the pools alone, a part of a 4 MiB budget held 4.6 MiB."""
    gaussian = experiments.get("gaussian")
    run = experiments.config_from_dict({"name": "t", "seeds": [0],
                                        "regimes": ["accumulate-subsample"], "executor": "debug",
                                        "gaussian": {**SECTION, "generations": 200, "samples": [100], "replicates": 64,
                                                     "chunk_replicates": 64, "pool_memory_gib": 4 / 1024}})
    variant = next(c.variant for c in engine.plan(run) if c.experiment == "gaussian")
    size = gaussian.part_size(run, variant)
    assert 1 < size < 4 * 2**20 / gaussian.pool_bytes(run, variant)
    assert gaussian.memory(run, variant) <= 4 * 2**20  # the pools alone allowed 26 replicates: 4.6 MiB
    assert gaussian.part_memory(run, variant, size + 1) > 4 * 2**20


@pytest.mark.parametrize("share, samples, kept, least", [(0.1, 2, 0, 6), (0.9, 4, 4, 5)])
def test_a_share_of_real_points_that_rounds_to_none_or_all_is_refused(share, samples, kept, least):
    # replace:0.1 of n = 2 kept round(0.2) = 0 real points: the chain drew replace's own numbers under "keep 10%"
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug", "regimes": [f"replace:{share}"],
                                        "gaussian": {**SECTION, "samples": [samples, 50]}})
    with pytest.raises(UserError, match=rf"gaussian replace-p{share}-samples{samples}-s0: keep_fraction {share} of "
                                        rf"{samples} points keeps round\({share} x {samples}\) = {kept} real points.*"
                                        rf"gaussian.samples of at least {least}"):
        experiments.get("gaussian").check(run)
    experiments.get("gaussian").check(experiments.config_from_dict(
        {"name": "t", "seeds": [0], "executor": "debug", "regimes": [f"replace:{share}"],
         "gaussian": {**SECTION, "samples": [least, 50]}}))
