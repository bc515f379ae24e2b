"""Model and tokenizer tags are checked before a run writes anything: a folder, the HF cache, the hub."""
import logging

import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm.hub import check_source
from tests.test_cli import cli, one_error_line


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty HF cache for this test, with the hub offline (the test may switch it back on)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the check reads the environment when it runs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_model(cache, tag):
    """The layout huggingface_hub writes: refs/main names a snapshot holding the files."""
    repo = cache / f"models--{tag.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")


def test_offline_tag_missing_from_the_cache_is_refused(hf_cache):
    with pytest.raises(UserError, match=r"lm.model: 'facebook/opt-125m' is not in the HF cache .*offline.*"
                                        r"hf download facebook/opt-125m"):
        check_source("lm.model", "facebook/opt-125m")


def test_cached_tag_passes_offline(hf_cache):
    cache_model(hf_cache, "facebook/opt-125m")
    check_source("lm.model", "facebook/opt-125m")
    with pytest.raises(UserError, match="opt-350m"):  # another tag is still missing
        check_source("lm.model", "facebook/opt-350m")


def test_online_tag_missing_from_the_cache_warns_only_on_slurm(hf_cache, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with caplog.at_level(logging.WARNING, logger="collapse_hpc"):
        check_source("lm.model", "facebook/opt-125m")
        assert not caplog.records
        check_source("lm.model", "facebook/opt-125m", slurm=True)
    assert "internet on the compute nodes" in caplog.text and "hf download facebook/opt-125m" in caplog.text


def test_folders(tmp_path, hf_cache):
    (tmp_path / "model").mkdir()
    with pytest.raises(UserError, match="holds no model or tokenizer"):
        check_source("lm.model", str(tmp_path / "model"))
    (tmp_path / "model" / "config.json").write_text("{}")
    check_source("lm.model", str(tmp_path / "model"))
    with pytest.raises(UserError, match=r"lm.tokenizer: ./no-such-folder is not a folder"):
        check_source("lm.tokenizer", "./no-such-folder")
    with pytest.raises(UserError, match="neither a folder nor a hub tag"):
        check_source("lm.model", "not a tag!")


def test_run_with_an_unloadable_model_writes_nothing(tmp_path, lm_data_dir):
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\n"
                   f"lm: {{dataset: tiny, model: facebook/opt-125m}}\n")
    for argv in (("run", cfg), ("lm", cfg)):
        p = cli(*argv, "--run", tmp_path / "r", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
        line = one_error_line(p)
        assert "lm.yaml: lm.model: 'facebook/opt-125m' is not in the HF cache" in line, line
        assert not (tmp_path / "r").exists()


def test_a_regimes_model_and_data_set_are_checked_too(tmp_path, lm_data_dir):
    """A regime's overrides (`{name: replace, lm: {model: …}}`) reach the same checks before anything
    is written, not one failed unit per chain later."""
    for override, words in (("{model: ./no-such-model}", "lm.model: ./no-such-model is not a folder"),
                            ("{dataset: unprepared}", "lm.dataset: ")):
        cfg = tmp_path / "lm.yaml"
        cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\nlm: {{dataset: tiny}}\n"
                       f"regimes: [replace, {{name: replace, keep_fraction: 0.1, lm: {override}}}]\n")
        p = cli("run", cfg, "--run", tmp_path / "r", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
        line = one_error_line(p)
        assert words in line, line
        assert not (tmp_path / "r").exists()
