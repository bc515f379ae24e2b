"""The page as a paper's author reads it: named after the config and the model, no machine path, an
unfinished run said to be one, every metric with its declared name, unit and direction, results apart from
bookkeeping and timing, n beside every band, and the paper's values where the config is the paper's."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from collapse_hpc import experiments
from collapse_hpc.plotting.metrics import Metric, spec, specs
from collapse_hpc.report import aggregate, collect, tables
from tests.launch.test_slurm_plan import fake_slurm  # noqa: F401  (the fixture)
from tests.report import synthetic

REGIMES = [{"name": "replace", "keep_fraction": 0.0}, {"name": "replace", "keep_fraction": 0.1}]


def _lm_run(root, lm: dict | None = None, seeds=(0, 1), done: dict | None = None, name: str | None = None):
    synthetic.write_config(root, {"lm": {"generations": 3, "seeds": list(seeds), "dataset": "wikivital", **(lm or {})}},
                           generations=3, seeds=seeds, regimes=REGIMES)
    if name:  # the config's name, unlike the folder's
        cfg = yaml.safe_load((root / "config.yaml").read_text())
        (root / "config.yaml").write_text(yaml.safe_dump({**cfg, "name": name}, sort_keys=False))
    synthetic.lm(root, generations=3, seeds=seeds, done=done, small=True)
    return root


def _page(root):
    index = aggregate.build([str(root)])
    return index.read_text(), (index.parent / "results.md").read_text()


# ------------------------------------------------------------------ 1. titles, no machine path

def test_title_is_the_configs_name_and_the_page_names_no_machine_path(tmp_path):
    root = _lm_run(tmp_path / "gpu", name="demo")
    html, md = _page(root)
    assert "<title>Model collapse: demo</title>" in html and md.startswith("# Model collapse: demo\n")
    assert "Model collapse: gpu" not in html
    for text in (html, md):
        assert str(tmp_path) not in text and str(root.absolute()) not in text


def test_the_page_says_plainly_where_its_runs_are(tmp_path):
    """The page said "Runs: demo (folder ..)", a path relative to report/ that a reader had to decode. A run's
    own report says it is in the run's folder, a report elsewhere (--out) names each run's folder and its
    path from the page; each a link that leads to the run's folder."""
    root = _lm_run(tmp_path / "runs" / "gpu", name="demo")
    html, md = _page(root)
    assert '<p>Runs: <code>gpu</code> (<a href="..">the run folder this report is in</a>).</p>' in html, html[:900]
    assert "\nRuns: gpu ([the run folder this report is in](..)).\n" in md
    out = tmp_path / "reports" / "both"
    other = _lm_run(tmp_path / "runs" / "cpu")
    index = aggregate.build([str(root), str(other)], out=str(out))
    html, md = index.read_text(), (out / "results.md").read_text()
    assert ('<code>gpu</code> (folder <a href="../../runs/gpu">gpu</a>, at ../../runs/gpu from this page), '
            '<code>cpu</code> (folder <a href="../../runs/cpu">cpu</a>') in html, html[:900]
    assert "Runs: gpu (folder [gpu](../../runs/gpu), at ../../runs/gpu from this page), cpu (folder" in md
    assert (out / "../../runs/gpu" / "config.yaml").resolve() == (root / "config.yaml").resolve()


def test_a_run_folder_of_spaces_and_brackets_is_still_a_markdown_link(tmp_path):
    # "[my run (v2)](../../runs/my run (v2))" is no link in Markdown: the target ends at its first space
    root = _lm_run(tmp_path / "runs" / "my run (v2) [b]")
    out = tmp_path / "reports"
    aggregate.build([str(root)], out=str(out))
    md = (out / "results.md").read_text()
    said = r"(folder [my run (v2) \[b\]](<../runs/my run (v2) [b]>), at ../runs/my run (v2) [b] from this page)"
    assert said in md, md[:900]

def test_problems_name_paths_relative_to_the_run(tmp_path):
    root = _lm_run(tmp_path / "r")
    (root / "lm" / "replace-p0-s0" / "gen_000" / "sequence_ppl.parquet").unlink()
    html, md = _page(root)
    assert "lm/replace-p0-s0/gen_000/sequence_ppl.parquet" in md and str(tmp_path) not in md + html


