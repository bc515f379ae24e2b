"""status's view of a failed or cancelled job's log, and of a run too long for a screen."""
import json
import os
import time

import pytest

from collapse_hpc.launch.status import error_lines
from tests.launch.test_slurm_plan import fake_slurm  # noqa: F401  (the fixture)


def test_cancelled_job_with_progress_bars_shows_slurms_reason_and_readable_lines(tmp_path):
    # a job cancelled mid-epoch logs on through Slurm's kill wait; tqdm redraws with \r
    bar = "".join(f"\repoch {{e}}/40: {i * 6:3d}%|{'#' * i:<16}| {i}/16 [00:00<00:02, 6.5it/s, loss=4.4]"
                  for i in range(17))
    text = "08:06:06 collapse_hpc.lm: gen 0: 512 training blocks\n"
    text += "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***\n"
    text += "".join(bar.format(e=e) + f"\r{' ' * 70}\r08:06:{e:02d} collapse_hpc.lm: epoch {e}/40: train loss 4.4\n"
                    for e in range(1, 60))
    text += ("\repoch 60/40:   0%|          | 0/16 [00:00<?, ?it/s]"
             "\repoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed\n")
    log = tmp_path / "45_0_log.err"
    log.write_text(text)
    assert log.stat().st_size > 16384
    lines = error_lines(str(log))
    assert lines[0] == "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***"
    assert lines[-1] == "epoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed"
    assert lines[-2].endswith("collapse_hpc.lm: epoch 59/40: train loss 4.4") and len(lines) == 5
    assert not any("\r" in ln for ln in lines)


def test_last_lines_of_a_plain_traceback(tmp_path):
    log = tmp_path / "9_0_log.err"
    log.write_text("start\nTraceback (most recent call last):\n  File x\nValueError: boom\n\n")
    assert error_lines(str(log), n=2) == ["  File x", "ValueError: boom"]


