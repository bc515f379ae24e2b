"""collapse-hpc aggregate RUN [RUN …]: the tidy table, the summary, the figures and the page.

Writes OUT (default: the first run's report/ folder):
  metrics.parquet  long form: run, experiment, variant, regime, seed, settings…, replicate,
                   generation, metric, value (finished units only)
  summary.csv      mean and 95% confidence interval (t) over seeds and replicates per generation
  figures/         PNG and PDF of every figure
  results.md, index.html (removed first and written last: the page exists only once everything it
                   links does, never over a report that stopped halfway, on a full disk, say)
Works on unfinished runs: what is missing is shown as missing.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from collapse_hpc import experiments, logs
from collapse_hpc.errors import UserError
from collapse_hpc.plotting.plots import Context
from collapse_hpc.report import collect, drawing, longform, page, stats, tables
from collapse_hpc.store import RunStore
from collapse_hpc.store.atomic import claim_folder, sweep, write_text
from collapse_hpc.store.layout import folder_to_make, utf8_path
from collapse_hpc.store.live import RunRemoved, at_work, removed
from collapse_hpc.store.lock import folder_lock, reading
from collapse_hpc.store.reads import read_text
from collapse_hpc.store.space import Unwritable, mount_point, nearest_folder, unwritable

log = logging.getLogger("collapse_hpc.report")
STOPS = "the report stops here: it writes nothing more into report/"  # each file there is whole (atomic)


def build(runs: list[str], out: str | Path | None = None, replicates: int | None = None, held: bool = True) -> Path:
    """Write the report; returns the path of index.html. `replicates`: only the first that many
    replicates of each variant (a report of many replicates that would not fit in memory). `held`: with
    each run's lock held while it is read (lock.reading), as a writer of it holds it."""
    if not runs:
        raise UserError("aggregate: name at least one run folder")
    if replicates is not None and replicates < 1:
        raise UserError(f"aggregate: --replicates {replicates}: at least 1")
    collect.distinct_runs(runs)
    for run in runs:  # pyarrow reads and writes UTF-8 paths only (a run moved under a latin-1 name)
        utf8_path(run, "")
    if out is not None:
        folder_to_make(out, "--out ")
    if out is None and Path(runs[0]).is_dir():
        _writable(Path(runs[0]) / "report")
    with contextlib.ExitStack() as locks:
        for run in runs:
            if RunStore(run).exists():  # else load_run says what it is, with nothing made there
                locks.enter_context(at_work(Path(run)))  # removed meanwhile (rm -rf): no report/ made again there
                if held:
                    locks.enter_context(reading(Path(run), "aggregate", log=log.warning))
        try:
            return _build(runs, out, replicates)
        except Exception as e:  # what failed in one removed since (a file gone with it, RunRemoved) is that
            gone = next((Path(run).absolute() for run in runs if removed(Path(run))), None)
            if gone is None:
                raise
            raise RunRemoved(gone, "aggregate worked in it",
                             "its report is not written there, nor anything of the run made again") from e


def _build(runs: list[str], out: str | Path | None, replicates: int | None) -> Path:
    data = [collect.load_run(p, label) for p, label in zip(runs, collect.labels(runs))]
    # --out must be new, empty or made by aggregate before; a run's own report/ is the run's
    out = claim_folder(Path(out) if out else data[0].root / "report", "the report folder", owned=not out)
    claim_folder(out / "figures", "the report's figures folder", owned=True)
    with folder_lock(out):  # one report at a time writes a folder: the sweep removes no live writer's files
        _sweep(out)
        return _write(out, data, replicates)


def _sweep(out: Path) -> None:
    """Temporaries of a report killed while writing (SIGKILL, the OOM killer): nothing else removes them."""
    for folder in (out, out / "figures"):
        sweep(folder)


def _write(out: Path, data: list, replicates: int | None) -> Path:
    drawn = _drawn(out / "figures")  # before anything is written: a refused read leaves the last report whole
    df = collect.tidy(data, replicates)
    columns = tables.column_notes(data)
    for note in columns:  # once an experiment, not a line a unit
        log.warning("report: %s", note)
    summary = stats.summarise(df)
    for page_file in (out / "index.html", out / "results.md"):  # an earlier report's page: not over new files
        page_file.unlink(missing_ok=True)
    longform.write(out / "metrics.parquet", df)
    write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.8g"))

    names = experiments.ordered(list({e for r in data for e in r.experiments()}))
    sections, specs = [], {}
    for name in names:
        exp = experiments.describe(name)
        specs[name] = exp.metric_specs(sorted(df.loc[df["experiment"] == name, "metric"].unique()))
        ctx = Context(name, longform.rows(df, "experiment", name), summary[summary["experiment"] == name], data,
                      specs[name])
        figs = drawing.draw(ctx, out / "figures")
        configs = [sec for r in data for sec in [r.raw_config.get(name)] if isinstance(sec, dict)]
        table, notes = tables.first_last(summary, data, name, specs[name])
        bookkeeping, _ = tables.first_last(summary, data, name, specs[name], kind="bookkeeping")
        sections.append(page.Section(name, figs, table, exp.heading(configs), exp.metrics, exp.texts(data), notes,
                                     bookkeeping, tables.absent_from(data, name)))
        log.info("report: %s: %d of %d figures", name, sum(bool(f.files) for f in figs), len(figs))

    _drop_stale(out / "figures", drawn, {f for s in sections for fig in s.figures for f in fig.files})
    rep = page.Report(title(data), out.absolute(), [(r.label, r.root) for r in data], sections,
                      tables.completeness(data), tables.compute(data), tables.packages(data),
                      [(r.label, r.config_text) for r in data], tables.problems(data), tables.unfinished(data),
                      tables.phases(df, data, specs), _subset(data, replicates), tables.beyond_plan(data),
                      tables.left_out(data), columns)
    write_text(out / "results.md", page.write_markdown(rep))
    index = out / "index.html"
    write_text(index, page.write_html(rep))
    return index.absolute()