def test_lm_heading_names_the_model_actually_used():
    lm = experiments.describe("lm")
    assert lm.heading([{"model": "tiny", "layers": 2, "hidden_size": 128, "dataset": "wikivital"}]) == \
        "Language model: tiny OPT (2 layers, 128 wide) on wikivital"
    assert lm.heading([{"model": "tiny", "layers": 1, "hidden_size": 32, "dataset": "cjk"}]) == \
        "Language model: tiny OPT (1 layer, 32 wide) on cjk"
    assert lm.heading([{"model": "facebook/opt-125m", "dataset": "wikitext2"}]) == \
        "Language model: OPT-125M on wikitext2"
    assert experiments.describe("vae").heading([{"dataset": "digits"}]) == "Variational autoencoder (digits)"


# ------------------------------------------------------------------ 2. the incomplete run

def test_page_of_an_incomplete_run_shows_the_banner(full_report):
    html = (full_report / "index.html").read_text()
    md = (full_report / "results.md").read_text()
    assert '<div class="incomplete" id="incomplete"><h2>Incomplete run</h2>' in html
    assert html.index("Incomplete run") < html.index("<nav>")  # above everything else
    for line in ("lm/replace-p0.1-s1: 2 of 4 generations finished; gen_002: unfinished (no manifest yet)",
                 "vae/accumulate-s0: 3 of 4 generations finished; gen_003: not started"):
        assert line in html and f"- {line}" in md
    assert "lm/replace-p0-s0" not in html.split('id="incomplete"')[1].split("</div>")[0]  # finished chains: not


def test_banner_says_failed_and_missing_artefact_and_a_finished_run_has_none(tmp_path):
    root = _lm_run(tmp_path / "r", done={"replace-p0-s1": 1})
    html, _ = _page(root)
    assert "Incomplete run" in html and "lm/replace-p0-s1: 1 of 3 generations finished; gen_001: unfinished" in html
    (root / "jobs.json").write_text(json.dumps({"executor": "local", "units": {
        "lm/replace-p0-s1/gen_001": {"job_id": "7", "state": "FAILED", "error": "Traceback …\nValueError: boom"}}}))
    (root / "lm" / "replace-p0-s0" / "gen_002" / "metrics.parquet").unlink()
    (root / "lm" / "replace-p0.1-s0" / "gen_002" / "manifest.json").unlink()
    book = json.loads((root / "jobs.json").read_text())
    book["units"]["lm/replace-p0.1-s0/gen_002"] = {"job_id": "8", "state": "COMPLETED"}
    (root / "jobs.json").write_text(json.dumps(book))
    html, _ = _page(root)
    assert "lm/replace-p0.1-s0: 2 of 3 generations finished; gen_002: its job completed, but manifest.json is " \
        "missing" in html
    assert "lm/replace-p0-s1: 1 of 3 generations finished; gen_001: failed: ValueError: boom" in html
    assert ("lm/replace-p0-s0: 2 of 3 generations finished; gen_002: artefact missing or not matching its manifest: "
            "lm/replace-p0-s0/gen_002/metrics.parquet") in html

    whole = _lm_run(tmp_path / "whole")
    html, md = _page(whole)
    assert "Incomplete run" not in html + md


def test_banner_reads_the_job_records_as_they_were_when_the_units_were_listed(tmp_path):
    """aggregate during a local run: a generation running when the report listed the units and
    finished before its banner was written read 'its job completed, but manifest.json is missing';
    one whose folder its process had not made yet read 'not started'."""
    root = _lm_run(tmp_path / "r", done={"replace-p0-s1": 1})
    unit = root / "lm" / "replace-p0-s1" / "gen_001"
    assert unit.is_dir() and not (unit / "manifest.json").exists()
    for started in (True, False):
        if not started:
            shutil.rmtree(unit)
        job = {"job_id": str(os.getpid()), "state": "RUNNING"}  # a live process: the job still runs
        book = {"executor": "local", "units": {"lm/replace-p0-s1/gen_001": job}}
        (root / "jobs.json").write_text(json.dumps(book))
        data = [collect.load_run(root)]
        book["units"]["lm/replace-p0-s1/gen_001"]["state"] = "COMPLETED"  # it finished meanwhile
        (root / "jobs.json").write_text(json.dumps(book))
        assert tables.unfinished(data) == ["lm/replace-p0-s1: 1 of 3 generations finished; gen_001: running"]