def _toy_and_tail(tmp_path):
    """A run of config toy + tail, launched with --only toy (recorded as the local back-end does), both toy
    generations COMPLETED as jobs."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug, records
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local",
                                        "toy": {}, "tail": {"replicates": 2, "chunk_replicates": 2}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run, only=["toy"])
    debug.execute(store, run, chains)
    book = {"executor": "local", "units": {}}
    for job in chains[0].jobs:
        records.record(book, job.label, job_id=str(100 + job.index), log=None, state="COMPLETED", elapsed=1.0)
    records.save(store, book)
    return store


def test_status_explains_a_completed_job_whose_unit_is_not_done(tmp_path, capsys):
    import json

    from collapse_hpc.launch.listing import show

    store = _toy_and_tail(tmp_path)
    gen1 = store.root / "toy" / "replace-p0-s0" / "gen_001"
    (gen1 / "metrics.parquet").unlink()  # e.g. weights lost on a scratch file system
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "toy/replace-p0-s0  generation 0 reached (1/2 done)" in out
    assert "gen_001  COMPLETED" in out
    assert "not done: toy/replace-p0-s0/gen_001/metrics.parquet" in out and "missing" in out
    assert f"redo: collapse-hpc run {store.root / 'config.yaml'} --run {store.root} --only toy" in out
    # left out with --only: said so, not "not run"
    assert "tail/replace-p0-s0  not in this run" in out and "NOT_RUN" not in out and "not run" not in out

    (gen1 / "manifest.json").unlink()
    assert show(store.root, as_json=True) == 0
    state = json.loads(capsys.readouterr().out)
    toy, tail = [c for c in state["chains"] if c["experiment"] == "toy"][0], \
        [c for c in state["chains"] if c["experiment"] == "tail"][0]
    assert toy["reached"] == 0 and toy["done"] == 1
    unit = toy["units"][1]
    assert unit["state"] == "COMPLETED" and "manifest.json is missing" in unit["why_not_done"]
    assert unit["redo"].startswith("collapse-hpc run ") and tail["not_in_this_run"] is True


def test_status_of_a_completed_unit_whose_folder_was_removed_says_it_is_gone(tmp_path, capsys):
    """A finished unit's folder deleted (by hand, a scratch purge): status said its manifest.json was missing
    because "the job ended before the unit's results were recorded", blaming a job that had recorded them."""
    import shutil

    from collapse_hpc.launch.listing import show

    store = _toy_and_tail(tmp_path)
    shutil.rmtree(store.root / "toy" / "replace-p0-s0" / "gen_001")
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "gen_001  COMPLETED" in out
    assert "not done: toy/replace-p0-s0/gen_001 is gone: its folder was removed after its job completed" in out, out
    assert "ended before" not in out


def test_status_of_a_moved_run_folder_names_what_a_finished_unit_lost(tmp_path, capsys):
    """A run folder moved to another file system (copied: its jobs.json names the first folder, so none of
    its jobs is this folder's), or one whose jobs.json was removed: a unit that had finished and then lost
    a file read 'not run', naming nothing; its manifest says it ran, so status says what is missing."""
    import shutil

    from collapse_hpc.launch.listing import show

    from collapse_hpc.launch import records

    store = _toy_and_tail(tmp_path)
    book = records.load(store)
    records.save(store, {**book, "folder": records.identity(store)})  # as the launchers record it
    moved = tmp_path / "moved"
    shutil.copytree(store.root, moved)
    shutil.rmtree(store.root)
    (moved / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet").unlink()
    assert show(moved) == 0
    out = capsys.readouterr().out
    assert "gen_001  not run" not in out, out
    assert "not done: toy/replace-p0-s0/gen_001/metrics.parquet: missing" in out, out
    assert f"redo: collapse-hpc run {moved / 'config.yaml'} --run {moved} --only toy" in out
    (moved / "jobs.json").unlink()
    assert show(moved) == 0
    assert "not done: toy/replace-p0-s0/gen_001/metrics.parquet: missing" in capsys.readouterr().out


def test_the_redo_command_pastes_whole_for_a_run_folder_with_spaces(tmp_path):
    """status printed `collapse-hpc submit /x/my run/config.yaml --run /x/my run …`: pasted, the shell
    split each path in two."""
    import shlex

    from collapse_hpc.launch.status import redo_command
    from collapse_hpc.store import RunStore

    store = RunStore(tmp_path / "it's my run")
    job = type("Job", (), {"experiment": "gmm"})()
    assert shlex.split(redo_command(store, job, "slurm")) == [
        "collapse-hpc", "submit", str(store.root / "config.yaml"), "--run", str(store.root), "--only", "gmm"]


def test_status_json_from_the_command_line(tmp_path):
    import json

    from tests.launch.helpers import collapse

    store = _toy_and_tail(tmp_path)
    rc, out, _ = collapse("status", store.root, "--json")
    assert rc == 0
    state = json.loads(out)
    assert [c["done"] for c in state["chains"] if c["experiment"] == "toy"] == [2]


def test_status_reads_each_units_manifest_once(tmp_path, capsys, monkeypatch):
    # its state, its binding (twice), what it holds and the job that made it each read it: ~3.5 times a unit
    import pathlib

    from collapse_hpc.launch.listing import show

    store = _toy_and_tail(tmp_path)
    (store.root / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet").unlink()  # completed, not done
    reads, real = [], pathlib.Path.read_text
    monkeypatch.setattr(pathlib.Path, "read_text",
                        lambda self, *a, **k: (self.name == "manifest.json" and reads.append(self.parent.name))
                        or real(self, *a, **k))
    for every in (False, True):
        reads.clear()
        assert show(store.root, as_json=every) == 0
        assert sorted(reads) == ["gen_000", "gen_001"]
    assert "gen_001  COMPLETED" in capsys.readouterr().out


def test_slurms_times_read_in_one_form():
    # squeue printed 0:16, sacct 00:00:49, a local run's record 0:00:20: one status, three forms
    from collapse_hpc.launch.status import _clock, slurm_seconds

    assert [_clock(slurm_seconds(t)) for t in ("0:16", "00:00:49", "1:02:03", "2-03:04:05")] == \
        ["0:00:16", "0:00:49", "1:02:03", "2 days, 3:04:05"]
    assert slurm_seconds("INVALID") is None and slurm_seconds("") is None and _clock(None) == ""


def _completed_locally(tmp_path):
    """A toy chain of 2 generations, both done by the local launcher's jobs 100 and 101 (COMPLETED)."""
    import time

    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug, records
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    started = time.time()
    debug.execute(store, run, chains)  # as the local launcher's jobs 100 and 101 would
    book = {"executor": "local", "units": {}}
    for job in chains[0].jobs:
        records.record(book, job.label, job_id=str(100 + job.index), log=None, state="COMPLETED", started=started,
                       elapsed=time.time() - started)
    records.save(store, book)
    return store


def test_a_unit_redone_by_hand_is_not_shown_as_its_earlier_job(tmp_path, capsys):
    """verify's redo (`collapse-hpc toy CFG --run RUN --variant V --unit 1`) rewrites a unit without a job:
    status named the local job that had made it before, whose results are gone."""
    import time

    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import read_manifest
    from tests.launch.helpers import collapse

    store = _completed_locally(tmp_path)
    gen1 = store.root / "toy" / "replace-p0-s0" / "gen_001"
    (gen1 / "metrics.parquet").write_bytes(b"damaged")
    time.sleep(0.01)
    rc, _, err = collapse("toy", store.config_path, "--run", store.root, "--variant", "replace-p0-s0", "--unit", "1")
    assert rc == 0, err
    assert show(store.root) == 0
    out = capsys.readouterr().out
    host = read_manifest(gen1)["host"]
    assert "gen_000  done          local pid 100" in out
    assert f"gen_001  done          by hand on {host}" in out and "pid 101" not in out


def test_a_unit_redone_by_hand_and_stopped_reads_unfinished_not_as_its_earlier_job(tmp_path, capsys, monkeypatch):
    """verify's redo of a unit whose local job had COMPLETED, stopped (Ctrl-C) before it finished: status read
    "COMPLETED … the job ended before the unit's results were recorded", the earlier job's story, not the
    redo's."""
    import time

    from collapse_hpc.launch.listing import show
    from collapse_hpc.report import collect, tables

    store = _completed_locally(tmp_path)
    (store.root / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet").write_bytes(b"damaged")
    time.sleep(0.01)
    _redone_and_stopped(store, 1, monkeypatch, capsys)
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "gen_000  done          local pid 100" in out
    assert "gen_001  unfinished" in out and "begun again by hand after local pid 101 completed, and not finished " \
                                             "since" in out, out
    assert "COMPLETED" not in out and "results were recorded" not in out and "redo:" not in out, out
    said = tables.unfinished([collect.load_run(store.root)])  # the report's banner says as status does
    assert said == ["toy/replace-p0-s0: 1 of 2 generations finished; gen_001: unfinished (no manifest yet)"], said


def _redone_and_stopped(store, index: int, monkeypatch, capsys) -> None:
    """verify's redo of the toy chain's generation `index`, stopped (Ctrl-C) in the middle of the unit."""
    from tests.launch.helpers import collapse
    from tests.toy_experiment import Toy

    def stopped(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Toy, "run_unit", stopped)
    rc, _, _ = collapse("toy", store.config_path, "--run", store.root, "--variant", "replace-p0-s0", "--unit", index)
    assert rc != 0
    capsys.readouterr()


def test_a_run_in_process_reads_as_run_not_as_not_launched(tmp_path, capsys):
    # `collapse-hpc run CONFIG --executor debug` records no jobs: status read "(not launched yet)" over its
    # finished units, and an experiment left out with --only as if it were still to come
    from collapse_hpc import cli, engine, experiments
    from collapse_hpc.launch import debug
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "debug",
                                        "toy": {}, "tail": {"replicates": 2, "chunk_replicates": 2}})
    store = RunStore(tmp_path / "run")
    assert cli.main(["status", str(store.root)]) == 2  # no run folder yet
    engine.open_run(store, run, only=["toy"])
    capsys.readouterr()
    assert cli.main(["status", str(store.root)]) == 0
    assert "(not launched yet)" in capsys.readouterr().out  # opened, nothing run
    debug.execute(store, run, engine.plan(run, only=["toy"]))
    assert cli.main(["status", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"run {store.root} (run in-process: --executor debug or by hand)"
    assert "toy/replace-p0-s0  generation 1 reached (2/2 done)" in out
    assert "tail/replace-p0-s0  not in this run (left out with --only)" in out


def _queued_as(fake, job_id: str, name: str) -> str:
    """`name`, the job's as sbatch keeps its script (the fake squeue gives each job the name in its script)."""
    (fake / f"job_{job_id}.sh").write_text(f"#!/bin/bash\n#SBATCH --job-name={name}\n")
    return name


def _submitted_run(tmp_path, fake, generations: int, parts: int, parts_fail: bool = False):
    """A Slurm run of a toy chain and a toy array as submit records it, nothing finished: the chain's
    first generation FAILED (its log kept), its dependents CANCELLED unstarted, every part PENDING
    (parts_fail: FAILED, each log ending in ValueError but the last part's)."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.launch.slurm import job_name
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": generations, "seeds": [0], "executor": "local",
                                        "toy": {}, "tail": {"replicates": parts, "chunk_replicates": 1}})
    store = RunStore(tmp_path / "run")
    chains = {c.experiment: c for c in engine.open_run(store, run)}
    book = {"executor": "slurm", "units": {}, "folder": records.identity(store)}
    sacct, squeue = [], []
    for n, job in enumerate(chains["toy"].jobs):
        log = store.logs / f"{200 + n}_0_log.err"
        if n == 0:
            log.write_text("Traceback (most recent call last):\nRuntimeError: out of memory\n")
        records.record(book, job.label, job_id=str(200 + n), log=str(log),
                       dependency=f"afterok:{199 + n}" if n else None,
                       name=_queued_as(fake, str(200 + n), job_name("t", job.label, "toy", 0, n)))
        sacct.append(f"{200 + n}|{'FAILED' if n == 0 else 'CANCELLED by 0'}|00:00:0{int(n == 0)}")
    array = _queued_as(fake, "900", job_name("t", "tail", "tail"))
    for job in chains["tail"].jobs:
        log = store.logs / f"900_{job.index}_0_log.err"
        records.record(book, job.label, job_id=f"900_{job.index}", log=str(log), name=array)
        if not parts_fail:
            squeue.append(f"900_{job.index}|PENDING|0:00|Priority")
            continue
        sacct.append(f"900_{job.index}|FAILED|00:00:02")
        last = "KeyError: 'x'" if job.index == parts - 1 else "ValueError: tail.samples must be >= 2"
        log.write_text(f"part {job.index}\nTraceback (most recent call last):\n{last}\n")
    records.save(store, book)
    (fake / "sacct.txt").write_text("\n".join(sacct) + "\n")
    (fake / "squeue.txt").write_text("\n".join(squeue) + "\n")
    return store


def test_a_small_runs_status_lists_every_unit(tmp_path, fake_slurm):  # noqa: F811
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=3, parts=4)
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and out == collapse("status", store.root, "--all")[1]
    assert "  gen_002  CANCELLED     job 202" in out and "  part_003  PENDING       job 900_3" in out


def test_status_of_a_failed_run_names_the_command_that_queues_the_rest(tmp_path, fake_slurm):  # noqa: F811
    """It said 'run or submit again' and left the researcher to retype the first submit's arguments
    (forgetting GENERATIONS= lengthens every chain); now the command, on the run's own config."""
    import shlex

    from tests.launch.helpers import collapse

    for generations, parts in ((3, 4), (40, 600)):  # every unit listed, and the summary of a large run
        store = _submitted_run(tmp_path / f"a b {parts}", fake_slurm, generations=generations, parts=parts)
        rc, out, _ = collapse("status", store.root)
        lines = out.splitlines()
        told = next(i for i, line in enumerate(lines) if f"{generations} units failed or were cancelled" in line)
        assert rc == 0 and lines[told].endswith("queue what is left (finished units are kept, queued ones not "
                                                "queued twice):"), out
        assert shlex.split(lines[told + 1]) == ["collapse-hpc", "submit", str(store.root / "config.yaml"), "--run",
                                        str(store.root)], out
    rc, out, _ = collapse("status", store.root, "--json")
    assert shlex.split(json.loads(out)["resume"])[1] == "submit"


def test_status_names_a_running_units_log(tmp_path, fake_slurm):  # noqa: F811
    """Logs are named by job id (logs/submitit/900_1_0_log.err): status named one only once its unit had
    failed, so following a running generation meant finding its job id first."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    log = store.logs / "900_1_0_log.err"
    log.write_text("part 1 at generation 7\n")
    (fake_slurm / "squeue.txt").write_text("900_0|PENDING|0:00|Priority\n900_1|RUNNING|0:05|None\n")
    rc, out, _ = collapse("status", store.root)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  part_001  RUNNING"))
    assert rc == 0 and lines[at + 1] == f"      log: {log}", out
    assert lines[at - 1].startswith("  part_000  PENDING"), out  # a queued part has no log yet


def test_a_large_runs_status_fits_a_screen_and_names_what_failed(tmp_path, fake_slurm):  # noqa: F811
    """A run of 640 units printed every unit on its own line (1300 lines, its failure scrolled away);
    now a screen: units by state, the chain, the failed generation in full, its 39 dependents in one
    line. --all lists every unit as before."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=40, parts=600)
    rc, out, _ = collapse("status", store.root)
    lines = out.splitlines()
    assert rc == 0 and len(lines) < 40, out
    assert "toy: 1 chain, 0/40 done; 39 CANCELLED, 1 FAILED" in out
    assert "tail: array of 600 parts (1 variant), 0/600 done; 600 PENDING (Priority)" in out
    assert "  toy/replace-p0-s0/gen_000  FAILED        job 200" in out and "| RuntimeError: out of memory" in out
    assert "toy/replace-p0-s0/gen_001..gen_039  CANCELLED     job 201" in out and "(39 units)" in out
    assert "waited on afterok:200: job 200 ended FAILED" in out
    assert "40 units failed or were cancelled" in out and f"status {store.root} --all" in out
    rc, every, _ = collapse("status", store.root, "--all")
    assert rc == 0 and len(every.splitlines()) > 640 and "  part_599  PENDING" in every


def test_a_large_runs_status_shows_an_array_that_failed_alike_once(tmp_path, fake_slurm):  # noqa: F811
    """Every part of an array failing the same way (a bad config) is one entry of the summary, the first
    part's log in full; a part whose log ends otherwise is an entry of its own."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=300, parts_fail=True)
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and len(out.splitlines()) < 40, out
    assert "tail/replace-p0-s0/part_000..part_298  FAILED" in out and "(299 units, their logs ending alike)" in out
    assert "| ValueError: tail.samples must be >= 2" in out
    assert "  tail/replace-p0-s0/part_299  FAILED" in out and "| KeyError: 'x'" in out


def test_a_dependent_of_a_preempted_generation_says_so():
    """A generation cancelled by preemption (PreemptMode=CANCEL) ends PREEMPTED: its dependent's cancel was
    put down to scancel or collapse-hpc cancel."""
    from collapse_hpc.launch.status import BAD, never_started

    assert "PREEMPTED" in BAD
    assert never_started("afterok:5", {"5": ("PREEMPTED", "0:04", "")}) == "waited on afterok:5: job 5 ended PREEMPTED"


def test_array_tasks_cancelled_before_they_ran_read_cancelled(fake_slurm):  # noqa: F811
    """sacct keeps no record of its own for an array task cancelled while queued: the array's remainder is
    one record (123_[0-2%3]), or none where the other tasks ran. Such tasks read UNKNOWN."""
    from collapse_hpc.launch.status import slurm_states

    (fake_slurm / "sacct.txt").write_text("1913_[1-2%3]|CANCELLED by 0|00:00:00\n1913_0|COMPLETED|00:00:02\n"
                                          "1902_0|COMPLETED|00:00:02\n1902_1|COMPLETED|00:00:02\n")
    (fake_slurm / "squeue.txt").write_text("1902_3|PENDING|0:00|Priority\n")
    states = slurm_states(["1913_0", "1913_1", "1913_2", "1902_1", "1902_2", "1902_3", "1915_0"])
    assert {j: s[0] for j, s in states.items() if not j.endswith("]")} == {
        "1913_0": "COMPLETED", "1913_1": "CANCELLED", "1913_2": "CANCELLED", "1902_0": "COMPLETED",
        "1902_1": "COMPLETED", "1902_2": "CANCELLED", "1902_3": "PENDING"}  # 1915: nothing known of it


def test_a_copy_of_a_local_run_whose_book_an_older_version_wrote_is_told_apart(tmp_path, capsys):
    """jobs.json of an older version records no folder (records.identity): a `cp -r` copy of a local run
    folder took the original's RUNNING unit and its pid for its own. The folder its logs are in tells
    the copy now; the original, also seen through a symlink, keeps its own."""
    import json
    import os
    import shutil

    from collapse_hpc import cli, engine, experiments
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    pid = os.getpid()  # a live process, as the unit the original's launcher runs
    (store.root / "jobs.json").write_text(json.dumps({  # as an older version wrote it: no "folder"
        "executor": "local", "updated": 0.0,
        "units": {"toy/replace-p0-s0/gen_000": {"job_id": str(pid), "state": "RUNNING",
                                                "log": str(store.logs / "submitit" / f"{pid}_0_log.err")}}}))
    copy, link = tmp_path / "copy", tmp_path / "link"
    shutil.copytree(store.root, copy)
    link.symlink_to(store.root)
    for seen in (store.root, link):
        capsys.readouterr()
        assert cli.main(["status", str(seen)]) == 0
        out = capsys.readouterr().out
        assert "RUNNING" in out and "a copy of" not in out, out
        assert f"local pid {pid}" in out and f"job {pid}" not in out, out  # a process id, no job to scancel
    assert cli.main(["status", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"a copy of {store.root}: its units run (or ran) there, none runs in this folder" in out, out
    assert "RUNNING" not in out and str(pid) not in out, out


def test_a_multi_rank_slurm_job_names_the_rank_that_ended_it_and_its_log(tmp_path, fake_slurm):  # noqa: F811
    """Rank 0's log of a two-rank job that a peer ended says only that the peer went (gloo's reset,
    srun's kill). status names the rank its ranks recorded as the cause, in the job's last attempt,
    with that rank's log and its last lines, as the local launcher does."""
    import json

    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=1)
    (store.logs / "200_0_log.err").write_text("RuntimeError: Connection reset by peer\nsrun: error: task 0: Killed\n")
    (store.logs / "200_1_log.err").write_text("Traceback (most recent call last):\nOSError: [Errno 28] No space\n")

    def ranks(attempt: int, states: dict) -> None:
        where = store.root / "logs" / "ranks" / f"200-r{attempt}"
        where.mkdir(parents=True)
        for rank, (state, cause) in states.items():
            (where / f"{rank}.json").write_text(json.dumps(
                {"rank": rank, "pid": 4000 + rank, "host": "node7", "state": state, "cause": cause}))

    ranks(0, {0: ("running", ""), 1: ("failed", "an earlier attempt's cause")})
    ranks(1, {0: ("stopped", "rank 1 failed: OSError"), 1: ("failed", "OSError: [Errno 28] No space")})
    rc, out, _ = collapse("status", store.root)
    assert rc == 0, out
    assert "| rank 1 of 2 (pid 4001) failed: OSError: [Errno 28] No space" in out
    assert "| OSError: [Errno 28] No space" in out and "Connection reset" not in out
    assert f"log: {store.logs / '200_1_log.err'}" in out and "earlier attempt" not in out


def test_a_job_slurm_ended_out_of_memory_names_the_knob_to_raise(tmp_path, fake_slurm):  # noqa: F811
    """sacct's OUT_OF_MEMORY (a cluster whose cgroups kill the job) read as one more failure, its log's
    last lines the only clue; status now says memory killed it and which knob of the profile to raise."""
    import json

    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=1)
    prof = tmp_path / "site.yaml"
    prof.write_text("name: site\njobs:\n  cpu:\n    mem: 4G\n")
    book = json.loads((store.root / "jobs.json").read_text())
    book["profile"] = str(prof)
    book["units"]["toy/replace-p0-s0/gen_000"]["kind"] = "cpu"
    (store.root / "jobs.json").write_text(json.dumps(book))
    sacct = fake_slurm / "sacct.txt"
    sacct.write_text(sacct.read_text().replace("200|FAILED|", "200|OUT_OF_MEMORY|"))
    (store.logs / "200_0_log.err").write_text("08:06:06 collapse_hpc: gen 0\n")  # killed: no traceback
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and "  gen_000  OUT_OF_MEMORY" in out, out
    assert (f"      Slurm killed it for using more memory than its job asked for (jobs.cpu.mem is 4G): raise "
            f"jobs.cpu.mem in {prof} and submit again (what it finished is kept)") in out, out
    prof.write_text("name: site\n")
    assert "(jobs.cpu.mem is not set: the cluster's default memory per CPU applied): raise jobs.cpu.mem" in \
        collapse("status", store.root)[1]


