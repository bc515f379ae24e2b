"""A generation on two gloo ranks, one of which dies, fails or hangs: the job ends within seconds (a hung one at
lm.collective_timeout_s), not at DeepSpeed's 30 min collective timeout (every GPU of the job held), its FAILED
line names the rank and the cause, and the same command then resumes to the results of an uninterrupted run."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from collapse_hpc.launch import peers
from tests.experiments.lm.test_chain import LM, REPO

# run inside rank 1's process only (FAULT_RANK's where set; a sitecustomize on PYTHONPATH): the fault, as the
# rank meets it; in LATE_RANK's, a delay; and in every rank, a shorter grace for a stopped peer where the test
# sets one (the wait itself is not under test)
HOOK = """import os
here = os.environ.get("SUBMITIT_LOCAL_GLOBALID")
if here == os.environ.get("FAULT_RANK", "1") and os.environ.get("RANK_FAULT"):
    exec(os.environ["RANK_FAULT"])
if here is not None and here == os.environ.get("LATE_RANK"):
    exec(os.environ["LATE_RANK_FAULT"])
if os.environ.get("SUBMITIT_LOCAL_GLOBALID") and os.environ.get("STOPPED_GRACE_S"):
    from collapse_hpc.launch import peers
    peers.STOPPED_GRACE_S = float(os.environ["STOPPED_GRACE_S"])
