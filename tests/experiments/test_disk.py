"""What a unit leaves on disk against its experiment's disk(), the plan's estimate (submit --dry-run)."""
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.launch import estimate
from collapse_hpc.launch.debug import execute
from collapse_hpc.store import RunStore
from tests.launch.helpers import REPO


def _written(store, experiment, chain, job) -> int:
    exp = experiments.get(experiment)
    unit = store.unit_dir(experiment, chain.variant.name, exp.shape, job.index)
    return sum(f.stat().st_size for f in unit.rglob("*") if f.is_file())


def _ratios(tmp_path, section: dict) -> list[float]:
    """written / disk() of every unit of a run of `section` (one experiment)."""
    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "debug",
                                        "regimes": ["replace", "accumulate"], "data_dir": str(tmp_path / "data"),
                                        **section})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    chains = engine.plan(run)
    execute(store, run, chains)
    (name,) = section
    return [_written(store, name, c, job) / experiments.get(name).disk(run, c.variant, job.index)
            for c in chains for job in c.jobs]


def test_a_gaussian_part_writes_what_its_estimate_says(tmp_path):
    """8 float64 metrics a generation and replicate (3 more are derived where the report reads them): 6.8
    bytes each written (measured), 8 estimated."""
    ratios = _ratios(tmp_path, {"gaussian": {"generations": 200, "samples": [100], "replicates": 250,
                                             "chunk_replicates": 125}})
    assert len(ratios) == 4 and all(0.75 < r <= 1.0 for r in ratios), ratios


@pytest.mark.slow
def test_a_vae_generation_writes_what_its_estimate_says(tmp_path):
    """Its weights and its latents (float32 means in a float64 column: 4.25 bytes each written)."""
    ratios = _ratios(tmp_path, {"vae": {"epochs": 1, "capacity": 16, "latent": 20, "latent_samples": 2000,
                                        "eval_samples": 300, "classifier_epochs": 1, "classifier_hidden": 16,
                                        "grid_scale": 1}})
    assert len(ratios) == 4 and all(0.85 < r < 1.1 for r in ratios), ratios


def test_the_papers_disk_counts_every_experiment_and_the_report():
    """It counted the LM's weights alone (50.1 GB) and said nothing of the arrays' metrics, the VAE's models
    and latents or the report's long table of 728,885,400 rows, all estimated from the config alone."""
    run = experiments.load_config(str(REPO / "configs" / "paper.yaml"), [], None)
    est = estimate.estimate(run, engine.plan(run))
    # 4 sample sizes x 3 regimes x 5 seeds of 1000 generations x 1000 replicates x 8 metrics, 8 bytes each
    # (11 until var_hat, log_var_hat and w2_squared were derived where they are read: 5.3 GB)
    assert est.disk_of["gaussian"] == pytest.approx(60 * 1000 * 1000 * 8 * 8 / 1e9)
    assert set(est.disk_of) == {"lm", "gaussian", "gmm", "vae"}
    assert "disk: 61.7 GB (lm 51.2, gaussian 3.8, gmm 0.6, vae 0.3: model weights and result tables; the " \
           "report's long table 5.8)" in est.lines()


def test_a_paper_generation_that_keeps_no_weights_counts_its_shards_and_training_set():
    """Under keep_models: needed a generation after the first keeps no weights, only its tables: the
    estimate said 0 bytes; 37,700 blocks of 64 tokens as the training set and as the shards are ~11 MB."""
    run = experiments.load_config(str(REPO / "configs" / "paper.yaml"), ["lm.keep_models=needed"], None)
    chain = next(c for c in engine.plan(run) if c.experiment == "lm")
    assert 10e6 < experiments.get("lm").disk(run, chain.variant, 1) < 13e6