def test_a_job_a_signal_ended_names_it_as_sacct_records_it(tmp_path, fake_slurm):  # noqa: F811
    """A job whose process was killed from outside (the kernel's OOM killer where no cgroups enforce the
    job's memory, an admin's kill -9) read FAILED with srun's 'task 0: Killed' at most: sacct's
    DerivedExitCode (0:9) names the signal, and so does status; for a multi-rank job, on the rank gone."""
    import json

    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=1)
    sacct = fake_slurm / "sacct.txt"
    sacct.write_text(sacct.read_text().replace("200|FAILED|00:00:01", "200|FAILED|00:00:01|0:9|9:0")
                     .replace("201|CANCELLED by 0|00:00:00", "201|CANCELLED by 0|00:00:00|0:0|0:0"))
    (store.logs / "200_0_log.err").write_text("08:06:06 collapse_hpc: gen 0\nsrun: error: vm: task 0: Killed\n")
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and ("      sacct: a process of the job on its node was killed by SIGKILL: the usual cause is the "
                        "kernel's out-of-memory killer (its log: dmesg or journalctl -k)") in out, out
    assert out.count("SIGKILL") == 1, out  # gen_001, cancelled unstarted, got none
    chains = json.loads(collapse("status", store.root, "--json")[1])["chains"]
    assert [u.get("signal") for c in chains if c["experiment"] == "toy" for u in c["units"]] == ["SIGKILL", None]

    where = store.root / "logs" / "ranks" / "200-r0"  # two ranks: rank 1 gone unsaid, rank 0 stopped on it
    where.mkdir(parents=True)
    for rank, state in ((0, "stopped"), (1, "running")):
        (where / f"{rank}.json").write_text(json.dumps({"rank": rank, "pid": 999999 + rank, "host": __import__(
            "socket").gethostname(), "state": state, "cause": "rank 1 (pid 1000000) was killed"}))
    out = collapse("status", store.root)[1]
    assert "| rank 1 of 2 (pid 1000000) was killed by SIGKILL: the usual cause is the kernel's" in out, out
    assert out.count("SIGKILL") == 1, out


def test_json_says_never_started_only_of_a_job_that_never_started(tmp_path, fake_slurm):  # noqa: F811
    """--json gave a failed job that had run, its log there, the never-started unit's 'cancelled while
    queued: scancel or collapse-hpc cancel'."""
    import json

    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=1)
    chains = json.loads(collapse("status", store.root, "--json")[1])["chains"]
    units = {u["unit"]: u for c in chains if c["experiment"] == "toy" for u in c["units"]}
    assert units["gen_000"]["state"] == "FAILED" and units["gen_000"]["never_started"] is None
    assert units["gen_001"]["never_started"] == "waited on afterok:200: job 200 ended FAILED"


def test_a_kill_for_memory_is_read_from_slurms_lines_where_the_state_says_failed():
    """jobacct_gather's OverMemoryKill ends the job FAILED, cgroup's kill may leave a step's state alone:
    their lines in the log tell it; an error of the unit's own that mentions memory does not."""
    from collapse_hpc.launch.status import out_of_memory

    killed = ["slurmstepd-vm: error: StepId=2959.0 exceeded memory limit (1691013120 > 1572864000), being killed",
              "slurmstepd-vm: error: Exceeded job memory limit", "srun: error: vm: task 0: Killed"]
    cgroup = ["slurmstepd: error: Detected 1 oom-kill event(s) in StepId=7.0. Some of your processes may have been "
              "killed by the cgroup out-of-memory handler."]
    assert "raise jobs.gpu.mem in the profile" in out_of_memory("FAILED", killed, "gpu", None)
    assert out_of_memory("FAILED", cgroup, "aggregate", None).endswith(
        "raise jobs.aggregate.mem in the profile and submit again (what it finished is kept)")
    assert out_of_memory("FAILED", ["RuntimeError: CUDA out of memory"], "gpu", None) is None
    assert out_of_memory("OUT_OF_MEMORY", [], "cpu", str(__file__) + ".missing") is not None  # a profile gone


