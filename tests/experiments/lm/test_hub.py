"""Model and tokenizer tags are checked before a run writes anything: a folder, the HF cache, the hub."""
import errno
import http.server
import json
import logging
import socket
import threading

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


def cache_model(cache, tag, weights=True, tokenizer=True):
    """The layout huggingface_hub writes: refs/main names a snapshot holding the files (a config, a
    weights file unless not `weights` and a tokenizer's unless not `tokenizer`: the check before
    submitting refuses a snapshot without them)."""
    repo = cache / f"models--{tag.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    if weights:
        (snapshot / "model.safetensors").write_bytes(b"")
    if tokenizer:
        (snapshot / "vocab.json").write_text("{}")
        (snapshot / "merges.txt").write_text("#version: 0.2\n")


def saved_opt(folder):
    """A tiny OPT saved as save_pretrained saves it: config.json and model.safetensors, no tokenizer."""
    from transformers import OPTConfig, OPTForCausalLM

    OPTForCausalLM(OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                             max_position_embeddings=128, word_embed_proj_dim=16)).save_pretrained(folder)
    return folder


def refused_run(tmp_path, lm_data_dir, hf_cache, lm: str) -> str:
    """The one error line of `collapse-hpc run` of a config whose lm section is `lm`, the hub offline with
    the test's HF cache; and no run folder was made."""
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\nlm: {{{lm}}}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r", env={"HF_HUB_CACHE": str(hf_cache)}))
    assert not (tmp_path / "r").exists()
    return line


def test_offline_tag_missing_from_the_cache_is_refused(hf_cache):
    with pytest.raises(UserError, match=r"lm.model: 'facebook/opt-125m' is not in the HF cache .*offline.*"
                                        r"hf download facebook/opt-125m"):
        check_source("lm.model", "facebook/opt-125m")


def test_cached_tag_passes_offline(hf_cache):
    cache_model(hf_cache, "facebook/opt-125m")
    check_source("lm.model", "facebook/opt-125m")
    with pytest.raises(UserError, match="opt-350m"):  # another tag is still missing
        check_source("lm.model", "facebook/opt-350m")


