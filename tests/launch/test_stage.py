"""The model check before submitting, and `collapse-hpc stage`, look in the HF cache that the
profile's jobs use (its env.HF_HOME), not in the submitting shell's."""
from pathlib import Path

import pytest

from tests.experiments.lm.test_hub import cache_model
from tests.launch.helpers import collapse, write_config
from tests.launch.test_slurm_plan import fake_slurm, scripts  # noqa: F401  (the fixture)

TAG = "facebook/opt-125m"


@pytest.fixture
def setup(tmp_path, monkeypatch, fake_slurm):  # noqa: F811
    shell, jobs = tmp_path / "shell-hf", tmp_path / "jobs-hf"
    cache_model(shell / "hub", TAG)  # the submitting shell's cache has the model; the jobs' does not
    monkeypatch.setenv("HF_HOME", str(shell))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data" / "corpus"  # a prepared data set, as the check sees one
    data.mkdir(parents=True)
    for f in ("card.json", "train.parquet", "validation.parquet", "test.parquet"):
        (data / f).write_text("{}")
    cfg = write_config(tmp_path, generations=1, data_dir=str(tmp_path / "data"),
                       lm={"dataset": "corpus", "model": TAG, "pretrained": True})
    prof = tmp_path / "p.yaml"
    prof.write_text(f"partition: debug\nenv: {{HF_HOME: {jobs}, HF_HUB_OFFLINE: '1'}}\n")
    return cfg, prof, shell, jobs


def test_the_check_looks_in_the_jobs_hf_cache(tmp_path, setup, fake_slurm):  # noqa: F811
    cfg, prof, shell, jobs = setup
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and not (tmp_path / "run").exists() and not scripts(fake_slurm)
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and TAG in line and f"not in the HF cache ({jobs / 'hub'})" in line
    rc, out, _ = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 2 and not (tmp_path / "run").exists()
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert len(failed) == 1 and TAG in failed[0] and str(jobs) in failed[0]
    prof.write_text(f"partition: debug\nenv: {{HF_HOME: {shell}, HF_HUB_OFFLINE: '1'}}\n")
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 0 and "all passed" in out, out + err


def test_the_check_looks_for_the_tokenizer_in_the_jobs_hf_cache(tmp_path, setup, fake_slurm):  # noqa: F811
    # the jobs' copy holds the weights but no tokenizer (a fetch of some files only): every job refused it
    cfg, prof, shell, jobs = setup
    prof.write_text(f"partition: debug\nenv: {{HF_HOME: {jobs}, HF_HUB_OFFLINE: '1'}}\n")
    cache_model(jobs / "hub", TAG, tokenizer=False)
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 2 and not (tmp_path / "run").exists() and not scripts(fake_slurm), out + err
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED: ")]
    assert len(failed) == 1 and f"lm.model: the HF cache's copy of {TAG!r} ({jobs / 'hub'}" in failed[0], failed
    assert "lacks a tokenizer's files" in failed[0]


def test_stage_fetches_into_the_jobs_cache_and_then_the_check_passes(tmp_path, setup):
    cfg, prof, shell, jobs = setup
    # offline and not in the jobs' cache: one line naming the model and where it would go
    rc, _, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 2, err
    (line,) = err.strip().splitlines()
    assert TAG in line and f"cannot fetch into {jobs / 'hub'}" in line and "HF_HUB_OFFLINE" in line
    cache_model(jobs / "hub", TAG)  # as a download would leave it
    rc, out, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 0, err
    assert f"model {TAG}: in {jobs / 'hub'}" in out and "submit's checks pass" in out


def test_stage_fetches_every_tokenizer_file_the_check_accepts(tmp_path, setup, monkeypatch):
    # a model whose only vocabulary is a tiktoken file: the check accepted it, stage did not fetch it, so
    # the staged cache was refused by the very check that stage runs last
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    cfg, prof, shell, jobs = setup
    files = ["config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.tiktoken", "tf_model.h5"]

    def download(tag, cache_dir, allow_patterns=None, **_):  # the hub's repository, filtered as the hub's client does
        snapshot = Path(cache_dir) / f"models--{tag.replace('/', '--')}" / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (snapshot.parent.parent / "refs").mkdir()
        (snapshot.parent.parent / "refs" / "main").write_text("abc123")
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (snapshot / name).write_text("{}")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    rc, out, err = collapse("stage", cfg, "--profile", prof)
    snapshot = jobs / "hub" / f"models--{TAG.replace('/', '--')}" / "snapshots" / "abc123"
    assert (snapshot / "tokenizer.tiktoken").is_file() and not (snapshot / "tf_model.h5").exists()
    assert rc == 0 and "submit's checks pass" in out, out + err


