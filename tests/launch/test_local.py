"""The local back-end: real subprocesses through submitit's LocalExecutor."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from collapse_hpc.machine import machine_cores as cores
from collapse_hpc.store import RunStore, read_manifest
from collapse_hpc.store.layout import not_a_run
from collapse_hpc.verify import verify_run
from tests.launch.helpers import collapse, jobs, write_config

pytestmark = pytest.mark.slow


def unit(run, exp, variant, name):
    return run / exp / variant / name


def share(ranks_at_once: int) -> int:
    """Cores the local back-end gives each rank (COLLAPSE_THREADS), as its manifest should say."""
    return int(os.environ.get("COLLAPSE_THREADS") or max(1, cores() // min(ranks_at_once, cores())))


def test_chains_in_order_arrays_in_parallel(tmp_path):
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4}, ltarray={"parts": 2})
    run = tmp_path / "run"
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0, err
    assert "4 units done" in out and "units" in err  # the progress bar
    gens = [read_manifest(unit(run, "ltchain", "replace-p0-s0", f"gen_{g:03d}")) for g in range(2)]
    assert gens[1]["started"] >= gens[0]["finished"]  # a chain's generations in order
    parts = [read_manifest(unit(run, "ltarray", "replace-p0-s0", f"part_{p:03d}")) for p in range(2)]
    # three ranks side by side: each unit held its share of the cores, not all it could see
    assert [m["resources"]["cpus"] for m in gens + parts] == [share(3)] * 4
    assert verify_run(run) == 0
    book = jobs(run)
    assert book["executor"] == "local"
    assert {e["state"] for e in book["units"].values()} == {"COMPLETED"}
    assert all((run / "logs" / "submitit").glob("*_0_log.err"))
    rc, out, _ = collapse("status", run)
    assert rc == 0 and "generation 1 reached (2/2 done)" in out and "array: 2/2 parts done" in out
    rc, out, _ = collapse("run", cfg, "--run", run)  # nothing left to do: no job at all
    assert rc == 0 and "0 units done, 4 already finished" in out


def test_a_units_warning_is_said_on_the_console_too(tmp_path):
    """A unit's warning (the lm's training checkpoint set aside, training resumed from an earlier step) went to
    its log alone, a file in the run: a user of `collapse-hpc run` saw nothing. Each is one line on the console,
    naming the unit, as it finishes; the other units say none."""
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4, "warns_at": 1})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 0, err
    step = unit(run, "ltchain", "replace-p0-s0", "gen_001") / "steps"
    assert [ln for ln in err.splitlines() if ln.startswith("warning")] == [
        f"warning: ltchain/replace-p0-s0/gen_001: ltchain step folder {step} set aside"]


def test_a_units_warning_is_said_while_it_still_runs(tmp_path):
    """A warning (the lm's checkpoint set aside at a generation's start) was said only as its unit finished:
    after hours of training on a paper-scale run. It is said once it reaches the unit's log, and once only."""
    import threading

    cfg = write_config(tmp_path, generations=1, ltchain={"rows": 2, "sleep_s": 30, "warns_at": 0})
    run = tmp_path / "run"
    gen0 = unit(run, "ltchain", "replace-p0-s0", "gen_000")
    proc = _launched(cfg, run, gen0 / "steps" / "000.done")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        deadline = time.time() + 20
        while not any(ln.startswith("warning") for ln in lines) and time.time() < deadline:
            time.sleep(0.1)
        assert not (gen0 / "manifest.json").exists() and proc.poll() is None  # the unit still runs
        assert [ln.strip() for ln in lines if ln.startswith("warning")] == [
            f"warning: ltchain/replace-p0-s0/gen_000: ltchain step folder {gen0 / 'steps'} set aside"], lines
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert sum(ln.startswith("warning: ltchain") for ln in lines) == 1, lines