def test_a_local_job_whose_process_died_reads_interrupted_not_running(tmp_path):
    """The local launcher killed (kill -9, out of memory, a restart) leaves its unit RUNNING in
    jobs.json: status said INTERRUPTED while the report's banner said 'running' for ever."""
    root = _lm_run(tmp_path / "r", done={"replace-p0-s1": 1})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process
    book = {"executor": "local", "units": {"lm/replace-p0-s1/gen_001": {"job_id": str(gone.pid), "state": "RUNNING"}}}
    (root / "jobs.json").write_text(json.dumps(book))
    assert tables.unfinished([collect.load_run(root)]) == [
        "lm/replace-p0-s1: 1 of 3 generations finished; gen_001: interrupted"]


def test_comparison_only_where_every_chain_passed_generation_0(tmp_path):
    root = _lm_run(tmp_path / "r", done={"replace-p0.1-s1": 1})  # one chain stopped after generation 0
    data = [collect.load_run(root)]
    df = collect.tidy(data)
    from collapse_hpc.report import stats

    summary = stats.summarise(df)
    specs_ = experiments.describe("lm").metric_specs([])
    (header, rows), notes = tables.first_last(summary, data, "lm", specs_)
    assert rows == [] and notes == ["no comparison yet: not every chain has finished a generation after 0 (the "
                                    "last generation all of them reached is 0)"]
    html, _ = _page(root)
    assert "no comparison yet" in html and "+0.0%" not in html

    root2 = _lm_run(tmp_path / "r2", done={"replace-p0.1-s1": 2})  # every chain reached generation 1, not 2
    data = [collect.load_run(root2)]
    summary = stats.summarise(collect.tidy(data))
    (header, rows), notes = tables.first_last(summary, data, "lm", specs_)
    assert not notes and rows and {r[header.index("generation")] for r in rows} == {"1 (of 2)"}
    test_ppl = [r for r in rows if r[header.index("metric")] == "test perplexity"]  # the declared name
    assert len(test_ppl) == 2 and all(r[header.index("collapse")] == "higher is worse" for r in test_ppl)


def test_a_run_of_one_generation_is_not_told_to_wait_for_a_later_one(tmp_path):
    """generations: 1 is a finished run: the note said 'no comparison yet: not every chain has finished a
    generation after 0', as if one were to come."""
    from collapse_hpc.report import stats

    root = tmp_path / "one"
    synthetic.write_config(root, {"gaussian": {"generations": 1, "samples": [10, 100],
                                               "regimes": ["replace", "accumulate"]}}, generations=1)
    synthetic.gaussian(root, generations=1, replicates=5)
    data = [collect.load_run(root)]
    summary = stats.summarise(collect.tidy(data))
    (_, rows), notes = tables.first_last(summary, data, "gaussian", experiments.describe("gaussian").metric_specs([]))
    assert rows == [] and len(notes) == 1
    assert "yet" not in notes[0] and "one generation" in notes[0] and "--generations" in notes[0]


def test_comparison_lists_metrics_in_the_order_the_figures_draw_them(tmp_path):
    """The every-metric figure drew the generated data's perplexity percentiles p5, p25, p50 (as declared);
    the table beside it listed p25, p5, p50 (by column name). It lists them as declared, too; a run recorded
    without a regime's verifier_quantile (NaN in the sort key) left them in no order at all."""
    from collapse_hpc.report import stats

    root = _lm_run(tmp_path / "r")
    data = [collect.load_run(root)]
    summary = stats.summarise(collect.tidy(data))
    specs_ = experiments.describe("lm").metric_specs([])
    (header, rows), _ = tables.first_last(summary, data, "lm", specs_)
    series = rows[0][header.index("series")]
    listed = [r[header.index("metric")] for r in rows if r[header.index("series")] == series]
    declared = [m.label for m in specs_.values() if m.label in listed]
    assert len(declared) > 3 and listed[:len(declared)] == declared, listed


