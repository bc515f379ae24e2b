"""submit --dry-run: the plan, the sbatch scripts, the estimate and every failing check are printed;
nothing is written or queued; exit 2 only when a check failed."""
import re

from tests.launch.helpers import REPO, collapse, jobs, write_config
from tests.launch.test_slurm_plan import fake_slurm, scripts  # noqa: F401  (the fixture)


def test_paper_on_a_machine_without_that_cluster(tmp_path, monkeypatch):
    # no Slurm here at all (a workstation): submitit builds no executor without srun on PATH
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    run = tmp_path / "DIR"
    rc, out, err = collapse("submit", REPO / "configs" / "paper.yaml", "--dry-run", "--profile",
                            REPO / "slurm" / "example-cluster.yaml", "--run", run)
    assert rc == 2, err
    assert not run.exists() and not tmp_path.joinpath("DIR").exists()
    assert "#SBATCH --job-name=lm00g000-paper:lm/replace-p0-s0/gen_000" in out
    assert "#SBATCH --array=0-119%64" in out and "#SBATCH --gpus-per-node=1" in out
    assert "gpu 100, gpu1 100, cpu 435, aggregate 1; 636 in all" in out
    # 50 generations of ~231 s (p = 0, 5 epochs) and 50 of ~312 s (p = 0.1, 10 epochs): README's 7.5
    assert "GPU-hours: 7.5" in out and "not estimated (no measured rate)" in out
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert any("container.image /project/collapse/images/collapse-hpc.sif not found" in f for f in failed)
    assert len(failed) >= 2 and f"{len(failed)} checks failed" in out
    assert any("scontrol not found: not a Slurm host" in f for f in failed)


def test_a_dry_run_where_squeue_cannot_reach_its_controller_still_plans(tmp_path, monkeypatch):
    # Slurm's commands installed, its controller down (a login node in maintenance, CI before the dev cluster)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                 "exit 1\n")
    (bin_ / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_))
    rc, out, err = collapse("submit", REPO / "configs" / "cluster-smoke.yaml", "--dry-run", "--profile",
                            REPO / "slurm" / "example-cluster.yaml", "--run", tmp_path / "run")
    assert rc == 2 and "error:" not in err, err
    assert "jobs by kind: gpu 2, gpu1 2, cpu 2, aggregate 1; 7 in all" in out
    assert not (tmp_path / "run").exists()


def test_dry_run_that_passes_writes_and_queues_nothing(tmp_path, fake_slurm):  # noqa: F811
    (fake_slurm / "config.txt").write_text("MaxJobCount = 10000\nMaxArraySize = 1001\n")
    cfg = write_config(tmp_path, generations=3, ltchain={}, ltarray={"parts": 2})
    rc, out, err = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run",
                            "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0, out + err
    assert not (tmp_path / "run").exists() and not scripts(fake_slurm)  # no sbatch ran
    assert "#SBATCH --dependency='afterok:<job id of the one before>'" in out
    assert "MaxJobCount 10000, MaxArraySize 1001; within them" in out and "all passed" in out
    # no unit has a measured rate: no estimate of 0 GPU-hours, 0 min, 0.0 GB that reads as one
    assert "GPU-hours, wall time, disk: not estimated (no unit of this plan has a measured rate)" in out
    assert "GPU-hours: 0" not in out and "wall time: 0 min" not in out
    assert "not estimated (no measured rate): 2 units of ltarray; 3 units of ltchain" in out


