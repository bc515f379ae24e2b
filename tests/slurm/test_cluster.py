"""Against the real single-node Slurm cluster (make test-slurm starts it): real sbatch,
dependencies, arrays, failures, USR2 preemption and resubmission. No mocks."""
import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from collapse_hpc.launch import records
from tests.launch.helpers import REPO, collapse, jobs, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
PROFILE = REPO / "slurm" / "local.yaml"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    try:
        ok = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        ok = None
    if ok is None or ok.returncode != 0 or "UP" not in ok.stdout:
        pytest.fail("no Slurm controller answers: start the dev cluster (bash slurm/dev-cluster/start.sh)")


def sacct(*ids: str, duplicates: bool = False) -> dict[str, list[dict]]:
    """JobID -> its records (several for a requeued job with duplicates=True)."""
    fields = ["JobID", "JobName", "State", "Comment", "Start", "End"]
    cmd = ["sacct", "-n", "-P", "-X", "-o", ",".join(fields), "-j", ",".join(sorted({i.split("_")[0] for i in ids}))]
    out = subprocess.run(cmd + (["-D"] if duplicates else []), capture_output=True, text=True, check=True).stdout
    rows: dict[str, list[dict]] = {}
    for line in out.splitlines():
        row = dict(zip(fields, line.split("|")))
        row["State"] = row["State"].split()[0]
        rows.setdefault(row["JobID"], []).append(row)
    return rows


def wait_for(ids: list[str], timeout: float = 180) -> None:
    """Until none of `ids` is queued or running (and sacct has recorded their end)."""
    bases = sorted({i.split("_")[0] for i in ids})
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-j", ",".join(bases), "-o", "%i"], capture_output=True, text=True)
        if q.returncode == 0 and not q.stdout.strip():
            rows = sacct(*ids)
            if all(r[-1]["State"] not in ("PENDING", "RUNNING", "REQUEUED") for r in rows.values()):
                return
        time.sleep(1)
    pytest.fail(f"jobs {bases} still queued after {timeout} s")


def unit_ids(run) -> dict[str, str]:
    return {label: e["job_id"] for label, e in jobs(run)["units"].items()}


def scontrol_job(job_id: str) -> str:
    """What slurmctld itself holds for a queued job (its Dependency= is Slurm's, not our record)."""
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