def test_the_comparison_of_a_mixture_of_many_components_is_capped_and_names_the_rest(tmp_path):
    """gmm.components: 1000 made a comparison table of 13,000 rows (13 metrics a component per series): it
    shows the experiment's own metrics and the first and last components, and names where the rest are."""
    from collapse_hpc.report import page, stats

    root = tmp_path / "g"
    synthetic.write_config(root, {"gmm": {"generations": 3, "components": 100}}, generations=3)
    synthetic.gmm(root, generations=3, parts=1, replicates=2, components=100)
    data = [collect.load_run(root)]
    summary = stats.summarise(collect.tidy(data))
    specs_ = experiments.describe("gmm").metric_specs(sorted(summary["metric"].unique()))
    (header, rows), notes = tables.first_last(summary, data, "gmm", specs_)
    listed = list(dict.fromkeys(r[header.index("metric")] for r in rows))
    assert len(rows) <= 2 * 60, len(rows)  # was 2 x 1307
    assert len(listed) == tables.TABLE_HEAD + tables.TABLE_TAIL and len(rows) == 2 * len(listed)  # 2 series
    assert listed[0] == "squared L2 to generation 0" and "comp. 0 weight" in listed, listed
    assert "comp. 99 99% tail y" in listed and "comp. 50 weight" not in listed, listed
    metrics = summary["metric"].nunique()
    assert metrics > 1300 and len(notes) == 1, notes
    assert notes[0].startswith(f"Not in this table: {metrics - len(listed)} of its {metrics} metrics, c2_")
    assert notes[0].endswith("every metric is in metrics.parquet and summary.csv.")
    few = tmp_path / "few"
    synthetic.write_config(few, {"gmm": {"generations": 3}}, generations=3)
    synthetic.gmm(few, generations=3, parts=1, replicates=2, components=2)
    data = [collect.load_run(few)]
    summary = stats.summarise(collect.tidy(data))
    specs_ = experiments.describe("gmm").metric_specs(sorted(summary["metric"].unique()))
    (_, rows), notes = tables.first_last(summary, data, "gmm", specs_)
    assert len(rows) == 2 * summary["metric"].nunique() and notes == []  # every metric of a small mixture
    md = page._md_table((header, rows))
    assert "comp. 1 99% tail y" in md


# ------------------------------------------------------------------ 3. declared metrics, results apart

def test_metric_declarations():
    m = Metric("x", "thing", "s", worse="lower", paper=((1.0, "paper"),), paper_setting=(("model", "m"),))
    assert m.axis == "thing (s)" and m.direction == "lower is worse"
    assert m.paper_marks({"model": "m"}) == [(1.0, "paper")] and m.paper_marks({"model": "tiny"}) == []
    assert spec({}, "raw_column").label == "raw_column" and spec({}, "raw_column").kind == "result"
    with pytest.raises(ValueError, match="declared twice"):
        specs(m, m)


def test_every_metric_the_experiments_write_is_declared():
    from collapse_hpc.experiments.gaussian.run import DERIVED, METRICS
    from collapse_hpc.experiments.gmm.metrics import names

    gmm = experiments.describe("gmm").metric_specs(names(3))
    assert set(names(3)) <= set(gmm) and gmm["c2_q975_y"].label == "comp. 2 97.5% tail y"
    assert {*METRICS, *DERIVED} <= set(experiments.describe("gaussian").metric_specs([]))
    lm = experiments.describe("lm").metric_specs([])
    assert lm["test_ppl"].worse == "higher" and lm["sample_tokens_per_s"].kind == "compute"
    assert lm["unigram_entropy"].unit == "bits"
    vae = experiments.describe("vae").metric_specs([])
    assert vae["real_share"].kind == "bookkeeping" and vae["elbo"].unit == "nats"


def test_timings_go_to_compute_per_generation_not_the_grids(full_report):
    html = (full_report / "index.html").read_text()
    compute = html.split('id="compute"')[1]
    assert "<h3>Per generation</h3>" in compute
    for col in ("training (s)", "sampling (s)", "sampling throughput (tokens/s)", "GPU-seconds"):
        assert f"<th>{col}</th>" in compute, col
    assert "<th>GPU-seconds</th><th>training (s)</th><th>sampling (s)</th>" in compute  # declared order
    assert "<td>lm</td><td>1</td><td>4</td><td>1800</td><td>28800</td><td>3600</td><td>1500</td><td>250</td>" \
        "<td>20480</td>" in compute
    assert "<td>gmm</td><td>all</td><td>4</td><td>72</td>" in compute  # an array's unit runs every generation
    assert "Timings are in the Compute section: sample_seconds, sample_tokens_per_s, train_seconds." in html
    assert "<h3>Run bookkeeping</h3>" in html  # vae's real_share


