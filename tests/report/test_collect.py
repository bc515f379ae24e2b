"""Reading run folders: tidy long table, manifests checked, unfinished units left out."""
import json

import pandas as pd
import pyarrow as pa
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.report import collect, longform, tables
from collapse_hpc.store.atomic import sha256_file
from tests.helpers import edit_manifest
from tests.report import synthetic


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "r1"
    synthetic.write_config(root, {"gmm": {"generations": 3}, "lm": {"generations": 4}})
    synthetic.gmm(root, generations=3, parts=2, replicates=2)
    synthetic.lm(root, generations=4, seeds=(0,), done={"replace-p0-s0": 2})
    return root


def test_long_form_has_every_value_once(run):
    data = collect.load_run(run)
    df = collect.tidy([data])
    assert list(df.columns[:8]) == ["run", "experiment", "variant", "regime", "kind", "keep_fraction",
                                    "verifier_quantile", "seed"]
    assert list(df.columns[-4:]) == ["replicate", "generation", "metric", "value"]
    gmm = df[df["experiment"] == "gmm"]
    # 2 regimes x 2 parts x 2 replicates x 3 generations, per metric
    assert set(gmm["metric"]) == {"l2_squared", "total_variance", "c0_cov_trace", "c1_cov_trace", "c0_q95_x",
                                  "tail_share_2sigma", "tail_share_3sigma"}
    assert len(gmm[gmm["metric"] == "c0_q95_x"]) == 2 * 2 * 2 * 3
    assert sorted(gmm["replicate"].unique()) == [0, 1, 2, 3]
    assert set(gmm["regime"]) == {"replace-p0", "accumulate"} and set(gmm["seed"]) == {0}


def test_the_report_reads_a_runs_config_once(run, monkeypatch):
    """load_run read and parsed config.yaml (and run.json) once for itself, then again for the plan's chains and
    once more for the hash the plan was made under: one read each."""
    from collapse_hpc import yamlfile

    reads, read = [], yamlfile.read
    monkeypatch.setattr(yamlfile, "read", lambda path, *a: reads.append(path) or read(path, *a))
    data = collect.load_run(run)
    assert reads == [run / "config.yaml"] and data.left_out == []


def test_the_report_reads_a_runs_job_records_once(run, monkeypatch):
    """load_run read jobs.json for the job states, then again for the experiments the run left out: one read."""
    from collapse_hpc.launch import records

    (run / "jobs.json").write_text(json.dumps({"units": {}}))
    reads, read = [], records.read_text
    monkeypatch.setattr(records, "read_text", lambda path, *a, **k: reads.append(path) or read(path, *a, **k))
    data = collect.load_run(run)
    assert reads == [run / "jobs.json"] and data.jobs == {} and data.left_out == []


def test_a_gmm_run_of_per_component_variances_reads_their_sum_as_total_variance():
    """A run that recorded per-component variances only (trace_0, trace_1) shows their sum as total_variance."""
    from collapse_hpc.experiments.gmm import EXPERIMENT

    old = pd.DataFrame({"generation": [0, 1], "trace_0": [1.0, 0.5], "trace_1": [0.9, 0.25]})
    assert EXPERIMENT.derive(old)["total_variance"].tolist() == [1.9, 0.75]
    assert "total_variance" not in EXPERIMENT.derive(old.drop(columns=["trace_0", "trace_1"]))


def test_unfinished_generations_are_missing_not_zero(run):
    data = collect.load_run(run)
    lm = collect.tidy([data]).query("experiment == 'lm'")
    # replace-p0-s0 finished generations 0 and 1; generation 2 has files but no manifest
    assert sorted(lm[lm["variant"] == "replace-p0-s0"]["generation"].unique()) == [0, 1]
    assert sorted(lm[lm["variant"] == "replace-p0.1-s0"]["generation"].unique()) == [0, 1, 2, 3]
    header, rows = tables.completeness([data])
    row = next(r for r in rows if r[1] == "lm" and r[2] == "replace-p0-s0")
    assert row[header.index("finished units")] == "2" and row[header.index("unfinished")] == "1"
    # gen_003 has no folder: the chain stopped before it; finished + unfinished + not started = planned
    assert row[header.index("planned")] == "4" and row[header.index("not started")] == "1"