def test_a_copy_of_a_local_run_names_the_jobs_that_made_its_finished_units(tmp_path, capsys):
    """A `cp -r` copy of a run folder whose units the local launcher ran read each finished unit as
    'by hand on HOST': the copy's book leaves the original's jobs out (they are not the copy's). They
    are still what made those units: the copy names them, also after it has run units of its own, and
    a unit redone by hand still reads so (test_a_unit_redone_by_hand_is_not_shown_as_its_earlier_job)."""
    import shutil
    import time

    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import debug, records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore
    from tests.launch.helpers import collapse

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    started = time.time()
    debug.execute(store, run, chains)  # as the local launcher's jobs 100 and 101 would
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    for job in chains[0].jobs:
        records.record(book, job.label, job_id=str(100 + job.index), log=None, state="COMPLETED", started=started,
                       elapsed=time.time() - started)
    records.save(store, book)
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    capsys.readouterr()
    assert show(copy) == 0
    out = capsys.readouterr().out
    assert "gen_000  done          local pid 100" in out and "gen_001  done          local pid 101" in out, out
    assert "by hand" not in out
    rc, _, err = collapse("run", copy / "config.yaml", "--run", copy, "--generations", "3")  # its own job for gen 2
    assert rc == 0, err
    capsys.readouterr()
    assert show(copy) == 0
    out = capsys.readouterr().out
    mine = records.load(RunStore(copy))["units"]["toy/replace-p0-s0/gen_002"]["job_id"]
    assert "gen_001  done          local pid 101" in out and f"gen_002  done          local pid {mine}" in out, out
    assert mine not in ("100", "101") and "by hand" not in out


def test_a_slurm_run_the_local_launcher_took_over_keeps_the_states_of_the_units_slurm_ran(tmp_path, fake_slurm):  # noqa: F811
    """The local launcher ran a Slurm run's chain again (--only toy) and relabelled the whole book local: the
    array parts it did not run, whose Slurm jobs had failed, read '?' in status (no local state recorded) and
    the Slurm job ids it replaced were kept as if they were its own."""
    from collapse_hpc.report.collect import job_states
    from tests.launch.helpers import collapse, jobs

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2, parts_fail=True)
    rc, _, err = collapse("run", store.config_path, "--run", store.root, "--only", "toy", "--executor", "local")
    assert rc == 0, err
    book = jobs(store.root)
    assert book["executor"] == "local"
    gen0, part1 = book["units"]["toy/replace-p0-s0/gen_000"], book["units"]["tail/replace-p0-s0/part_001"]
    assert gen0["history"] == ["slurm 200"] and "executor" not in gen0 and gen0["state"] == "COMPLETED"
    assert part1["executor"] == "slurm" and part1["job_id"] == "900_1"
    rc, out, _ = collapse("status", store.root, "--json")
    chains = {c["experiment"]: c for c in json.loads(out)["chains"]}
    assert rc == 0 and [u["state"] for u in chains["toy"]["units"]] == ["done", "done"]
    assert [u["state"] for u in chains["tail"]["units"]] == ["FAILED", "FAILED"], out
    assert chains["tail"]["units"][0]["error"][-1] == "ValueError: tail.samples must be >= 2"
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and "  ?" not in out and "part_001  FAILED" in out, out
    assert job_states(store.root)["tail/replace-p0-s0/part_000"]["state"] == "FAILED"


