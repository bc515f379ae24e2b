"""The gmm experiment through the engine, in-process: metrics, snapshots, manifests, determinism."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch.debug import execute
from collapse_hpc.store import RunStore
from collapse_hpc.verify import verify_run
from tests.helpers import holds, readme_outputs, traced_peak_and_estimate

SECTION = {"generations": 4, "samples": 120, "replicates": 3, "chunk_replicates": 2, "snapshot_generations": [0, 2, -1],
           "snapshot_replicates": 2}


def _run(tmp_path, name, regimes=("replace", "replace:0.1"), **gmm):
    run = experiments.config_from_dict({"name": "t", "generations": 4, "seeds": [0], "regimes": list(regimes),
                                        "executor": "debug", "gmm": {**SECTION, **gmm}})
    store = RunStore(tmp_path / name)
    engine.open_run(store, run)
    chains = engine.plan(run)
    execute(store, run, chains)
    return store, chains


def test_runs_through_the_engine(tmp_path):
    store, chains = _run(tmp_path, "a", regimes=("replace", "replace:0.1", "accumulate", "accumulate-subsample"))
    assert [len(c.jobs) for c in chains] == [2, 2, 2, 2]  # 3 replicates in parts of 2
    assert verify_run(store.root) == 0
    for chain in chains:
        folder = store.variant_dir("gmm", chain.variant.name)
        table = pq.read_table(folder / "part_000" / "metrics.parquet")
        assert table.num_rows == 4 * 2
        assert table.column("generation").to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert table.column("replicate").to_pylist()[:2] == [0, 1]
        assert table.column("l2").to_pylist()[:2] == [0.0, 0.0]  # generation 0 is the reference
        for name in ("c0_weight", "c1_cov_eig1", "c0_q99_x", "total_variance", "sample_variance"):
            assert table.schema.field(name).type == "double"
        last = pq.read_table(folder / "part_001" / "metrics.parquet")
        assert set(last.column("replicate").to_pylist()) == {2}
        snaps = pq.read_table(folder / "part_000" / "snapshots.parquet").to_pandas()
        # the real data (generation -1) and the 120 points drawn from each snapshot generation's fit
        assert sorted(snaps.groupby(["replicate", "generation"]).size().items()) == [
            ((r, g), 120) for r in (0, 1) for g in (-1, 0, 2, 3)]
        assert not (folder / "part_001" / "snapshots.parquet").exists()  # replicate 2: no snapshots
        assert [f for f in readme_outputs()["gmm"] if not holds(folder / "part_000", f)] == []  # README, Outputs


def test_snapshot_g_holds_what_generation_g_drew_as_the_papers_panel_g(tmp_path):
    """The notebook's (and the paper's) panel m plots gmm.sample(N) of the m-th fit, beside a panel of the
    real data: under replace that is the training data of generation m + 1, and generation 0's training
    data is the real data. snapshot_points: training keeps each generation's own training data."""
    def snapshots(name, points):
        store, chains = _run(tmp_path, name, regimes=("replace",), snapshot_generations=[0, 1, 2, 3],
                             snapshot_points=points)
        folder = store.variant_dir("gmm", chains[0].variant.name) / "part_000"
        snaps = pq.read_table(folder / "snapshots.parquet").to_pandas()
        return {(r, g): grp[["x", "y"]].to_numpy() for (r, g), grp in snaps.groupby(["replicate", "generation"])}

    drawn, training = snapshots("drawn", "drawn"), snapshots("training", "training")
    assert sorted(drawn) == [(r, g) for r in (0, 1) for g in (-1, 0, 1, 2, 3)]
    assert sorted(training) == [(r, g) for r in (0, 1) for g in (0, 1, 2, 3)]
    for r in (0, 1):
        np.testing.assert_array_equal(drawn[r, -1], training[r, 0])  # the real data
        for g in (0, 1, 2):
            np.testing.assert_array_equal(drawn[r, g], training[r, g + 1])
        assert not np.array_equal(drawn[r, 0], training[r, 0])