def test_generations_past_a_shortened_plan_are_not_the_plans_nor_negatively_waiting(tmp_path):
    # run with 4 generations, then again with --generations 2: the plan says 2, the folder holds 4; as in
    # verify and status, the table counts the plan's 2 and a note line the other 2
    root = tmp_path / "r"
    synthetic.write_config(root, {"lm": {}}, generations=2)
    synthetic.lm(root, generations=4, seeds=(0,))
    runs = [collect.load_run(root)]
    header, rows = tables.completeness(runs)
    row = next(r for r in rows if r[2] == "replace-p0-s0")
    assert row[header.index("planned")] == "2" and row[header.index("finished units")] == "2"
    assert row[header.index("not started")] == "0" and row[header.index("unfinished")] == "0"
    (note,) = tables.beyond_plan(runs)
    assert note.startswith("2 finished generations beyond the plan") and "2 of lm (past its 2)" in note, note


def test_tampered_file_is_left_out_and_reported(run):
    unit = run / "gmm" / "accumulate-s0" / "part_001"
    path = unit / "metrics.parquet"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different content: only the sha256 notices
    path.write_bytes(bytes(data))
    d = collect.load_run(run)
    df = collect.tidy([d])
    assert not ((df["variant"] == "accumulate-s0") & (df["replicate"] >= 2)).any()
    assert any("sha256 mismatch" in p for p in tables.problems([d]))


@pytest.mark.parametrize("name", ["samples.png", "latents.parquet"])
def test_a_damaged_file_a_figure_reads_makes_its_unit_unfinished_before_anything_is_read(tmp_path, name):
    # whichever the report reads first, tables or figures, the unit is one thing: unfinished, and said why
    root = tmp_path / "r"
    synthetic.write_config(root, {"vae": {"generations": 3}})
    synthetic.vae(root, generations=3, finished=3)
    path = root / "vae" / "replace-p0-s0" / "gen_001" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    d = collect.load_run(root)
    line = next(u for u in tables.unfinished([d]) if u.startswith("vae/replace-p0-s0:"))
    assert line.startswith("vae/replace-p0-s0: 2 of 3 generations finished; gen_001:") and "sha256 mismatch" in line
    assert tables.problems([d]) == [f"vae/replace-p0-s0/gen_001/{name}: sha256 mismatch"]
    df = collect.tidy([d])
    assert sorted(df.loc[df["variant"] == "replace-p0-s0", "generation"].unique()) == [0, 2]
    assert [u.name for u in d.finished("vae") if u.variant == "replace-p0-s0"] == ["gen_000", "gen_002"]


def test_a_file_the_report_reads_must_be_declared(run):
    # hashed only when first read, it would drop a unit the tables had already counted
    unit = next(u for u in collect.load_run(run).units if u.experiment == "gmm")
    assert unit.file("snapshots.parquet") == unit.dir / "snapshots.parquet"
    with pytest.raises(ValueError, match="report_files"):
        unit.file("manifest.json")


def test_metrics_without_generation_column_are_rejected(tmp_path):
    root = tmp_path / "bad"
    synthetic.write_config(root, {"vae": {"generations": 1}})
    synthetic._unit(root, "vae", "replace-p0-s0", "gen_000", {"metrics.parquet": {"step": pa.array([0]),
                                                                                    "class_entropy": [1.0]}})
    d = collect.load_run(root)
    assert collect.tidy([d]).empty
    assert any("generation" in p for p in tables.problems([d]))