def test_a_copy_of_a_run_that_left_an_experiment_out_leaves_it_out_too(tmp_path):
    """`cp -r` of a run made with --only: status listed the left-out experiment's chains as not run, and the
    copy's report put them under 'Incomplete run' as not started, where the original says neither."""
    import shutil

    from collapse_hpc.report import collect, tables
    from tests.launch.helpers import collapse, write_config

    cfg = write_config(tmp_path, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--only", "ltchain")
    assert rc == 0, err
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for folder in (run, copy):
        rc, out, _ = collapse("status", folder)
        assert rc == 0 and "ltarray/replace-p0-s0  not in this run (left out with --only)" in out, out
        data = collect.load_run(folder)
        assert data.left_out == ["ltarray"] and tables.unfinished([data]) == []
        rc, out, _ = collapse("verify", folder)
        assert rc == 0 and "0 unfinished" in out, out


def test_a_chain_whose_first_generation_lost_a_file_does_not_read_as_none_finished():
    """gen_000's weights deleted, gen_001 done: the chain read 'no generation finished (1/2 done)'."""
    from collapse_hpc.launch.listing import chain_head

    item = {"shape": "chain", "units": [{}, {}], "reached": -1}
    assert chain_head({**item, "done": 1}) == "generation 0 not done (1/2 done)"
    assert chain_head({**item, "done": 0}) == "no generation finished (0/2 done)"
    assert chain_head({**item, "reached": 0, "done": 1}) == "generation 0 reached (1/2 done)"


def test_a_local_chains_later_generations_wait_for_the_one_it_runs(tmp_path, capsys):
    """While the local launcher ran a chain's generation 0, status read its later generations 'not run', as if
    the chain had stopped; they wait for it. A chain whose running generation's process is gone (its launcher
    killed) still reads 'not run' after it, and one stopped by a failure NOT_RUN."""
    import json
    import os
    import subprocess

    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 3, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    gone = subprocess.Popen(["true"])
    gone.wait()

    def listed(gen0: dict, later: dict | None = None) -> tuple[list[str], str]:
        book = {"executor": "local", "folder": records.identity(store),
                "units": {"toy/replace-p0-s0/gen_000": gen0}}
        for gen in (1, 2):
            if later:
                book["units"][f"toy/replace-p0-s0/gen_00{gen}"] = later
        records.save(store, book)
        capsys.readouterr()
        assert show(store.root, as_json=True) == 0
        states = [(u["state"], u.get("after")) for u in json.loads(capsys.readouterr().out)["chains"][0]["units"]]
        assert show(store.root) == 0
        return [s if after is None else f"{s} (after gen {after})" for s, after in states], capsys.readouterr().out

    states, out = listed({"job_id": str(os.getpid()), "state": "RUNNING"})
    assert states == ["RUNNING", "waiting (after gen 0)", "waiting (after gen 1)"], states
    assert "gen_001  waiting (after gen 0)" in out and "not run" not in out, out
    from collapse_hpc.launch.listing import experiment_lines  # a large run's summary counts them as one state
    from collapse_hpc.launch.status import state_of

    assert experiment_lines("toy", state_of(store, store.root)["chains"])[0] == \
        "toy: 1 chain, 0/3 done; 2 waiting, 1 RUNNING"
    states, _ = listed({"job_id": str(gone.pid), "state": "RUNNING"})
    assert states == ["INTERRUPTED", "not run", "not run"], states
    states, _ = listed({"job_id": str(gone.pid), "state": "FAILED"},
                       {"job_id": None, "state": "NOT_RUN", "reason": "toy/replace-p0-s0/gen_000 failed"})
    assert states == ["FAILED", "NOT_RUN", "NOT_RUN"], states


def test_a_copys_completed_unit_that_is_not_done_names_the_job_that_ran_it(tmp_path, capsys):
    """In a `cp -r` copy a done unit named the original's job, and a completed one that lost a file named
    none, as if no job had run it: it names the original's job too. Where no file records a job (jobs.json
    removed), the line says where the job is missing from."""
    import json
    import shutil

    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore

    store = _toy_and_tail(tmp_path)
    records.save(store, {**records.load(store), "folder": records.identity(store)})
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    (copy / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet").unlink()
    capsys.readouterr()
    assert show(copy) == 0
    out = capsys.readouterr().out
    assert "gen_001  COMPLETED     local pid 101" in out, out
    assert show(copy, as_json=True) == 0
    toy = [c for c in json.loads(capsys.readouterr().out)["chains"] if c["experiment"] == "toy"][0]
    assert toy["units"][1]["job_id"] == "101"
    (copy / "jobs.json").unlink()
    assert show(copy) == 0
    assert "gen_001  COMPLETED     job: record missing (no jobs.json)" in capsys.readouterr().out
    mine = RunStore(copy)
    records.save(mine, {"executor": "local", "units": {}, "folder": records.identity(mine)})  # its own, empty
    assert show(copy) == 0
    assert "gen_001  COMPLETED     job: none in jobs.json" in capsys.readouterr().out


def _held_local_run(tmp_path, generations: int, booked):
    """A local run of a toy chain and a 2-part toy array whose lock this process holds as its launcher; `booked`
    edits its jobs.json first."""
    import socket

    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.store import RunStore
    from collapse_hpc.store.lock import folder_id

    run = experiments.config_from_dict({"name": "t", "generations": generations, "seeds": [0], "executor": "local",
                                        "toy": {}, "tail": {"replicates": 2, "chunk_replicates": 1}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    records.launching(book, chains)
    booked(book)
    records.save(store, book)
    (store.root / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0,
                                                  "folder": folder_id(store.root), "command": "run",
                                                  "launcher": True}))
    return store


def test_units_a_running_local_launcher_has_not_started_wait_for_a_core(tmp_path, capsys):
    """A local launcher starts a chain (or an array part) once its ranks fit in the free cores: those it has not
    started yet read 'not run' in status, as if they would never run. While it holds the run they wait: the
    first of each chain for a free core, the rest after it; once it is gone they read 'not run' again."""
    from collapse_hpc.launch.listing import show

    store = _held_local_run(tmp_path, 3, lambda book: None)
    assert show(store.root, as_json=True) == 0
    units = {c["experiment"]: c["units"] for c in json.loads(capsys.readouterr().out)["chains"]}
    assert [(u["state"], u.get("reason"), u.get("after")) for u in units["toy"]] == [
        ("waiting", "for a free core", None), ("waiting", None, 0), ("waiting", None, 1)]
    assert [(u["state"], u.get("reason")) for u in units["tail"]] == [("waiting", "for a free core")] * 2
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "gen_000  waiting" in out and "(for a free core)" in out and "gen_001  waiting (after gen 0)" in out
    assert "not run" not in out, out
    (store.root / ".lock").unlink()  # its launcher gone (killed): they will not run
    assert show(store.root, as_json=True) == 0
    units = {c["experiment"]: c["units"] for c in json.loads(capsys.readouterr().out)["chains"]}
    assert {u["state"] for us in units.values() for u in us} == {"not run"}


def test_units_a_local_launcher_stopping_for_want_of_room_will_not_start_read_not_run(tmp_path, capsys):
    """A launcher that stops for want of room starts no further unit, but records them NOT_RUN only once its
    running units end: meanwhile they read 'waiting (for a free core)'. What it records as it stops is said."""
    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show

    short = "toy/replace-p0-s0/gen_000 failed for want of room: No space left on device"

    def stopping(book):  # a part runs; the chain failed for want of room; the launcher stops
        records.record(book, "tail/replace-p0-s0/part_000", job_id=str(os.getpid()), state="RUNNING", started=0)
        records.record(book, "toy/replace-p0-s0/gen_000", job_id="1", state="FAILED", error="x")
        records.record(book, "toy/replace-p0-s0/gen_001", job_id=None, state="NOT_RUN",
                       reason="toy/replace-p0-s0/gen_000 failed")
        book[records.STOPPING] = short

    store = _held_local_run(tmp_path, 2, stopping)
    assert show(store.root, as_json=True) == 0
    units = {c["experiment"]: c["units"] for c in json.loads(capsys.readouterr().out)["chains"]}
    assert [(u["state"], u.get("reason")) for u in units["tail"]] == [
        ("RUNNING", None), ("NOT_RUN", f"{short}; no further unit starts")]
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "waiting" not in out and f"({short}; no further unit starts)" in out, out
    (store.root / ".lock").unlink()  # ended (or killed): the book's word is no launcher's now
    assert show(store.root, as_json=True) == 0
    units = {c["experiment"]: c["units"] for c in json.loads(capsys.readouterr().out)["chains"]}
    assert units["tail"][1]["state"] == "not run"


def test_done_units_of_a_run_whose_jobs_json_was_removed_do_not_read_as_run_by_hand(tmp_path, capsys):
    """With jobs.json removed nothing tells which job made a done unit: status said 'by hand on HOST' of
    every one, and of the run 'run in-process'. It says the record is missing."""
    from collapse_hpc.launch.listing import show

    store = _toy_and_tail(tmp_path)
    (store.root / "jobs.json").unlink()
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "by hand" not in out and "in-process" not in out, out
    assert out.splitlines()[0] == f"run {store.root} (its job records are missing: no jobs.json)"
    assert "gen_000  done          job: record missing (no jobs.json)" in out, out


def test_a_reason_an_older_version_wrote_in_brackets_of_its_own_shows_in_one_pair(tmp_path, capsys):
    """The local launcher once wrote a want of room's reason as '… failed for want of room (No space left on
    device)', which status showed as '(… (No space left on device))'; the writer was fixed, and old records
    read as it writes them now."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    records.launching(book, chains)
    first, second = chains[0].jobs
    records.record(book, first.label, job_id="1", state="FAILED", error="OSError: [Errno 28] No space left")
    records.record(book, second.label, job_id=None, state="NOT_RUN",
                   reason=f"{first.label} failed for want of room (No space left on device)")
    records.save(store, book)
    assert show(store.root) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if "NOT_RUN" in ln]
    assert len(line) == 1 and line[0].endswith(f"  ({first.label} failed for want of room: No space left on device)")
    assert "))" not in out, out


def test_a_failed_local_runs_footer_says_run_what_is_left_not_queue_it(tmp_path, capsys):
    """A local run's footer said 'queue what is left (…, queued ones not queued twice)' above a `collapse-hpc run`
    command: Slurm's words, of a run that queues nothing."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    records.launching(book, chains)
    records.record(book, chains[0].jobs[0].label, job_id="1", state="FAILED", error="ValueError: x")
    records.save(store, book)
    assert show(store.root) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == ("1 unit failed or was cancelled; fix the cause, then run what is left (finished units are "
                         "kept):")
    assert lines[-1] == f"  collapse-hpc run {store.root / 'config.yaml'} --run {store.root}"


def test_a_local_chains_waiting_generations_each_wait_after_the_one_before(tmp_path, capsys):
    """A local chain's generations behind the one its launcher runs read 'waiting (after gen 0)' all alike, the
    demo's vae gen_005 too, as if it would start once generation 0 ends; each waits after the one before, as a
    Slurm chain's afterok says."""
    from collapse_hpc.launch.listing import show

    def running(book):
        book["units"]["toy/replace-p0-s0/gen_000"] = {"job_id": str(os.getpid()), "state": "RUNNING"}

    store = _held_local_run(tmp_path, 5, running)
    assert show(store.root) == 0
    out = capsys.readouterr().out
    for gen in range(1, 5):
        assert f"gen_{gen:03d}  waiting (after gen {gen - 1})" in out, out


def test_a_slurm_chains_generations_queued_after_the_one_before_say_so(tmp_path, fake_slurm, capsys):  # noqa: F811
    """A Slurm chain's later generations wait (afterok) on the one before: they read a bare PENDING, where a
    local chain's read 'waiting (after gen N)'; they say which they wait after. One waiting for something else
    (a drained node) keeps Slurm's reason."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import records
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 3, "seeds": [0], "executor": "local", "toy": {}})
    store = RunStore(tmp_path / "run")
    (chain,) = engine.open_run(store, run)
    book = {"executor": "slurm", "units": {}, "folder": records.identity(store)}
    for job in chain.jobs:
        records.record(book, job.label, job_id=str(300 + job.index), log=str(store.logs / f"{300 + job.index}.err"),
                       dependency=f"afterok:{299 + job.index}" if job.index else None)  # no name: an older book's
        _queued_as(fake_slurm, str(300 + job.index), f"to00g{job.index:03d}-t:{job.label}")
    records.save(store, book)
    (fake_slurm / "squeue.txt").write_text("300|PENDING|0:00|ReqNodeNotAvail\n301|PENDING|0:00|Dependency\n"
                                           "302|PENDING|0:00|Dependency\n")
    assert show(store.root, as_json=True) == 0
    units = json.loads(capsys.readouterr().out)["chains"][0]["units"]
    assert [(u["state"], u.get("after"), u.get("reason")) for u in units] == [
        ("PENDING", None, "ReqNodeNotAvail"), ("PENDING", 0, None), ("PENDING", 1, None)]
    assert show(store.root) == 0
    out = capsys.readouterr().out
    assert "gen_001  PENDING (after gen 0) job 301" in out and "gen_002  PENDING (after gen 1) job 302" in out, out


def test_a_run_cancelled_by_hand_says_how_to_resume_and_its_queued_units_no_elapsed_time(tmp_path, fake_slurm):  # noqa: F811
    """After `collapse-hpc cancel` the footer said 'fix the cause', though nothing had failed; a queued part
    that never started read 0:00:00 as if it had run for no time."""
    import re

    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    (fake_slurm / "sacct.txt").write_text("200|CANCELLED by 1000|00:00:05\n201|CANCELLED by 1000|00:00:00\n")
    (fake_slurm / "squeue.txt").write_text("900_0|PENDING|0:00|Priority\n900_1|RUNNING|0:07|None\n")
    rc, out, _ = collapse("status", store.root, "--all")
    lines = out.splitlines()
    assert rc == 0 and "2 units were cancelled; queue what is left (finished units are kept" in out, out
    assert "fix the cause" not in out, out
    assert re.fullmatch(r"  part_000  PENDING +job 900_0 +\(Priority\)", lines[next(
        i for i, ln in enumerate(lines) if ln.startswith("  part_000"))]), out
    assert any(ln.startswith("  part_001  RUNNING") and ln.endswith("0:00:07") for ln in lines), out
    assert any(ln.startswith("  gen_000  CANCELLED") and ln.endswith("0:00:05") for ln in lines), out
    (fake_slurm / "sacct.txt").write_text("200|FAILED|00:00:05\n201|CANCELLED by 0|00:00:00\n")
    rc, out, _ = collapse("status", store.root)
    assert "2 units failed or were cancelled; fix the cause, then queue what is left" in out, out


def test_status_looks_for_jobs_json_once_however_many_done_units_look_run_by_hand(tmp_path, monkeypatch):
    """Where jobs.json is removed every done unit looks run by hand, and each one's looked for the file again."""
    import pathlib

    from collapse_hpc.launch.status import state_of
    from collapse_hpc.store import RunStore

    store = _toy_and_tail(tmp_path)
    (store.root / "jobs.json").unlink()
    looks, real = [], pathlib.Path.is_file
    monkeypatch.setattr(pathlib.Path, "is_file", lambda self: (self.name == "jobs.json" and looks.append(self))
                        or real(self))
    state = state_of(RunStore(store.root), store.root)
    done = [u for c in state["chains"] for u in c["units"] if u["state"] == "done"]
    assert len(done) == 2 and all(u["unrecorded"] == "record missing (no jobs.json)" for u in done), done
    assert len(looks) == 1, looks


def test_status_all_lines_up_its_columns_by_the_widest_value():
    """`status --all` padded the job column to 14 characters: a 5-digit pid (local pid 12345) or a long Slurm job
    id pushed that unit's elapsed time right of the others' of its chain, and a waiting state its job too."""
    from collapse_hpc.launch.listing import every_unit

    def unit(name, state, job_id, elapsed, **more):
        return {"unit": name, "index": 0, "state": state, "elapsed": elapsed, "job_id": job_id, **more}

    chains = [{"experiment": "toy", "variant": "replace-p0-s0", "shape": "chain", "done": 2, "reached": 1, "units": [
        unit("gen_000", "done", "99", "0:00:10", executor="local"),
        unit("gen_001", "done", "12345", "0:00:20", executor="local"),
        unit("gen_002", "PENDING", "4567890123", "", executor="slurm", after=1)]},
        {"experiment": "tail", "variant": "replace-p0", "shape": "array", "done": 1, "units": [
            unit("part_00000", "done", "7", "0:00:30", executor="local")]}]
    state = {"run": "/r", "executor": "local", "cluster": None, "chains": chains, "launched": [], "recorded": True,
             "resume": "collapse-hpc run c.yaml"}
    lines = [ln for ln in every_unit(state) if ln.startswith("  ")]
    assert len(lines) == 4
    elapsed = [ln.rstrip().rindex(" ") for ln in lines[:2]]
    assert len(set(elapsed)) == 1, lines  # both elapsed times of the chain start in one column
    jobs = [ln.index(word) for ln, word in zip(lines, ("local pid 99", "local pid 12345", "Slurm job 4567890123"))]
    assert len(set(jobs)) == 1, lines
    assert lines[0] == "  gen_000  done                  local pid 99         0:00:10", lines
    assert lines[3] == "  part_00000  done          local pid 7    0:00:30", lines  # a chain of its own


def test_recorded_job_ids_that_name_another_job_now_read_as_gone(tmp_path, fake_slurm):  # noqa: F811
    """After the cluster's job-id counter was reset (a reinstalled slurmctld, FirstJobId) or wrapped, a recorded
    id named a stranger's job (or another of the user's), and status showed that job's state for the unit: a
    stranger's FAILED with his signal, his RUNNING. A job is the unit's only where Slurm gives it the name it was
    queued with; the others read as a job gone from the queue and sacct, said in one note."""
    import getpass

    from tests.launch.helpers import collapse, jobs

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    gen1 = ("201|CANCELLED by 0|00:00:00|0:0|0:0|2026-12-01T10:00:00|2026-12-01T10:00:00|me|"
            + jobs(store.root)["units"]["toy/replace-p0-s0/gen_001"]["name"])
    (fake_slurm / "sacct.txt").write_text(gen1 + "\n")  # purged: neither sacct nor squeue knows 200 or the array
    (fake_slurm / "squeue.txt").write_text("")
    gone = collapse("status", store.root, "--all")
    (fake_slurm / "sacct.txt").write_text(f"200|FAILED|00:10:00|0:9|9:0|2026-12-06T09:00:00|2026-12-06T09:10:00|eve|"
                                          f"train-llama\n{gen1}\n")
    (fake_slurm / "squeue.txt").write_text(f"900_0|RUNNING|1:00|None|eve|N/A|train-llama\n"
                                           f"900_1|PENDING|0:00|Priority|{getpass.getuser()}|N/A|eval\n")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and out == gone[1] and "FAILED" not in out and "RUNNING" not in out, out
    assert "  gen_000  UNKNOWN       job 200" in out and "  part_000  UNKNOWN       job 900_0" in out, out
    assert "  gen_001  CANCELLED     job 201" in out, out  # the run's own, by its name
    assert err == ("note: 3 job ids of this run's jobs.json now name other jobs: 200 (recorded for toy/replace-p0-s0/"
                   "gen_000) is eve's 'train-llama'; 900_0 (recorded for tail/replace-p0-s0/part_000) is eve's "
                   f"'train-llama'; 900_1 (recorded for tail/replace-p0-s0/part_001) is {getpass.getuser()}'s 'eval'; "
                   "the cluster's job ids were reset or wrapped: they are not this run's, and are left alone\n"), err
    assert "note" not in gone[2]
    rc, out, _ = collapse("status", store.root, "--json")
    assert json.loads(out)["others"] == err[len("note: "):-1]


def test_a_job_sacct_names_allocation_while_slurmdbd_catches_up_keeps_its_state(tmp_path, fake_slurm):  # noqa: F811
    """A job that ended within seconds is in sacct under the name "allocation" until slurmdbd has its start
    record (seen on the dev cluster for a generation that failed at once and its cancelled successor): it read
    as another's job, and status said UNKNOWN for the FAILED generation."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    (fake_slurm / "sacct.txt").write_text("200|FAILED|00:00:01|1:0|1:0|2026-12-01T10:00:00|2026-12-01T10:00:01|me|"
                                          "allocation\n201|CANCELLED by 0|00:00:00|0:0|0:0|2026-12-01T10:00:00|"
                                          "2026-12-01T10:00:00|me|allocation\n")
    (fake_slurm / "squeue.txt").write_text("")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED        job 200" in out and "  gen_001  CANCELLED     job 201" in out, out
    assert "note" not in err, err


@pytest.fixture
def far_east(monkeypatch):
    """This process's time zone 14 hours ahead of UTC, where sacct prints its times (local, no zone)."""
    monkeypatch.setenv("TZ", "ABC-14")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_unit_redone_by_hand_after_its_slurm_job_and_stopped_reads_unfinished(
        tmp_path, fake_slurm, monkeypatch, capsys, far_east):  # noqa: F811
    """verify's redo of a unit whose Slurm job had COMPLETED, stopped (Ctrl-C) before it finished: status read
    "COMPLETED … the job ended before the unit's results were recorded", that job's story, not the redo's, and so
    did the report. The unit's binding newer than the job's End (sacct's, this host's local time) is the redo's."""
    from collapse_hpc.launch.listing import show
    from collapse_hpc.report import collect, tables

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    (fake_slurm / "squeue.txt").write_text("")  # every job has left the queue
    _redone_and_stopped(store, 0, monkeypatch, capsys)
    sacct = fake_slurm / "sacct.txt"

    def ended(end: str, state: str = "COMPLETED") -> str:
        """status, where sacct says job 200 ended at `end` (its fields up to End: no name)."""
        begun = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 120))
        sacct.write_text(f"200|{state}|00:01:00|0:0|0:0|{begun}|{end}\n201|CANCELLED by 0|00:00:00\n")
        assert show(store.root, every=True) == 0
        return capsys.readouterr().out

    out = ended(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60)))
    assert "  gen_000  unfinished" in out and "begun again by hand after Slurm job 200 COMPLETED, and not finished " \
                                               "since" in out, out
    assert "gen_000  COMPLETED" not in out and "results were recorded" not in out and "redo:" not in out, out
    said = tables.unfinished([collect.load_run(store.root)])  # the report's banner says as status does
    assert "toy/replace-p0-s0: 0 of 2 generations finished; gen_000: unfinished (no manifest yet)" in said, said
    out = ended(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 60)))  # its own attempt's binding
    assert "  gen_000  COMPLETED     job 200" in out and "results were recorded" in out, out
    out = ended("Unknown", "RUNNING")  # squeue did not answer: sacct's state, the job not ended
    assert "  gen_000  RUNNING       job 200" in out, out