class _Hub(http.server.BaseHTTPRequestHandler):
    """The hub's model API as huggingface_hub reads it: /api/models/<tag> answers 200 with the
    model's info, 404 RepoNotFound, or 403 GatedRepo."""
    MODELS = {"facebook/opt-125m": 200, "meta/gated-lm": 403}

    def do_GET(self):
        tag = self.path.split("?")[0].removeprefix("/api/models/")
        status = self.MODELS.get(tag, 404)
        body = json.dumps({"id": tag, "sha": "abc123"} if status == 200 else {"error": "no"}).encode()
        self.send_response(status)
        if status != 200:
            self.send_header("X-Error-Code", "GatedRepo" if status == 403 else "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(hf_cache, monkeypatch):
    """An online hub at a local address (HF_ENDPOINT), serving _Hub.MODELS."""
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import: the tests start offline
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield endpoint
    server.shutdown()


def test_a_tag_only_on_the_hub_passes_and_warns_only_on_slurm(hub, caplog):
    with caplog.at_level(logging.WARNING, logger="collapse_hpc"):
        check_source("lm.model", "facebook/opt-125m")
        assert not caplog.records
        check_source("lm.model", "facebook/opt-125m", slurm=True)
    assert "internet on the compute nodes" in caplog.text and "hf download facebook/opt-125m" in caplog.text


@pytest.mark.parametrize("slurm", [False, True], ids=["local", "slurm"])
def test_a_tag_the_hub_lacks_or_gates_is_refused_everywhere(hub, slurm):
    with pytest.raises(UserError, match=r"lm.model: 'facebook/opt-999m' is not in the HF cache .* and the hub "
                                        r"\(http://127.0.0.1:\d+\) has no model 'facebook/opt-999m' \(misspelt"):
        check_source("lm.model", "facebook/opt-999m", slurm=slurm)
    with pytest.raises(UserError, match=r"lm.tokenizer: 'meta/gated-lm' .* it is gated on the hub .*hf auth login"):
        check_source("lm.tokenizer", "meta/gated-lm", slurm=slurm)


def test_an_unreachable_hub_is_refused_for_local_jobs_and_a_warning_on_slurm(hf_cache, monkeypatch, caplog):
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nobody listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(UserError, match=r"the hub \(http://127.0.0.1:\d+\) cannot be reached from here "
                                        r"\(ConnectError: .*\); fill it where the hub is reachable"):
        check_source("lm.model", "facebook/opt-125m")
    with caplog.at_level(logging.WARNING, logger="collapse_hpc"):
        check_source("lm.model", "facebook/opt-125m", slurm=True)
    assert "cannot be reached from here" in caplog.text and "each job downloads it" in caplog.text


@pytest.mark.parametrize("model", ["facebook/opt-999m", "facebook/opt-999b"])
def test_run_with_a_misspelt_hub_model_is_one_line_before_anything_is_written(tmp_path, lm_data_dir, hub, model):
    """The units' memory was checked before the model's name: a misspelt name stating a size this machine
    (opt-999m: some 30 GiB on a CPU) or any (opt-999b) cannot hold was refused for its memory, not its name.
    The name is looked up first, on every machine."""
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\n"
                   f"lm: {{dataset: tiny, model: {model}}}\n")
    p = cli("run", cfg, "--run", tmp_path / "r", env={"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub,
                                                      "HF_HUB_OFFLINE": "0"})
    line = one_error_line(p)
    assert f"lm.model: '{model}' is not in the HF cache" in line and "has no model" in line, line
    assert not (tmp_path / "r").exists()


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
    is written, not one failed unit per chain later; the line names the key where the file writes it."""
    regimes = "[replace, {name: replace, keep_fraction: 0.1, lm: %s}]"
    for override, in_lm, words in (
            ("{model: ./no-such-model}", False, "lm.yaml: regimes[1].lm.model: ./no-such-model is not a folder"),
            ("{dataset: unprepared}", False, "lm.yaml: regimes[1].lm.dataset: "),
            ("{dataset: unprepared}", True, "lm.yaml: lm.regimes[1].lm.dataset: ")):
        cfg = tmp_path / "lm.yaml"
        listed = regimes % override
        cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\n"
                       + (f"lm: {{dataset: tiny, regimes: {listed}}}\n" if in_lm
                          else f"lm: {{dataset: tiny}}\nregimes: {listed}\n"))
        p = cli("run", cfg, "--run", tmp_path / "r", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
        line = one_error_line(p)
        assert words in line, line
        assert not (tmp_path / "r").exists()


def test_an_unprepared_data_set_of_the_section_is_named_by_its_section_key(tmp_path, lm_data_dir):
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\nlm: {{dataset: unprepared}}\n"
                   "regimes: [replace, {name: replace, keep_fraction: 0.1, lm: {epochs: 2}}]\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert "lm.yaml: lm.dataset: " in line and "is not prepared" in line, line


def test_an_unprepared_data_set_and_a_missing_model_are_both_said(tmp_path):
    # the data set's line alone was said: submit --dry-run hid the missing model behind it (README: every
    # failing check), and a run fixed one to meet the other
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {tmp_path / 'data'}\ngenerations: 1\n"
                   f"lm: {{dataset: wikitext2, model: facebook/opt-125m}}\n")
    p = cli("run", cfg, "--run", tmp_path / "r", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    line = one_error_line(p)
    assert f"lm.yaml: lm.dataset: {tmp_path / 'data' / 'wikitext2'} is not prepared" in line, line
    assert "; lm.model: 'facebook/opt-125m' is not in the HF cache" in line, line
    assert not (tmp_path / "r").exists()


def test_the_reference_flags_check_the_model_tag_as_a_config_does(tmp_path, lm_data_dir):
    # `collapse-hpc lm --eval_only` (the reference's default tag, facebook/opt-125m) with a hub out of reach
    # retried for most of a minute, printing each retry, before transformers' own error
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    p = cli("lm", "--eval_only", "--dataset", "tiny", "--data-dir", lm_data_dir,
            env={"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": closed, "HF_HUB_OFFLINE": "0"})
    line = one_error_line(p)
    assert line.startswith("error: --model_tag: 'facebook/opt-125m' is not in the HF cache"), line
    assert "cannot be reached from here" in line and time.monotonic() - start < 20


def test_a_model_folder_whose_weights_are_cut_short_is_one_line_before_anything_is_written(tmp_path, lm_data_dir):
    """lm.model naming a folder whose model.safetensors a copy cut short passed the checks; every
    generation-0 job then failed on safetensors' traceback, after the run folder was made."""
    from collapse_hpc.experiments.lm.model import load_model

    folder = saved_opt(tmp_path / "my-opt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cfg = tmp_path / "lm.yaml"
    cfg.write_text(f"executor: local\ndata_dir: {lm_data_dir}\ngenerations: 1\n"
                   f"lm: {{dataset: tiny, model: {folder}}}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert f"lm.yaml: lm.model: the model in {folder} does not read (" in line, line
    assert not (tmp_path / "r").exists()
    with pytest.raises(UserError, match=f"{folder}: model cannot be loaded: "):
        load_model(folder)  # as a job meets it, where it was cut short after the check


def test_a_model_whose_weights_are_not_all_there_is_one_line_before_anything_is_written(tmp_path, lm_data_dir,
                                                                                        hf_cache):
    """A model folder of config.json alone, a sharded model missing a shard its index lists, and the HF
    cache's copy of a hub tag whose download stopped after config.json (the hub offline) all passed the
    checks; every generation-0 job then failed at its load, the folder's line saying it was not in the HF
    cache. A folder of config.json alone is fine for a model trained from scratch (pretrained: false)."""
    from collapse_hpc.experiments.lm.model import check_weights

    folder = tmp_path / "my-opt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "opt"}')
    line = refused_run(tmp_path, lm_data_dir, hf_cache, f"dataset: tiny, model: {folder}, pretrained: true")
    assert f"lm.yaml: lm.model: the model folder {folder} lacks its weights (model.safetensors or " \
           f"pytorch_model.bin); copy or download the model whole; lm.model: the model folder {folder} lacks a " \
           f"tokenizer's files" in line, line  # and its tokenizer, said in the same line
    check_weights("lm.model", str(folder), pretrained=False)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        k: f"model-0000{i}-of-00003.safetensors" for i, k in enumerate("abc", 1)}}))
    (folder / "model-00001-of-00003.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"lacks 2 of the 3 shards model.safetensors.index.json lists "
                                        r"\(model-00002-of-00003.safetensors and 1 more\)"):  # it said '…'
        check_weights("lm.model", str(folder))
    cache_model(hf_cache, "facebook/opt-125m", weights=False)
    with pytest.raises(UserError, match=r"lm.model: the HF cache's copy of 'facebook/opt-125m' \(.*snapshots/abc123\) "
                                        r"lacks its weights .*hf download facebook/opt-125m"):
        check_weights("lm.model", "facebook/opt-125m")


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_weight_index_the_file_system_will_not_read_is_said_not_a_model_to_download_again(tmp_path, monkeypatch,
                                                                                         refusal):
    """A sharded model's index read refused was said to be one the folder lacks ("lacks a readable
    model.safetensors.index.json (PermissionError …); copy or download the model whole"). It is the refusal's
    line naming the file, the model kept; once it reads, its shards are checked as before."""
    import os

    from collapse_hpc.experiments.lm.model import check_weights
    from collapse_hpc.store.reads import NotRead
    from tests.helpers import refuse_reads

    folder = tmp_path / "my-opt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "opt"}')
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    refuse_reads(monkeypatch, index, refusal)
    with pytest.raises(NotRead) as said:
        check_weights("lm.model", str(folder))
    assert str(said.value) == (f"model file {index}: not read ({os.strerror(refusal)}): kept as it is; the command "
                               f"goes on with it once the file reads again (its permissions, the file system): run "
                               f"the same command again")
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"lacks 1 of the 1 shards model.safetensors.index.json lists"):
        check_weights("lm.model", str(folder))