def test_metrics_no_parquet_though_their_checksum_matches_are_left_out_and_said(tmp_path, caplog):
    """Metrics damaged before their manifest was written (or listed by a version without checksums) pass the
    checksum: the report stopped on pyarrow's traceback. Now the unit is left out and its problem listed."""
    root = tmp_path / "r"
    synthetic.write_config(root, {"vae": {"generations": 2}})
    for unit in ("gen_000", "gen_001"):
        synthetic._unit(root, "vae", "replace-p0-s0", unit, {"metrics.parquet": {"generation": pa.array([0]),
                                                                                   "class_entropy": [1.0]}})
    path = root / "vae" / "replace-p0-s0" / "gen_001" / "metrics.parquet"
    path.write_bytes(b"PAR1 cut short")
    edit_manifest(path.parent, lambda m: m["files"]["metrics.parquet"].update(sha256=sha256_file(path), bytes=14))
    d = collect.load_run(root)
    df = collect.tidy([d])
    assert sorted(df["generation"].unique()) == [0]
    said = "vae/replace-p0-s0/gen_001/metrics.parquet: not a readable Parquet file ("
    assert [p for p in tables.problems([d]) if p.startswith(said)] == tables.problems([d])
    assert len(tables.problems([d])) == 1 and str(root) not in tables.problems([d])[0].partition(" (")[2]
    assert "left out of the report" in caplog.text


def test_settings_come_from_variants_and_columns(tmp_path):
    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 2}})
    synthetic.gaussian(root, generations=2, replicates=3, ns=(10, 100))
    df = collect.tidy([collect.load_run(root)])
    # a Categorical of integers in memory (longform), integers in metrics.parquet
    assert str(longform.plain(df)["samples"].dtype) == "Int64" and set(df["samples"]) == {10, 100}
    assert "var_hat" in set(df["metric"])  # derived from sigma_hat: the part stores no variance
    row = df[(df["metric"] == "var_hat")].iloc[0]
    sigma = df[(df["metric"] == "sigma_hat") & (df["variant"] == row["variant"]) & (df["replicate"] == row["replicate"])
               & (df["generation"] == row["generation"])]["value"].iloc[0]
    assert row["value"] == pytest.approx(sigma ** 2)


def test_compute_hours_from_manifests(run):
    header, rows = tables.compute([collect.load_run(run)])
    by = {r[1]: r for r in rows}
    # gmm: 4 finished parts x 72 s x 2 cores; lm: 2 + 4 finished generations x 1800 s x 16 cores, 2 GPUs
    assert float(by["gmm"][header.index("core-hours")]) == pytest.approx(4 * 72 * 2 / 3600, abs=1e-3)
    assert float(by["lm"][header.index("core-hours")]) == pytest.approx(6 * 1800 * 16 / 3600, abs=1e-3)
    assert float(by["lm"][header.index("GPU-hours")]) == pytest.approx(6 * 1800 * 2 / 3600, abs=1e-3)
    assert float(by[""][header.index("GPU-hours")]) == pytest.approx(6.0, abs=1e-3)


def test_package_versions_come_from_manifests(run):
    unit = run / "gmm" / "replace-p0-s0" / "part_000"
    edit_manifest(unit, lambda m: m["packages"].update(torch="9.9.9"))
    header, rows = tables.packages([collect.load_run(run)])
    torch = dict(rows)["torch"]
    assert "9.9.9" in torch and "," in torch  # both versions shown


def test_hosts_past_eight_are_said_with_how_many_more(run):
    """A run's units on ten hosts: the row named eight and '…'."""
    from collapse_hpc.store.manifest import MANIFEST

    units = sorted(p.parent for p in run.glob(f"*/*/*/{MANIFEST}"))[:10]
    for i, unit in enumerate(units):
        edit_manifest(unit, lambda m: m.update(host=f"node{i:02d}"))
    _, rows = tables.packages([collect.load_run(run)])
    assert dict(rows)["hosts"] == ", ".join(f"node{i:02d}" for i in range(8)) + " and 2 more"


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        collect.load_run(tmp_path)


