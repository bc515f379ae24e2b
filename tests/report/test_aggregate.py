"""collapse-hpc aggregate on real run folders made by the engine, alone and side by side."""
import dataclasses
import errno
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from collapse_hpc import cli, engine, experiments
from collapse_hpc.launch import debug, records
from collapse_hpc.store import RunStore
from tests.helpers import refuse_reads


@pytest.fixture
def toy():
    assert "toy" in experiments.names()  # registered by its entry point (tests/conftest.py)


def make_run(root, sections: dict, **run_keys):
    run = experiments.config_from_dict({"name": root.name, "executor": "debug", **run_keys, **sections})
    store = RunStore(root)
    engine.open_run(store, run)
    debug.execute(store, run, engine.plan(run))
    return root


def test_toy_run_through_the_engine(toy, tmp_path, capsys):
    root = make_run(tmp_path / "toyrun", {"toy": {"rows": 5}}, generations=3, seeds=[0, 1])
    assert cli.main(["aggregate", str(root)]) == 0
    index = capsys.readouterr().out.strip().splitlines()[-1]
    assert index == str(root / "report" / "index.html")
    df = pd.read_parquet(root / "report" / "metrics.parquet")
    assert set(df["metric"]) == {"value"} and set(df["seed"]) == {0, 1}
    assert len(df) == 3 * 2 * 5  # generations x seeds x rows (replicates)
    raw = pd.read_parquet(root / "toy" / "replace-p0-s1" / "gen_002" / "metrics.parquet")
    summary = pd.read_csv(root / "report" / "summary.csv")
    row = summary[summary["generation"] == 2].iloc[0]
    both = pd.concat([pd.read_parquet(root / "toy" / f"replace-p0-s{s}" / "gen_002" / "metrics.parquet")
                      for s in (0, 1)])
    assert row["n"] == 10 and row["mean"] == pytest.approx(both["value"].mean())
    assert raw["value"].tolist() == df[(df["seed"] == 1) & (df["generation"] == 2)]["value"].tolist()
    assert (root / "report" / "figures" / "toy_all_metrics.png").is_file()
    md = (root / "report" / "results.md").read_text()
    assert "| toy | replace-p0-s0 | 3 | 3 | 0 | 0 |" in md  # progress: 3 of 3 units finished


def test_runs_side_by_side(toy, tmp_path, capsys):
    a = make_run(tmp_path / "a" / "run", {"toy": {"rows": 4}}, generations=2)
    b = make_run(tmp_path / "b" / "run", {"toy": {"rows": 4}}, generations=4, seeds=[3])
    out = tmp_path / "both"
    assert cli.main(["aggregate", str(a), str(b), "--out", str(out)]) == 0
    df = pd.read_parquet(out / "metrics.parquet")
    assert set(df["run"]) == {"a/run", "b/run"}  # same folder names: told apart by their parents
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary[summary["run"] == "b/run"]["generation"]) == [0, 1, 2, 3]
    assert sorted(summary[summary["run"] == "a/run"]["generation"]) == [0, 1]
    w, h = Image.open(out / "figures" / "toy_all_metrics.png").size
    assert w > 1.5 * h  # one panel per run, side by side
    assert not (a / "report").exists()