def test_a_tokenizer_whose_files_are_not_there_is_one_line_not_a_split_without_blocks(tmp_path):
    """transformers loads a GPT-2 tokenizer from a config.json alone (a download stopped early), with a
    vocabulary of one token that turns every text into none: each job then failed saying the train split
    made no block of lm.block_size tokens, as if the corpus were too short."""
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer
    from tests.experiments.lm.conftest import tiny_cfg

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 50257}')
    with pytest.raises(UserError, match=r"tokenizer '.*gpt2': no vocabulary \(it turns text into no tokens\)"):
        load_tokenizer(tiny_cfg(tokenizer=str(folder)), tmp_path)


def test_a_tokenizer_folder_without_its_files_is_one_line_before_anything_is_written(tmp_path, lm_data_dir, hf_cache):
    """lm.tokenizer naming a folder of config.json alone (a download stopped early) passed the checks: each job
    then refused it at its load, after the run folder and its jobs were made. So did a model folder without a
    tokenizer, whose tokenizer the chain loads where lm.tokenizer names none."""
    from collapse_hpc.experiments.lm.tokenizer import check_tokenizer

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 50257}')
    line = refused_run(tmp_path, lm_data_dir, hf_cache, f"dataset: tiny, tokenizer: {folder}")
    assert line.endswith(f"lm.yaml: lm.tokenizer: the tokenizer folder {folder} lacks a tokenizer's files "
                         f"(tokenizer.json, or vocab.json and merges.txt); copy or download it whole"), line
    (folder / "vocab.json").write_text("{}")
    with pytest.raises(UserError, match=r"lm.tokenizer: the tokenizer folder .*gpt2 lacks merges.txt "):
        check_tokenizer("lm.tokenizer", str(folder))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    check_tokenizer("lm.tokenizer", str(folder))

    model = saved_opt(tmp_path / "my-opt")
    line = refused_run(tmp_path, lm_data_dir, hf_cache, f"dataset: tiny, model: {model}")
    assert line.endswith(f"lm.yaml: lm.model: the model folder {model} lacks a tokenizer's files (tokenizer.json, or "
                         f"vocab.json and merges.txt), and lm.tokenizer names no other; copy or download it whole, or "
                         f"name a tokenizer (lm.tokenizer)"), line