def test_disabled_experiment_is_not_planned(tmp_path):
    # enabled: false runs nothing; the report must not list it as planned and missing
    root = tmp_path / "r"
    synthetic.write_config(root, {"gmm": {"generations": 3}, "lm": {"enabled": False}})
    synthetic.gmm(root, generations=3, parts=1, replicates=2)
    data = collect.load_run(root)
    assert data.experiments() == ["gmm"]
    header, rows = tables.completeness([data])
    assert {r[1] for r in rows} == {"gmm"}


def test_variants_come_from_manifests_in_a_run_without_a_plan(tmp_path):
    # a run folder of an older version (no plan.json) whose config no longer loads (here: a key this
    # code does not know): its variants' regime, seed and settings come from what each unit
    # recorded, not from parsing folder names
    from collapse_hpc.cli import main

    cfg = tmp_path / "toy.yaml"
    cfg.write_text("name: old\ngenerations: 2\nseeds: [3]\nexecutor: debug\nregimes: ['replace:0.1', accumulate]\n"
                   "toy: {rows: 2}\n")
    root = tmp_path / "run"
    assert main(["run", str(cfg), "--run", str(root)]) == 0
    (root / "config.yaml").write_text((root / "config.yaml").read_text() + "key_of_the_future: 1\n")
    synthetic.record_config(root)  # as the version that wrote it recorded it
    (root / "plan.json").unlink()
    df = collect.tidy([collect.load_run(root)])
    assert set(zip(df["variant"], df["regime"], df["seed"])) == {("replace-p0.1-s3", "replace-p0.1", 3),
                                                                 ("accumulate-s3", "accumulate", 3)}
    # and the regime as values, as the units' manifests record it
    assert set(zip(df["variant"], df["kind"], df["keep_fraction"])) == {("replace-p0.1-s3", "replace", 0.1),
                                                                        ("accumulate-s3", "accumulate", 0.0)}


def test_key_columns_come_from_the_experiments_declared_schema(tmp_path):
    """gaussian declares samples a key (MetricsSchema.settings): a float samples column stays a key, and
    a column that is neither a declared key nor a float metric is left out, not taken for a setting."""
    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 1}})
    synthetic._unit(root, "gaussian", "replace-p0-samples10-s0", "part_000", {"metrics.parquet": {
        "generation": pa.array([0, 0], pa.int32()), "replicate": pa.array([0, 1], pa.int32()),
        "samples": pa.array([10.0, 10.0]), "mu_hat": [0.1, 0.2], "note": pa.array([1, 2], pa.int64())}},
        settings={"samples": 10})
    df = collect.tidy([collect.load_run(root)])
    assert set(df["metric"]) == {"mu_hat"}
    assert "note" not in df.columns and set(df["samples"]) == {10}


def test_legends_read_the_regime_values_not_the_label(tmp_path):
    # the plan's labels say keep 50% and "accumulate"; the values say keep 10% and 0%: the legends,
    # their order and the tables follow the values (a label names folders, it is never parsed)
    from collapse_hpc.plotting.plots import Context, series_label, unit_series
    from collapse_hpc.report import stats

    root = tmp_path / "r"
    keeps = [{"name": "replace", "keep_fraction": 0.0}, {"name": "replace", "keep_fraction": 0.1}]
    synthetic.write_config(root, {"lm": {"generations": 3}}, regimes=keeps)
    synthetic.lm(root, generations=3, seeds=(0,))
    plan = json.loads((root / "plan.json").read_text())
    misleading = {"replace-p0.1": "replace-p0.5", "replace-p0": "accumulate"}
    for chain in plan["chains"]:
        chain["regime"]["label"] = misleading[chain["regime"]["label"]]
    (root / "plan.json").write_text(json.dumps(plan))
    data = collect.load_run(root)
    df = collect.tidy([data])
    assert set(df["regime"]) == {"replace-p0.5", "accumulate"}  # the labels, as identities
    summary = stats.summarise(df[df["experiment"] == "lm"])
    ctx = Context("lm", df[df["experiment"] == "lm"], summary, [data])
    assert ctx.series_labels() == ["replace", "replace, keep 10%"]
    unit = next(u for u in data.finished("lm") if u.variant == "replace-p0.1-s0")
    assert unit_series(data, "lm", unit)[1] == "replace, keep 10%"
    assert ctx.in_order(["replace, keep 10%", "replace"]) == ["replace", "replace, keep 10%"]
    (_, rows), _ = tables.first_last(summary, [data], "lm")
    assert {r[0] for r in rows} == {"replace", "replace, keep 10%"}
    row = {"regime": "replace-p0.5", "kind": "verifier-filter", "keep_fraction": 0.0, "verifier_quantile": 0.3}
    assert series_label(row, []) == "verifier-filter-q0.3"