def test_a_recorded_job_whose_id_was_reused_keeps_its_own_state(tmp_path, fake_slurm):  # noqa: F811
    """After a reset job-id counter, sacct gives an id's newest job, a stranger's: the run's own ended job read
    as gone (UNKNOWN). sacct --duplicates keeps every job of the id: the run's is the one with its name, and
    where the stranger's job with that id is still queued it is named in the note, not taken for the unit."""
    from tests.launch.helpers import collapse, jobs

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    own = jobs(store.root)["units"]["toy/replace-p0-s0/gen_000"]["name"]
    (fake_slurm / "sacct.txt").write_text(f"200|FAILED|00:00:07|0:9|9:0|2026-12-01T10:00:00|2026-12-01T10:00:07|me|"
                                          f"{own}\n200|COMPLETED|00:10:00|0:0|0:0|2026-12-06T09:00:00|"
                                          "2026-12-06T09:10:00|eve|train-llama\n")
    (fake_slurm / "squeue.txt").write_text("")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED        job 200" in out and "killed by SIGKILL" in out and not err, (out, err)
    (fake_slurm / "squeue.txt").write_text("200|RUNNING|1:00|None|eve|N/A|train-llama\n")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED        job 200" in out, out
    assert err.startswith("note: 1 job id of this run's jobs.json now names another job: 200 (recorded for "
                          "toy/replace-p0-s0/gen_000) is eve's 'train-llama'; "), err


# what sacct says where slurmdbd is down, its exit status 1
DBD_DOWN = ("sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection to host:"
            "localhost:6819: Connection refused\nsacct: error: Sending PersistInit msg: Connection refused\n"
            "sacct: error: Problem talking to the database: Connection refused\n")