def test_flat_metric_is_not_magnified():
    from matplotlib.figure import Figure

    from collapse_hpc.plotting.figures import keep_scale

    ax = Figure().subplots()
    ax.plot([0, 1, 2], [0.0030, 0.0031, 0.0030])
    keep_scale(ax)
    lo, hi = ax.get_ylim()
    assert hi - lo >= 0.1 * 0.0031 * 0.99
    ax2 = Figure().subplots()
    ax2.plot([0, 1, 2], [1.0, 5.0, 9.0])
    before = ax2.get_ylim()
    keep_scale(ax2)
    assert ax2.get_ylim() == before  # a metric that moves keeps its scale


def test_a_reference_level_beyond_the_series_lies_inside_a_log_panel_too():
    """room_for gave a level (generation 0's, the real data's) 8% of the panel inside its edge on linear axes
    only: on a log axis, autoscaled 5% (of the decades shown) past a level above the series, the line lay on
    the panel's top edge. Its room is now measured in decades; a level at or below 0, not drawn there, is
    left out."""
    from matplotlib.figure import Figure

    from collapse_hpc.plotting.figures import ROOM, room_for

    ax = Figure().subplots()
    ax.plot([0, 1, 2], [1e-3, 1e-2, 1e-1])
    ax.set_yscale("log")
    ax.axhline(10.0)
    ax.axhline(1e-5)
    ax.axhline(0.0)
    ax.autoscale_view()
    room_for(ax, [10.0, 1e-5, 0.0])
    lo, hi = np.log10(ax.get_ylim())
    assert (hi - 1) / (hi - lo) >= ROOM - 1e-9 and (-5 - lo) / (hi - lo) >= ROOM - 1e-9, (lo, hi)
    assert (hi - 1) / (hi - lo) < 0.15 and (-5 - lo) / (hi - lo) < 0.15  # room, not a panel of empty space
    inside = Figure().subplots()  # a level well within the series leaves the axis as it was
    inside.plot([0, 1, 2], [1e-3, 1e-2, 1e-1])
    inside.set_yscale("log")
    before = inside.get_ylim()
    room_for(inside, [1e-2])
    assert inside.get_ylim() == before


def test_paper_values_are_marked_only_where_the_config_is_the_papers(tmp_path):
    paper = _lm_run(tmp_path / "paper", lm={"model": "facebook/opt-125m", "dataset": "wikitext2"})
    _, md = _page(paper)
    assert "the paper's reported test perplexity of generation 0 (34)" in md
    demo = _lm_run(tmp_path / "demo")
    _, md = _page(demo)
    assert "paper's reported" not in md


def test_paper_marks_are_drawn_in_the_test_perplexity_figure(tmp_path):
    from collapse_hpc.experiments.lm.figures import lm_test_ppl
    from tests.report.test_figures import _context

    paper = _lm_run(tmp_path / "paper", lm={"model": "facebook/opt-125m", "dataset": "wikitext2"})
    fig, _ = lm_test_ppl(_context(paper, "lm"))
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"paper: OPT-125M, generation 0", "paper: OPT-125M zero-shot"} <= labels


# ------------------------------------------------------------------ 4. n beside every band

def test_band_says_n_and_none_is_promised_with_one_seed(tmp_path):
    _, md = _page(_lm_run(tmp_path / "one", seeds=(0,)))
    caption = md.split("Perplexity on the real test set against generation")[1].split("\n")[0]
    assert "n = 1" in caption and "95%" not in caption and "no interval" in caption
    _, md = _page(_lm_run(tmp_path / "two", seeds=(0, 1)))
    caption = md.split("Perplexity on the real test set against generation")[1].split("\n")[0]
    assert "n = 2 per point" in caption and "95% confidence interval" in caption