def test_a_plan_written_before_regime_records_still_gives_the_values(tmp_path):
    # plan.json called the kind `name` before it held Regime.record(); its values still read
    from collapse_hpc import engine, experiments
    from collapse_hpc.store import RunStore

    root = tmp_path / "r"
    synthetic.write_config(root, {"gmm": {"generations": 2, "regimes": ["replace", "accumulate"]}})
    synthetic.gmm(root, generations=2, parts=1, replicates=2)
    plan = json.loads((root / "plan.json").read_text())
    for chain in plan["chains"]:
        chain["regime"]["name"] = chain["regime"].pop("kind")
    (root / "plan.json").write_text(json.dumps(plan))
    data = collect.load_run(root)
    info = data.variant("gmm", "accumulate-s0")
    assert info.values["kind"] == "accumulate" and info.planned is not None  # from the plan, not the manifests
    df = collect.tidy([data])
    assert set(zip(df["regime"], df["kind"])) == {("replace-p0", "replace"), ("accumulate", "accumulate")}
    store = RunStore(root)
    chains = engine.load_plan(store, store.load_config(experiments.sections()))
    assert {c.variant.regime.name for c in chains} == {"replace", "accumulate"}


def test_a_verifier_quantile_only_on_rows_of_a_verifier(tmp_path):
    # every regime's rows carried verifier_quantile 0.5, as if each filtered by a verifier
    root = tmp_path / "r"
    synthetic.write_config(root, {"gmm": {"generations": 2, "regimes": ["replace", "accumulate"]}})
    synthetic.gmm(root, generations=2, parts=1, replicates=2)
    df = collect.tidy([collect.load_run(root)])
    assert len(df) and df["verifier_quantile"].isna().all()
    assert df["keep_fraction"].notna().all()


def _rewritten(unit_dir, edit) -> None:
    """A finished unit's metrics.parquet changed by hand (`edit` of its pyarrow Table), its manifest's checksum
    made to match: as a run of an older version, or a hand-edited file, is read."""
    import pyarrow.parquet as pq

    from collapse_hpc.store import write_parquet

    path = unit_dir / "metrics.parquet"
    table = edit(pq.read_table(path))
    path.unlink()
    write_parquet(path, table)
    edit_manifest(unit_dir, lambda m: m["files"]["metrics.parquet"].update(sha256=sha256_file(path),
                                                                          bytes=path.stat().st_size))


def _edited_gaussian(tmp_path):
    """A gaussian run of 4 units: 3 of them without w2, 2 of those with a float column extra_noise besides."""
    root = tmp_path / "r"
    synthetic.write_config(root, {"gaussian": {"generations": 3, "samples": [10, 100], "replicates": 4,
                                               "regimes": ["replace", "accumulate"]}})
    synthetic.gaussian(root, generations=3, replicates=4)
    for i, unit in enumerate(sorted(root.glob("gaussian/*/part_000"))[:3]):
        _rewritten(unit, lambda t, i=i: t.drop(["w2"]).append_column("extra_noise", pa.array([0.5] * t.num_rows))
                   if i else t.drop(["w2"]))
    return root


MISSING = ("gaussian: declared metrics missing from its units' metrics.parquet (written by an older version, or "
           "edited; its figures and tables lack them there): w2 in 3 of 4 units")