def test_runs_alike_in_folder_and_parent_stay_apart(toy, tmp_path, capsys):
    # results copied home from two clusters: ~/clusterA/runs/paper and ~/clusterB/runs/paper
    a = make_run(tmp_path / "clusterA" / "runs" / "paper", {"toy": {"rows": 4}}, generations=2)
    b = make_run(tmp_path / "clusterB" / "runs" / "paper", {"toy": {"rows": 4}}, generations=2)
    out = tmp_path / "both"
    assert cli.main(["aggregate", str(a), str(b), "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["run"]) == {"clusterA/runs/paper", "clusterB/runs/paper"}
    assert set(summary["n"]) == {4}  # each run's own 4 replicates, never the two pooled as 8


@pytest.mark.parametrize("again", ["{a}/", "{a}/../{name}", "link"])
def test_a_run_named_twice_is_refused(toy, tmp_path, capsys, again):
    a = make_run(tmp_path / "run", {"toy": {"rows": 4}}, generations=2)
    (tmp_path / "link").symlink_to(a)
    second = str(tmp_path / "link") if again == "link" else again.format(a=a, name=a.name)
    capsys.readouterr()
    assert cli.main(["aggregate", str(a), second, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: aggregate: ") and "same run folder" in err[0]
    assert not (tmp_path / "out").exists()


def test_aggregate_of_a_non_run_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["aggregate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not a run folder" in err[0]


def _tiny(cls) -> dict:
    """Small values for whichever size knobs the experiment's config has."""
    wanted = {"replicates": 4, "chunk_replicates": 2, "samples": 200, "max_iter": 100}
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in wanted.items() if k in names}


@pytest.mark.slow
def test_real_gmm_run(tmp_path, capsys):
    if "gmm" not in experiments.names():
        pytest.skip("the gmm experiment is not in this checkout yet")
    section = {"generations": 3, **_tiny(experiments.config_class("gmm"))}
    root = make_run(tmp_path / "gmmrun", {"gmm": section}, regimes=["replace", "accumulate"])
    assert cli.main(["aggregate", str(root)]) == 0
    figs = root / "report" / "figures"
    pngs = {p.stem: p for p in figs.glob("*.png")}
    assert {"gmm_l2", "gmm_variance", "gmm_snapshots"} <= set(pngs)
    assert any(k.startswith("gmm_all_metrics") for k in pngs)
    for key, png in pngs.items():
        assert np.asarray(Image.open(png).convert("L"), dtype=float).std() > 10, key
    df = pd.read_parquet(root / "report" / "metrics.parquet")
    assert set(df["regime"]) == {"replace-p0", "accumulate"} and df["generation"].max() == 2


def _flip(path) -> None:
    """Same size, other bytes: only a file's sha256 tells."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_report_job_reads_the_runs_job_records_once(toy, tmp_path, monkeypatch):
    """The report job read jobs.json for the replicates submit recorded, then the report twice more (job states,
    experiments left out): one read."""
    from collapse_hpc.report import aggregate

    root = make_run(tmp_path / "run", {"toy": {"rows": 3}}, generations=2)
    reads, read = [], records.read_text
    monkeypatch.setattr(records, "read_text", lambda path, *a, **k: reads.append(path) or read(path, *a, **k))
    assert aggregate.job(str(root)) == 0
    assert reads == [root / "jobs.json"] and (root / "report" / "index.html").is_file()


def test_the_report_job_writes_its_lines_into_the_runs_log(toy, tmp_path, capsys):
    """The report's job on Slurm said what it drew and where the page is in its own job log alone, while
    `collapse-hpc aggregate` by hand writes them into the run's log as well: the job does too."""
    from collapse_hpc import logs
    from collapse_hpc.report import aggregate

    root = make_run(tmp_path / "run", {"toy": {"rows": 3}}, generations=2)
    log = root / "logs" / "collapse-hpc.log"
    before = log.read_text() if log.exists() else ""
    try:
        assert aggregate.job(str(root)) == 0
    finally:
        logs.setup()  # later tests' lines stay out of this run's log
    added = log.read_text()[len(before):].splitlines()
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said.endswith("index.html") and added[-1].endswith(f"INFO: {said}"), added
    assert any("report: toy:" in ln and "figures" in ln for ln in added), added


def test_a_damaged_side_file_leaves_its_unit_out_of_every_table_as_verify_does(tmp_path, capsys):
    # its metrics intact, the unit's snapshots.parquet (read only by a figure, after the tables) damaged: the
    # unit is unfinished in the long table, the summary, the incomplete list and the problems alike
    section = {"generations": 2, **_tiny(experiments.config_class("gmm")), "regimes": ["replace"]}
    root = make_run(tmp_path / "gmmrun", {"gmm": section})
    unit = root / "gmm" / "replace-p0-s0" / "part_000"
    _flip(unit / "snapshots.parquet")
    assert cli.main(["verify", str(root)]) == 1
    assert f"MISMATCH {unit / 'snapshots.parquet'}: sha256 mismatch" in capsys.readouterr().out
    assert cli.main(["aggregate", str(root)]) == 0
    df = pd.read_parquet(root / "report" / "metrics.parquet")
    assert sorted(df["replicate"].unique()) == [2, 3]  # part_001's replicates only
    summary = pd.read_csv(root / "report" / "summary.csv")
    assert set(summary["n"]) == {2}
    page = (root / "report" / "results.md").read_text()
    assert ("gmm/replace-p0-s0: 1 of 2 parts finished; part_000: artefact missing or not matching its manifest: "
            "gmm/replace-p0-s0/part_000/snapshots.parquet: sha256 mismatch") in page
    assert "- gmm/replace-p0-s0/part_000/snapshots.parquet: sha256 mismatch" in page.split("## Problems")[1]
    assert (root / "report" / "figures" / "gmm_snapshots.png").is_file()  # drawn from the intact part


@pytest.mark.slow
def test_real_gaussian_run(tmp_path):
    if "gaussian" not in experiments.names():
        pytest.skip("the gaussian experiment is not in this checkout yet")
    section = {"generations": 6, "samples": [10, 100], "replicates": 40, "chunk_replicates": 20}
    root = make_run(tmp_path / "grun", {"gaussian": section}, regimes=["replace", "accumulate"])
    assert cli.main(["aggregate", str(root)]) == 0
    figs = root / "report" / "figures"
    for key in ("gaussian_mu_err", "gaussian_sigma_err", "gaussian_variance"):
        assert np.asarray(Image.open(figs / f"{key}.png").convert("L"), dtype=float).std() > 10, key
    summary = pd.read_csv(root / "report" / "summary.csv")
    assert set(summary["samples"]) == {10, 100}
    first = summary[(summary["generation"] == 0) & (summary["regime"] == "replace-p0")]
    assert set(first["n"]) == {40}  # two parts of 20 replicates pooled


def test_out_folder_keeps_files_the_report_did_not_write(toy, tmp_path, capsys):
    """aggregate --out DIR refuses a folder it did not make, and in its own removes only figures an
    earlier report of its own drew there."""
    root = make_run(tmp_path / "toyrun", {"toy": {"rows": 5}}, generations=2)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_bytes(b"x")
    assert cli.main(["aggregate", str(root), "--out", str(theirs)]) == 2
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    out = tmp_path / "mine"
    assert cli.main(["aggregate", str(root), "--out", str(out)]) == 0  # a new folder: its own from now on
    mine = {out / "figures" / "holiday.png": b"png", out / "figures" / "paper.pdf": b"pdf", out / "notes.txt": b"x"}
    for p, data in mine.items():
        p.write_bytes(data)
    assert cli.main(["aggregate", str(root), "--out", str(out)]) == 0
    drawn = {p.name for p in (out / "figures").glob("*.png")} - {"holiday.png"}
    assert drawn and all(p.read_bytes() == data for p, data in mine.items())
    # a figure its own earlier report drew and this one does not is still dropped
    (out / "figures" / ".drawn.json").write_text('["old.png"]')
    (out / "figures" / "old.png").write_bytes(b"old")
    assert cli.main(["aggregate", str(root), "--out", str(out)]) == 0
    assert not (out / "figures" / "old.png").exists()


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_figures_list_the_file_system_will_not_read_is_said_the_last_report_kept(toy, tmp_path, monkeypatch,
                                                                                  capsys, refusal):
    """figures/.drawn.json read refused went up as a raw OSError once the report's pages were removed and its
    figures drawn anew. It is one line naming the file, read before anything is written: the last report stays
    whole; once it reads, the figures it lists that this report does not draw go."""
    root = make_run(tmp_path / "toyrun", {"toy": {"rows": 5}}, generations=2)
    assert cli.main(["aggregate", str(root)]) == 0
    report = root / "report"
    (report / "figures" / "old.png").write_bytes(b"old")
    drawn = report / "figures" / ".drawn.json"
    drawn.write_text(json.dumps(json.loads(drawn.read_text()) + ["old.png"]))
    kept = {p: (p.stat().st_ino, p.read_bytes()) for p in report.rglob("*") if p.is_file()}
    capsys.readouterr()
    refuse_reads(monkeypatch, drawn, refusal)
    assert cli.main(["aggregate", str(root)]) == 2
    assert capsys.readouterr().err == (f"error: figures list {drawn}: not read ({os.strerror(refusal)}): the report "
                                       f"is kept as it is once the file reads again (its permissions, the file "
                                       f"system): run the same command again\n")
    monkeypatch.undo()
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in report.rglob("*") if p.is_file()} == kept
    assert cli.main(["aggregate", str(root)]) == 0
    assert not (report / "figures" / "old.png").exists() and (report / "index.html").is_file()


@pytest.mark.slow
def test_a_variance_that_reaches_zero_prints_no_infinity(tmp_path, capsys):
    # two samples per fit: within a few dozen generations σ̂ falls below the spacing of floats near μ̂,
    # both draws are equal and the fitted variance is exactly 0 (log σ̂² -inf) in every replicate
    gauss = {"generations": 120, "samples": [2], "replicates": 4, "chunk_replicates": 4, "regimes": ["replace"]}
    root = make_run(tmp_path / "zero", {"gaussian": gauss}, generations=120)
    raw = pd.read_parquet(root / "gaussian" / "replace-p0-samples2-s0" / "part_000" / "metrics.parquet")
    assert (raw.loc[raw["generation"] == 119, "sigma_hat"] == 0).all()
    assert cli.main(["aggregate", str(root)]) == 0
    cells = {c.strip().lower() for name, sep in (("summary.csv", ","), ("results.md", "|"))
             for ln in (root / "report" / name).read_text().splitlines() for c in ln.split(sep)}
    assert not cells & {"inf", "-inf", "nan"}
    summary = pd.read_csv(root / "report" / "summary.csv").set_index(["metric", "generation"])
    assert summary.loc[("var_hat", 119), "mean"] == 0  # the real 0 stays a number
    log = summary.loc[("log_var_hat", 119)]
    assert log["n"] == 4 and log["n_infinite"] == 4 and pd.isna(log["mean"]) and pd.isna(log["ci_low"])
    md = (root / "report" / "results.md").read_text()
    assert "| replace, samples=2 | log fitted variance | ln of data units² | lower is worse |" in md  # its row


def test_a_report_of_the_first_replicates_and_the_rows_the_estimate_counts(tmp_path, capsys):
    """aggregate --replicates K holds only replicates 0..K-1 of each variant (a part beyond them adds
    nothing) and its page says so; the dry run's estimate of the report's rows (estimate.report_rows)
    is the number a full report writes."""
    from collapse_hpc.launch import estimate

    section = {"generations": 4, "samples": [10], "replicates": 30, "chunk_replicates": 10}
    root = make_run(tmp_path / "g", {"gaussian": section}, seeds=[0, 1])
    run = RunStore(root).load_config(experiments.sections())
    assert cli.main(["aggregate", str(root), "--out", str(tmp_path / "all")]) == 0
    full = pd.read_parquet(tmp_path / "all" / "metrics.parquet")
    assert len(full) == estimate.report_rows(run, engine.plan(run))
    assert "Replicates:" not in (tmp_path / "all" / "index.html").read_text()

    assert cli.main(["aggregate", str(root), "--replicates", "12"]) == 0
    df = pd.read_parquet(root / "report" / "metrics.parquet")
    assert sorted(df["replicate"].unique()) == list(range(12)) and len(df) == len(full) * 12 // 30
    summary = pd.read_csv(root / "report" / "summary.csv")
    assert set(summary["n"]) == {2 * 12}  # seeds x replicates
    note = ("Replicates: this report uses the first 12 of each variant's replicates (aggregate --replicates 12, "
            "to fit in memory), of gaussian's 30")
    assert note in (root / "report" / "results.md").read_text()
    capsys.readouterr()
    assert cli.main(["aggregate", str(root), "--replicates", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: aggregate: --replicates 0: at least 1"


def test_report_replicates_fit_the_memory_given():
    from collapse_hpc.launch import estimate

    run = experiments.config_from_dict({"name": "r", "seeds": [0], "gaussian": {
        "generations": 10, "samples": [10, 100], "replicates": 50, "chunk_replicates": 50}})
    chains = engine.plan(run)
    per = estimate.report_rows(run, chains) // 50  # rows of one replicate of every variant
    room = lambda k: estimate.REPORT_BASE_BYTES + estimate.REPORT_BYTES_PER_ROW * per * k  # noqa: E731
    assert estimate.report_replicates(run, chains, room(50)) is None  # all fit
    assert estimate.report_replicates(run, chains, room(7) + 1) == 7
    assert estimate.report_replicates(run, chains, 1) == 1  # never none


def test_a_killed_reports_temporaries_are_removed_by_the_next(toy, tmp_path, capsys):
    """A report killed while writing (SIGKILL, the OOM killer) leaves its temporaries; the next
    aggregate of the folder removed none of them, so they stayed for good."""
    root = make_run(tmp_path / "toyrun", {"toy": {"rows": 5}}, generations=2)
    figures = root / "report" / "figures"
    figures.mkdir(parents=True)
    left = [figures / ".tmp-toy_all_metrics.png.hbf0_6hs", root / "report" / ".tmp-summary.csv.x1y2z3"]
    for p in left:
        p.write_bytes(b"half")
    assert cli.main(["aggregate", str(root)]) == 0
    assert not [p for p in (root / "report").rglob("*") if p.name.startswith(".tmp-")]


def test_a_run_with_no_finished_unit_yet_is_reported_as_incomplete(toy, tmp_path, capsys):
    # it ended in a traceback (argmax of an empty table): the aggregation job of a run whose every chain
    # failed, or `aggregate` before the first unit finished
    run = experiments.config_from_dict({"name": "none", "executor": "debug", "generations": 2, "toy": {}})
    store = RunStore(tmp_path / "none")
    engine.open_run(store, run)
    assert cli.main(["aggregate", str(store.root)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(store.root / "report" / "index.html")
    md = (store.root / "report" / "results.md").read_text()
    assert "## Incomplete run" in md and "toy/replace-p0-s0" in md
    assert len(pd.read_parquet(store.root / "report" / "metrics.parquet")) == 0


def _launch(store, run, chains) -> None:
    """A launch of these chains, as the local launcher books it (records.launching), run in this process."""
    book = records.load(store)
    book["executor"] = "local"
    records.launching(book, chains)
    records.save(store, book)
    debug.execute(store, run, chains)


def test_experiments_left_out_with_only_are_not_unfinished_chains(toy, tmp_path, capsys):
    # `run --only toy`: the report listed every chain of tail as "not started" under "Incomplete run", and drew
    # its section of figures "not available yet", where status says "not in this run (left out with --only)"
    # and verify counts none of its units
    run = experiments.config_from_dict({"name": "only", "executor": "local", "generations": 2, "toy": {},
                                        "tail": {"replicates": 2, "chunk_replicates": 2}})
    store = RunStore(tmp_path / "only")
    engine.open_run(store, run)
    chains = engine.plan(run)
    _launch(store, run, [c for c in chains if c.experiment == "toy"])
    assert cli.main(["aggregate", str(store.root)]) == 0
    md = (store.root / "report" / "results.md").read_text()
    assert "## Incomplete run" not in md and "tail/" not in md, md
    assert "\ntail: not in this run (left out with --only)\n" in md
    # nor a section of figures "not available yet": the run will not make them
    assert "## Zipf tail" not in md and "not available yet" not in md and "tail_" not in md, md
    assert "tail: not in this run (left out with --only)" in (store.root / "report" / "index.html").read_text()
    assert cli.main(["status", str(store.root)]) == 0
    assert "tail/replace-p0-s0  not in this run (left out with --only)" in capsys.readouterr().out
    # a later run of tail that has not reached it yet (jobs.json holds both launches' experiments): its
    # chains are the run's again, unfinished, as verify counts them
    book = records.load(store)
    records.launching(book, [c for c in chains if c.experiment == "tail"])
    records.save(store, book)
    assert cli.main(["verify", str(store.root)]) == 0
    assert ", 1 unfinished" in capsys.readouterr().out
    assert cli.main(["aggregate", str(store.root)]) == 0
    md = (store.root / "report" / "results.md").read_text()
    assert "- tail/replace-p0-s0: 0 of 1 parts finished; part_000: not started" in md, md
    assert "not in this run" not in md and "toy/" not in md.split("## Incomplete run")[1].split("##")[0]
    assert "## Zipf tail (categorical)" in md  # its figures to come
    _launch(store, run, [c for c in chains if c.experiment == "tail"])
    assert cli.main(["aggregate", str(store.root)]) == 0
    assert "## Incomplete run" not in (store.root / "report" / "results.md").read_text()


def test_a_report_of_runs_one_of_which_left_an_experiment_out_says_whose_its_section_is(toy, tmp_path):
    """Run A left tail out (--only toy), run B ran both: tail's figures drew B's panels alone, with no word in the
    section (nor in the figures, whose titles name a run only where several are drawn) that A is not among them."""
    for name, only in (("A", {"toy"}), ("B", {"toy", "tail"})):
        run = experiments.config_from_dict({"name": name, "executor": "local", "generations": 2, "toy": {},
                                            "tail": {"replicates": 2, "chunk_replicates": 2}})
        store = RunStore(tmp_path / name)
        engine.open_run(store, run)
        _launch(store, run, [c for c in engine.plan(run) if c.experiment in only])
    assert cli.main(["aggregate", str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    said = "Not in A (left out with --only): the figures and tables of this section are of B only."
    tail, toy_section = md.split("## Zipf tail")[1].split("\n## ")[0], md.split("## toy")[1].split("\n## ")[0]
    assert said in tail and "Not in" not in toy_section, md
    assert said in (tmp_path / "rep" / "index.html").read_text()


@pytest.mark.parametrize("when", ["summarise", "draw"])
def test_a_run_folder_removed_while_aggregate_works_in_it_is_not_made_again(toy, tmp_path, capsys, monkeypatch, when):
    """rm -rf RUN while aggregate ran: it made RUN/report/ again, the whole report in a run folder of nothing else,
    and exited 0 (or, removed as a file was written, ended on its temporary's "No such file or directory")."""
    import shutil

    from collapse_hpc.report import drawing, stats

    root = make_run(tmp_path / "toyrun", {"toy": {"rows": 5}}, generations=2)
    module = {"summarise": stats, "draw": drawing}[when]
    step = getattr(module, when)

    def removed_first(*args, **kwargs):
        shutil.rmtree(root, ignore_errors=True)
        return step(*args, **kwargs)

    monkeypatch.setattr(module, when, removed_first)
    assert cli.main(["aggregate", str(root)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {root}: the run folder was removed while aggregate worked in it; its report is not written there, "
        f"nor anything of the run made again")
    assert not root.exists()