def test_make_submit_chain_and_array_then_resubmit_nothing(tmp_path):
    # ltchain has the lm's job kind: with ranks 2 each generation is one job of two tasks
    # (srun), whose ranks meet through the variables exported from Slurm's (a gloo all-reduce);
    # the real gmm, tiny: two variants (seeds) of one part each, 3 generations of 50 points
    gmm = {"replicates": 2, "chunk_replicates": 2, "generations": 3, "samples": 50, "seeds": [0, 1],
           "snapshot_generations": [0, -1], "snapshot_replicates": 1}
    cfg = write_config(tmp_path, "tiny", ltchain={"rows": 4, "ranks": 2}, ltarray={"parts": 2}, gmm=gmm)
    run = tmp_path / "run"
    make = ["make", "-s", "-o", ".venv/.installed", "submit", f"CONFIG={cfg}", f"RUN={run}",
            f"PROFILE={PROFILE}", "GENERATIONS=2"]
    t0 = time.time()
    out = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert time.time() - t0 < 60  # returns right after submitting
    ids = unit_ids(run)
    gen0, gen1 = ids["ltchain/replace-p0-s0/gen_000"], ids["ltchain/replace-p0-s0/gen_001"]
    assert f"{gen0} -> {gen1}" in out.stdout  # the table of chains and job ids
    # right after submitting (gen_000 takes seconds to start its two ranks), Slurm's own view
    held = scontrol_job(gen1)
    assert re.search(rf"\bDependency=afterok:{gen0}\((un)?fulfilled\)", held), held
    assert "KillOInInvalidDependent=Yes" in held, held
    assert "Dependency=(null)" in scontrol_job(gen0)
    agg = jobs(run)["aggregate"]["job_id"]
    wait_for([*ids.values(), agg])

    rows = sacct(*ids.values(), agg)
    assert rows[gen0][-1]["State"] == "COMPLETED" and rows[gen1][-1]["State"] == "COMPLETED"
    assert rows[gen1][-1]["Comment"] == f"ltchain/replace-p0-s0/gen_001 afterok:{gen0}"  # the chain in sacct
    assert rows[gen1][-1]["Start"] >= rows[gen0][-1]["End"]  # and Slurm kept it: gen_001 ran after gen_000
    parts = [ids[f"ltarray/replace-p0-s0/part_{p:03d}"] for p in range(2)]
    array = parts[0].split("_")[0]
    assert parts == [f"{array}_0", f"{array}_1"]  # one job array for the array experiment
    assert all(rows[p][-1]["State"] == "COMPLETED" for p in parts)
    gmm_parts = [ids[f"gmm/replace-p0-s{seed}/part_000"] for seed in (0, 1)]
    gmm_array = gmm_parts[0].split("_")[0]
    assert sorted(gmm_parts) == [f"{gmm_array}_0", f"{gmm_array}_1"]  # GMM work: one array, all variants
    assert {j for j in rows if j.startswith(f"{gmm_array}_")} == set(gmm_parts)  # as sacct lists it
    assert all(rows[p][-1]["State"] == "COMPLETED" for p in gmm_parts)
    last_end = max(r[-1]["End"] for j, r in rows.items() if j != agg)
    assert rows[agg][-1]["Comment"].startswith("aggregate afterany:") and rows[agg][-1]["Start"] >= last_end
    assert rows[agg][-1]["State"] == "COMPLETED" and (run / "report" / "index.html").is_file()

    verify = subprocess.run([str(REPO / ".venv/bin/collapse-hpc"), "verify", str(run)], capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0 and "6 units verified, 0 with mismatches, 0 unfinished" in verify.stdout
    for g in range(2):
        metrics = pq.read_table(run / f"ltchain/replace-p0-s0/gen_{g:03d}/metrics.parquet").to_pydict()
        assert set(metrics["world_size"]) == {2.0} and set(metrics["rank_sum"]) == {3.0}  # ranks 0 + 1 (+1 each)
    rc, status, _ = collapse("status", run)
    assert "generation 1 reached (2/2 done)" in status and "array: 2/2 parts done" in status
    assert "gmm/replace-p0-s1  array: 1/1 parts done" in status

    before = jobs(run)
    again = subprocess.run(make, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    assert jobs(run)["units"] == before["units"] and jobs(run)["aggregate"] == before["aggregate"]
    q = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    assert "tiny:" not in q


def _ended_chain(tmp_path, name: str, generations: int, label: str) -> tuple[Path, str]:
    """A run of a chain of `generations` (ltchain, rows 2) submitted, and every job of it ended: its folder and
    the job id of unit `label`."""
    cfg = write_config(tmp_path, name, generations=generations, ltchain={"rows": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    wait_for([*unit_ids(run).values(), jobs(run)["aggregate"]["job_id"]])
    return run, unit_ids(run)[label]


def test_status_names_what_made_each_generation_after_a_redo(tmp_path):
    """A generation redone by hand, as verify says to, was still shown as the Slurm job that had made the
    damaged copy; one submitted again is shown as its new job."""
    label = "ltchain/replace-p0-s0/gen_001"
    run, first = _ended_chain(tmp_path, "redo", 2, label)
    (run / label / "metrics.parquet").write_bytes(b"damaged")
    _, out, _ = collapse("verify", run)
    redo = shlex.split(re.search(r"redo with: (.*)", out)[1])
    assert redo[0] == "collapse-hpc" and redo[-2:] == ["--unit", "1"], out
    done = subprocess.run([str(REPO / ".venv/bin/collapse-hpc"), *redo[1:]], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rc, out, _ = collapse("status", run)
    assert re.search(r"gen_001  done +by hand on ", out) and f"job {first}" not in out, out

    (run / label / "metrics.parquet").write_bytes(b"damaged")
    rc, _, err = collapse("submit", run / "config.yaml", "--run", run)
    assert rc == 0, err
    again = unit_ids(run)[label]
    assert again != first
    wait_for([again, jobs(run)["aggregate"]["job_id"]])
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_001  done +job {again} ", out), out


def test_a_generation_begun_again_by_hand_after_its_job_and_stopped_reads_unfinished(tmp_path, monkeypatch):
    """A generation whose job COMPLETED without its results, redone by hand as verify says and stopped (Ctrl-C):
    status told that job's story (the results never recorded), not the redo's. sacct's End, read whatever the
    user's SLURM_TIME_FORMAT, is older than the unit's binding the redo wrote."""
    from tests.launch.toys.chain import ChainToy

    label = "ltchain/replace-p0-s0/gen_000"
    run, job = _ended_chain(tmp_path, "again", 1, label)
    (run / label / "manifest.json").unlink()  # as if the job had ended before its results were recorded
    monkeypatch.setenv("SLURM_TIME_FORMAT", "relative")  # sacct's End would read "Tod 16:20"
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  COMPLETED +job {job}", out) and "results were recorded" in out, out

    def stopped(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(ChainToy, "run_unit", stopped)
    time.sleep(1)  # past the second sacct's End names
    rc, _, _ = collapse("ltchain", run / "config.yaml", "--run", run, "--variant", "replace-p0-s0", "--unit", "0")
    assert rc != 0 and (run / label / ".binding.json").is_file()
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  unfinished +\(begun again by hand after Slurm job {job} COMPLETED, and not "
                     rf"finished since\)", out), out


def test_scancel_and_squeue_take_an_arrays_tasks_as_commands_name_them(tmp_path):
    """The job ids of a scancel or squeue line to copy (slurm.scancel_args, squeue_args), run by the shell in a
    folder holding a file the bracket form would match as a glob: scancel cancels those tasks and the plain job,
    no other; squeue -r -j lists each of them."""
    from collapse_hpc.launch.slurm import scancel_args, squeue_args

    def held(*args: str) -> str:
        return subprocess.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null", *args, "--wrap", "sleep 60"],
                              capture_output=True, text=True, check=True).stdout.strip()

    array, plain, other = held("-a", "0-6"), held(), held("-a", "0-3")
    try:
        named = [f"{array}_{t}" for t in (1, 2, 3, 5)] + [plain, f"{other}_2"]
        (tmp_path / f"{array}_1").touch()
        shown = subprocess.run(f"squeue -h -r -j {squeue_args(named)} -o %i", shell=True, cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout.split()
        subprocess.run(f"scancel {scancel_args(named)}", shell=True, cwd=tmp_path, check=True)
        left = subprocess.run(["squeue", "-h", "-r", "-j", f"{array},{plain},{other}", "-o", "%i"],
                              capture_output=True, text=True, check=True).stdout.split()
    finally:
        subprocess.run(["scancel", array, plain, other], capture_output=True)
    assert set(named) <= set(shown), shown
    assert sorted(left) == sorted([f"{array}_{t}" for t in (0, 4, 6)] + [f"{other}_{t}" for t in (0, 1, 3)]), left


@pytest.mark.parametrize("ranks", [1, 2])
def test_failed_generation_cancels_its_dependents(tmp_path, ranks):
    """With two ranks, rank 1 raises and rank 0 waits for it: the FAILED line names rank 1 and its log,
    not rank 0's, which says only that its peer went."""
    toy = {"fail_at": 1, "ranks": ranks, "fail_rank": ranks - 1}
    cfg = write_config(tmp_path, "failing", generations=3, ltchain=toy)
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    ids = unit_ids(run)
    gens = [ids[f"ltchain/replace-p0-s0/gen_{g:03d}"] for g in range(3)]
    wait_for(gens)
    rows = sacct(*gens)
    assert [rows[g][-1]["State"] for g in gens] == ["COMPLETED", "FAILED", "CANCELLED"]
    rc, out, _ = collapse("status", run)
    assert rc == 0 and "generation 0 reached (1/3 done)" in out
    log = jobs(run)["units"]["ltchain/replace-p0-s0/gen_001"]["log"].replace("_0_log.err", f"_{ranks - 1}_log.err")
    assert re.search(rf"gen_001  FAILED +job {gens[1]}", out) and f"log: {log}" in out
    assert "| RuntimeError: ltchain failure at generation 1" in out
    named = r"\| rank 1 of 2 \(pid \d+\) failed: RuntimeError: ltchain failure at generation 1"
    assert ranks == 1 or re.search(named, out)
    assert re.search(rf"gen_002  CANCELLED +job {gens[2]}", out)
    assert f"never started, no log (waited on afterok:{gens[1]}: job {gens[1]} ended FAILED)" in out


@pytest.mark.parametrize("ranks", [1, 2])
def test_bad_input_on_a_rank_is_one_line_in_its_log(tmp_path, ranks):
    """A UserError on a rank (its last or only one) is said in its log as the CLI says one, without submitit's
    traceback, and `collapse-hpc status` shows that line; a lone rank's job exits 2 (the error's)."""
    toy = {"fail_at": 0, "fail_as": "input", "ranks": ranks, "fail_rank": ranks - 1}
    cfg = write_config(tmp_path, "refusing", generations=1, ltchain=toy)
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = unit_ids(run)[label]
    wait_for([job])
    assert sacct(job)[job][-1]["State"] == "FAILED"
    log = jobs(run)["units"][label]["log"].replace("_0_log.err", f"_{ranks - 1}_log.err")
    text = Path(log).read_text()
    assert "Traceback" not in text, text
    line = f"error: {'rank 1: ' if ranks > 1 else ''}ltchain failure at generation 0"
    assert [ln for ln in text.splitlines() if ln.startswith("error: ")] == [line], text
    rc, out, _ = collapse("status", run)
    assert rc == 0 and f"| {line}" in out, out
    if ranks == 1:
        code = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "ExitCode", "-j", job], capture_output=True,
                              text=True, check=True).stdout.split()
        assert code == ["2:0"], code

def test_a_rank_lost_where_no_peer_sees_it_ends_the_other_through_srun(tmp_path):
    """Rank 1 of a two-task job dies where the peer watch cannot see it (its record removed: a rank of
    another host): srun's --kill-on-bad-exit ends rank 0, which would wait 240 s as in a collective
    that never notices (NCCL), and the generation reads FAILED within the node's KillWait."""
    from tests.launch.toys.chain import LOST_WAIT_S

    cfg = write_config(tmp_path, "lost", generations=1, ltchain={"rows": 2, "ranks": 2, "lost_rank": 1})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = unit_ids(run)[label]
    started = time.time()
    wait_for([job], timeout=LOST_WAIT_S - 30)
    assert time.time() - started < LOST_WAIT_S / 2
    assert sacct(job)[job][-1]["State"] == "FAILED"
    log = open(jobs(run)["units"][label]["log"]).read()  # rank 0's
    assert "ltchain rank 0 waits for rank 1" in log
    assert not (run / label / "manifest.json").exists()


def _started(run, label: str, step: int = 2) -> None:
    """Wait until the generation `label` of `run` has finished its step `step` (it runs, mid-way)."""
    deadline = time.time() + 120
    while not (run / label / "steps" / f"{step:03d}.done").exists():
        assert time.time() < deadline, "the generation never got going"
        time.sleep(0.2)


@pytest.mark.parametrize("ranks", [1, 2])
def test_usr2_requeues_and_resumes_identically(tmp_path, ranks):
    """A generation signalled USR2 mid-way checkpoints, is requeued, resumes from its finished
    steps (none done twice) and ends with the same artefacts as an uninterrupted run. With two
    ranks, rank 0's exit after its requeue (non-zero, submitit's) ends rank 1 through srun's
    --kill-on-bad-exit, as the requeue would: the job is requeued all the same."""
    toy = {"rows": 6, "sleep_s": 6.0, "ranks": ranks}  # 12 resumable steps of 0.5 s
    runs = {}
    for name in ("preempted", "reference"):
        cfg = write_config(tmp_path, name, generations=1, ltchain=toy)
        runs[name] = tmp_path / name
        rc, _, err = collapse("submit", cfg, "--run", runs[name], "--profile", PROFILE)
        assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = jobs(runs["preempted"])["units"][label]
    _started(runs["preempted"], label)
    subprocess.run(["scancel", "--signal=USR2", job["job_id"]], check=True)
    wait_for([job["job_id"], unit_ids(runs["reference"])[label]], timeout=200)

    records = sacct(job["job_id"], duplicates=True)[job["job_id"]]
    assert [r["State"] for r in records] == ["REQUEUED", "COMPLETED"]
    log = open(job["log"]).read()
    assert "interrupted, requeueing to resume" in log
    # the log, named by job id, opens with its unit, and its second attempt says it was requeued
    starts = [line.split(" ", 1)[1] for line in log.splitlines() if f"{label}: starts" in line]
    ranked = ", rank 0 of 2" if ranks == 2 else ""
    assert starts[0].startswith(f"collapse_hpc: {label}: starts, job {job['job_id']} on ") and starts[0].endswith(
        ranked) and len(starts) == 2 and starts[1].endswith(f"{ranked}, after 1 requeue"), starts
    assert log.splitlines()[0].endswith(starts[0]), log[:300]
    done = re.findall(r"ltchain step (\d+) done", log)
    assert sorted(map(int, done)) == list(range(12))  # each step exactly once over both attempts

    def files(run):
        return {k: v["sha256"] for k, v in json.loads((run / label / "manifest.json").read_text())["files"].items()}

    assert files(runs["preempted"]) == files(runs["reference"])
    assert "metrics.parquet" in files(runs["preempted"])


def test_what_sbatch_refuses_stops_submit_before_anything_is_written(tmp_path):
    """A --mem sbatch cannot read, here for the aggregation job: the arrays were queued, the run folder
    written, and then sbatch refused the last job."""
    prof = tmp_path / "p.yaml"
    prof.write_text(PROFILE.read_text().replace("  aggregate:\n", "  aggregate:\n    mem: lots\n"))
    cfg = write_config(tmp_path, "refused", generations=1, ltarray={"parts": 1})
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.strip().startswith("error: profile dev-cluster: sbatch refuses its aggregate jobs: "
                                              "Invalid --mem specification (jobs.aggregate sets this kind's requests")
    assert not (tmp_path / "run").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout == before


def test_a_generation_out_of_time_says_which_limit_to_raise(tmp_path):
    """A time limit too short for a generation: USR2 before it, no requeue left (max_requeues: 0), and
    the job fails. Its log said only submitit's 'timed-out too many times' under Slurm's 'CANCELLED …
    DUE TO JOB REQUEUE'; status says which profile key to raise."""
    prof = tmp_path / "short.yaml"
    short = yaml.safe_load(PROFILE.read_text())
    short.update(max_requeues=0, signal_delay_s=60)
    short["jobs"]["gpu"]["time_min"] = 3
    prof.write_text(yaml.safe_dump(short))
    cfg = write_config(tmp_path, "slow", generations=1, ltchain={"rows": 2, "sleep_s": 300})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", prof)
    assert rc == 0, err
    job = unit_ids(run)["ltchain/replace-p0-s0/gen_000"]
    wait_for([job], timeout=260)
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  FAILED +job {job}", out), out
    assert (f"it reached its time limit more often than max_requeues allows: raise jobs.gpu.time_min (or "
            f"max_requeues) in {prof} and submit again") in out, out


def test_a_drained_node_queues_the_jobs_to_wait(tmp_path):
    """The checks before submitting try each kind with sbatch --test-only, which answers 'Requested node
    configuration is not available' while the nodes are drained; sbatch itself queues the jobs."""
    node = subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True, check=True).stdout.split()[0]
    cfg = write_config(tmp_path, "drained", generations=1, ltarray={"parts": 1})
    run = tmp_path / "run"
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=maintenance"], check=True)
    try:
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
        assert rc == 0, err
        # squeue gives the reason code (ReqNodeNotAvail) until a scheduling pass words it; either names the nodes
        waiting = re.compile(r"part_000  PENDING .*\((ReqNodeNotAvail|Nodes required for job are DOWN, DRAINED)")
        deadline = time.time() + 30
        while not waiting.search(out := collapse("status", run)[1]) and time.time() < deadline:
            time.sleep(1)
        assert waiting.search(out), out
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True)
    ids = [*unit_ids(run).values(), jobs(run)["aggregate"]["job_id"]]
    wait_for(ids)
    assert all(r[-1]["State"] == "COMPLETED" for r in sacct(*ids).values())


def test_a_gres_no_node_has_is_refused_and_one_a_drained_node_has_queues(tmp_path):
    """sbatch --test-only answers gpu:h1000 (no node has it; start.sh's cluster knows gpu, has none) as it
    answers drained nodes, and submit queued the jobs to wait for ever. The node's scratch:ssd passes."""
    node = subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True, check=True).stdout.split()[0]
    cfg = write_config(tmp_path, "gres", generations=1, ltarray={"parts": 1})

    def profile(name: str, gres: str):
        prof = yaml.safe_load(PROFILE.read_text())
        prof["jobs"]["cpu"]["sbatch"] = {"gres": gres}
        (tmp_path / name).write_text(yaml.safe_dump(prof))
        return tmp_path / name

    typo = profile("typo.yaml", "gpu:h1000:1")
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "typo", "--profile", typo)
    assert rc == 2 and err.startswith("error: profile dev-cluster: jobs.cpu.sbatch.gres: gpu:h1000:1: no node of "
                                      "partition debug offers gres gpu:h1000 (they offer: scratch:ssd)"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "typo").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout == before

    has = profile("has.yaml", "scratch:ssd:1")
    run = tmp_path / "run"
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=maintenance"], check=True)
    try:
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", has)
        assert rc == 0, err
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True)
    part = unit_ids(run)["ltarray/replace-p0-s0/part_000"]
    assert "scratch:ssd:1" in scontrol_job(part.split("_")[0])
    wait_for([part, jobs(run)["aggregate"]["job_id"]])
    assert sacct(part)[part][-1]["State"] == "COMPLETED"