def test_the_dry_runs_job_count_is_what_a_submit_would_queue(tmp_path, fake_slurm):  # noqa: F811
    """It counted every unit a submit starts, those whose jobs are queued too, which a submit leaves alone,
    and weighed them against MaxJobCount without the user's queued jobs, which a submit adds: it passed a
    resubmission the real one refused, and the counts it printed were not what got queued."""
    cfg, run = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2}), tmp_path / "run"
    assert collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")[0] == 0
    book = jobs(run)
    queued = [*(e["job_id"] for e in book["units"].values()), book["aggregate"]["job_id"]]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00|Dependency\n" for j in queued))
    again = ("submit", cfg, "--run", run, "--generations", "3", "--profile", REPO / "slurm" / "local.yaml")
    for most, fits in ((6, False), (7, True)):  # 5 queued, and a generation and its report to queue
        (fake_slurm / "config.txt").write_text(f"MaxJobCount = {most}\n")
        rc, out, _ = collapse(*again, "--dry-run")
        assert re.search(r"ltchain/replace-p0-s0 +chain +1 of +3 generations", out), out
        assert re.search(r"ltarray +array +0 of +2 tasks", out), out
        assert "gpu 1, aggregate 1; 2 in all (an array task counts as a job); 0 units already done, 4 already " \
               "queued" in out, out
        assert (rc, "within them" in out) == (0 if fits else 2, fits), out
        n = len(scripts(fake_slurm))
        rc, _, err = collapse(*again)  # the submit the dry run foretold
        assert (rc, len(scripts(fake_slurm))) == ((0, n + 2) if fits else (2, n)), err


def test_a_dry_run_of_a_run_already_queued_says_its_folder_exists_and_nothing_is_to_queue(tmp_path,
                                                                                         fake_slurm):  # noqa: F811
    """It read '(not created)' of a folder that was there, and 'jobs by kind: ; 0 in all'."""
    cfg, run = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2}), tmp_path / "run"
    again = ("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert collapse(*again)[0] == 0
    book = jobs(run)
    queued = [*(e["job_id"] for e in book["units"].values()), book["aggregate"]["job_id"]]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00|Dependency\n" for j in queued))
    rc, out, _ = collapse(*again, "--dry-run")
    assert rc == 0 and f"-> {run} (exists: what is neither done nor queued is planned)" in out, out
    assert "jobs by kind: none; 0 in all (an array task counts as a job); 0 units already done, 4 already " \
           "queued" in out, out


def test_dry_run_counts_one_of_a_kind_in_the_singular(tmp_path, fake_slurm):  # noqa: F811
    cfg = write_config(tmp_path, generations=1, ltchain={}, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run",
                            "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0, out + err
    assert "the ltarray array (1 task)" in out and "1 unit of ltarray; 1 unit of ltchain" in out
    assert "0 units already done" in out  # it read "0 unit(s) already done"


def test_one_failed_check_reads_in_the_singular(tmp_path, fake_slurm):  # noqa: F811
    # it read "2 job(s) > MaxJobCount 1" and "1 check(s) failed"
    (fake_slurm / "config.txt").write_text("MaxJobCount = 1\n")
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 1})
    rc, out, _ = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run",
                          "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2
    assert [ln for ln in out.splitlines() if ln.startswith("FAILED: ")] == [
        "FAILED: cluster limit: 2 jobs > MaxJobCount 1"]
    assert "\n1 check failed: submit without --dry-run once" in out


def test_every_failing_check_is_listed(tmp_path, fake_slurm):  # noqa: F811
    (fake_slurm / "config.txt").write_text("MaxJobCount = 2\n")
    prof = tmp_path / "p.yaml"
    prof.write_text(f"partition: nowhere\ncontainer: {{image: {tmp_path / 'missing.sif'}}}\n")
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 3})
    rc, out, _ = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and not (tmp_path / "run").exists()
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert len(failed) == 3, out
    assert "missing.sif not found" in failed[0] and "no partition 'nowhere'" in failed[1]
    assert "4 jobs > MaxJobCount 2" in failed[2]


def test_an_array_over_max_array_size_is_planned_as_several(tmp_path, fake_slurm):  # noqa: F811
    """It failed the check with an array of exactly MaxArraySize tasks, which sbatch takes (indices 0 to
    MaxArraySize - 1); submit now queues a longer one as several arrays."""
    (fake_slurm / "config.txt").write_text("MaxArraySize = 2\n")
    for parts, pieces in ((2, ""), (3, ", as 2 arrays (MaxArraySize 2)")):
        cfg = write_config(tmp_path, generations=1, ltarray={"parts": parts})
        rc, out, _ = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run",
                              "--profile", REPO / "slurm" / "local.yaml")
        assert rc == 0 and "all passed" in out and "MaxArraySize 2; within them" in out, out
        assert re.search(rf"ltarray +array +{parts} of +{parts} tasks +cpu +%{parts} at once{re.escape(pieces)}\n", out)
        assert "#SBATCH --array=0-1%2" in out