def _subset(data: list[collect.RunData], replicates: int | None) -> str:
    """What the page says of a report of the first `replicates` replicates, where a variant had more."""
    if replicates is None:
        return ""
    cut = sorted({f"{name}'s {n}" for r in data for name in r.experiments()
                  if (n := _replicates(r, name)) and n > replicates})
    if not cut:
        return ""
    return (f"Replicates: this report uses the first {replicates} of each variant's replicates (aggregate "
            f"--replicates {replicates}, to fit in memory), of {', '.join(cut)}; every replicate's values are "
            f"in the units' own metrics.parquet.")


def _replicates(run: collect.RunData, name: str) -> int | None:
    """The replicates of each variant of experiment `name` in a run's config (its default where unset)."""
    section = run.raw_config.get(name)
    n = (section or {}).get("replicates") if isinstance(section, dict) else None
    n = n if n is not None else getattr(experiments.config_class(name), "replicates", None)
    return n if isinstance(n, int) else None


def _writable(report: Path) -> None:
    """A run one may only read (a colleague's) is refused before anything is read, naming --out."""
    here = nearest_folder(report)
    why = unwritable(here)
    if why is None:
        return
    # a read-only mount is no permission of the run's owner to ask for
    said = f"on a read-only file system (mounted read-only at {mount_point(here)})" if why is Unwritable.READ_ONLY \
        else "not writable by you (a run you may only read)"
    raise UserError(f"{here}: {said}; write its report elsewhere with --out DIR")


def title(runs: list[collect.RunData]) -> str:
    """The page's title from the configs' names (`name:`), not the run folders' (e.g. "gpu")."""
    names = [str(r.raw_config.get("name") or r.label) for r in runs]
    return "Model collapse: " + ", ".join(dict.fromkeys(names))


DRAWN = ".drawn.json"  # in figures/: the files the last report drew there


def _drawn(folder: Path) -> list:
    """The files the last report drew in `folder` (its DRAWN list; none where it is missing or damaged). A
    read the file system refuses is NotRead: taken for none, the figures it lists would stay for good."""
    try:
        earlier = json.loads(read_text(folder / DRAWN, "figures list", "the report is kept as it is",
                                       kept=(FileNotFoundError,)))
    except (FileNotFoundError, ValueError):
        return []
    return earlier if isinstance(earlier, list) else []


def _drop_stale(folder: Path, earlier: list, keep: set) -> None:
    """Figures an earlier report drew (`earlier`: _drawn) that this one no longer draws. Only files named in
    the earlier report's own list go: an --out folder may hold the user's files, which are never ours."""
    names = {p.name for p in keep}
    for name in earlier:
        if isinstance(name, str) and name not in names and Path(name).name == name:
            (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / DRAWN, json.dumps(sorted(names)) + "\n")


def main(runs: list[str], out: str | None = None, replicates: int | None = None, held: bool = True) -> int:
    index = build(runs, out, replicates, held)
    logs.last_word(str(index))
    return 0


def home(runs: list[str], out: str | None) -> Path | None:
    """The run whose own report/ the report is (the first run's, without --out), where its log may be written:
    None for an --out report, a folder that is no run, or a run one may only read (build refuses it)."""
    if out is not None or not runs or not RunStore(runs[0]).exists():
        return None
    root = Path(runs[0])
    return root if unwritable(nearest_folder(root / "logs")) is None else None


def job(run_dir: str) -> int:
    """The final job of a Slurm run (submit's `finish`): tables, figures and the results page, of the
    first replicates that fit in the job's memory where submit recorded a number (report_replicates).
    Once Slurm ends the job (scancel, a resubmit's cancel of it as stale) it stops, as a unit does: run on,
    it wrote report/ after a newer report's job had been queued."""
    from collapse_hpc.launch import records
    from collapse_hpc.launch.job import stops_when_ending

    logs.setup(run_dir=home([run_dir], None))  # the job's log, and the run's, as `collapse-hpc aggregate` writes
    with stops_when_ending("report", STOPS), records.read_once():  # jobs.json: read once, here and by the report
        replicates = records.load(RunStore(run_dir)).get("report_replicates")
        # no run lock: a resubmit cancels this job as stale, which its lock would refuse
        return main([run_dir], None, replicates if isinstance(replicates, int) else None, held=False)