"""
CHECKPOINT = "from collapse_hpc.experiments.lm import train; save = train._Training.checkpoint; "
KILLED_AFTER_FIRST_CHECKPOINT = (
    "import signal; " + CHECKPOINT
    + "train._Training.checkpoint = lambda self: (save(self), os.kill(os.getpid(), signal.SIGKILL))")
# its second save meets a full disk on this rank only (its own local scratch): the other rank's succeeds
SECOND_SAVE_FULL_DISK = (
    "import errno; " + CHECKPOINT + "calls = []\n"
    "def refused(*a, **k):\n"
    "    raise OSError(errno.ENOSPC, 'No space left on device', a[0])\n"
    "def checkpoint(self):\n"
    "    calls.append(1)\n"
    "    if len(calls) == 2:\n"
    "        self.engine.save_checkpoint = refused\n"
    "    save(self)\n"
    "train._Training.checkpoint = checkpoint")
KILLED_MID_SAMPLING = (
    "import signal, collapse_hpc.store as store; write = store.write_parquet; "
    "store.write_parquet = lambda path, *a, **k: (write(path, *a, **k), "
    "os.path.basename(path).startswith('part-') and os.kill(os.getpid(), signal.SIGKILL))[0]")
RAISES_MID_SAMPLING = (
    "import collapse_hpc.store as store; write = store.write_parquet\n"
    "def broken(path, *a, **k):\n"
    "    if os.path.basename(str(path)).startswith('part-'):\n"
    "        raise RuntimeError('sampling broke on this rank')\n"
    "    return write(path, *a, **k)\n"
    "store.write_parquet = broken")
# its reads of the data set's card refused (a permissions slip on its node's view of the data): the other's read
CARD_REFUSED = (
    "import builtins, errno, io; real = io.open\n"
    "def opened(file, *a, **k):\n"
    "    if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(os.path.join('tiny', 'card.json')):\n"
    "        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))\n"
    "    return real(file, *a, **k)\n"
    "builtins.open = io.open = opened")
# stopped (SIGSTOP) once its first checkpoint is complete: never continued, or continued 20 s later
STOPPED_AFTER_FIRST_CHECKPOINT = (
    "import signal; " + CHECKPOINT
    + "train._Training.checkpoint = lambda self: (save(self), os.kill(os.getpid(), signal.SIGSTOP))")
CONTINUED = (
    "import signal, subprocess; " + CHECKPOINT + "calls = []\n"
    "def checkpoint(self):\n"
    "    save(self)\n"
    "    calls.append(1)\n"
    "    if len(calls) == 1:\n"
    "        subprocess.Popen(['sh', '-c', f'sleep 20; kill -CONT {os.getpid()}'], start_new_session=True)\n"
    "        os.kill(os.getpid(), signal.SIGSTOP)\n"
    "train._Training.checkpoint = checkpoint")
# alive but hung once its first checkpoint is complete: its peer waits in the next collective until its timeout
HUNG_AFTER_FIRST_CHECKPOINT = (
    "import time; " + CHECKPOINT + "train._Training.checkpoint = lambda self: (save(self), time.sleep(3600))")
# late (8 s) to the collective after each checkpoint: in the next one, it times out after its peers
LATE_AFTER_EACH_CHECKPOINT = (
    "import time; " + CHECKPOINT + "train._Training.checkpoint = lambda self: (save(self), time.sleep(8))")
PROMPT_S = 150  # the whole faulty run; the ranks' collective timeout is 600 s (HUNG: 20 s)
HUNG_TIMEOUT_S = 20
STOPPED_GRACE_S = 10.0  # peers.STOPPED_GRACE_S (60 s) in the ranks of the faulty run that is never continued


def _config(tmp_path: Path, data_dir: Path, **knobs) -> Path:
    lm = {**LM, "ranks": 2, "epochs": 2, "checkpoint_every_steps": 1, "sample_batch_size": 8, **knobs}
    cfg = {"name": "t", "generations": 1, "seeds": [0], "regimes": ["replace:0"], "executor": "local",
           "data_dir": str(data_dir), "lm": lm}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(config: Path, run: Path, fault: str | None, hooks: Path, timeout: float, **env_extra: str):
    env = {**os.environ, "COLLAPSE_THREADS": "1", **env_extra}
    if fault:
        env.update(RANK_FAULT=fault, PYTHONPATH=os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")]))
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(config), "--run", str(run)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - started


def _chunk(name: str) -> str:
    return f"shards/chunk {name.split('-')[2]}" if name.startswith("shards/part-") else name


def _results(run: Path) -> dict:
    unit = run / "lm" / "replace-p0-s0" / "gen_000"
    tables = sorted((unit / "shards").glob("part-*.parquet")) + sorted(unit.glob("*.parquet"))
    timings = ("seconds", "per_s")  # wall-clock measurements, not results
    # a shard by its chunk: a resume deals the chunks left over the ranks, so another rank may write it
    return {_chunk(p.relative_to(unit).as_posix()): pq.read_table(p).drop_columns(
        [c for c in pq.read_schema(p).names if c.endswith(timings)]) for p in tables}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lm_data_dir):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc, _ = _run(_config(tmp, lm_data_dir), tmp / "run", None, tmp, 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _results(tmp / "run")


@pytest.mark.slow
@pytest.mark.parametrize("fault, said", [
    (KILLED_AFTER_FIRST_CHECKPOINT, "rank 1 of 2 (pid {pid}) was killed"),
    (SECOND_SAVE_FULL_DISK, "rank 1 of 2 (pid {pid}) failed: "),
    (KILLED_MID_SAMPLING, "rank 1 of 2 (pid {pid}) was killed"),
    (RAISES_MID_SAMPLING, "rank 1 of 2 (pid {pid}) failed: RuntimeError: sampling broke on this rank"),
    (CARD_REFUSED, "rank 1 of 2 (pid {pid}) failed: data set card {card}: not read (Permission denied): the data "
     "set is kept as it is (not prepared again) once the file reads again (its permissions, the file system): run "
     "the same command again (log: "),
    (STOPPED_AFTER_FIRST_CHECKPOINT, "rank 1 of 2 (pid {pid}) was stopped (SIGSTOP) for "),
    (HUNG_AFTER_FIRST_CHECKPOINT, "rank 1 of 2 (pid {pid} on " + socket.gethostname() + ") hung: rank 0 waited "
     f"{HUNG_TIMEOUT_S} s in a collective for its peers (collective_timeout_s) and it never came"),
], ids=["killed mid-training", "full disk on one rank's save", "killed mid-sampling", "raises mid-sampling",
        "card refused on one rank", "stopped and never continued", "alive but hung"])
def test_a_rank_that_dies_or_fails_ends_the_job_at_once_and_the_rerun_resumes_identically(
        tmp_path, lm_data_dir, uninterrupted, fault, said):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(HOOK)
    hung = fault == HUNG_AFTER_FIRST_CHECKPOINT
    config, run = _config(tmp_path, lm_data_dir, **({"collective_timeout_s": HUNG_TIMEOUT_S} if hung else {})), \
        tmp_path / "run"
    stopped = fault == STOPPED_AFTER_FIRST_CHECKPOINT
    grace = STOPPED_GRACE_S if stopped else HUNG_TIMEOUT_S if hung else 0
    proc, took = _run(config, run, fault, tmp_path / "hooks", PROMPT_S + grace,
                      **({"STOPPED_GRACE_S": str(STOPPED_GRACE_S)} if stopped else {}))
    assert proc.returncode != 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED lm/")]
    said = said.replace("{card}", str(lm_data_dir / "tiny" / "card.json"))
    assert said.split("{pid}")[0] in line and said.split("{pid}")[1] in line, line
    if fault == SECOND_SAVE_FULL_DISK:
        assert "checkpoints: No space left on device" in line, line
    if fault == RAISES_MID_SAMPLING:  # a bug, not bad input: its traceback stays in the rank's log
        log = Path(line.rsplit("(log: ", 1)[1].rstrip(")")).read_text()
        assert "Traceback (most recent call last)" in log and "RuntimeError: sampling broke on this rank" in log, log
    if stopped:
        assert "s and not continued: ended by rank 0 (log: " in line, line
        held = float(line.split("(SIGSTOP) for ")[1].split(" s")[0])
        assert STOPPED_GRACE_S <= held < peers.STOPPED_GRACE_S, line  # the test's grace, not the 60 s
    assert not (run / "lm" / "replace-p0-s0" / "gen_000" / "manifest.json").exists()
    proc, _ = _run(config, run, None, tmp_path / "hooks", 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = _results(run)
    assert resumed.keys() == uninterrupted.keys()
    for name, table in uninterrupted.items():
        assert resumed[name].equals(table), name


@pytest.mark.slow
def test_a_rank_stopped_for_20_s_then_continued_goes_on_unharmed(tmp_path, lm_data_dir, uninterrupted):
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(HOOK)
    config, run = _config(tmp_path, lm_data_dir), tmp_path / "run"
    proc, took = _run(config, run, CONTINUED, tmp_path / "hooks", 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert took > 20
    resumed = _results(run)
    assert resumed.keys() == uninterrupted.keys()
    for name, table in uninterrupted.items():
        assert resumed[name].equals(table), name


# every rank, at its interpreter's exit: whether the process group it joined is still there
GROUP_AT_EXIT = """import atexit, os, sys
def _probe():
    dist = sys.modules.get("torch.distributed")
    state = "never joined" if dist is None else "joined" if dist.is_initialized() else "left"
    with open(os.path.join(os.environ["GROUP_PROBE"], os.environ["SUBMITIT_LOCAL_GLOBALID"]), "w") as f:
        f.write(state)
