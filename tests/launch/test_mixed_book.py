"""A run one back-end took over from the other (records.take_over): its book names local process ids beside
Slurm job ids, each as its own back-end's. squeue may list a job of the user's with a local pid's number."""
from collapse_hpc.launch import records
from tests.launch.helpers import REPO, collapse, jobs
from tests.launch.test_slurm_plan import fake_slurm  # noqa: F401  (the fixture)
from tests.launch.test_status import _submitted_run

GEN0 = "toy/replace-p0-s0/gen_000"
PID = "4242"  # the local launcher's process for GEN0, and the number of another Slurm job of the user's


def _with_local_unit(store, executor: str) -> None:
    """The book as the other back-end's take-over leaves it: GEN0 run (and failed) by the local launcher."""
    book = records.load(store)
    book["executor"] = executor
    for entry in book["units"].values():
        entry.setdefault("executor", "slurm")
    book["units"][GEN0] = {"job_id": PID, "executor": "local", "state": "FAILED", "error": "ValueError: x",
                           "log": str(store.logs / f"{PID}_0_log.err")}
    records.save(store, book)


def test_cancel_of_a_slurm_run_that_took_over_a_local_one_never_scancels_a_local_pid(tmp_path, fake_slurm):  # noqa: F811
    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    _with_local_unit(store, "slurm")
    (fake_slurm / "squeue.txt").write_text(f"{PID}|RUNNING|0:05|None\n201|PENDING|0:00|Dependency|me|N/A|"
                                           "to00g001-t:toy/replace-p0-s0/gen_001\n")  # its name: the book's is by hand
    rc, out, err = collapse("cancel", store.root)
    assert rc == 0, err
    assert (fake_slurm / "scancel.txt").read_text().split() == ["201"]  # the run's own job only
    assert "cancelled 1 queued or running job: 201" in out


def test_status_names_the_back_end_of_a_unit_the_other_one_ran(tmp_path, fake_slurm):  # noqa: F811
    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    _with_local_unit(store, "slurm")
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and f"  gen_000  FAILED        local pid {PID}" in out, out
    assert "  gen_001  CANCELLED     job 201" in out, out  # the run's own back-end's, as before
    _with_local_unit(store, "local")  # the local launcher took it over since
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and f"  gen_000  FAILED        local pid {PID}" in out and "Slurm job 201" in out, out


def test_submit_queues_a_unit_whose_local_pid_squeue_lists_as_another_job(tmp_path, fake_slurm):  # noqa: F811
    """The local pid read as a Slurm job id: its unit counted as queued, the next generation chained after
    a stranger's job."""
    store = _submitted_run(tmp_path, fake_slurm, generations=2, parts=2)
    _with_local_unit(store, "local")
    (fake_slurm / "squeue.txt").write_text(f"{PID}|RUNNING|0:05|None\n")
    rc, out, err = collapse("submit", store.config_path, "--run", store.root, "--profile",
                            REPO / "slurm" / "local.yaml")
    assert rc == 0, err
    book = jobs(store.root)
    gen0, gen1 = book["units"][GEN0], book["units"]["toy/replace-p0-s0/gen_001"]
    assert gen0["job_id"] != PID and gen0["history"][-1] == f"local {PID}"
    assert gen1["dependency"] == f"afterok:{gen0['job_id']}"


def _stopped_locally(tmp_path):
    """A local run as its launcher leaves it after GEN0 failed: GEN0 FAILED, gen_001 NOT_RUN for that reason."""
    import time

    from collapse_hpc import engine, experiments
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "local",
                                        "toy": {"rows": 2}})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    book = {"executor": "local", "units": {}, "folder": records.identity(store)}
    records.record(book, GEN0, job_id=PID, log=str(store.logs / f"{PID}_0_log.err"), state="FAILED",
                   started=time.time(), elapsed=1.0, error="RuntimeError: out of memory")
    records.record(book, GEN1, job_id=None, state="NOT_RUN", reason=f"{GEN0} failed")
    records.save(store, book)
    return store


GEN1 = "toy/replace-p0-s0/gen_001"


def test_a_unit_left_not_run_locally_then_queued_on_slurm_reads_as_its_slurm_job(tmp_path, fake_slurm):  # noqa: F811
    """The local launcher recorded gen_001 NOT_RUN (gen_000 failed); a submit since queued it on Slurm, and its
    entry kept the local launcher's state and reason: status read 'NOT_RUN (… gen_000 failed)' of a unit whose
    Slurm job waited, ran or completed."""
    store = _stopped_locally(tmp_path)
    rc, _, err = collapse("submit", store.config_path, "--run", store.root, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0, err
    gen0, gen1 = jobs(store.root)["units"][GEN0], jobs(store.root)["units"][GEN1]
    assert not {"reason", "state", "executor"} & set(gen1), gen1
    (fake_slurm / "sacct.txt").write_text(f"{gen0['job_id']}|COMPLETED|00:00:05\n{gen1['job_id']}|RUNNING|00:00:02\n")
    rc, out, _ = collapse("status", store.root)
    assert rc == 0 and f"  gen_001  RUNNING       job {gen1['job_id']}" in out, out
    assert "NOT_RUN" not in out and "failed" not in out, out