def test_cancel_stops_a_running_generation_at_once_and_submit_resumes_it(tmp_path):
    """scancel's SIGTERM was ignored (submitit bypasses it): a cancelled generation ran on through Slurm's
    KillWait (30 s), finished and wrote its results after `collapse-hpc cancel` had said it was cancelled."""
    cfg = write_config(tmp_path, "cancelled", generations=3, ltchain={"rows": 2, "sleep_s": 10.0})  # 20 steps
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE, "--generations", "1")
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    first = jobs(run)["units"][label]
    unit = run / label
    _started(run, label)
    rc, out, _ = collapse("cancel", run)
    assert rc == 0 and "cancelled 2 queued or running jobs" in out, out
    wait_for([first["job_id"]], timeout=60)
    row = sacct(first["job_id"])[first["job_id"]][-1]
    assert row["State"] == "CANCELLED" and row["End"] >= row["Start"]
    assert not (unit / "manifest.json").exists() and not (unit / "metrics.parquet").exists()
    # nothing half-written: the binding and the attempt's record (its time counts when submit resumes it) are kept
    assert {p.name for p in unit.iterdir()} <= {"steps", ".binding.json", ".attempts.json"}
    done = sorted(p.name for p in (unit / "steps").iterdir())
    assert all(re.fullmatch(r"\d{3}\.done", n) for n in done) and len(done) < 20, done
    assert "the unit stops here (what it finished stays for a resume)" in open(first["log"]).read()
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  CANCELLED +job {first['job_id']}", out), out

    # status names the command that queues the rest: pasted as printed, it keeps the run's --generations 1
    resume = shlex.split(out.rstrip().splitlines()[-1])
    assert resume[:2] == ["collapse-hpc", "submit"], out
    rc, _, err = collapse(*resume[1:])
    assert rc == 0, err
    assert list(jobs(run)["units"]) == [label]
    again = jobs(run)["units"][label]
    wait_for([again["job_id"], jobs(run)["aggregate"]["job_id"]])
    steps = re.findall(r"ltchain step (\d+) done", open(first["log"]).read() + open(again["log"]).read())
    assert sorted(map(int, steps)) == list(range(20))  # the resumed job did only what was left
    said = open(again["log"]).read()  # and its log says so
    assert re.search(rf"attempt 2 at {re.escape(str(unit))} \(1 attempt before it, [0-9:]+ in all\): goes on from "
                     r"their steps/\n", said), said
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  done +job {again['job_id']} ", out), out


