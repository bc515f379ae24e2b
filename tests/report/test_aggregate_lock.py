"""aggregate holds the run's lock while it reads the run, as its writers do: it refuses while one of them
holds it (a launcher running units, a submit), and a writer refuses while it reads, naming it."""
import json
import multiprocessing as mp
import subprocess
import sys

from collapse_hpc import engine
from collapse_hpc.launch import debug
from collapse_hpc.report import collect
from collapse_hpc.store.lock import RunLock
from tests.helpers import toy_run
from tests.launch.helpers import collapse


def _hold(path, ready, release):
    with RunLock(path, command="run", launcher=True):
        ready.set()
        release.wait(60)


def test_aggregate_refuses_in_one_line_while_a_launcher_holds_the_run(tmp_path):
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(store.root / ".lock", ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        rc, out, err = collapse("aggregate", store.root)
    finally:
        release.set()
        holder.join(60)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and out == "", err
    assert lines[0].startswith(f"error: run is locked by pid {holder.pid} on "), err
    assert "collapse-hpc run" in lines[0] and "a launcher running its units" in lines[0], err
    assert not (store.root / "report").exists()  # refused before anything was written
    rc, _, err = collapse("aggregate", store.root)  # free again
    assert rc == 0 and (store.root / "report" / "index.html").is_file(), err
    assert not (store.root / ".lock").exists()


def test_a_run_started_while_aggregate_reads_is_refused_naming_aggregate(tmp_path, monkeypatch):
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    said = []
    real = collect.load_run

    def meanwhile(*a, **k):  # a launcher of the run started from another shell as aggregate reads it
        if not said:
            said.append(subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(store.config_path), "--run",
                                        str(store.root)], capture_output=True, text=True))
            said.append(json.loads((store.root / ".lock").read_text()))
        return real(*a, **k)

    monkeypatch.setattr(collect, "load_run", meanwhile)
    rc, _, err = collapse("aggregate", store.root)
    refused, lock = said
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "collapse-hpc aggregate" in refused.stderr and "while it reads the run for a report" in refused.stderr
    assert lock["command"] == "aggregate" and lock["launcher"] is False
    assert rc == 0, err
    assert not (store.root / ".lock").exists()  # released


def test_cancel_of_a_local_run_leaves_an_aggregate_reading_it_alone(tmp_path, capsys):
    """cancel stops the process holding a local run's lock, which aggregate's now is too: it runs no units."""
    from collapse_hpc.launch import local

    store, run = toy_run(tmp_path, generations=2)
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom collapse_hpc.store.lock import reading\n"
                               "with reading(sys.argv[1], 'aggregate'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n", str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held\n"
        assert local.cancel_run(store) == 0
        assert "nothing to cancel" in capsys.readouterr().out
        assert reader.poll() is None  # not told to stop
    finally:
        reader.kill()
        reader.wait()


def test_a_cancels_record_beside_the_lock_left_unreadable_is_waited_on_then_dropped(tmp_path):
    """A cancel killed between making its record beside a reader's lock and writing it left it empty: a writer
    refused on it for good. As with the lock itself, it is waited on a while (its writer may be writing it)."""
    import os
    import time

    import pytest

    from collapse_hpc.errors import UserError
    from collapse_hpc.store.lock import ABANDONED_S, guest_path

    lock = RunLock(tmp_path / ".lock", command="submit")
    beside = guest_path(lock.path)
    beside.write_text("")
    with pytest.raises(UserError, match="collapse-hpc cancel"):
        lock.acquire()
    assert beside.exists() and not lock.path.exists()
    old = time.time() - ABANDONED_S - 1
    os.utime(beside, (old, old))
    with lock:
        assert lock.owner()["command"] == "submit"
    assert not beside.exists()