def test_the_hf_caches_copy_of_a_tokenizer_without_its_files_is_refused_offline(tmp_path, lm_data_dir, hf_cache,
                                                                                 monkeypatch):
    from collapse_hpc.experiments.lm.tokenizer import check_tokenizer

    cache_model(hf_cache, "gpt2", tokenizer=False)
    with pytest.raises(UserError, match=r"^lm.tokenizer: the HF cache's copy of 'gpt2' \(.*snapshots/abc123\) lacks "
                                        r"a tokenizer's files .*; copy or download it whole \(hf download gpt2, "):
        check_tokenizer("lm.tokenizer", "gpt2")
    cache_model(hf_cache, "facebook/opt-125m", tokenizer=False)  # the model's own tokenizer, as a job loads it
    line = refused_run(tmp_path, lm_data_dir, hf_cache, "dataset: tiny, model: facebook/opt-125m")
    assert line.endswith("lm.yaml: lm.model: the HF cache's copy of 'facebook/opt-125m' "
                         f"({hf_cache}/models--facebook--opt-125m/snapshots/abc123) lacks a tokenizer's files "
                         "(tokenizer.json, or vocab.json and merges.txt), and lm.tokenizer names no other; copy or "
                         "download it whole (hf download facebook/opt-125m, where the hub is reachable), or name "
                         "a tokenizer (lm.tokenizer)"), line
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online a load fills the cache: not refused here
    check_tokenizer("lm.tokenizer", "gpt2")


def test_the_reference_flags_check_the_model_folders_tokenizer_as_a_config_does(tmp_path, lm_data_dir):
    # `collapse-hpc lm --model_tag FOLDER` of a saved model without its tokenizer: "no vocabulary (it turns text
    # into no tokens)", from the load, not the line a config's check gives
    model = saved_opt(tmp_path / "my-opt")
    p = cli("lm", "--model_tag", model, "--eval_only", "--dataset", "tiny", "--data-dir", lm_data_dir)
    line = one_error_line(p)
    assert line == (f"error: --model_tag: the model folder {model} lacks a tokenizer's files (tokenizer.json, or "
                    f"vocab.json and merges.txt), and lm.tokenizer names no other; copy or download it whole, or name "
                    f"a tokenizer (lm.tokenizer)"), line