def test_paper_config_draws_the_papers_gmm_panels():
    from pathlib import Path

    run = experiments.load_config(Path(__file__).parents[3] / "configs" / "paper.yaml")
    assert run.section("gmm").snapshot_points == "drawn"


def test_same_seed_gives_bit_identical_parquet(tmp_path):
    a, chains = _run(tmp_path, "a", regimes=("replace:0.1",))
    b, _ = _run(tmp_path, "b", regimes=("replace:0.1",))
    for name in ("metrics.parquet", "snapshots.parquet"):
        rel = f"gmm/{chains[0].variant.name}/part_000/{name}"
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes()
    c, _ = _run(tmp_path, "c", regimes=("replace:0.1",), seeds=[1])
    rel = "gmm/replace-p0.1-s1/part_000/metrics.parquet"
    first = a.root / f"gmm/{chains[0].variant.name}/part_000/metrics.parquet"
    assert (c.root / rel).read_bytes() != first.read_bytes()


@pytest.mark.parametrize("bad, message", [
    ({"components": 200}, "samples \\(120\\) must be at least 2 per component, 400 for components 200"),
    # a component of one point is a point mass (variance reg_covar) from generation 0: refused, as one of 120
    ({"components": 61}, "samples \\(120\\) must be at least 2 per component, 122 for components 61"),
    ({"samples": 1, "components": 1}, "gmm: samples \\(1\\) must be at least 2 per component, 2 for components 1"),
    ({"tol": -1e-5}, "gmm.tol: must be > 0"),
    ({"covariance": "fulll"}, "did you mean 'full'"),
    ({"init_data": "three-mode"}, "gmm.init_data: must be one of"),
    ({"replicates": 0}, "gmm.replicates: must be >= 1"),
    # 1e300 (or 1e9) apart passed, made the run folder and failed in the part on 'an ill-defined covariance
    # ... increase reg_covar or samples': float64's EM cannot resolve a unit spread beside such distances
    ({"init_data": "two-mode", "separation": 1e9}, "gmm.separation: must be <= 1000000"),
])
def test_bad_parameters_give_one_clear_error(bad, message):
    with pytest.raises(UserError, match=message):
        experiments.config_from_dict({"gmm": {**SECTION, **bad}})


def test_the_widest_separation_allowed_still_fits(tmp_path):
    store, chains = _run(tmp_path, "wide", regimes=("replace",), init_data="two-mode", separation=1e6)
    table = pq.read_table(store.variant_dir("gmm", chains[0].variant.name) / "part_000" / "metrics.parquet")
    assert table.num_rows > 0 and np.isfinite(table["l2"].to_numpy()).all()


@pytest.mark.parametrize("init_data", ["blob", "two-mode"])
def test_tail_shares_are_those_of_the_samples_the_next_generation_trains_on(tmp_path, init_data):
    # under replace (keep 0) generation g+1 trains on exactly the points generation g drew: generation g's
    # snapshot holds them (snapshot_points: drawn), and its recorded share is counted over them directly
    from collapse_hpc.experiments.gmm.recursion import real_modes

    store, chains = _run(tmp_path, init_data, regimes=("replace",), init_data=init_data, separation=3.0,
                          snapshot_generations=[0, 2])
    part = store.variant_dir("gmm", chains[0].variant.name) / "part_000"
    table = pq.read_table(part / "metrics.parquet").to_pandas().set_index(["generation", "replicate"])
    snaps = pq.read_table(part / "snapshots.parquet").to_pandas()
    modes = real_modes(init_data, 3.0)
    for g, r in ((0, 0), (0, 1), (2, 0), (2, 1)):
        pts = snaps[(snaps["generation"] == g) & (snaps["replicate"] == r)][["x", "y"]].to_numpy()
        far = np.min([np.hypot(*(pts - m).T) for m in modes], axis=0)
        for k in (2, 3):
            assert table.loc[(g, r), f"tail_share_{k}sigma"] == (far > k).mean()