def test_status_says_sacct_failed_and_keeps_the_queued_jobs_states(tmp_path, fake_slurm):  # noqa: F811
    """Where slurmdbd was down, sacct failed and status read every job that had left the queue UNKNOWN without a
    word: a failed generation looked like one gone from the records. It says sacct's error in one note; the
    queued jobs' states are squeue's still, and status ends 0 (it informs)."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    (fake_slurm / "sacct-fails.txt").write_text(DBD_DOWN)
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  UNKNOWN" in out and "  gen_001  UNKNOWN" in out, out
    assert "  part_000  PENDING" in out and "  part_001  PENDING" in out, out
    assert err == ("note: sacct failed (sacct: error: Problem talking to the database: Connection refused): the "
                   "states of jobs that have left the queue are unknown until Slurm's accounting (slurmdbd) answers; "
                   "those of queued jobs are squeue's\n"), err
    rc, out, _ = collapse("status", store.root, "--json")
    state = json.loads(out)
    assert rc == 0 and state["accounting"] == err[len("note: "):-1], out
    assert {u["unit"]: u["state"] for c in state["chains"] for u in c["units"]} == {
        "gen_000": "UNKNOWN", "gen_001": "UNKNOWN", "part_000": "PENDING", "part_001": "PENDING"}
    (fake_slurm / "sacct-fails.txt").unlink()  # accounting answers again
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED" in out and not err, (out, err)


def test_status_says_a_sacct_that_failed_without_a_word_by_its_exit_status(tmp_path, fake_slurm):  # noqa: F811
    from collapse_hpc.launch.status import slurm_view

    (fake_slurm / "sacct-fails.txt").write_text("")
    (fake_slurm / "squeue.txt").write_text("301|RUNNING|0:05|None\n")
    states = slurm_view(["300", "301"])[0]
    assert states == {"301": ("RUNNING", "0:00:05", "None")}
    assert states.accounting.startswith("sacct failed (exit status 1): "), states.accounting


def test_status_says_a_sacct_that_does_not_answer(fake_slurm, monkeypatch):  # noqa: F811
    """A sacct waiting on an unreachable slurmdbd past its time ended status in a traceback (TimeoutExpired)."""
    import subprocess

    from collapse_hpc.launch import status

    real = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd[0] == "sacct":
            raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    (fake_slurm / "squeue.txt").write_text("301|PENDING|0:00|Priority\n")
    states = status.slurm_view(["300", "301"])[0]
    assert states == {"301": ("PENDING", "", "Priority")}
    assert states.accounting.startswith(f"sacct failed (no answer within {status.SACCT_WAIT} s): "), states.accounting


def test_status_says_squeue_got_no_answer_and_shows_saccts_states(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """A slurmctld that did not answer squeue ended status in a TimeoutExpired traceback. It shows the states
    Slurm's accounting (sacct) has, says why in one note, and ends 0."""
    from tests.launch.helpers import collapse
    from tests.launch.test_slurm_plan import NO_ANSWER, hangs

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    hangs(fake_slurm, monkeypatch, "squeue")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED" in out and "  gen_001  CANCELLED" in out, out + err
    assert err == (f"note: squeue{NO_ANSWER}: the states shown are Slurm's accounting's (sacct), which may lag "
                   "behind the queue\n"), err
    rc, out, _ = collapse("status", store.root, "--json")
    assert rc == 0 and json.loads(out)["controller"] == err[len("note: "):-1], out


def test_status_says_a_slurmctld_it_cannot_reach_and_shows_saccts_states(tmp_path, fake_slurm):  # noqa: F811
    """slurmctld down or restarting: squeue fails at once ("Unable to contact slurm controller"), not past its
    wait. status read every queued job UNKNOWN and said nothing of why; it says why in one note, as for a
    slurmctld that does not answer."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    why = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    (fake_slurm / "bin" / "squeue").write_text(f'#!/bin/bash\necho "squeue: error: {why}" >&2\nexit 1\n')
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0 and "  gen_000  FAILED" in out and "  gen_001  CANCELLED" in out, out + err
    assert err.startswith("note: squeue -h failed: ") and f"{why}: the states shown are Slurm's accounting's " \
        "(sacct), which may lag behind the queue\n" in err, err
    rc, out, _ = collapse("status", store.root, "--json")
    assert rc == 0 and json.loads(out)["controller"] == err[len("note: "):-1], out


def test_a_requeued_units_time_is_that_of_all_its_runs_not_another_jobs(tmp_path, fake_slurm):  # noqa: F811
    """A unit requeued at its time limit (USR2) showed its last run's time alone (sacct's newest record), though
    sacct --duplicates keeps each run's: the researcher could not tell what it cost. Its time is its runs' sum,
    and how many; not a job's that had the id before the cluster's job ids were reset."""
    from collapse_hpc.launch.status import slurm_view
    from tests.launch.helpers import collapse, jobs

    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    book = jobs(store.root)["units"]
    own, array = book["toy/replace-p0-s0/gen_000"]["name"], book["tail/replace-p0-s0/part_000"]["name"]

    def ran(jid: str, state: str, elapsed: str, submit: str, end: str, who: str = "me", name: str = own) -> str:
        end = end if end == "Unknown" else f"2026-12-07T{end}"
        return f"{jid}|{state}|{elapsed}|0:0|0:0|2026-12-07T{submit}|{end}|{who}|{name}\n"

    (fake_slurm / "sacct.txt").write_text(
        "200|COMPLETED|05:00:00|0:0|0:0|2026-11-01T08:00:00|2026-11-01T13:00:00|eve|train-llama\n"  # before a reset
        + ran("200", "REQUEUED", "00:30:00", "08:00:00", "08:30:00") + ran("200", "REQUEUED", "00:30:00", "08:30:11",
                                                                           "09:00:11")
        + ran("200", "RUNNING", "00:09:58", "09:00:22", "Unknown") + ran("201", "PENDING", "00:00:00", "08:00:00",
                                                                         "Unknown")
        + ran("900_0", "REQUEUED", "00:20:00", "08:00:00", "08:20:00", name=array)
        + ran("900_0", "PENDING", "00:00:00", "08:20:01", "Unknown", name=array)
        + ran("900_1", "REQUEUED", "00:30:00", "08:00:00", "08:30:00", name=array)
        + ran("900_1", "FAILED", "00:15:00", "08:30:11", "08:45:11", name=array))
    (fake_slurm / "squeue.txt").write_text("200|RUNNING|10:00|None\n201|PENDING|0:00|Dependency\n"
                                           "900_0|PENDING|0:00|BeginTime\n")
    rc, out, err = collapse("status", store.root, "--all")
    assert rc == 0, err
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    assert lines["gen_000"].split("job 200")[1].strip() == "1:10:00 over 3 runs", out  # not eve's 5 hours
    # requeued after one run, it waits: that run's time alone, not "over 1 run"
    assert lines["part_000"].split("job 900_0")[1].strip().startswith("0:20:00  (requeued"), out
    assert lines["part_001"].split("job 900_1")[1].strip() == "0:45:00 over 2 runs", out
    assert lines["gen_001"].endswith("job 201"), out  # never ran: no time
    rc, out, _ = collapse("status", store.root, "--json")
    units = {u["unit"]: u for c in json.loads(out)["chains"] for u in c["units"]}
    assert (units["gen_000"]["elapsed"], units["gen_000"]["runs"]) == ("1:10:00", 3), units["gen_000"]
    assert "runs" not in units["gen_001"], units["gen_001"]
    # without the run's book, the newest job's runs (its user and name) alone
    (fake_slurm / "squeue.txt").write_text("")
    (fake_slurm / "sacct.txt").write_text(
        ran("200", "REQUEUED", "00:30:00", "08:00:00", "08:30:00") + ran("200", "COMPLETED", "00:05:00", "08:30:11",
                                                                         "08:35:11")
        + ran("200", "REQUEUED", "02:00:00", "10:00:00", "12:00:00", who="eve", name="train-llama")
        + ran("200", "COMPLETED", "01:00:00", "12:00:11", "13:00:11", who="eve", name="train-llama"))
    states = slurm_view(["200"])[0]
    assert states["200"][:2] == ("COMPLETED", "1:00:00") and states.runs == {"200": (3 * 3600, 2)}, states.runs


def test_a_requeued_job_with_no_begin_time_names_both_settings_that_set_its_wait():
    """Where squeue gave a requeued job no begin time, status read "Slurm holds it until its begin time, set at
    the requeue: AuthInfo's cred_expire on, 120 s by default": "holds" as if held, and only cred_expire, though
    SchedulerParameters' requeue_delay sets the wait where a cluster sets it (Slurm 26.05 on)."""
    import datetime

    from collapse_hpc.launch.listing import explained

    said = explained({"reason": "BeginTime"})
    assert said == ("requeued: Slurm may start it again once the cluster's requeue delay has passed, its "
                    "SchedulerParameters' requeue_delay where set, else its AuthInfo's cred_expire, 120 s by default")
    begins = datetime.datetime.combine(datetime.date.today(), datetime.time(12, 0, 5))
    assert explained({"reason": "BeginTime", "start_time": begins.isoformat()}) == \
        "requeued: Slurm may start it again from 12:00:05, its begin time"


def test_a_generation_cancelled_before_it_started_shows_no_elapsed_time(tmp_path, fake_slurm):  # noqa: F811
    """A chain's generation that kill_invalid_depend cancelled behind a failed one (seen on the dev cluster) read
    "CANCELLED  job 201  0:00:00" above "never started, no log": sacct's Elapsed, as if it had run for no time.
    One that ran keeps its time, 0:00:00 included."""
    from tests.launch.helpers import collapse

    store = _submitted_run(tmp_path, fake_slurm, generations=3, parts=1)
    (fake_slurm / "sacct.txt").write_text("200|FAILED|00:00:00\n201|CANCELLED by 0|00:00:00\n"
                                          "202|CANCELLED by 0|00:00:00\n")
    (fake_slurm / "squeue.txt").write_text("")
    rc, out, err = collapse("status", store.root, "--all")
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  gen_")}
    assert rc == 0 and lines["gen_001"].endswith("job 201") and lines["gen_002"].endswith("job 202"), out + err
    assert "never started, no log" in out and lines["gen_000"].endswith(" 0:00:00"), out  # its log is there


