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
    (fake_slurm / "squeue.txt").write_text(f"{PID}|RUNNING|0:05|None\n201|PENDING|0:00|Dependency|me|"
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