def test_every_job_kinds_partition_problem_is_listed(tmp_path, fake_slurm):  # noqa: F811
    # the dry run listed only the first kind's (aggregate's), as if the cpu and gpu jobs were fine
    (fake_slurm / "partitions.txt").write_text("PartitionName=short Default=YES MaxTime=30:00\n")
    prof = tmp_path / "p.yaml"
    prof.write_text("jobs: {aggregate: {partition: reports, time_min: 10}, cpu: {partition: cpu, time_min: 10},"
                    " gpu: {time_min: 60}}\n")
    cfg = write_config(tmp_path, generations=1, ltchain={}, ltarray={"parts": 1})
    rc, out, _ = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and not (tmp_path / "run").exists()
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert len(failed) == 3, out
    assert "jobs.aggregate.partition: no partition 'reports'" in failed[0]
    assert "jobs.cpu.partition: no partition 'cpu'" in failed[1]
    assert "jobs.gpu.time_min: 60 is over the time limit of partition short (30 min)" in failed[2]
    # without --dry-run the first is the one error line, and nothing is written
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.count("error:") == 1 and "no partition 'reports'" in err
    assert not (tmp_path / "run").exists()


def test_cluster_smoke_is_one_short_chain_per_experiment(tmp_path):
    rc, out, _ = collapse("submit", REPO / "configs" / "cluster-smoke.yaml", "--dry-run", "--profile",
                          REPO / "slurm" / "example-cluster.yaml", "--run", tmp_path / "run")
    assert rc == 2 and not (tmp_path / "run").exists()  # here: no image, no Slurm, nothing staged
    assert "jobs by kind: gpu 2, gpu1 2, cpu 2, aggregate 1; 7 in all" in out
    assert "GPU-hours: 0.0" in out and "wall time: " in out  # a couple of minutes per LM generation


def test_an_hf_cache_placed_with_a_variable_not_set_is_a_failed_check(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    # it was bound (and made, by a real submit) as a folder literally named '$NOT_SET_HERE'
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    (tmp_path / "img.sif").write_bytes(b"SIF")
    prof = tmp_path / "p.yaml"
    prof.write_text(f"container: {{image: {tmp_path / 'img.sif'}}}\n"
                    f"env: {{HF_HOME: '{tmp_path}/$NOT_SET_HERE/hf'}}\n")
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 1})
    rc, out, _ = collapse("submit", cfg, "--dry-run", "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert failed == [f"FAILED: {prof}: env.HF_HOME: {tmp_path}/$NOT_SET_HERE/hf names a variable not set here "
                      "(stage fetches the models into the HF cache, and submit binds it, as expanded here); set it, "
                      "or write the path"]
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and "env.HF_HOME" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "$NOT_SET_HERE").exists()


def test_a_data_set_not_prepared_says_to_stage_it_for_a_submit_and_to_prepare_it_for_a_run_here(
        tmp_path, fake_slurm):  # noqa: F811
    """submit stopped at 'run: collapse-hpc data prepare mnist', which prepares it here, while a cluster's step is
    stage (make stage, README step 3), which prepares it where the profile's jobs look. A run here says data prepare."""
    cfg, profile = tmp_path / "vae.yaml", REPO / "slurm" / "local.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {tmp_path / 'data'}\ngenerations: 1\nvae: {{dataset: mnist}}\n")
    for args in (("submit", cfg, "--run", tmp_path / "run", "--profile", profile), ("submit", cfg, "--dry-run",
                 "--run", tmp_path / "run", "--profile", profile)):
        rc, out, err = collapse(*args)
        assert rc == 2 and f"is not prepared; run: collapse-hpc stage {cfg} --profile {profile}" in out + err, \
            out + err
        assert "data prepare" not in out + err
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "run")
    assert rc == 2 and f"is not prepared; run: collapse-hpc data prepare mnist --data-dir {tmp_path / 'data'}" \
        in err, err