def test_failed_unit_stops_its_chain_only(tmp_path):
    cfg = write_config(tmp_path, generations=3, seeds=[0, 1], ltchain={"fail_at": 1, "fail_seed": 0})
    run = tmp_path / "run"
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 1
    failed = "ltchain/replace-p0-s0/gen_001"
    log = jobs(run)["units"][failed]["log"]
    assert f"{failed}: log {log}" in err and "ltchain failure at generation 1" in open(log).read()
    store = RunStore(run)
    assert store.is_done(unit(run, "ltchain", "replace-p0-s0", "gen_000"))
    assert not unit(run, "ltchain", "replace-p0-s0", "gen_002").exists()  # the dependent never ran
    assert all(store.is_done(unit(run, "ltchain", "replace-p0-s1", f"gen_{g:03d}")) for g in range(3))
    rc, out, _ = collapse("status", run)
    assert "ltchain/replace-p0-s0  generation 0 reached (1/3 done)" in out
    assert "gen_001  FAILED" in out and f"log: {log}" in out
    assert "RuntimeError: ltchain failure at generation 1" in out
    assert "gen_002  NOT_RUN" in out


def test_bad_input_of_a_unit_is_one_line_in_its_log(tmp_path):
    """A UserError ends the unit's job as the CLI ends on one, `error: <message>` in its log, where submitit's
    re-raise wrote the whole traceback; the FAILED line says the message."""
    cfg = write_config(tmp_path, generations=1, ltchain={"fail_at": 0, "fail_as": "input"})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 1
    label = "ltchain/replace-p0-s0/gen_000"
    log = jobs(run)["units"][label]["log"]
    assert f"FAILED {label}: ltchain failure at generation 0 (log: {log})" in err, err
    text = open(log).read()
    assert "Traceback" not in text and text.splitlines()[-1] == "error: ltchain failure at generation 0", text

def test_several_ranks_rendezvous(tmp_path):
    cfg = write_config(tmp_path, generations=1, ltchain={"ranks": 2, "rows": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 0, err
    gen = unit(run, "ltchain", "replace-p0-s0", "gen_000")
    table = pq.read_table(gen / "metrics.parquet").to_pydict()
    assert table["world_size"] == [2.0, 2.0] and table["rank_sum"] == [3.0, 3.0]  # gloo all-reduce of 1 + 2
    assert read_manifest(gen)["world_size"] == 2
    assert read_manifest(gen)["resources"]["cpus"] == 2 * share(2)  # per rank, times the ranks


def test_a_redone_unit_gets_the_same_threads_as_in_the_full_run(tmp_path):
    # results depend on the thread count (torch's CPU reductions): a resume must not change it
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4}, ltarray={"parts": 2})
    run = tmp_path / "run"
    assert collapse("run", cfg, "--run", run)[0] == 0
    gen1 = unit(run, "ltchain", "replace-p0-s0", "gen_001")
    (gen1 / "manifest.json").unlink()
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "1 unit done" in out, err
    assert read_manifest(gen1)["resources"]["cpus"] == share(3)


def test_a_run_of_some_experiments_only_gives_its_units_the_threads_of_the_whole_run(tmp_path):
    """`run --only` gave a chain every core where the whole run shares them: a run resumed with --only (or
    one begun so, resumed without) computed its units with another thread count than an uninterrupted run."""
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4}, ltarray={"parts": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--only", "ltchain")
    assert rc == 0, err
    gens = [read_manifest(unit(run, "ltchain", "replace-p0-s0", f"gen_{g:03d}")) for g in range(2)]
    assert [m["resources"]["cpus"] for m in gens] == [share(3)] * 2


def test_a_unit_redone_by_hand_gets_the_threads_of_the_run(tmp_path):
    """verify's redo command (`collapse-hpc EXP CONFIG --run RUN --unit N`) ran the unit in-process on every core:
    its results differed from the run's, whose units the local back-end gives a share of them."""
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4}, ltarray={"parts": 2})
    run = tmp_path / "run"
    assert collapse("run", cfg, "--run", run)[0] == 0
    gen1 = unit(run, "ltchain", "replace-p0-s0", "gen_001")
    (gen1 / "manifest.json").unlink()
    before = os.environ.get("COLLAPSE_THREADS")
    rc, out, err = collapse("ltchain", run / "config.yaml", "--run", run, "--variant", "replace-p0-s0", "--unit", "1")
    assert rc == 0 and "1 unit done" in out, err
    assert read_manifest(gen1)["resources"]["cpus"] == share(3)
    assert os.environ.get("COLLAPSE_THREADS") == before  # this process's own setting, restored