def _profile_with(tmp_path, **keys) -> object:
    """The dev-cluster profile with top-level keys added (account, qos) or one kind's key (jobs.cpu.qos)."""
    prof = yaml.safe_load(PROFILE.read_text())
    for key, value in keys.items():
        *path, last = key.split("__")
        node = prof
        for p in path:
            node = node[p]
        node[last] = value
    out = tmp_path / "profile.yaml"
    out.write_text(yaml.safe_dump(prof))
    return out


def test_jobs_charge_the_profiles_account_and_qos(tmp_path):
    """start.sh enforces associations and QOS, as real clusters do: the jobs of every kind (a chain's
    generations, an array, the aggregation) are charged to the profile's account under its QOS."""
    prof = _profile_with(tmp_path, account="collapse-b", qos="short")
    cfg = write_config(tmp_path, "charged", generations=1, ltchain={"rows": 2}, ltarray={"parts": 1})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", prof)
    assert rc == 0, err
    ids = [*unit_ids(run).values(), jobs(run)["aggregate"]["job_id"]]
    wait_for(ids)
    bases = sorted({i.split("_")[0] for i in ids})
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,Account,QOS,State", "-j", ",".join(bases)],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines()]
    assert len(rows) == len(ids) and {(r[1], r[2], r[3]) for r in rows} == {("collapse-b", "short", "COMPLETED")}


@pytest.mark.parametrize("keys, refused", [
    ({"account": "nosuch"}, "Invalid account or account/partition combination specified"),
    ({"jobs__cpu__qos": "nosuch"}, "Invalid qos specification"),
])
def test_an_account_or_qos_the_user_may_not_charge_stops_submit_before_anything(tmp_path, keys, refused):
    prof = _profile_with(tmp_path, **keys)
    cfg = write_config(tmp_path, "uncharged", generations=1, ltarray={"parts": 1})
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    kind = "cpu" if "jobs__cpu__qos" in keys else "[a-z0-9]+"
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert re.match(rf"error: profile dev-cluster: sbatch refuses its {kind} jobs: {refused} ", err), err
    assert err.strip().endswith("(account is 'nosuch', for every kind)" if "account" in keys
                                else "(jobs.cpu.qos is 'nosuch')"), err
    assert not (tmp_path / "run").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout == before


def _start_cluster(**env: str) -> None:
    """start.sh again with its knobs `env` (a changed slurm.conf restarts slurmctld and slurmd)."""
    out = subprocess.run(["bash", str(REPO / "slurm" / "dev-cluster" / "start.sh")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_generation_killed_for_its_memory_says_which_knob_to_raise(tmp_path):
    """Slurm kills a job step whose processes pass the job's --mem (here jobacct_gather's OverMemoryKill:
    the job ends FAILED; where cgroups enforce it, OUT_OF_MEMORY). status said FAILED and the log's last
    lines; it now says memory killed it and names the profile's knob to raise."""
    prof = _profile_with(tmp_path, jobs__gpu__mem="1000M")
    cfg = write_config(tmp_path, "hungry", generations=2, ltchain={"rows": 200_000_000})  # 1.6 GB an array
    run = tmp_path / "run"
    try:
        _start_cluster(LOCAL_SLURM_MEMORY_KILL="1")
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", prof)
        assert rc == 0, err
        wait_for([*unit_ids(run).values(), jobs(run)["aggregate"]["job_id"]])
    finally:
        _start_cluster(LOCAL_SLURM_MEMORY_KILL="0")
    rc, out, _ = collapse("status", run)
    gen0 = out[out.index("gen_000"):out.index("gen_001")]
    assert re.match(r"gen_000  (FAILED|OUT_OF_MEMORY) ", gen0) and "exceeded memory limit" in gen0, out
    assert (f"Slurm killed it for using more memory than its job asked for (jobs.gpu.mem is 1000M): raise "
            f"jobs.gpu.mem in {prof} and submit again (what it finished is kept)") in gen0, out


USER = getpass.getuser()
PARTQ = [["sacctmgr", "-i", "add", "qos", "partq", "MaxSubmitJobsPerUser=3"],
         ["scontrol", "update", "PartitionName=debug", "QOS=partq"]]


def _modified(*what: str) -> tuple[list, list]:
    """The sacctmgr modify that sets `what`'s knob (its last word) to 3, and the one that unsets it."""
    *of, knob = what
    return ([["sacctmgr", "-i", "modify", *of, "set", f"{knob}=3"]],
            [["sacctmgr", "-i", "modify", *of, "set", f"{knob}=-1"]])


@pytest.mark.parametrize("limit, undo, whose, said", [
    (*_modified("user", USER, "MaxSubmitJobs"), "your jobs", "MaxSubmitJobs of your association with account collapse"),
    (*_modified("qos", "normal", "MaxSubmitJobsPerUser"), "your jobs", "MaxSubmitPU of QOS normal"),
    (*_modified("user", USER, "GrpSubmitJobs"), "your jobs", "GrpSubmitJobs of your association with account collapse"),
    (*_modified("account", "collapse", "GrpSubmitJobs"), "the jobs of account collapse, every user's,",
     "GrpSubmitJobs of account collapse"),
    (*_modified("qos", "normal", "GrpSubmitJobs"), "the jobs of every user", "GrpSubmit of QOS normal"),
    (*_modified("qos", "normal", "MaxSubmitJobsPerAccount"), "the jobs of account collapse, every user's,",
     "MaxSubmitPA of QOS normal"),
    (PARTQ, [["scontrol", "update", "PartitionName=debug", "QOS="], ["sacctmgr", "-i", "delete", "qos", "partq"]],
     "your jobs under QOS partq", "MaxSubmitPU of QOS partq, partition debug's"),
    ([["sacctmgr", "-i", "add", "user", USER, "account=collapse", "partition=debug", "MaxSubmitJobs=3"]],
     [["sacctmgr", "-i", "delete", "user", USER, "account=collapse", "partition=debug"]],
     "your jobs", "MaxSubmitJobs of your association with account collapse and partition debug"),
], ids=["assoc", "qos", "assoc-grp", "account-grp", "qos-grp", "qos-per-account", "partition-qos",
        "partition-assoc"])
def test_a_submit_past_a_limit_on_queued_jobs_is_refused_before_anything_is_queued(tmp_path, limit, undo, whose,
                                                                                  said):
    """sacctmgr's limits on jobs queued at once (the user's, an account's, a QOS's, the partition's QOS's, a
    partition's association's): sbatch refused the third job of a chain, after two were queued (then
    cancelled). They are read first now: one line with the numbers, nothing queued."""
    def hold() -> str:  # a job of the user's that stays queued
        return subprocess.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "true"],
                              capture_output=True, text=True, check=True).stdout.strip()

    held, probe = hold(), None
    cfg = write_config(tmp_path, "limited", generations=3, ltchain={"rows": 2})  # 3 generations and the report
    try:
        for cmd in limit:
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
        dry = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", PROFILE, "--dry-run")
        rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", PROFILE)
        after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    finally:
        for cmd in undo:
            subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        probe = hold()
        subprocess.run(["scancel", held, probe], capture_output=True)
    assert rc == 2 and err.count("\n") == 1 and err.startswith(
        f"error: this submit would queue 4 jobs, and {whose} queued at once are limited to 3 ({said}: "), err
    yours = " of yours" if whose.startswith("your") else ""
    assert f"1{yours} queued now, so 2 more fit: nothing was queued; submit fewer generations" in err, err
    assert not (tmp_path / "run").exists() and after == before
    assert dry[0] == 2 and "FAILED: a limit on jobs queued at once: this submit would queue 4 jobs" in dry[1], dry
    between = ",".join(str(i) for i in range(int(held) + 1, int(probe)))  # ids sbatch --test-only took
    assert not between or subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-j", between], capture_output=True,
                                         text=True, check=True).stdout.strip() == ""  # none queued, even for a moment