def test_the_reports_banner_says_a_slurm_generation_failed_and_why(tmp_path, fake_slurm):  # noqa: F811
    """jobs.json holds no state of a Slurm job: the Incomplete banner read 'gen_001: not started' for a
    generation whose job had failed (its log said why), and 'not started' for one queued."""
    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import submit

    cfg = write_config(tmp_path, generations=3, seeds=[0, 1], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)["units"]
    failed = book["ltchain/replace-p0-s0/gen_000"]
    Path(failed["log"]).parent.mkdir(parents=True, exist_ok=True)
    Path(failed["log"]).write_text("Traceback (most recent call last):\nValueError: the shard is corrupt\n"
                                   "srun: error: vm: task 0: Exited with exit code 1\n")
    (fake_slurm / "sacct.txt").write_text(f"{failed['job_id']}|FAILED|00:00:01\n")
    queued = book["ltchain/replace-p0-s1/gen_000"]["job_id"]
    (fake_slurm / "squeue.txt").write_text(f"{queued}|PENDING|0:00|Priority\n")
    lines = tables.unfinished([collect.load_run(run)])
    assert "ltchain/replace-p0-s0: 0 of 3 generations finished; gen_000: failed: ValueError: the shard is corrupt" \
        in lines, lines
    assert "ltchain/replace-p0-s1: 0 of 3 generations finished; gen_000: queued" in lines, lines


def test_the_report_reads_a_recorded_id_whose_job_has_another_name_now_as_gone(tmp_path, fake_slurm):  # noqa: F811
    """After the cluster's job-id counter was reset or wrapped, a recorded id named a stranger's job: the report
    read that job's FAILED (with the unit's own log's last line) or RUNNING as the unit's. It reads as a job
    neither sacct nor squeue knows any more."""
    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import submit

    cfg = write_config(tmp_path, generations=2, seeds=[0], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)["units"]
    gen0, gen1 = (book[f"ltchain/replace-p0-s0/gen_{g:03d}"] for g in range(2))
    Path(gen0["log"]).parent.mkdir(parents=True, exist_ok=True)
    Path(gen0["log"]).write_text("Traceback (most recent call last):\nValueError: the shard is corrupt\n")
    gone = collect.job_states(run)  # purged: neither sacct nor squeue knows them
    (fake_slurm / "sacct.txt").write_text(f"{gen0['job_id']}|FAILED|00:00:01|0:0|1:0|2026-12-06T09:00:00|"
                                          "2026-12-06T09:00:01|eve|train-llama\n")
    (fake_slurm / "squeue.txt").write_text(f"{gen1['job_id']}|RUNNING|0:05|None|eve|N/A|train-llama\n")
    states = collect.job_states(run)
    assert states == gone and states["ltchain/replace-p0-s0/gen_000"]["state"] == "", states
    (fake_slurm / "sacct.txt").write_text(f"{gen0['job_id']}|FAILED|00:00:01|0:0|1:0|2026-12-01T10:00:00|"
                                          f"2026-12-01T10:00:01|eve|{gen0['name']}\n")
    assert collect.job_states(run)["ltchain/replace-p0-s0/gen_000"]["state"] == "FAILED"  # the run's own, a colleague's