def _sigint_default() -> None:
    # a test runner started in the background by a script (no job control) ignores SIGINT, and
    # the ignore is inherited; a terminal's Ctrl-C reaches a foreground command with it in place
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running_in_group(pgid: int) -> list[int]:
    """The processes of a group that still run (a zombie has ended, only its parent has not reaped it)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
        except OSError:
            continue
        if int(group) == pgid and state != "Z":
            out.append(int(stat.parent.name))
    return out


def _sigint_ignored() -> None:
    # `nohup collapse-hpc run … &` from a script: the launcher and its units inherit SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _launched(cfg, run, marker, preexec=_sigint_default, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`collapse-hpc run` in its own process group, once `marker` exists (or it ended, or 2 minutes)."""
    proc = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "run", str(cfg), "--run", str(run)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            preexec_fn=preexec)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def _stepping(tmp_path, sleep_s: float = 30):
    """(config, run, generation 0) of a run of one generation that takes `sleep_s` in resumable steps:
    its first step (gen0/steps/000.done) is the moment to stop it mid-unit."""
    cfg = write_config(tmp_path, generations=1, ltchain={"rows": 2, "sleep_s": sleep_s})
    run = tmp_path / "run"
    return cfg, run, unit(run, "ltchain", "replace-p0-s0", "gen_000")


def _launched_stepping(tmp_path, sleep_s: float = 30, **options):
    """(config, run, generation 0, the launcher) of _stepping's run, launched (_launched) and past its
    first step."""
    cfg, run, gen0 = _stepping(tmp_path, sleep_s)
    return cfg, run, gen0, _launched(cfg, run, gen0 / "steps" / "000.done", **options)


def _ctrl_c_when(cfg, run, marker, sig=signal.SIGINT, group=True, preexec=_sigint_default) -> int:
    """`collapse-hpc run` in its own process group, given Ctrl-C (SIGINT to the whole group, as a
    terminal sends it; or `sig`, to the launcher alone unless `group`) once `marker` exists; its
    exit status. It prints no traceback (nor
    do its job processes, which share its terminal), says it was interrupted, and leaves no process."""
    proc = _launched(cfg, run, marker, preexec)
    try:
        assert marker.exists(), f"{marker} never appeared"
        time.sleep(1)  # the launcher has polled the job since (it still runs)
        (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        # a run's Ctrl-C line says its finished units are kept and the same command goes on
        last = err.replace("\r", "\n").splitlines()[-1]
        assert "Traceback" not in err and last.startswith("interrupted: finished units are kept"), err
        time.sleep(1)
        deadline = time.time() + 5
        while _running_in_group(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _running_in_group(proc.pid) == []  # the units' processes ended with the launcher
        return proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_after_a_unit_finished_records_it_completed(tmp_path):
    # the unit's manifest is complete but its process lives on: the launcher still sees it running
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 2, "linger_s": 60})
    run = tmp_path / "run"
    gen0 = unit(run, "ltchain", "replace-p0-s0", "gen_000")
    assert _ctrl_c_when(cfg, run, gen0 / "manifest.json") == 130
    assert RunStore(run).is_done(gen0)
    units = jobs(run)["units"]
    assert units["ltchain/replace-p0-s0/gen_000"]["state"] == "COMPLETED"
    assert "ltchain/replace-p0-s0/gen_001" not in units


def test_ctrl_c_during_a_unit_records_it_cancelled(tmp_path):
    cfg, run, gen0 = _stepping(tmp_path)
    assert _ctrl_c_when(cfg, run, gen0 / "steps" / "000.done") == 130
    assert not RunStore(run).is_done(gen0)
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"


def test_a_unit_that_swallows_ctrl_c_is_killed_and_the_same_command_goes_on(tmp_path):
    """Ctrl-C during the gmm's first numba compile was swallowed by the unit: the launcher said 'interrupted: …
    the same command goes on from them' and left it running, and the same command was refused ('unit processes
    still running without a launcher')."""
    cfg = write_config(tmp_path, generations=1, ltchain={"rows": 2, "sleep_s": 2.0, "deaf_s": 40.0})
    run = tmp_path / "run"
    gen0 = unit(run, "ltchain", "replace-p0-s0", "gen_000")
    assert _ctrl_c_when(cfg, run, gen0 / "steps" / "000.done") == 130  # and no process is left
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"
    with RunStore(run).lock() as lock:
        assert lock.held and lock.workers() == []