def _shared_qos(cmds: list[list[str]], undo: list[list[str]], held_in: str, submit) -> tuple:
    """`submit()` with QOS partq the QOS of partitions debug and scavenger (and `cmds` run first), two jobs of
    the user's held in partition `held_in`; everything undone after (`undo` too)."""
    setup = [["sacctmgr", "-i", "add", "qos", "partq", *cmds[0]],
             *[["scontrol", "update", f"PartitionName={p}", "QOS=partq"] for p in ("debug", "scavenger")], *cmds[1:]]
    held = []
    try:
        for cmd in setup:
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        for _ in range(2):
            held.append(subprocess.run(["sbatch", "--parsable", "--hold", "-p", held_in, "-o", "/dev/null", "--wrap",
                                        "true"], capture_output=True, text=True, check=True).stdout.strip())
        return submit()
    finally:
        for cmd in [*undo, *[["scontrol", "update", f"PartitionName={p}", "QOS="] for p in ("debug", "scavenger")],
                    ["sacctmgr", "-i", "delete", "qos", "partq"]]:
            subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        subprocess.run(["scancel", *held], capture_output=True)


def test_a_qos_counts_the_jobs_of_every_partition_it_is_the_qos_of(tmp_path):
    """partq, the QOS of debug and scavenger (MaxSubmitJobsPerUser=5), two jobs of the user's held in scavenger:
    the check counted debug's jobs only, found the chain's 4 within 5, and sbatch refused its last job (those
    before it cancelled). Slurm counts both partitions' jobs against partq: the check refuses first now."""
    cfg = write_config(tmp_path, "shared", generations=3, ltchain={"rows": 2})  # 3 generations and the report
    rc, _, err = _shared_qos([["MaxSubmitJobsPerUser=5"]], [], "scavenger",
                             lambda: collapse("submit", cfg, "--run", tmp_path / "run", "--profile", PROFILE))
    assert rc == 2 and err.startswith("error: this submit would queue 4 jobs, and your jobs under QOS partq queued "
                                      "at once are limited to 5 (MaxSubmitPU of QOS partq, partition debug's: "), err
    assert "2 of yours queued now, so 3 more fit: nothing was queued" in err and not (tmp_path / "run").exists()


def test_a_job_of_two_partitions_whose_qos_stands_in_for_its_own_is_queued(tmp_path):
    """partition: debug,scavenger, both of QOS partq (MaxSubmitJobsPerUser=100), the jobs' own QOS normal
    allowing 2 at once: the check weighed a job of several partitions by normal's 2 and refused the chain,
    which sbatch queues (partq stands in for normal in either partition)."""
    cfg = write_config(tmp_path, "both", generations=3, ltchain={"rows": 2})
    prof = _profile_with(tmp_path, partition="debug,scavenger")
    run = tmp_path / "run"

    def submit():
        try:
            return collapse("submit", cfg, "--run", run, "--profile", prof)
        finally:
            collapse("cancel", run) if (run / "jobs.json").exists() else None

    rc, out, err = _shared_qos([["MaxSubmitJobsPerUser=100"], ["sacctmgr", "-i", "modify", "qos", "normal", "set",
                                                               "MaxSubmitJobsPerUser=2"]],
                               [["sacctmgr", "-i", "modify", "qos", "normal", "set", "MaxSubmitJobsPerUser=-1"]],
                               "debug", submit)
    assert rc == 0 and "submitted 4 jobs" in out, err
    assert len(unit_ids(run)) == 3 and jobs(run)["aggregate"]["job_id"]


def test_a_job_of_two_partitions_is_weighed_against_the_qos_of_either(tmp_path):
    """partition: debug,scavenger, partq the QOS of debug alone (MaxSubmitJobsPerUser=3), a job of the user's held
    in debug: the check weighed the chain by the limits both partitions share, none, and sbatch refused its last
    job part-way (QOSMaxSubmitJobPerUserLimit: slurmctld counts a job pending in several partitions against each
    one's QOS). The check refuses first now, nothing queued."""
    cfg = write_config(tmp_path, "either", generations=3, ltchain={"rows": 2})  # 3 generations and the report
    prof = _profile_with(tmp_path, partition="debug,scavenger")
    held = []
    try:
        for cmd in PARTQ:
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        held.append(subprocess.run(["sbatch", "--parsable", "--hold", "-p", "debug", "-o", "/dev/null", "--wrap",
                                    "true"], capture_output=True, text=True, check=True).stdout.strip())
        rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    finally:
        for cmd in [["scontrol", "update", "PartitionName=debug", "QOS="],
                    ["sacctmgr", "-i", "delete", "qos", "partq"]]:
            subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        subprocess.run(["scancel", *held], capture_output=True)
    assert rc == 2 and err.startswith("error: this submit would queue 4 jobs, and your jobs under QOS partq queued "
                                      "at once are limited to 3 (MaxSubmitPU of QOS partq, partition debug's: "), err
    assert "1 of yours queued now, so 2 more fit: nothing was queued" in err and not (tmp_path / "run").exists()


def _node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True, check=True).stdout.split()[0]


def _resume(node: str) -> None:
    """Back to service (ReturnToService=2 may have done it already: then scontrol refuses, harmlessly)."""
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)


