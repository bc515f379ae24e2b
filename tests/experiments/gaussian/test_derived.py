"""var_hat, log_var_hat and w2_squared: derived where the report reads a part, no longer stored, with
the same report as when parts stored them."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc import cli, engine, experiments
from collapse_hpc.experiments.gaussian.run import DERIVED, METRICS, derived
from collapse_hpc.launch.debug import execute
from collapse_hpc.store import RunStore
from collapse_hpc.store.manifest import file_entry
from tests.helpers import edit_manifest

SECTION = {"generations": 6, "samples": [20], "replicates": 4, "chunk_replicates": 2}


def _run(root):
    run = experiments.config_from_dict({"name": "t", "generations": 6, "seeds": [0], "executor": "debug",
                                        "regimes": ["replace", "accumulate-subsample"], "gaussian": SECTION})
    store = RunStore(root)
    engine.open_run(store, run)
    execute(store, run, engine.plan(run))
    return sorted(store.root.glob("gaussian/*/part_*/metrics.parquet"))


def _as_stored_before(path):
    """The part as it was written while parts stored the three: record()'s operations on the same values,
    its manifest's entry of the file made anew (the unit folder kept: its binding holds)."""
    t = pq.read_table(path)
    sigma, w2 = t["sigma_hat"].to_numpy(), t["w2"].to_numpy()
    with np.errstate(divide="ignore"):
        old = {"var_hat": sigma**2, "log_var_hat": 2 * np.log(sigma), "w2_squared": w2**2}
    for name, values in old.items():
        t = t.append_column(name, pa.array(values))
    pq.write_table(t, path)
    edit_manifest(path.parent, lambda m: m["files"].update({"metrics.parquet": file_entry(path)}))


@pytest.mark.slow
def test_parts_store_none_of_them_and_the_report_is_the_one_of_parts_that_did(tmp_path):
    new, old = _run(tmp_path / "new" / "run"), _run(tmp_path / "old" / "run")
    for path in new:
        assert set(pq.read_schema(path).names) == {"generation", "replicate", "samples", *METRICS}
    for path in old:
        _as_stored_before(path)
    reports = {}
    for name in ("new", "old"):
        root = tmp_path / name / "run"
        assert cli.main(["aggregate", str(root)]) == 0
        reports[name] = root / "report"
    tidy = {k: pd.read_parquet(r / "metrics.parquet") for k, r in reports.items()}
    assert set(DERIVED) <= set(tidy["new"]["metric"])
    pd.testing.assert_frame_equal(tidy["new"], tidy["old"], check_exact=True)
    assert (reports["new"] / "summary.csv").read_bytes() == (reports["old"] / "summary.csv").read_bytes()
    figures = sorted(p.name for p in (reports["new"] / "figures").glob("*.png"))
    assert figures and figures == sorted(p.name for p in (reports["old"] / "figures").glob("*.png"))
    for name in figures:
        assert (reports["new"] / "figures" / name).read_bytes() == (reports["old"] / "figures" / name).read_bytes()


def test_a_tiny_sigma_keeps_its_finite_log_variance():
    # log σ̂² of a σ̂ whose square underflows is -inf; 2 log σ̂, as parts stored it, is finite
    sigma = np.array([1.0, 1e-160, 1e-200, 0.0])
    out = derived({"sigma_hat": sigma, "w2": sigma})
    assert out["var_hat"][2] == 0 and np.isfinite(out["log_var_hat"][:3]).all()
    assert out["log_var_hat"][2] == 2 * np.log(1e-200) and out["log_var_hat"][3] == -np.inf
    # an older run's own columns are kept, its sigma2_hat standing for var_hat
    assert derived({"sigma_hat": sigma, "sigma2_hat": sigma**2, "log_var_hat": sigma}) == {}