def test_stage_refuses_a_data_set_only_the_user_can_prepare(tmp_path, setup):
    cfg, prof, _, jobs = setup
    cfg.write_text(cfg.read_text().replace("dataset: corpus", "dataset: mine"))
    rc, _, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 2 and "'mine' is not built in" in err and "--from PATH" in err


def test_stage_refuses_an_hf_cache_placed_with_a_variable_not_set_before_fetching(tmp_path, setup, monkeypatch):
    # it fetched into a folder literally named '$NOT_SET_HERE', then submit's check refused the profile
    cfg, prof, shell, jobs = setup
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    prof.write_text(f"partition: debug\nenv: {{HF_HOME: '{tmp_path}/$NOT_SET_HERE/hf', HF_HUB_OFFLINE: '1'}}\n")
    rc, out, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 2 and out == "", out
    assert err.strip() == (f"error: {prof}: env.HF_HOME: {tmp_path}/$NOT_SET_HERE/hf names a variable not set here "
                           "(stage fetches the models into the HF cache, and submit binds it, as expanded here); "
                           "set it, or write the path")
    assert not (tmp_path / "$NOT_SET_HERE").exists()


def test_stage_says_the_tiny_model_is_built_in_the_job(tmp_path, setup):
    """The tiny OPT is built inside each job, so nothing is fetched: stage said 'models none', as if the config
    named no model."""
    cfg, prof, _, _ = setup
    cfg.write_text(cfg.read_text().replace(f"model: {TAG}", "model: tiny"))
    rc, out, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 0, err
    assert "model: built in the job (tiny)" in out and "models none" not in out, out


def test_stage_of_a_config_run_here_needs_no_cluster_profile(tmp_path, setup, monkeypatch):
    """A config of executor local, with no profile anywhere (no --profile, no `profile:`, no slurm/site.yaml): stage
    refused it for want of a cluster profile. It stages for the run here now: this shell's HF cache, run's checks.
    With a profile found, it stages for that cluster's jobs as submit would; executor slurm still needs one."""
    cfg, prof, shell, jobs = setup
    monkeypatch.chdir(tmp_path)  # no slurm/site.yaml here
    rc, out, err = collapse("stage", cfg)
    assert rc == 0, err
    assert f"model {TAG}: in {shell / 'hub'}" in out and "staged for a run here (executor local): " in out, out
    assert out.rstrip().endswith("; run's checks pass") and not (tmp_path / "runs").exists(), out
    slurm_cfg = write_config(tmp_path, "cluster", generations=1, executor="slurm", data_dir=str(tmp_path / "data"),
                             lm={"dataset": "corpus", "model": TAG, "pretrained": True})
    rc, _, err = collapse("stage", slurm_cfg)
    assert rc == 2 and "no cluster profile: give --profile P" in err, err
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "site.yaml").write_text(prof.read_text())
    cache_model(jobs / "hub", TAG)
    rc, out, err = collapse("stage", cfg)  # the site's profile, as `submit CONFIG` picks it
    assert rc == 0 and f"model {TAG}: in {jobs / 'hub'}" in out and "staged for slurm/site.yaml" in out, out + err


def test_stage_where_the_hub_is_unreachable_says_where_to_run_it(tmp_path, setup, monkeypatch, capfd):
    """No internet here (a compute node, a login node behind a firewall): huggingface_hub's 'cannot find the
    appropriate snapshot folder' was all stage said, not that it must run where the hub is reachable."""
    import socket

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.utils import logging

    cfg, prof, shell, jobs = setup
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the hub on, as make stage turns it

    def no_network(*args, **kwargs):  # what snapshot_download says and raises where no name resolves
        logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known") from \
            socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    rc, _, err = collapse("stage", cfg, "--profile", prof)
    assert rc == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: stage: ") and TAG in line, line
    assert "the hub is not reachable from here: run it where huggingface.co is, e.g. a login node" in line, line
    assert "Retry" not in capfd.readouterr().err  # huggingface_hub's retries kept off the screen