UNKNOWN = ("gaussian: columns of its units' metrics.parquet that are no metric or key it declares, not shown: "
           "extra_noise in 2 of 4 units")


def _report(root, caplog, monkeypatch) -> tuple[str, list[str]]:
    """results.md of the run's report and the report's log lines, its figures not drawn (seconds each)."""
    import logging

    from collapse_hpc.report import aggregate, drawing

    monkeypatch.setattr(drawing, "draw", lambda ctx, folder: [])
    with caplog.at_level(logging.WARNING, logger="collapse_hpc.report"):
        index = aggregate.build([str(root)])
    return (index.parent / "results.md").read_text(), [r.getMessage() for r in caplog.records]


def test_a_declared_metric_missing_from_units_is_said_once_an_experiment(tmp_path, caplog, monkeypatch):
    """Units whose metrics.parquet lacked a declared metric (an older version's, a hand-edited one) only drew no
    curve, unsaid. Now it is said once for the experiment, naming the column and how many of its units lack it:
    a line in the report's Problems and one in the log, not one a unit."""
    root = _edited_gaussian(tmp_path)
    data = collect.load_run(root)
    assert "w2" in set(collect.tidy([data])["metric"])  # the fourth unit's
    assert tables.column_notes([data])[0] == MISSING
    page, logged = _report(root, caplog, monkeypatch)
    assert [m for m in logged if "w2 in" in m] == [f"report: {MISSING}"]
    assert page.count(MISSING) == 1 and page.index("## Problems") < page.index(MISSING)


def test_a_float_column_no_experiment_declares_is_no_metric_of_the_report(tmp_path, caplog, monkeypatch):
    """A float column the experiment declares no metric of (extra_noise, added by hand) was shown as a metric:
    in the tables, summary.csv and the figures' panels. Now the report shows the declared metrics only and says
    the column once for the experiment."""
    root = _edited_gaussian(tmp_path)
    data = collect.load_run(root)
    assert "extra_noise" not in set(collect.tidy([data])["metric"])
    assert tables.column_notes([data])[1] == UNKNOWN
    page, logged = _report(root, caplog, monkeypatch)
    assert [m for m in logged if "extra_noise" in m] == [f"report: {UNKNOWN}"]
    assert page.count("extra_noise") == 1 and page.count(UNKNOWN) == 1
    assert "extra_noise" not in (root / "report" / "summary.csv").read_text()


def test_an_older_gaussian_runs_sigma2_hat_is_shown_as_the_fitted_variance():
    """Only declared metrics are shown: an older run's name of var_hat (sigma2_hat) is read as var_hat."""
    from collapse_hpc.experiments.gaussian import EXPERIMENT

    old = pd.DataFrame({"generation": [0, 1], "sigma_hat": [1.0, 0.5], "sigma2_hat": [1.0, 0.25]})
    derived = EXPERIMENT.derive(old)
    assert derived["var_hat"].tolist() == [1.0, 0.25] and "sigma2_hat" not in derived


def test_a_unit_of_undeclared_float_columns_alone_is_not_said_to_have_none(tmp_path):
    """A unit whose metrics.parquet holds float columns, none a metric its experiment declares, was left out as
    having 'no float metric columns'."""
    root = tmp_path / "r"
    synthetic.write_config(root, {"gaussian": {"generations": 2, "samples": [10], "replicates": 2,
                                               "regimes": ["replace"]}})
    synthetic.gaussian(root, generations=2, replicates=2)
    unit = sorted(root.glob("gaussian/*/part_000"))[0]
    _rewritten(unit, lambda t: t.select(["generation", "replicate", "samples"]).append_column(
        "extra_noise", pa.array([0.5] * t.num_rows)))
    data = collect.load_run(root)
    collect.tidy([data])
    said = [p for u in data.units for p in u.problems]
    assert said == [f"{unit / 'metrics.parquet'}: no metric column gaussian declares (float64)"], said