@pytest.mark.parametrize("executor, cached, said", [("local", False, True), ("local", True, False),
                                                     ("slurm", False, False)])
def test_a_local_run_says_the_first_fit_compiles(monkeypatch, caplog, executor, cached, said):
    # a fresh environment's first gmm run showed a bar at 0 for minutes, looking hung
    from collapse_hpc.experiments.gmm import em

    monkeypatch.setattr(em, "compiled", lambda: cached)
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": executor, "gmm": SECTION,
                                        "profile": "slurm/local.yaml"})
    with caplog.at_level("INFO", logger="collapse_hpc"):
        experiments.get("gmm").check(run)
    assert ("the first fit compiles the EM kernels" in caplog.text) == said


def test_snapshot_generations_beyond_the_run_are_named(caplog):
    # they were dropped silently: a run of 5 generations asked for [7] and drew no snapshot
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug",
                                        "gmm": {**SECTION, "snapshot_generations": [0, 7, -1, -9]}})
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        experiments.get("gmm").check(run)
    assert ("gmm.snapshot_generations [7, -9]: beyond the run's 4 generations (0..3, or -1..-4 counted back from "
            "the last); no snapshots of them") in caplog.text


def test_snapshot_generations_a_regime_overrides_beyond_the_run_are_named(caplog):
    # a regime's own [-100] (or [30]) in a run of 4 generations drew no snapshot of them without a word: the
    # check read the gmm section alone
    regimes = [{"name": "replace", "gmm": {"snapshot_generations": [0, -100, 30]}}, {"name": "accumulate"}]
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug", "regimes": regimes,
                                        "gmm": {**SECTION, "snapshot_generations": [0]}})
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        experiments.get("gmm").check(run)
    assert "regimes[0].gmm.snapshot_generations [-100, 30]: beyond the run's 4 generations" in caplog.text
    assert caplog.text.count("beyond the run's") == 1


def test_the_default_snapshot_generations_are_not_named_beyond_a_short_run(caplog):
    # the default [0, 1, 10, 100, -1] warned of 100 in every run of under 101 generations that left it unset
    section = {k: v for k, v in SECTION.items() if k != "snapshot_generations"}
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "executor": "debug", "gmm": section})
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        experiments.get("gmm").check(run)
    assert "snapshot_generations" not in caplog.text


@pytest.mark.parametrize("regime", ["replace", "replace:0.1", "accumulate", "accumulate-subsample"])
def test_a_part_holds_no_more_memory_than_its_estimate(tmp_path, regime):
    """The estimate counted the points drawn (2 a point) beside the pools and the metrics; a generation's
    fit holds some 17 values a training point more (the centred copy, the features, k-means' distances …),
    accumulate's on its whole pool, so a part 4 to 10 times the estimate passed the memory check. The
    allocations of numpy and of the compiled fits (numba's, traced as well) within the estimate."""
    _run(tmp_path, "warm")  # the modules a part imports and the compiled kernels, which tracemalloc would count
    peak, estimate = traced_peak_and_estimate(tmp_path / "m", {  # one fit at a time
        "regimes": [regime], "gmm": {**SECTION, "generations": 3, "samples": 400_000, "replicates": 1,
                                     "chunk_replicates": 1, "max_iter": 20}})
    assert 0.5 * estimate < peak <= estimate, (peak, estimate)