if os.environ.get("GROUP_PROBE") and os.environ.get("SUBMITIT_LOCAL_GLOBALID"):
    atexit.register(_probe)
"""


@pytest.mark.slow
def test_every_rank_leaves_the_process_group_before_its_interpreter_ends(tmp_path, lm_data_dir, monkeypatch):
    """Left to the interpreter's exit, gloo's threads may abort the process ("terminate called without an
    active exception") after the rank finished; a unit's rank destroys the group when its unit is done."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(GROUP_AT_EXIT)
    (tmp_path / "probe").mkdir()
    monkeypatch.setenv("GROUP_PROBE", str(tmp_path / "probe"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "hooks"), os.environ.get("PYTHONPATH", "")]))
    proc, _ = _run(_config(tmp_path, lm_data_dir, epochs=1), tmp_path / "run", None, tmp_path / "hooks", 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name: p.read_text() for p in (tmp_path / "probe").iterdir()} == {"0": "left", "1": "left"}


@pytest.mark.slow
@pytest.mark.parametrize("hung, late", [(2, 1), (3, 0)])
def test_of_four_ranks_the_hung_one_is_named(tmp_path, lm_data_dir, hung, late):
    """With more than two ranks, the FAILED line named the first rank that had not itself timed out: one that
    came to the collective late, and left it when a peer's timed out (its watch, or gloo's closed connection),
    was named hung, not the one that never came."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(HOOK)
    config = _config(tmp_path, lm_data_dir, ranks=4, collective_timeout_s=HUNG_TIMEOUT_S)
    proc, _ = _run(config, tmp_path / "run", HUNG_AFTER_FIRST_CHECKPOINT, tmp_path / "hooks",
                   PROMPT_S + HUNG_TIMEOUT_S, FAULT_RANK=str(hung), LATE_RANK=str(late),
                   LATE_RANK_FAULT=LATE_AFTER_EACH_CHECKPOINT)
    assert proc.returncode != 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED lm/")]
    assert f"rank {hung} of 4 (pid " in line and f"on {socket.gethostname()}) hung: rank " in line, line
    assert f"waited {HUNG_TIMEOUT_S} s in a collective for its peers (collective_timeout_s) and it never came" in line
    assert f"_{hung}_log.err)" in line, line  # the hung rank's log


# in the controller of a unit's ranks (under the same PYTHONPATH; its pid is the job's id): each rank's exit status,
# once all ended, in EXIT_CODES/<job id>.json
EXIT_CODES = """import sys
if "collapse_hpc.launch.controller" in sys.orig_argv:
    import json
    from submitit.local import local
    wait = local.Controller.wait
    def recorded(self, freq=24):
        codes = wait(self, freq)
        with open(os.path.join(os.environ["EXIT_CODES"], f"{os.getpid()}.json"), "w") as f:
            json.dump(codes, f)
        return codes
    local.Controller.wait = recorded