def saved_opt_with_tokenizer(folder, data_dir):
    """saved_opt (128 positions, 64 embedding rows) with the tiny data set's 300-token BPE saved beside it."""
    import shutil

    saved_opt(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(data_dir / "tiny" / "tokenizer-bpe300" / name, folder / name)
    return folder


def test_a_block_size_past_the_models_positions_is_one_line_before_anything_is_written(tmp_path, lm_data_dir,
                                                                                      hf_cache):
    """A model folder of 128 positions under lm.block_size 80 passed the checks: every generation-0 job then
    failed on an embedding's IndexError (a prompt block and 80 new tokens are 160 positions), in its log alone,
    after the run folder was made."""
    from collapse_hpc.experiments.lm.model import build_model, check_positions
    from tests.experiments.lm.conftest import tiny_cfg

    model = saved_opt_with_tokenizer(tmp_path / "my-opt", lm_data_dir)
    line = refused_run(tmp_path, lm_data_dir, hf_cache, f"dataset: tiny, model: {model}, block_size: 80")
    assert line.endswith(f"lm.yaml: lm.block_size 80: the model {model} embeds 128 token positions "
                         f"(max_position_embeddings in its config.json), and a generation uses 160: a prompt block "
                         f"and as many new tokens when it samples; lower lm.block_size to 64 or less"), line
    with pytest.raises(UserError, match="lm.block_size 80: the model .* embeds 128 token positions"):
        build_model(tiny_cfg(model=str(model), pretrained=True, block_size=80), None, lm_data_dir)  # as a job
    opt = {"model_type": "opt", "max_position_embeddings": 128}  # a call that does not sample needs a block's
    check_positions("lm.block_size", tiny_cfg(model=str(model), block_size=128), opt, samples=False)
    with pytest.raises(UserError, match="embeds 128 token positions .*, and a block is as many tokens; lower "
                                        "lm.block_size to 128 or less"):
        check_positions("lm.block_size", tiny_cfg(model=str(model), block_size=129), opt, samples=False)


def test_a_tokenizer_larger_than_the_models_embedding_is_one_line_before_anything_is_written(tmp_path, lm_data_dir,
                                                                                            hf_cache):
    """The tokenizer beside a model folder (or lm.tokenizer) with more tokens than its embedding has rows was
    refused by each job alone, as a traceback in its log, after the run folder was made."""
    model = saved_opt_with_tokenizer(tmp_path / "my-opt", lm_data_dir)
    line = refused_run(tmp_path, lm_data_dir, hf_cache, f"dataset: tiny, model: {model}, block_size: 16")
    assert "lm.yaml: lm.model: the tokenizer has " in line, line
    assert line.endswith("tokens but the model's embedding has only 64 rows (vocab_size in its config.json): "
                         "tokenizer and model do not belong together"), line
    from collapse_hpc.experiments.lm.model import check_fits
    from tests.experiments.lm.conftest import tiny_cfg

    named = tiny_cfg(model=str(model), tokenizer=str(lm_data_dir / "tiny" / "tokenizer-bpe300"), block_size=16)
    seen = set()
    with pytest.raises(UserError, match=r"^lm.tokenizer: the tokenizer has \d+ tokens but the model's embedding has "
                                        r"only 64 rows"):
        check_fits(named, lm_data_dir, lambda key: f"lm.{key}", seen)  # lm.tokenizer's, not the model's own
    check_fits(named, lm_data_dir, lambda key: f"lm.{key}", seen)  # a config's other sections of these knobs: once


def test_the_reference_of_lm_model_says_it_takes_a_folder():
    """`collapse-hpc config` and the README said lm.model is a hub tag or 'tiny'; a folder of one's own model,
    which every check and job takes, was named nowhere a newcomer looks for the key."""
    from collapse_hpc import config as cfgmod, experiments

    reference = cfgmod.describe_markdown(experiments.sections(experiments.BUILTIN))
    row = next(line for line in reference.splitlines() if line.startswith("| `lm.model` |"))
    assert "a save_pretrained folder (its config.json, weights and tokenizer; an absolute path)" in row, row


def test_a_model_folder_with_its_tokenizer_json_alone_is_told_to_copy_its_tokenizer_config(tmp_path, lm_data_dir,
                                                                                          lm_tokenizer):
    """A model folder copied with tokenizer.json but not tokenizer_config.json loads a tokenizer with a special
    token of transformers' own added, one more than the embedding's rows: it was refused as a tokenizer that
    does not belong to the model, which it does."""
    from collapse_hpc.experiments.lm.model import check_fits, random_model, tiny_config
    from tests.experiments.lm.conftest import tiny_cfg

    folder = tmp_path / "my-opt"
    random_model(tiny_config(tiny_cfg(), lm_tokenizer)).save_pretrained(folder)
    lm_tokenizer.save_pretrained(folder)
    cfg = tiny_cfg(model=str(folder), pretrained=True)
    check_fits(cfg, lm_data_dir, lambda key: f"lm.{key}")  # copied whole: they fit
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(UserError, match=rf"^lm.model: the tokenizer has \d+ tokens but the model's embedding has only "
                                        rf"\d+ rows \(vocab_size in its config.json\): {folder} has tokenizer.json "
                                        rf"without its tokenizer_config.json, .*; copy tokenizer_config.json there "
                                        rf"too$"):
        check_fits(cfg, lm_data_dir, lambda key: f"lm.{key}")


def test_a_pretrained_model_read_through_another_tokenizer_of_no_more_tokens_is_warned_of(tmp_path, lm_data_dir,
                                                                                          lm_tokenizer, capsys):
    """lm.tokenizer naming a tokenizer other than a pretrained model folder's own, of no more tokens than its
    embedding has rows, passed in silence: every id then read as another token by the pretrained embedding."""
    from collapse_hpc.experiments.lm.model import check_fits, random_model, tiny_config
    from collapse_hpc.experiments.lm.tokenizer import save_atomic, train_bpe
    from tests.experiments.lm.conftest import corpus_lines, tiny_cfg

    model = tmp_path / "my-opt"
    random_model(tiny_config(tiny_cfg(), lm_tokenizer)).save_pretrained(model)
    lm_tokenizer.save_pretrained(model)  # its own: 300 tokens, as many rows
    other, copy = tmp_path / "other-bpe", tmp_path / "its-copy"
    save_atomic(train_bpe([line[::-1] for line in corpus_lines(300, 5)], 280), other)
    save_atomic(lm_tokenizer, copy)
    capsys.readouterr()  # the saves' progress bars
    for tokenizer, pretrained, warned in ((other, True, True), (copy, True, False), (other, False, False)):
        cfg = tiny_cfg(model=str(model), tokenizer=str(tokenizer), pretrained=pretrained, block_size=16)
        check_fits(cfg, lm_data_dir, lambda key: f"lm.{key}")
        err = capsys.readouterr().err
        assert err.count("warning:") == int(warned), (tokenizer, pretrained, err)
    cfg = tiny_cfg(model=str(model), tokenizer=str(other), pretrained=True, block_size=16)
    check_fits(cfg, lm_data_dir, lambda key: f"lm.{key}")
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"warning: lm.tokenizer: {other} (") and f"the ids of {other} are read by the " \
           f"embedding trained for the tokenizer of {model}" in line and "\n" not in line, line


class _Vocabulary:
    """A tokenizer as the vocabulary check reads one: its tokens and their ids."""

    def __init__(self, *tokens):
        self.vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


@pytest.mark.parametrize("own, warned", [(None, False), (("a", "b"), False), (("b", "a"), True)])
def test_a_pretrained_model_given_another_tokenizer_than_its_own_is_warned_of_once(monkeypatch, capsys, own, warned):
    """lm.tokenizer with a vocabulary other than the one saved beside the pretrained model: one warning line; the
    same vocabulary, or none saved, nothing."""
    from types import SimpleNamespace

    from collapse_hpc.experiments.lm import tokenizer
    from collapse_hpc.experiments.lm.model import warn_not_its_own

    monkeypatch.setattr(tokenizer, "own_tokenizer", lambda model: own and _Vocabulary(*own))
    warn_not_its_own("lm", SimpleNamespace(pretrained=True, tokenizer="tok", model="base"), _Vocabulary("a", "b"))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == warned, err
    assert not warned or "is not the tokenizer the pretrained model base was trained with (2 tokens" in err[0]