def test_an_accumulate_part_s_whole_estimate_stays_within_pool_memory_gib():
    """Parts were sized by their pools alone, and under accumulate a fit holds about 10 times its pool: a
    part sized for 0.05 GiB of pools held some 0.5. Now a part is as large as its whole estimate allows."""
    gmm = experiments.get("gmm")
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "regimes": ["accumulate", "replace"],
                                        "executor": "debug", "gmm": {**SECTION, "generations": 10, "samples": 2_000,
                                                                     "replicates": 64, "chunk_replicates": 64,
                                                                     "pool_memory_gib": 0.05}})
    accumulate, replace = (c.variant for c in engine.plan(run) if c.experiment == "gmm")
    size = gmm.part_size(run, accumulate)
    assert 1 < size < 0.05 * 2**30 / gmm.pool_bytes(run, accumulate) / 5  # its pools alone allowed 167
    assert gmm.memory(run, accumulate) <= 0.05 * 2**30 < gmm.part_memory(run, accumulate, size + 1)
    assert gmm.part_size(run, replace) == 64 and gmm.memory(run, replace) <= 0.05 * 2**30


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_a_chunk_asked_for_that_no_machine_holds_is_refused_at_once(regime, monkeypatch):
    """The budget shrinks a part for what its regime keeps, not the chunk the config asks for: 10^7 replicates
    of 2050 generations in one task are refused in one line (split by their whole estimate, they were
    1933 parts, planned and run), and sizing them takes a few estimates, not one a replicate. Counted, not
    timed: the check's first call imports the experiment's modules, 5.8-10 s on a busy 2-core machine."""
    gmm = type(experiments.get("gmm"))
    estimates, real = [], gmm.part_memory

    def counted(self, run, variant, size, regime=None):
        estimates.append(size)
        assert len(estimates) <= 100, "sizing a part takes an estimate a replicate"
        return real(self, run, variant, size, regime)

    monkeypatch.setattr(gmm, "part_memory", counted)
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "regimes": [regime], "executor": "debug",
                                        "gmm": {"replicates": 10_000_000, "chunk_replicates": 10_000_000}})
    with pytest.raises(UserError, match=r"one task of .* would hold about \S+ GiB in memory, more than 64 GiB"):
        engine.check(run, "c.yaml")
    assert 0 < len(estimates) <= 100  # a bisection of 10^7 sizes (24 estimates) for each of its callers


def test_snapshot_figure_draws_the_real_data_then_each_fits_draws(tmp_path):
    """The report's panels as the paper's: "real data" first, then generation g's draws, and the caption
    says which points it shows."""
    from tests.report.test_figures import _context
    from collapse_hpc.experiments.gmm.figures import gmm_snapshots

    store, _ = _run(tmp_path, "fig", regimes=("replace",), snapshot_generations=[0, 2])
    fig, caption = gmm_snapshots(_context(store.root, "gmm"))
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["real data", "generation 0", "generation 2"]
    assert "the points drawn from each generation's fit" in caption


def test_a_share_of_real_points_that_rounds_to_none_is_refused():
    # replace:0.1 of 4 points kept round(0.4) = 0: its chains were replace's own, drawn as "keep 10%"
    run = experiments.config_from_dict({"name": "t", "seeds": [0], "regimes": ["replace", "replace:0.1"],
                                        "executor": "debug", "gmm": {**SECTION, "samples": 4, "components": 1}})
    with pytest.raises(UserError, match=r"gmm replace-p0.1-s0: keep_fraction 0.1 of 4 points keeps round\(0.1 x 4\) = "
                                        r"0 real points, the same chain as keep_fraction 0.*gmm.samples of at least 6"):
        experiments.get("gmm").check(run)


def test_a_part_looks_at_numba_s_cache_before_its_first_fit(tmp_path, monkeypatch):
    """A kernel's cached file cut short failed every part's first fit (test_cache); each part now empties such a
    cache first."""
    from collapse_hpc.experiments.gmm import cache, em

    order = []
    monkeypatch.setattr(cache, "heal", lambda: order.append("heal") or [])
    fit = em.fit
    monkeypatch.setattr(em, "fit", lambda *a, **k: order.append("fit") or fit(*a, **k))
    _run(tmp_path, "a", regimes=("replace",), replicates=1, chunk_replicates=1, generations=1)
    assert order[:2] == ["heal", "fit"]
