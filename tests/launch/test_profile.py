"""Cluster profiles: the shipped ones load; mistakes are one line naming the file and key, and so is a refused
read of a profile or of the config it goes with."""
import errno
import os

import pytest

from collapse_hpc.errors import ConfigError
from collapse_hpc.launch import profile
from collapse_hpc.store.reads import AGAIN
from tests.helpers import refuse_reads
from tests.launch.helpers import REPO, collapse, write_config


def test_shipped_profiles_load():
    dev = profile.load(REPO / "slurm" / "local.yaml")
    assert dev.partition == "debug" and dev.jobs.gpu.gpus_per_node == 0
    ex = profile.load(REPO / "slurm" / "example-cluster.yaml")
    assert ex.account and ex.container.image.endswith(".sif")
    # sized to the measured need: OPT-125M one GPU per generation (minutes), VAE one GPU
    assert ex.jobs.gpu.gpus_per_node == 1 and ex.jobs.gpu.time_min <= 120 and ex.jobs.gpu1.gpus_per_node == 1
    assert ex.env["HF_HUB_OFFLINE"] == "1"  # jobs read the staged cache
    for p in (dev, ex):  # deprecated NCCL variables (torch warns and ignores them)
        assert not {"NCCL_ASYNC_ERROR_HANDLING", "NCCL_BLOCKING_WAIT"} & set(p.env)
    assert ex.resources("cpu").partition == "cpu" and ex.setup and ex.env
    assert dev.executor == ex.executor == "slurm"  # what `run --profile` does without --executor


def test_a_copy_of_the_example_profile_is_named_after_its_file(tmp_path):
    """A copy of example-cluster.yaml kept its `name: example-cluster`: a dry run of slurm/mycluster.yaml read
    'profile example-cluster'. The template names no cluster, so a copy is called by its own file's name."""
    assert profile.load(REPO / "slurm" / "example-cluster.yaml").name == "example-cluster"
    mine = tmp_path / "mycluster.yaml"
    mine.write_bytes((REPO / "slurm" / "example-cluster.yaml").read_bytes())
    assert profile.load(mine).name == "mycluster"


@pytest.mark.parametrize("text, where", [
    ("partitoin: gpu\n", "partitoin: unknown key (did you mean 'partition'?)"),
    ("jobs: {gpu: {gpus: 4}}\n", "jobs.gpu.gpus: unknown key"),
    ("jobs: {cpu: {time_min: 0}}\n", "jobs.cpu.time_min: must be >= 1"),
    ("jobs: {cpu: {gpus_per_node: 1}}\n", "jobs: cpu.gpus_per_node: cpu jobs use no GPU"),
    ("jobs: {gpu1: {nodes: 2}}\n", "jobs: gpu1.nodes: only gpu jobs may span several nodes"),
    ("array_parallelism: many\n", "array_parallelism: expected an integer"),
    ("- a\n", "expected a mapping"),
    # USR2 120 s before a 1-minute limit: Slurm signals at once, the job checkpoints and requeues, again and again
    ("jobs: {cpu: {time_min: 1}}\n", "signal_delay_s: 120 s, plus the 60 s Slurm may signal early, is not shorter "
                                     "than jobs.cpu.time_min (1 min)"),
    # 30 s before a 1-minute limit passed: on the dev cluster USR2 came 8 s and 19 s in, and the job never got on
    ("signal_delay_s: 30\njobs: {gpu1: {time_min: 1}}\n", "signal_delay_s: 30 s, plus the 60 s Slurm may signal "
                                                          "early, is not shorter than jobs.gpu1.time_min (1 min)"),
])
def test_profile_errors_are_one_line(tmp_path, text, where):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        profile.load(path)
    assert where in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_submit_with_bad_profile_exits_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("qos: [1, 2]\nnodes_typo: 1\n")
    cfg = write_config(tmp_path, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", tmp_path / "bad.yaml")
    assert rc == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "bad.yaml" in errors[0] and "Traceback" not in err
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", tmp_path / "missing.yaml")
    assert rc == 2 and "cluster profile not found" in err


@pytest.mark.parametrize("where, key, option", [
    ("sbatch", "dependency", "dependency"),
    ("sbatch", "dep", "dependency"),  # sbatch takes any unambiguous prefix of a long option
    ("sbatch", "Output", "output"),
    ("sbatch", "error", "error"),
    ("jobs.gpu.sbatch", "signal", "signal"),
    ("jobs.cpu.sbatch", "array", "array"),
    ("sbatch", "export", "export"),
])
def test_sbatch_extras_may_not_replace_what_the_tool_sets(tmp_path, where, key, option):
    path = tmp_path / "p.yaml"
    nested = {"sbatch": f"sbatch: {{{key}: x}}\n", "jobs.gpu.sbatch": f"jobs: {{gpu: {{sbatch: {{{key}: x}}}}}}\n",
              "jobs.cpu.sbatch": f"jobs: {{cpu: {{sbatch: {{{key}: x}}}}}}\n"}[where]
    path.write_text(nested)
    with pytest.raises(ConfigError) as e:
        profile.load(path)
    assert f"{where}.{key}: would replace --{option}" in str(e.value) and "\n" not in str(e.value)


def test_other_sbatch_extras_pass():
    assert profile.reserved("wckey") is None and profile.reserved("qos") is None
    assert profile.reserved("constraint") is None and profile.reserved("mail_type") is None


def test_run_on_slurm_without_a_profile_says_what_submit_says(tmp_path, monkeypatch):
    """`run CONFIG --executor slurm` with no profile anywhere blamed the config file's `profile:` key;
    submit's line names every way to give one. Both now pick the profile alike, and say the same."""
    cfg = write_config(tmp_path, ltarray={"parts": 1})
    monkeypatch.chdir(tmp_path)  # no slurm/site.yaml here
    lines = []
    for argv in (["submit", cfg], ["run", cfg, "--executor", "slurm"]):
        rc, _, err = collapse(*argv, "--run", tmp_path / "run")
        assert rc == 2 and "Traceback" not in err, err
        lines.append([ln for ln in err.splitlines() if ln.startswith("error: ")])
    assert lines[0] == lines[1] and len(lines[1]) == 1, lines
    assert "no cluster profile: give --profile P" in lines[1][0] and str(profile.SITE) in lines[1][0]
    assert not (tmp_path / "run").exists()


REFUSALS = pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])


def _said(path, refusal, what: str) -> str:
    return f"error: {what} {path}: not read ({os.strerror(refusal)}): nothing is done; it is done {AGAIN}"


@REFUSALS
@pytest.mark.parametrize("command", ["run", "config", "stage", "submit"])
def test_a_config_the_file_system_will_not_read_is_one_line_naming_it(tmp_path, monkeypatch, refusal, command):
    """A refused read of the user's config went up as a raw OSError: with EIO the line named no file."""
    cfg = write_config(tmp_path, ltarray={"parts": 1})
    refuse_reads(monkeypatch, cfg, refusal)
    rc, _, err = collapse(command, cfg, *(("--run", tmp_path / "run") if command in ("run", "submit") else ()))
    assert rc == 2 and err.splitlines() == [_said(cfg, refusal, "config file")]


@REFUSALS
def test_a_profile_the_file_system_will_not_read_is_one_line_naming_it(tmp_path, monkeypatch, refusal):
    prof = tmp_path / "p.yaml"
    prof.write_text((REPO / "slurm" / "local.yaml").read_text())
    cfg = write_config(tmp_path, ltarray={"parts": 1})
    refuse_reads(monkeypatch, prof, refusal)
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.splitlines() == [_said(prof, refusal, "cluster profile")]