def test_a_generation_whose_node_goes_down_stops_and_its_requeue_runs(tmp_path):
    """A node set DOWN (or lost) under a running generation: Slurm requeues the job (NODE_FAIL) and
    SIGTERMs the attempt, whose job then reads PENDING. submitit bypassed that SIGTERM, the attempt ran
    on, and the requeued one's launch failed ('Duplicate jobid'): the job was held and the node drained."""
    node = _node()
    cfg = write_config(tmp_path, "nodefail", generations=1, ltchain={"rows": 2, "sleep_s": 10.0})  # 20 steps
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = jobs(run)["units"][label]
    _started(run, label)
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=node failure test"], check=True)
    try:
        time.sleep(2)
        assert "is ending (Slurm: PENDING)" in open(job["log"]).read()
    finally:
        _resume(node)
    wait_for([job["job_id"], jobs(run)["aggregate"]["job_id"]], timeout=120)
    states = [r["State"] for r in sacct(job["job_id"], duplicates=True)[job["job_id"]]]
    assert states[0] == "NODE_FAIL" and states[-1] == "COMPLETED", states
    steps = re.findall(r"ltchain step (\d+) done", open(job["log"]).read())
    assert sorted(map(int, steps)) == list(range(20))  # none twice: the first attempt stopped
    drained = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True).stdout
    assert not drained.startswith("drain"), drained
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  done +job {job['job_id']} ", out), out