# sacct -n -P -X -D's lines (status.SACCT's fields) of a generation the dev cluster requeued (scontrol requeue
# 7 s in), as it gave them: the run's record, then the requeued job's as it waited, ran again and was cancelled
GEN = "va00g001-faults:vae/replace-p0-s0/gen_001"
REQUEUED_RUN = f"5537|REQUEUED|00:00:07|0:0|0:0|2026-12-07T23:04:01|2026-12-07T23:04:46|root|{GEN}\n"
AGAIN = {"waits": f"5537|PENDING|00:00:00|0:0|0:0|2026-12-07T23:04:48|Unknown|root|{GEN}\n",
         "runs": f"5537|RUNNING|00:00:02|0:0|0:0|2026-12-07T23:04:48|Unknown|root|{GEN}\n",
         "runs, its record slurmdbd's placeholder": "5537|RUNNING|00:00:02|0:0|0:0|2026-12-07T23:04:48|Unknown|root|"
                                                   "allocation\n",
         "ran": f"5537|CANCELLED by 0|00:00:05|143:0|0:0|2026-12-07T23:04:48|2026-12-07T23:05:04|root|{GEN}\n",
         "cancelled before it ran again": f"5537|CANCELLED by 0|00:00:00|0:0|0:0|2026-12-07T23:04:48|"
                                          f"2026-12-07T23:04:50|root|{GEN}\n"}


@pytest.mark.parametrize("then, squeue, runs", [
    ("waits", "0:00", (7, 1)),  # the run before alone: it waits to run again
    ("runs", "0:02", (9, 2)),
    ("runs, its record slurmdbd's placeholder", "0:02", (9, 2)),
    ("ran", None, (12, 2)),
    ("cancelled before it ran again", None, (7, 1)),  # its record of no run is no run
])
def test_a_requeued_jobs_runs_are_its_records_that_ran(then, squeue, runs):
    """status's "over N runs" of a requeued job sums sacct --duplicates' records of its runs: a record of a run that
    never was (cancelled while it waited again, Elapsed 0, End set) is none, and the run under way (End Unknown)
    is counted once, squeue's time where the job is queued, whatever name its record has yet."""
    from collapse_hpc.launch.status import _own, _over_runs, _sacct_records

    found = _sacct_records(REQUEUED_RUN + AGAIN[then])["5537"]
    names = {"5537": ("vae/replace-p0-s0/gen_001", GEN)}
    mine, _ = _own("5537", found, names)
    assert len(mine) == 2, mine
    assert _over_runs(mine, squeue or mine[-1].elapsed, squeue is not None) == runs


@pytest.mark.parametrize("lines, squeue", [
    ("5536|COMPLETED|00:00:21|0:0|0:0|2026-12-07T23:04:01|2026-12-07T23:04:22|root|g\n", None),  # ran once
    ("5543|CANCELLED|00:00:00|0:0|0:0|2026-12-07T23:05:30|2026-12-07T23:05:52|root|g\n", None),  # never ran
    ("5536|RUNNING|00:00:30|0:0|0:0|2026-12-07T23:04:01|Unknown|root|g\n", "0:30"),  # runs, its first
    # requeued as it was launched (its node failed to start it): a record of no time, then its one run
    ("5536|REQUEUED|00:00:00|0:0|0:0|2026-12-07T23:04:01|2026-12-07T23:04:01|root|g\n"
     "5536|RUNNING|00:00:30|0:0|0:0|2026-12-07T23:04:03|Unknown|root|g\n", "0:30"),
])
def test_a_job_that_ran_once_or_never_has_no_runs_to_count(lines, squeue):
    """A job with one run (or none) shows its own time, not "over 1 run"."""
    from collapse_hpc.launch.status import _own, _over_runs, _sacct_records

    found = next(iter(_sacct_records(lines).values()))
    mine, _ = _own("5536", found, None)
    assert _over_runs(mine, squeue or mine[-1].elapsed, squeue is not None) is None


@pytest.mark.parametrize("held, behind", [
    (3, "it and the report's job wait"),  # the last generation: no units after it
    (1, "it, gen_002..gen_003 and the report's job wait"),
    (2, "it, gen_003 and the report's job wait"),
])
def test_a_held_generation_names_what_waits_on_it_and_the_last_no_units_after_it(tmp_path, fake_slurm, held,  # noqa: F811
                                                                                   behind):
    """A held generation's line said "it and the units after it wait", the last generation's too, which has
    none after it (the report's job waits on it: afterany), and held Slurm's hold in brackets inside its own
    reason's."""
    import re

    from tests.launch.helpers import collapse, jobs
    from tests.launch.test_slurm_plan import _queued_chain

    run, ids = _queued_chain(tmp_path, 4)
    report = jobs(run)["aggregate"]["job_id"]
    (fake_slurm / "squeue.txt").write_text(
        "".join(f"{job}|PENDING|0:00|{'JobHeldUser' if g == held else 'Dependency'}\n"
                for g, job in enumerate(ids) if g >= held) + f"{report}|PENDING|0:00|Dependency\n")
    rc, out, err = collapse("status", run)
    lines = [ln for ln in out.splitlines() if ln.startswith("  gen_")]
    line = next(ln for ln in lines if ln.startswith(f"  gen_{held:03d}"))
    assert rc == 0 and line.endswith(f"(held by scontrol hold: {behind} until `scontrol release` of its job)"), \
        out + err
    assert line.count("(") == 1 and not re.search(r"\(after gen", line), line  # no brackets in the reason's own
    assert len({ln.index(" job ") for ln in lines}) == 1, out  # its job's column lined up with the others'
    (fake_slurm / "squeue.txt").write_text(f"{ids[held]}|PENDING|0:00|JobHeldAdmin\n")  # nothing queued behind it
    (fake_slurm / "sacct.txt").write_text(f"{report}|CANCELLED by 0|00:00:00\n")
    rc, out, _ = collapse("status", run)
    line = next(ln for ln in out.splitlines() if ln.startswith(f"  gen_{held:03d}"))
    assert line.endswith("(held by an administrator's scontrol hold: it waits until `scontrol release` of its "
                         "job)"), out


def _chain_item(reasons: list) -> dict:
    """A chain whose generations are all queued, each with Slurm's reason it waits (None: its chain's wait)."""
    units = [{"unit": f"gen_{g:03d}", "index": g, "state": "PENDING", "elapsed": "", "job_id": str(300 + g),
              **({"reason": reason} if reason else {})} for g, reason in enumerate(reasons)]
    return {"experiment": "toy", "variant": "replace-p0-s0", "shape": "chain", "units": units, "done": 0,
            "reached": -1}


def test_a_summary_counts_held_jobs_in_short_words():
    """A summary's count of held jobs (a run too long for a screen) took a single job's words: "2 PENDING (held
    (scontrol hold): it and the units after it wait until `scontrol release` of its job)"."""
    from collapse_hpc.launch.listing import experiment_lines

    item = _chain_item(["JobHeldUser", "JobHeldUser", "job requeued in held state", None])
    assert experiment_lines("toy", [item])[0] == ("toy: 1 chain, 0/4 done; 2 PENDING (held by scontrol hold), "
                                                  "1 PENDING (requeued and held by scontrol requeuehold), 1 PENDING")


def test_a_summary_counts_requeued_jobs_in_words_that_fit_several():
    """A summary's count of requeued jobs took a single job's words: "3 PENDING (requeued: Slurm may start it again
    once the cluster's requeue delay has passed, ...)"."""
    from collapse_hpc.launch.listing import experiment_lines

    line = experiment_lines("toy", [_chain_item(["BeginTime"] * 3 + [None])])[0]
    assert line == ("toy: 1 chain, 0/4 done; 3 PENDING (requeued, to start again after the cluster's requeue "
                    "delay), 1 PENDING"), line


@pytest.mark.parametrize("reason", ["JobHeldUser", "JobHeldAdmin", "job requeued in held state"])
def test_a_chains_summary_line_says_its_next_generation_is_held(reason):
    """A chain's line in a summary named its next generation "PENDING, job 300" whether it waited to run or was
    held, which stalls the chain until released; a generation waiting for its turn reads as before."""
    from collapse_hpc.launch.listing import experiment_lines

    assert experiment_lines("toy", [_chain_item([reason, None])])[1].endswith("; gen_000 PENDING, held, job 300")
    assert experiment_lines("toy", [_chain_item(["BeginTime", None])])[1].endswith("; gen_000 PENDING, job 300")


def test_a_short_unit_shows_its_time_to_a_tenth_of_a_second(tmp_path, capsys):
    """A finished unit's time is its manifest's compute seconds, which status rounded down to whole seconds: a
    1.4 s unit read 0:00:00, as if it had taken no time. Under a minute it reads "1.4 s", right-aligned under
    an H:MM:SS time, which rounds to the nearest second (83.6 s: 0:01:24, not 0:01:23)."""
    from collapse_hpc.launch.listing import show
    from collapse_hpc.store.manifest import SELF, own_digest

    store = _completed_locally(tmp_path)
    for gen, seconds in (("gen_000", 1.4), ("gen_001", 83.6)):
        path = store.root / "toy" / "replace-p0-s0" / gen / "manifest.json"
        manifest = {**json.loads(path.read_text()), "seconds": seconds}
        path.write_text(json.dumps({**manifest, SELF: own_digest(manifest)}))
    assert show(store.root) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  gen_")]
    assert [ln.split("local pid")[1][6:] for ln in lines] == ["  1.4 s", "0:01:24"], lines
    assert len({len(ln) for ln in lines}) == 1, lines  # one column