@pytest.mark.parametrize("group", [True, False], ids=["group", "launcher alone"])
def test_sigterm_during_a_unit_cancels_it_as_ctrl_c_does(tmp_path, group):
    # `timeout` (the group) or `kill PID` (the launcher alone): the units ignore SIGTERM (submitit)
    # and never see a signal sent to the launcher, so it must end them, or they run on unattended
    # and keep the run locked
    cfg, run, gen0 = _stepping(tmp_path)
    assert _ctrl_c_when(cfg, run, gen0 / "steps" / "000.done", signal.SIGTERM, group) == 130
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"
    with RunStore(run).lock() as lock:  # a next run is not refused for the units of a dead launcher
        assert lock.held and lock.workers() == []


def test_units_of_a_launcher_killed_alone_stop_and_the_next_run_resumes(tmp_path):
    # `kill -9 PID` of the launcher (the OOM killer, a crashed login node's session) cannot be
    # handled by it: its units ran on unattended to their end, and a next run was refused meanwhile
    # 12 s: the unit, left running on, would end within the wait below (and be done); the resume is short
    cfg, run, gen0, proc = _launched_stepping(tmp_path, sleep_s=12, stderr=subprocess.DEVNULL)
    try:
        assert (gen0 / "steps" / "000.done").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while _running_in_group(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _running_in_group(proc.pid) == []
    finally:
        for pid in _running_in_group(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert not RunStore(run).is_done(gen0) and (gen0 / "steps" / "000.done").exists()  # kept to resume
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "took over stale lock" in out + err, err
    assert verify_run(run) == 0


def test_a_run_at_once_after_its_launcher_was_killed_waits_for_its_units_to_stop(tmp_path):
    """Run again right after `kill -9` of its launcher, while the unit processes were still stopping on
    their own: refused ('locked by dead pid …, whose unit processes … still run', exit 2). It waits now."""
    cfg, run, gen0, proc = _launched_stepping(tmp_path, sleep_s=12, stderr=subprocess.DEVNULL)
    try:
        assert (gen0 / "steps" / "000.done").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _running_in_group(proc.pid)  # its unit still runs, for now
        rc, out, err = collapse("run", cfg, "--run", run)
    finally:
        for pid in _running_in_group(proc.pid):
            os.kill(pid, signal.SIGKILL)
    waited = [ln for ln in err.splitlines() if "are stopping; waiting up to 30 s for them" in ln]
    assert rc == 0 and len(waited) == 1 and f"locked by dead pid {proc.pid}" in waited[0], err
    assert verify_run(run) == 0


def test_status_of_a_copy_of_a_running_local_run_says_none_of_its_units_runs_there(tmp_path):
    """`cp -r` of a local run folder while its unit ran: status of the copy showed the original's unit as
    RUNNING, its job id the original's pid. It is told apart now, as a Slurm run folder's copy is: only
    its finished units count, and a run of the copy goes on from them in the copy."""
    import shutil

    cfg, run, _, proc = _launched_stepping(tmp_path, sleep_s=4)
    copy = tmp_path / "copy"
    try:
        shutil.copytree(run, copy)
        pid = jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"]
        rc, out, _ = collapse("status", run)
        assert rc == 0 and "RUNNING" in out  # the original's own
        rc, out, err = collapse("status", copy)
        assert rc == 0, err
        assert f"a copy of {run}: its units run (or ran) there, none runs in this folder" in out, out
        assert "RUNNING" not in out and str(pid) not in out, out
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rc, out, err = collapse("run", cfg, "--run", copy)
    assert rc == 0 and "1 unit done" in out, out + err
    rc, out, _ = collapse("status", copy)
    assert rc == 0 and "a copy of" not in out and "1/1 done" in out, out


def test_a_unit_killed_alone_is_named_killed_and_the_next_run_resumes_it(tmp_path):
    # a unit process killed outright (the OOM killer) was reported FAILED with its log's last line,
    # which read like progress, not like what happened
    # and then said only that it was killed, not by which signal nor what that usually means
    cfg, run, gen0, proc = _launched_stepping(tmp_path, sleep_s=4)
    try:
        (registered,) = (run / ".units").iterdir()
        pid = int(registered.name.rpartition("-")[2])
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1 and "Traceback" not in err
    assert (f"FAILED ltchain/replace-p0-s0/gen_000: its process (pid {pid}) was killed by SIGKILL: the usual cause "
            f"is the kernel's out-of-memory killer (its log: dmesg or journalctl -k); to hold less memory, lower "
            f"ltchain.rows (log: ") in err, err
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "1 unit done" in out, err
    assert verify_run(run) == 0
    # its time is that of both attempts, and says so: the killed one's counted too
    assert read_manifest(gen0)["attempts"] == 2
    rc, out, _ = collapse("status", run)
    assert any(ln.startswith("  gen_000  done") and ln.endswith("over 2 runs") for ln in out.splitlines()), out


def test_a_rank_killed_from_outside_is_named_with_its_signal(tmp_path):
    """Rank 0 of a two-rank unit killed by SIGKILL (the OOM killer's signal): the FAILED line names the rank and
    the signal, and what usually sends it; any other signal by its name."""
    for sig, said in ((signal.SIGKILL, "SIGKILL: the usual cause is the kernel's out-of-memory killer (its log: "
                                       "dmesg or journalctl -k); to hold less memory, lower ltchain.rows (log: "),
                      (signal.SIGSEGV, "SIGSEGV (log: ")):
        cfg = write_config(tmp_path, generations=1, ltchain={"rows": 2, "sleep_s": 30, "ranks": 2})
        run = tmp_path / f"run-{sig.name}"
        proc = _launched(cfg, run, unit(run, "ltchain", "replace-p0-s0", "gen_000") / "steps" / "000.done")
        try:
            (ranks,) = (run / "logs" / "ranks").iterdir()
            pid = json.loads((ranks / "0.json").read_text())["pid"]
            os.kill(pid, sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 1 and "Traceback" not in err, err
        (line,) = [ln for ln in err.splitlines() if ln.startswith("FAILED ")]
        assert f"FAILED ltchain/replace-p0-s0/gen_000: rank 0 of 2 (pid {pid}) was killed by {said}" in line, line
        assert line.endswith("_0_log.err)"), line


def test_sigterm_reaches_units_started_with_sigint_ignored(tmp_path):
    # the launcher tells its units by SIGINT; a unit that inherited it ignored ran on unattended
    cfg, run, gen0 = _stepping(tmp_path)
    assert _ctrl_c_when(cfg, run, gen0 / "steps" / "000.done", signal.SIGTERM, False, _sigint_ignored) == 130
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"


@pytest.mark.parametrize("group", [False, True], ids=["kill -INT of the launcher", "the script's Ctrl-C"])
def test_sigint_stops_a_launcher_started_with_it_ignored_and_the_next_run_resumes(tmp_path, group):
    # `nohup collapse-hpc run … &` from a script: the launcher inherited SIGINT ignored, so `kill -INT`
    # did nothing, and the Ctrl-C of the script's terminal stopped its units (they take SIGINT) but not
    # the launcher, which recorded them failed and went on
    cfg, run, gen0 = _stepping(tmp_path, sleep_s=8)
    assert _ctrl_c_when(cfg, run, gen0 / "steps" / "000.done", signal.SIGINT, group, _sigint_ignored) == 130
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"
    assert not RunStore(run).is_done(gen0) and (gen0 / "steps" / "000.done").exists()  # kept to resume
    rc, out, err = collapse("run", cfg, "--run", run)
    assert rc == 0 and "1 unit done" in out, err
    assert verify_run(run) == 0


def test_cancel_stops_a_local_run_from_another_shell(tmp_path):
    # `collapse-hpc cancel RUN` of a local run said "squeue not found"; it stops the run as Ctrl-C does
    _, run, _, proc = _launched_stepping(tmp_path)
    try:
        time.sleep(1)
        rc, out, err = collapse("cancel", run)
        assert (rc, err) == (0, ""), err
        assert "cancelled the local run (launcher pid" in out
        assert proc.wait(timeout=5) == 130
        assert _running_in_group(proc.pid) == []
        assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["state"] == "CANCELLED"
        rc, out, _ = collapse("cancel", run)
        assert rc == 0 and "nothing to cancel: no launcher runs it" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_cancel_of_a_run_whose_jobs_json_is_corrupt_stops_its_launcher_here(tmp_path):
    """A corrupt jobs.json sent cancel to Slurm's, whose line ("find them with squeue --me") is of no use
    for a local run: the launcher running it on this host stops as with any book; where none does, the
    line says so before it points at squeue."""
    _, run, _, proc = _launched_stepping(tmp_path)
    try:
        time.sleep(1)
        (run / "jobs.json").write_text("{not json")
        rc, out, err = collapse("cancel", run)
        assert (rc, err) == (0, ""), err
        assert "cancelled the local run (launcher pid" in out
        assert proc.wait(timeout=5) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    (run / "jobs.json").write_text("{not json")
    rc, _, err = collapse("cancel", run)
    assert rc == 2 and err == (f"error: {run}/jobs.json is corrupt: the run's jobs are unknown, and no launcher runs "
                               f"it on this host; find its Slurm jobs with squeue --me\n"), err


def test_cancel_stops_a_run_made_in_process_and_refuses_a_folder_that_is_no_run(tmp_path):
    # a run made in-process (--executor debug) records no jobs.json: cancel said "no Slurm jobs
    # recorded" (exit 2) while it ran on; its process holds the run's lock as a local launcher does
    cfg, run, gen0 = _stepping(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "run", str(cfg), "--run", str(run),
                             "--executor", "debug"], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    try:
        deadline = time.time() + 120
        while not (gen0 / "steps" / "000.done").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        rc, out, err = collapse("cancel", run)
        assert (rc, err) == (0, ""), err
        assert "cancelled the local run (launcher pid" in out
        assert proc.wait(timeout=5) == 130
        assert not RunStore(run).is_done(gen0) and (gen0 / "steps" / "000.done").exists()  # kept to resume
        rc, out, _ = collapse("cancel", run)
        assert rc == 0 and "nothing to cancel: no launcher runs it" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = sorted(tmp_path.iterdir())
    rc, _, err = collapse("cancel", tmp_path)
    assert rc == 2 and err.strip() == f"error: {not_a_run(tmp_path)}"
    assert sorted(tmp_path.iterdir()) == before  # no lock left in someone's folder


def test_cpu_units_side_by_side_fit_in_the_memory_the_machine_has(tmp_path, monkeypatch):
    """Array parts ran side by side as far as the cores allowed, whatever they held: paper-scale
    gaussian parts hold 4 GiB each, and one per core of a laptop would not fit. With room for one
    part's memory (experiments' memory()) they run one after another; every one still runs."""
    from collapse_hpc import experiments
    from collapse_hpc.launch import local

    cfg = write_config(tmp_path, gmm={"enabled": False}, lm={"enabled": False}, vae={"enabled": False},
                       gaussian={"generations": 3, "samples": [50], "replicates": 30, "chunk_replicates": 10})
    run = experiments.load_config(cfg)
    need = experiments.get("gaussian").memory(run, experiments.get("gaussian").variants(run)[0])
    assert need > 0
    monkeypatch.setattr(local, "machine_cores", lambda: 4)
    monkeypatch.setattr(local, "available_memory", lambda: int(1.5 * need))
    rc, out, err = collapse("run", cfg, "--run", tmp_path / "run")
    assert rc == 0 and "3 units done" in out, err
    parts = sorted((read_manifest(unit(tmp_path / "run", "gaussian", "replace-p0-samples50-s0", f"part_{p:03d}"))
                    for p in range(3)), key=lambda m: m["started"])
    assert all(b["started"] >= a["finished"] for a, b in zip(parts, parts[1:])), parts


def test_a_unit_larger_than_the_memory_available_now_runs_with_a_warning(tmp_path, monkeypatch):
    """A unit within the machine's memory but over what other processes leave available now runs (they
    may free some), after a warning that it may be killed; MemAvailable is read through cli's
    available_memory, given here as half the unit's estimate."""
    from collapse_hpc import cli, experiments
    from collapse_hpc.machine import total_memory

    cfg = write_config(tmp_path, gmm={"enabled": False}, lm={"enabled": False}, vae={"enabled": False},
                       gaussian={"generations": 2, "samples": [50], "replicates": 4, "chunk_replicates": 4})
    run = experiments.load_config(cfg)
    need = experiments.get("gaussian").memory(run, experiments.get("gaussian").variants(run)[0])
    assert 0 < need < (total_memory() or 0)  # not refused: the warning alone speaks of memory
    monkeypatch.setattr(cli, "available_memory", lambda: need // 2)
    rc, out, err = collapse("run", cfg, "--run", tmp_path / "run")
    assert rc == 0 and "1 unit done" in out, err
    assert (f"a unit of this run needs about {need / 2**30:.3g} GiB of memory; {need // 2 / 2**30:.3g} GiB is "
            f"available here now: it may be killed (out of memory) unless other processes free some") in err, err
    assert err.count("is available here now") == 1, err


def _one_core() -> None:
    _sigint_default()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one unit at a time, in the plan's order


def test_an_experiment_not_started_yet_is_the_runs_not_left_out(tmp_path):
    # a local launcher killed before it reached an experiment of its plan: status called that experiment
    # "not in this run (left out with --only)" (so too while the launcher ran), and verify did not count it
    cfg = write_config(tmp_path, generations=1, ltchain={"rows": 2}, ltarray={"parts": 4})
    run = tmp_path / "run"
    proc = _launched(cfg, run, unit(run, "ltarray", "replace-p0-s0", "part_000") / "manifest.json", _one_core)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "ltchain").exists()  # the array's parts go first: the chain never started
    rc, out, _ = collapse("status", run)
    assert rc == 0 and "not in this run" not in out, out
    assert "ltchain/replace-p0-s0  no generation finished (0/1 done)\n  gen_000  not run" in out, out
    rc, out, _ = collapse("verify", run)
    assert rc == 0 and "0 with mismatches, 4 unfinished" in out, out


def test_a_read_the_file_system_refused_a_unit_is_said_in_its_own_words():
    """The FAILED line of a unit stopped on a refused read (NotRead, raised by the store or an experiment's own
    subclass) said it as 'collapse_hpc.store.reads.NotRead: model file …': it is bad input's one line, unnamed."""
    from collapse_hpc.launch.local import last_error

    said = ("model file /r/model/training.json: not read (Input/output error): kept as it is (not trained again); "
            "gen 0 goes on from it once the file reads again (its permissions, the file system): run the same "
            "command again")
    for module in ("store.reads", "experiments.lm.checkpoint"):
        tail = f'    raise NotRead(f"{{what}} {{path}}", e, then) from None\ncollapse_hpc.{module}.NotRead: {said}'
        assert last_error(tail) == said
    assert last_error("ValueError: collapse_hpc.store.reads.NotRead: x") == "ValueError: collapse_hpc.store.reads." \
                                                                            "NotRead: x"


def test_a_run_folder_removed_while_its_units_run_stops_them_in_one_line_and_is_not_made_again(tmp_path):
    """rm -rf RUN during a local run: the units' writes made a skeleton of it again (jobs.json, the unit's folder
    and its steps, .units), the launcher printed a FAILED line per unit in the file system's words and exited 1."""
    import shutil

    cfg, run, gen0, proc = _launched_stepping(tmp_path, sleep_s=30)
    try:
        assert (gen0 / "steps" / "000.done").exists()
        shutil.rmtree(run, ignore_errors=True)
        _, err = proc.communicate(timeout=60)
        deadline = time.time() + 10
        while _running_in_group(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _running_in_group(proc.pid) == []  # the unit stopped too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith("units:")]
    assert proc.returncode == 2 and "Traceback" not in err and "FAILED" not in err, err
    assert lines[-1] == f"error: {run}: the run folder was removed while the run was working in it; its units " \
                        f"stop and nothing of it is made again there (run the config again for a new run)", err
    time.sleep(1.5)  # a unit's next step
    assert not run.exists()


def test_a_local_run_over_a_corrupt_jobs_json_is_refused_and_leaves_it_as_it_was(tmp_path):
    """The launcher wrote its records over it with the mark of a corrupt one kept ("corrupt": its path), so status
    and submit then called the new, whole jobs.json corrupt, and said to restore what was gone."""
    cfg = write_config(tmp_path, generations=2, ltchain={"rows": 4})
    run = tmp_path / "run"
    assert collapse("run", cfg, "--run", run, "--executor", "debug")[0] == 0
    (unit(run, "ltchain", "replace-p0-s0", "gen_001") / "manifest.json").unlink()
    book = run / "jobs.json"
    book.write_text('{"units": [')
    rc, _, err = collapse("run", cfg, "--run", run)
    assert rc == 2 and err.splitlines()[-1] == (
        f"error: {book} is corrupt: the run's job records are unknown; restore it, or remove it (a Slurm run's jobs "
        f"still queued: cancel them first, squeue --me), then run again; no unit was started"), err
    assert book.read_text() == '{"units": ['
    assert read_manifest(unit(run, "ltchain", "replace-p0-s0", "gen_001")) is None
    book.unlink()
    assert collapse("run", cfg, "--run", run)[0] == 0 and collapse("status", run)[0] == 0