def test_make_submit_and_status_of_a_run_folder_with_spaces(tmp_path):
    """make passed CONFIG and RUN to the shell unquoted: `make submit RUN="runs/my run"` stopped at
    'unrecognized arguments: run'; the commands submit and status print split the same way when pasted."""
    folder = tmp_path / "bob's runs"
    folder.mkdir()
    cfg = write_config(folder, "spaced", generations=1, ltchain={"rows": 2}, ltarray={"parts": 1})
    run = folder / "run 1"
    make = ["make", "-s", "-o", ".venv/.installed"]
    out = subprocess.run([*make, "submit", f"CONFIG={cfg}", f"RUN={run}", f"PROFILE={PROFILE}"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    follow = re.search(r"follow with: (.*)", out.stdout)[1]
    assert shlex.split(follow) == ["collapse-hpc", "status", str(run)], out.stdout
    wait_for([*unit_ids(run).values(), jobs(run)["aggregate"]["job_id"]])
    status = subprocess.run([*make, "status", f"RUN={run}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert re.search(r"gen_000  done", status.stdout) and "array: 1/1 parts done" in status.stdout, status.stdout
    assert (run / "report" / "index.html").is_file()


def test_an_array_over_max_array_size_is_queued_as_arrays_sbatch_takes(tmp_path):
    """MaxArraySize 1001 (Slurm's default): an array's indices run 0 to 1000. A config of 1002 parts: the
    chain was queued, then sbatch refused the array ('Invalid job array specification'), leaving a run
    folder without its array and aggregation job."""
    limit = int(re.search(r"^MaxArraySize\s*=\s*(\d+)", subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout, re.M)[1])
    cfg = write_config(tmp_path, "wide", generations=1, ltchain={"rows": 2}, ltarray={"parts": limit + 1})
    run = tmp_path / "run"
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    try:
        assert rc == 0, err
        ids = unit_ids(run)
        parts = [ids[f"ltarray/replace-p0-s0/part_{p:03d}"] for p in range(limit + 1)]
        first, last = parts[0].split("_")[0], parts[-1]
        assert parts[:-1] == [f"{first}_{i}" for i in range(limit)] and "_" not in last
        assert f"{first}_[0-{limit - 1}] + {last}\n" in out
        held = scontrol_job(jobs(run)["aggregate"]["job_id"])
        assert f"afterany:{first}" in held and f"afterany:{last}" in held, held
    finally:
        collapse("cancel", run)


def _preempt() -> str:
    """A job of partition urgent (start.sh: a higher PriorityTier) that needs the whole node: it preempts
    what runs in debug (requeued) and scavenger (cancelled)."""
    cmd = ["sbatch", "--parsable", "-p", "urgent", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 2"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def test_a_preempted_generation_is_requeued_and_resumes(tmp_path):
    """Preemption (PreemptMode=REQUEUE): Slurm signals the generation and requeues it; it resumes from
    its finished steps, none done twice."""
    cfg = write_config(tmp_path, "preempted", generations=1, ltchain={"rows": 2, "sleep_s": 6.0})  # 12 steps
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = jobs(run)["units"][label]
    _started(run, label)
    urgent = _preempt()
    wait_for([job["job_id"], urgent, jobs(run)["aggregate"]["job_id"]], timeout=120)
    states = [r["State"] for r in sacct(job["job_id"], duplicates=True)[job["job_id"]]]
    assert states == ["PREEMPTED", "COMPLETED"], states
    log = open(job["log"]).read()
    assert "DUE TO PREEMPTION" in log
    assert sorted(map(int, re.findall(r"ltchain step (\d+) done", log))) == list(range(12))
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  done +job {job['job_id']} ", out), out


def test_a_generation_preempted_for_good_reads_as_such_and_submit_resumes_it(tmp_path):
    """A partition that cancels preempted jobs (PreemptMode=CANCEL): the generation ends PREEMPTED. status
    showed the state with no log and did not count it as failed, and put its dependent's cancel down to
    'scancel or collapse-hpc cancel'."""
    prof = _profile_with(tmp_path, partition="scavenger")
    cfg = write_config(tmp_path, "scavenged", generations=2, ltchain={"rows": 2, "sleep_s": 6.0})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", prof)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    first = unit_ids(run)
    gen0, gen1 = first[label], first["ltchain/replace-p0-s0/gen_001"]
    _started(run, label)
    urgent = _preempt()
    wait_for([gen0, gen1, urgent], timeout=60)
    assert sacct(gen0)[gen0][-1]["State"] == "PREEMPTED"
    rc, out, _ = collapse("status", run)
    assert re.search(rf"gen_000  PREEMPTED +job {gen0}", out) and "DUE TO PREEMPTION" in out, out
    assert f"never started, no log (waited on afterok:{gen0}: job {gen0} ended PREEMPTED)" in out, out
    assert "2 units failed or were cancelled" in out, out

    rc, _, err = collapse("submit", run / "config.yaml", "--run", run)
    assert rc == 0, err
    again = unit_ids(run)
    assert again[label] != gen0
    wait_for([*again.values(), jobs(run)["aggregate"]["job_id"]], timeout=120)
    steps = re.findall(r"ltchain step (\d+) done", open(jobs(run)["units"][label]["log"]).read()
                       + open(f"{run}/logs/submitit/{gen0}_0_log.err").read())
    assert sorted(map(int, steps)) == list(range(12))  # resumed from the preempted job's steps
    rc, out, _ = collapse("status", run)
    assert "generation 1 reached (2/2 done)" in out, out


def test_array_tasks_cancelled_before_they_ran_read_cancelled(tmp_path):
    """`collapse-hpc cancel` before the array's tasks started (here: a drained node), and one task of an
    array scancelled while the others ran: sacct has no record under the tasks' ids, and status read
    UNKNOWN for them, unexplained and not counted."""
    node = _node()
    cfg = write_config(tmp_path, "unrun", generations=1, ltarray={"parts": 3})
    runs = {name: tmp_path / name for name in ("cancelled", "one")}
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=queued array test"], check=True)
    try:
        for run in runs.values():
            rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
            assert rc == 0, err
        rc, out, _ = collapse("cancel", runs["cancelled"])
        assert rc == 0 and "cancelled 4 queued or running jobs" in out, out
        one = unit_ids(runs["one"])["ltarray/replace-p0-s0/part_001"]
        subprocess.run(["scancel", one], check=True)
    finally:
        _resume(node)
    wait_for([*unit_ids(runs["one"]).values(), jobs(runs["one"])["aggregate"]["job_id"]])
    wait_for([*unit_ids(runs["cancelled"]).values()])
    rc, out, _ = collapse("status", runs["cancelled"])
    unrun = "never started, no log (cancelled while queued: scancel or collapse-hpc cancel)"
    assert len(re.findall(r"part_00\d  CANCELLED", out)) == 3 and out.count(unrun) == 4, out  # and the report's
    assert "3 units were cancelled; queue what is left" in out and "UNKNOWN" not in out, out
    rc, out, _ = collapse("status", runs["one"])
    assert re.search(rf"part_001  CANCELLED +job {one}\n +{re.escape(unrun)}", out), out
    assert "array: 2/3 parts done" in out and "UNKNOWN" not in out, out


def test_a_rank_killed_on_its_node_is_named_with_its_signal(tmp_path):
    """A rank killed from outside (the kernel's OOM killer where no cgroups hold the job to its memory, an
    admin's kill -9) writes nothing: status said 'was killed (… a signal, the OOM killer)'. sacct records the
    signal (DerivedExitCode 0:9), and status names it on the rank gone."""
    cfg = write_config(tmp_path, "killed", generations=2, ltchain={"rows": 2, "sleep_s": 10.0, "ranks": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    label = "ltchain/replace-p0-s0/gen_000"
    job = jobs(run)["units"][label]["job_id"]
    try:
        _started(run, label)
        pid = json.loads((run / "logs" / "ranks" / f"{job}-r0" / "1.json").read_text())["pid"]
        os.kill(pid, 9)
        wait_for([job], timeout=60)
        rc, out, _ = collapse("status", run)
        assert re.search(rf"gen_000  FAILED +job {job}", out), out
        assert f"| rank 1 of 2 (pid {pid}) was killed by SIGKILL: the usual cause is the kernel's out-of-memory" \
            in out, out
    finally:
        collapse("cancel", run)


def _waits_on_lock(folder) -> bool:
    """Whether a process waits for the flock of `folder` (/proc/locks marks a waiter with "->")."""
    inode = os.stat(folder).st_ino
    with open("/proc/locks") as f:
        return any(" -> " in f" {line}" and f":{inode} " in line for line in f)


def test_a_cancelled_report_job_stops_at_once_and_leaves_report_as_it_was(tmp_path):
    """The report's job took submitit's bypass of SIGTERM ("Bypassing signal SIGTERM"): cancelled (as a
    resubmit cancels a stale one), it ran on to KillWait (30 s) and wrote report/ over what may be newer."""
    import fcntl

    cfg = write_config(tmp_path, "report", ltchain={"rows": 2})
    run = tmp_path / "run"
    assert collapse("run", cfg, "--run", run, "--executor", "debug")[0] == 0
    assert collapse("aggregate", run)[0] == 0
    report = run / "report"
    os.utime(report / "index.html", (0, 0))  # older than the units: submit queues the report's job alone
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in report.rglob("*") if p.is_file()}
    held = os.open(report, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as another report writing it: the job waits for it (aggregate.build)
    try:
        rc, out, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
        assert rc == 0 and "(report missing)" in out, out + err
        agg = jobs(run)["aggregate"]
        deadline = time.time() + 60
        while not _waits_on_lock(report):
            assert time.time() < deadline, "the report's job never came to write report/"
            time.sleep(0.2)
        t0 = time.time()
        subprocess.run(["scancel", agg["job_id"]], check=True)
        while subprocess.run(["squeue", "-h", "-j", agg["job_id"]], capture_output=True, text=True).stdout.strip() \
                and time.time() - t0 < 15:
            time.sleep(0.2)
        ended = time.time() - t0
    finally:
        os.close(held)  # a job still running now writes the report
    wait_for([agg["job_id"]], timeout=60)
    assert ended < 5, f"the report's job ran on {ended:.0f} s after its cancel"
    assert sacct(agg["job_id"])[agg["job_id"]][-1]["State"] == "CANCELLED"
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in report.rglob("*") if p.is_file()} == before
    assert "report: job" in (log := open(agg["log"]).read()) and "the report stops here" in log, log


def test_a_generation_that_ends_while_submit_looks_is_neither_queued_again_nor_its_successor_cancelled(tmp_path):
    """submit works out what to start before it reads the queue: a generation whose job ended in between was
    queued again and the next one, running by then, cancelled as stale. The real race, its two sides held apart:
    what to start worked out while generation 0 runs, the queue read once its job has ended."""
    from collapse_hpc import engine, experiments, launch
    from collapse_hpc.launch.slurm import pending_units
    from collapse_hpc.store import RunStore

    cfg = write_config(tmp_path, "ended", generations=2, ltchain={"rows": 2, "sleep_s": 4.0})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    first = unit_ids(run)
    gen0, gen1 = (first[f"ltchain/replace-p0-s0/gen_00{g}"] for g in (0, 1))
    store = RunStore(run)
    config = store.load_config(experiments.sections())
    chains = engine.load_plan(store, config)
    _started(run, "ltchain/replace-p0-s0/gen_000")
    pending = pending_units(store, config, chains)
    assert "ltchain/replace-p0-s0/gen_000" in pending
    wait_for([gen0])
    launch.execute(store, config, chains, "slurm", pending=pending)
    assert unit_ids(run) == first
    wait_for([gen1, jobs(run)["aggregate"]["job_id"]])
    assert sacct(gen1)[gen1][-1]["State"] == "COMPLETED"
    rc, out, _ = collapse("status", run)
    assert "generation 1 reached (2/2 done)" in out, out


def test_private_data_shows_a_user_their_own_jobs_and_a_limit_on_everyones_says_so(tmp_path, monkeypatch):
    """PrivateData=jobs,usage (sites often set it): squeue and scontrol show a user their own jobs only. Read as
    an unprivileged user (nobody: root sees every job), the user's queue and the run's own jobs' states stay
    right, and a limit on every user's queued jobs counts the jobs squeue shows, saying others may be hidden."""
    conf = Path("/etc/slurm/slurm.conf")
    kept = conf.read_text()
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for name in ("squeue", "sacct", "scontrol", "sacctmgr"):  # each Slurm command the launch layer reads, as nobody
        (wrappers / name).write_text(f'#!/bin/bash\nexec runuser -u nobody -- {shutil.which(name)} "$@"\n')
        (wrappers / name).chmod(0o755)
    held = []
    try:
        for cmd in (["sacctmgr", "-i", "add", "user", "nobody", "account=collapse", "defaultaccount=collapse"],
                    ["sacctmgr", "-i", "modify", "user", "nobody", "set", "qos=normal", "defaultqos=normal"],
                    ["sacctmgr", "-i", "modify", "qos", "normal", "set", "GrpSubmitJobs=3"]):  # as start.sh adds users
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        conf.write_text(kept + "PrivateData=jobs,usage\n")
        subprocess.run(["scontrol", "reconfigure"], check=True, timeout=60)
        for user in ([], ["runuser", "-u", "nobody", "--"]):  # root's job, then nobody's
            held.append(subprocess.run([*user, "sbatch", "--parsable", "--hold", "-D", "/tmp", "-o", "/dev/null",
                                        "--wrap", "true"], capture_output=True, text=True, check=True).stdout.strip())
        monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
        for name in ("USER", "LOGNAME"):
            monkeypatch.setenv(name, "nobody")
        from collapse_hpc.launch import quota, slurm, status

        config = slurm._slurm(["scontrol", "show", "config"])
        queue, states = slurm.queued(), status.slurm_states(held)
        said = quota.problem({(quota.Charge("nobody", "", "", "debug"),): 3}, "nobody", config, {})
    finally:
        monkeypatch.undo()  # Slurm's commands as root again
        conf.write_text(kept)
        subprocess.run(["scontrol", "reconfigure"], capture_output=True, timeout=60)
        subprocess.run(["scancel", *held], capture_output=True)
        for cmd in (["sacctmgr", "-i", "modify", "qos", "normal", "set", "GrpSubmitJobs=-1"],
                    ["sacctmgr", "-i", "delete", "user", "nobody", "account=collapse"]):
            subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert quota.hides_jobs(config)
    assert queue == {held[1]: "PENDING"}  # root's job is hidden
    assert states[held[1]][0] == "PENDING", states
    assert said is not None and said.startswith(
        "this submit would queue 3 jobs, and the jobs of every user queued at once are limited to 3 (GrpSubmit of "
        "QOS normal"), said
    assert "1 queued now that squeue shows you (PrivateData=jobs hides other users' jobs), so at most 2 more fit" \
        in said, said


def as_nobody(tmp_path, monkeypatch) -> None:
    """squeue, sacct and scancel run as nobody ($USER too): the jobs root queued are another user's."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for name in ("squeue", "sacct", "scancel"):  # the commands that look up and cancel jobs, as another user
        (wrappers / name).write_text(f'#!/bin/bash\nexec runuser -u nobody -- {shutil.which(name)} "$@"\n')
        (wrappers / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    for name in ("USER", "LOGNAME"):
        monkeypatch.setenv(name, "nobody")


def test_a_colleagues_report_job_scancel_refuses_is_kept_and_no_second_one_queued(tmp_path, monkeypatch):
    """A group's run folder: a submit queuing more units replaces the run's report job; scancel refused a
    colleague's without a word and two report jobs were left. Read as nobody, the run's jobs are root's."""
    cfg = write_config(tmp_path, "shared", generations=1, ltchain={"rows": 2, "sleep_s": 10.0})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    report = jobs(run)["aggregate"]["job_id"]
    try:
        as_nobody(tmp_path, monkeypatch)
        rc, out, err = collapse("submit", cfg, "--run", run, "--generations", "2", "--profile", PROFILE)
        names = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout.split()
    finally:
        monkeypatch.undo()
        subprocess.run(["scancel", *sorted(records.job_ids(jobs(run)))], capture_output=True)
    assert rc == 0 and f"warning: the run's report job {report} is root's and scancel refused to cancel" in err, err
    assert jobs(run)["aggregate"]["job_id"] == report and len(jobs(run)["units"]) == 2, out
    assert sum(n.startswith("report-shared:") for n in names) == 1, names  # no second report job


def test_a_recorded_id_the_queue_gives_a_strangers_job_is_left_alone(tmp_path):
    """The cluster's job-id counter reset or wrapped: a recorded id names another job, which submit took for
    its unit's (queued nothing) and cancel cancelled. Here the book records an unrelated job's id."""
    cfg = write_config(tmp_path, "reset", generations=1, ltchain={"rows": 2})
    run = tmp_path / "run"
    other = subprocess.run(["sbatch", "--parsable", "-J", "train-llama", "--begin=now+600", "--wrap", "sleep 60"],
                           capture_output=True, text=True, check=True).stdout.strip()
    try:
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
        assert rc == 0, err
        book = jobs(run)
        subprocess.run(["scancel", *records.job_ids(book)], check=True)
        book["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"] = other  # as a reset counter gives it again
        del book["aggregate"]
        (run / "jobs.json").write_text(json.dumps(book))
        cancelled = collapse("cancel", run)
        state = subprocess.run(["squeue", "-h", "-j", other, "-o", "%T"], capture_output=True, text=True).stdout
        again = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    finally:
        subprocess.run(["scancel", other, *sorted(records.job_ids(jobs(run)))], capture_output=True)
    assert cancelled[0] == 0 and "nothing to cancel" in cancelled[1] and state.strip() == "PENDING", cancelled
    assert f"{other} (recorded for ltchain/replace-p0-s0/gen_000) is root's 'train-llama'" in cancelled[2], cancelled
    assert again[0] == 0 and jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"] != other, again


def test_a_run_whose_jobs_another_user_queued_is_not_queued_again_nor_run_beside_them(tmp_path, monkeypatch):
    """A group's run folder: squeue -u $USER does not list a colleague's jobs, so a second user's submit took the
    run's queued jobs for ended and queued their units again, run started them beside the jobs and cancel found
    none. Read as nobody ($USER, and squeue and sacct run as nobody), the run's jobs are another user's (root's)."""
    cfg = write_config(tmp_path, "shared", generations=2, ltchain={"rows": 2, "sleep_s": 10.0})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    first = jobs(run)
    ids = sorted(records.job_ids(first))
    try:
        as_nobody(tmp_path, monkeypatch)
        assert not subprocess.run(["squeue", "-h", "-u", "nobody"], capture_output=True, text=True).stdout.strip()
        again = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
        after = jobs(run)
        local = collapse("run", cfg, "--run", run, "--executor", "local")
        status = collapse("status", run)
        cancelled = collapse("cancel", run)
    finally:
        monkeypatch.undo()
        subprocess.run(["scancel", *ids, *sorted(records.job_ids(jobs(run)))], capture_output=True)
    assert again[0] == 0 and after["units"] == first["units"], again  # nothing queued a second time
    assert after["aggregate"] == first["aggregate"], again
    assert local[0] == 2 and "Slurm jobs of this run are queued or running" in local[2], local
    assert re.search(r"gen_001  PENDING", status[1]), status[1]
    assert cancelled[0] == 2 and cancelled[2].startswith(f"error: {run}: scancel refused {len(ids)} jobs of its "
                                                         f"{len(ids)} queued or running"), cancelled
    assert "Access/permission denied); jobs another user queued are theirs to cancel" in cancelled[2], cancelled


def test_a_held_generation_says_how_to_release_it_and_its_chain_goes_on_once_released(tmp_path):
    """scontrol hold of a queued generation: status gave Slurm's bare (JobHeldAdmin), and submit again says all is
    queued, so nothing said the chain waits on the hold; then "it and the units after it wait" of any, the chain's
    last too. Released, the chain runs on to the end, as it was queued."""
    cfg = write_config(tmp_path, "held", generations=3, ltchain={"rows": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
    assert rc == 0, err
    first = unit_ids(run)
    held, last = first["ltchain/replace-p0-s0/gen_001"], first["ltchain/replace-p0-s0/gen_002"]
    try:
        subprocess.run(["scontrol", "hold", held], check=True)
        rc, out, _ = collapse("status", run)
        again = collapse("submit", cfg, "--run", run, "--profile", PROFILE)
        subprocess.run(["scontrol", "hold", last], check=True)  # the chain's last: no units after it
        subprocess.run(["scontrol", "release", held], check=True)
        rc, out_last, _ = collapse("status", run)
    finally:
        subprocess.run(["scontrol", "release", held, last], capture_output=True)
    assert re.search(rf"gen_001  PENDING +job {held} +\(held by an administrator's scontrol hold: it, gen_002 and "
                     r"the report's job wait until `scontrol release` of its job\)$", out, re.M), out
    assert re.search(rf"gen_002  PENDING +job {last} +\(held by an administrator's scontrol hold: it and the "
                     r"report's job wait until `scontrol release` of its job\)$", out_last, re.M), out_last
    assert again[0] == 0 and "nothing to submit" in again[1] and unit_ids(run) == first, again
    wait_for([*first.values(), jobs(run)["aggregate"]["job_id"]])
    rc, out, _ = collapse("status", run)
    assert "generation 2 reached (3/3 done)" in out, out