"""


@pytest.mark.slow
@pytest.mark.parametrize("ranks, faulty", [(2, {1}), (2, {0, 1}), (1, {0})],
                         ids=["rank 1 of 2", "every rank of 2", "the one rank"])
def test_bad_input_on_a_rank_is_one_line_in_its_log_and_exit_status_2(tmp_path, lm_data_dir, ranks, faulty):
    """A UserError met on a rank (here a refused read of the data set's card) is said in its log as the CLI says
    one, `error: <message>`, and ends that rank with status 2: submitit re-raised it and every rank that met it
    wrote its whole traceback into its log. A peer that did not meet it ends at once on it (status 3), in one line
    too, and the FAILED line still says the message."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(HOOK + EXIT_CODES)
    (tmp_path / "codes").mkdir()
    extra = {"FAULT_RANK": str(min(faulty)), "EXIT_CODES": str(tmp_path / "codes")}
    if len(faulty) > 1:
        extra.update(LATE_RANK=str(max(faulty)), LATE_RANK_FAULT=CARD_REFUSED)
    run = tmp_path / "run"
    proc, took = _run(_config(tmp_path, lm_data_dir, ranks=ranks), run, CARD_REFUSED, tmp_path / "hooks", PROMPT_S,
                      **extra)
    assert proc.returncode != 0, proc.stderr[-3000:]
    said = f"data set card {lm_data_dir / 'tiny' / 'card.json'}: not read (Permission denied): "
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("FAILED lm/")]
    assert said in line, line
    (codes,) = [json.loads(p.read_text()) for p in (tmp_path / "codes").iterdir()]
    job = next((tmp_path / "codes").iterdir()).stem
    for rank in range(ranks):
        log = (run / "logs" / "submitit" / f"{job}_{rank}_log.err").read_text()
        out = (run / "logs" / "submitit" / f"{job}_{rank}_log.out").read_text()
        assert "Traceback" not in log + out and "[rank" not in log, log
        (error,) = [ln for ln in log.splitlines() if ln.startswith("error: ")]
        head = f"error: rank {rank}: " if ranks > 1 else "error: "
        assert error.startswith(head), error
        own = error.startswith(head + said)  # else a peer's, said by this rank as it stops too
        assert own or (rank not in faulty and "failed: " + said in error), error
        assert codes[rank] == (2 if own else peers.STOPPED), (rank, codes, log)
    assert took < 60  # no rank waited for its peers to a timeout