def test_the_report_reads_only_failed_jobs_logs(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """job_states read the tail (up to 256 KiB) of every job's log, to keep a failed job's last line:
    at paper scale hundreds of logs of jobs that completed or still run. Only a failed job's is read."""
    from collapse_hpc.launch import status
    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import submit

    cfg = write_config(tmp_path, generations=3, seeds=[0], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)["units"]
    ids = [book[f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(3)]
    for g, jid in enumerate(ids):
        log = Path(book[f"ltchain/replace-p0-s0/gen_{g:03d}"]["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("step 1: loss 3.2\n" + ("ValueError: the shard is corrupt\n" if g == 1 else ""))
    (fake_slurm / "sacct.txt").write_text(f"{ids[0]}|COMPLETED|00:01:00\n{ids[1]}|FAILED|00:00:01\n")
    (fake_slurm / "squeue.txt").write_text(f"{ids[2]}|RUNNING|0:05|None\n")
    read = []
    original = status.error_lines
    monkeypatch.setattr(status, "error_lines", lambda log, *a: read.append(log) or original(log, *a))
    states = collect.job_states(run)
    assert read == [book["ltchain/replace-p0-s0/gen_001"]["log"]]
    assert states["ltchain/replace-p0-s0/gen_001"]["error"] == "ValueError: the shard is corrupt"
    assert not {"error"} & (states["ltchain/replace-p0-s0/gen_000"].keys() | states["ltchain/replace-p0-s0/gen_002"])


def test_comparison_gives_no_relative_change_of_a_signed_metric(tmp_path):
    """The gaussian's fitted mean went 0.0004 -> 0.11 and its log variance -0.016 -> -3.9: the table read
    +24817% and -23937%, a ratio of where 0 happens to lie. Metrics bounded at 0 keep theirs."""
    from collapse_hpc.report import stats

    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 3, "samples": [10], "regimes": ["replace"]}},
                           generations=3)
    synthetic.gaussian(root, generations=3, replicates=5)
    data = [collect.load_run(root)]
    summary = stats.summarise(collect.tidy(data))
    specs_ = experiments.describe("gaussian").metric_specs([])
    (header, rows), _ = tables.first_last(summary, data, "gaussian", specs_)
    change = {r[header.index("metric")]: r[header.index("relative change")] for r in rows}
    assert change["fitted mean"] == "—" and change["log fitted variance"] == "—", change
    assert change["fitted σ"].endswith("%") and change["W2² to the real"].endswith("%"), change


def test_the_report_says_sacct_failed_where_it_reads_job_states(tmp_path, fake_slurm, caplog):  # noqa: F811
    """Where slurmdbd was down the report read every ended job's state as none, without a word; a queued one's
    is still squeue's."""
    import logging

    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import submit

    cfg = write_config(tmp_path, generations=2, seeds=[0], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)["units"]
    gen0, gen1 = (book[f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2))
    (fake_slurm / "sacct.txt").write_text(f"{gen0}|FAILED|00:00:01\n")
    (fake_slurm / "sacct-fails.txt").write_text("sacct: error: Problem talking to the database: Connection refused\n")
    (fake_slurm / "squeue.txt").write_text(f"{gen1}|PENDING|0:00|Dependency\n")
    with caplog.at_level(logging.WARNING, logger="collapse_hpc.report"):
        states = collect.job_states(run)
    assert [states[f"ltchain/replace-p0-s0/gen_{g:03d}"]["state"] for g in range(2)] == ["UNKNOWN", "PENDING"]
    assert [r.getMessage() for r in caplog.records if r.name == "collapse_hpc.report"] == [
        "sacct failed (sacct: error: Problem talking to the database: Connection refused): the states of jobs that "
        "have left the queue are unknown until Slurm's accounting (slurmdbd) answers; those of queued jobs are "
        "squeue's"]


def test_the_report_says_squeue_got_no_answer_where_it_reads_job_states(tmp_path, fake_slurm, monkeypatch,  # noqa: F811
                                                                         caplog):
    """A slurmctld that did not answer squeue ended aggregate in a TimeoutExpired traceback: it warns, and reads
    the states sacct has."""
    import logging

    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import NO_ANSWER, hangs, submit

    cfg = write_config(tmp_path, generations=1, seeds=[0], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    gen0 = jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"]
    (fake_slurm / "sacct.txt").write_text(f"{gen0}|RUNNING|00:00:01\n")
    hangs(fake_slurm, monkeypatch, "squeue")
    with caplog.at_level(logging.WARNING, logger="collapse_hpc.report"):
        states = collect.job_states(run)
    assert states["ltchain/replace-p0-s0/gen_000"]["state"] == "RUNNING"
    assert [r.getMessage() for r in caplog.records if r.name == "collapse_hpc.report"] == [
        f"squeue{NO_ANSWER}: the states shown are Slurm's accounting's (sacct), which may lag behind the queue"]


def test_the_pages_incomplete_banner_says_a_job_sacct_did_not_tell_is_of_unknown_state(tmp_path, fake_slurm):  # noqa: F811
    """Where sacct failed, the Incomplete banner read 'gen_000: not started' for a generation whose job had
    ended (failed, for all it knew), while the warning said the state was unknown."""
    from tests.launch.helpers import jobs, write_config
    from tests.launch.test_slurm_plan import submit

    cfg = write_config(tmp_path, generations=2, seeds=[0], ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    gen0 = jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"]
    (fake_slurm / "sacct.txt").write_text(f"{gen0}|FAILED|00:00:01\n")
    (fake_slurm / "sacct-fails.txt").write_text("sacct: error: Problem talking to the database: Connection refused\n")
    html, md = _page(run)
    line = (f"ltchain/replace-p0-s0: 0 of 2 generations finished; gen_000: job {gen0}'s state unknown: Slurm's "
            f"accounting (sacct) did not answer; collapse-hpc status tells once it does")
    assert f"- {line}\n" in md and line.replace("'", "&#x27;") in html, md
    assert "not started" not in md.split("## Incomplete run")[1].split("##")[0], md
