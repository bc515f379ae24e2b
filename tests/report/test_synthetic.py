"""The synthetic runs the report's tests build: what they hold, and that a paper-shaped one builds quickly."""
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from collapse_hpc.experiments.gaussian.theory import tail_mass, w2
from tests.report import synthetic


def _recursion(generations: int, replicates: int, ns) -> pd.DataFrame:
    """The single-Gaussian recursion as a loop, a replicate and a generation at a time: each generation fits its
    data (accumulate: every sample so far) and draws n from the fit; the columns gaussian.run writes."""
    rng, rows = np.random.default_rng(0), []
    for regime in ("replace-p0", "accumulate"):
        for n in ns:
            for r in range(replicates):
                data = pool = rng.normal(0, 1, n)
                for g in range(generations):
                    fit = pool if regime == "accumulate" else data
                    mu, sigma = fit.mean(), fit.std()
                    data = rng.normal(mu, sigma, n)
                    rows.append({"variant": f"{regime}-samples{n}-s0", "generation": g, "replicate": r, "samples": n,
                                 "mu_hat": mu, "sigma_hat": sigma, "mu_error": abs(mu), "sigma_error": abs(1 - sigma),
                                 # [mu]: an array's square as the run's (x * x); a float's is libm's pow, an ulp apart
                                 "w2": w2(0, 1, [mu], [sigma])[0], "sample_variance": data.var(),
                                 **{f"tail_mass_{k}sigma": float(tail_mass(0, 1, mu, sigma, k)) for k in (2, 3)}})
                    pool = np.concatenate([pool, data])
    return pd.DataFrame(rows).astype({"generation": np.int32, "replicate": np.int32, "samples": np.int32})


def test_the_gaussian_run_is_the_recursion_a_loop_draws(tmp_path):
    """Drawn at once, a replicate's chain takes the loop's draws in the loop's order: replace's fits are the loop's
    to the bit, accumulate's (the pool's mean and sd merged a generation at a time) to 1e-12."""
    synthetic.gaussian(tmp_path, generations=6, replicates=5, ns=(2, 10, 100))
    expected = _recursion(6, 5, (2, 10, 100))
    for variant, want in expected.groupby("variant", sort=False):
        got = pd.read_parquet(tmp_path / "gaussian" / variant / "part_000" / "metrics.parquet")
        want = want.drop(columns="variant").reset_index(drop=True)
        assert list(got.columns) == list(want.columns)
        assert got[["generation", "replicate", "samples"]].equals(want[["generation", "replicate", "samples"]])
        values = [c for c in want.columns if got[c].dtype == float]
        if variant.startswith("replace"):
            assert got[values].equals(want[values]), variant
        else:
            assert np.allclose(got[values], want[values], rtol=1e-12, atol=1e-15), variant


def test_a_paper_shaped_gaussian_run_builds_in_seconds(tmp_path):
    """1000 generations of n = 1000 (the paper's) took 2 s a replicate, a generation at a time in Python; drawn a
    block of replicates at a time, 20 replicates take about a second."""
    start = time.perf_counter()
    synthetic.gaussian(tmp_path, generations=1000, replicates=20, ns=(1000,))
    took = time.perf_counter() - start
    assert took < 15, f"{took:.1f} s"
    written = tmp_path / "gaussian" / "accumulate-samples1000-s0" / "part_000" / "metrics.parquet"
    assert len(pd.read_parquet(written)) == 20 * 1000


@pytest.mark.parametrize("replicates", [1, 7])
def test_a_block_of_replicates_draws_as_one_at_a_time(monkeypatch, tmp_path, replicates):
    """Replicates drawn in blocks (a run too large to draw at once) are the replicates drawn all at once."""
    whole = np.concatenate(synthetic._fits(np.random.default_rng(3), True, 4, 9, replicates), axis=1)
    monkeypatch.setattr(synthetic, "DRAWS", 1)  # a block of one replicate
    assert np.array_equal(np.concatenate(synthetic._fits(np.random.default_rng(3), True, 4, 9, replicates), axis=1),
                          whole)


def test_every_synthetic_table_holds_only_columns_its_experiment_declares(tmp_path):
    """A synthetic column the experiment does not write (abs_mu_err beside gaussian's mu_error) showed in the report
    under its raw name: each synthetic metrics.parquet holds only declared columns, of the declared types, and the
    gaussian's every column its run writes."""
    from collapse_hpc import experiments

    root = synthetic.full_run(tmp_path / "full", small=True)
    run = experiments.load_config(root / "config.yaml", needs_profile=False)
    seen = set()
    for name in ("gaussian", "gmm", "lm", "vae"):
        schema = experiments.get(name).metrics_schema(run.section(name))
        for table in sorted((root / name).glob("*/*/metrics.parquet")):
            found = schema.problems(pq.read_table(table))
            assert [p for p in found if name == "gaussian" or not p.startswith("lacks")] == [], table
            seen.add(name)
    assert seen == {"gaussian", "gmm", "lm", "vae"}
