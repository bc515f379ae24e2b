"""The reference implementation's four README commands through `collapse-hpc lm`, on our formats."""
import errno
import json

import pyarrow.parquet as pq
import pytest

from collapse_hpc.cli import main


def _tiny(data_dir):
    sets = dict(vocab_size=300, hidden_size=32, layers=2, heads=2, ffn_size=64, block_size=16,
                max_train_blocks=32, max_eval_blocks=16, num_beams=2, sample_batch_size=16, pretrain_blocks=32)
    args = ["--dataset", "tiny", "--data-dir", str(data_dir), "--model_tag", "tiny", "-m", "1", "-b", "16",
            "-lr", "3e-3"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


@pytest.mark.slow
def test_readme_commands(tmp_path, lm_data_dir, capsys):
    tiny = _tiny(lm_data_dir)
    gen0, gen1, data1 = tmp_path / "gen0", tmp_path / "gen1", tmp_path / "gen1_data"
    # 1. train generation 0
    assert main(["lm", "-p", *tiny, "--save-name", f"{gen0}/"]) == 0
    assert (gen0 / "config.json").is_file() and list(gen0.glob("*.safetensors"))
    assert not (gen0 / "checkpoints").exists()
    # 2. generate (the reference's best.ckpt path names the saved folder); keep 25% original
    assert main(["lm", *tiny, "--load-name", f"{gen0}/best.ckpt", "--eval_only", "--generate", str(data1),
                 "--generate_percentage", "0.25", "--saveperplexities", str(tmp_path / "ppl.parquet")]) == 0
    shards = sorted(data1.glob("part-*.parquet"))
    assert shards and (data1 / "original.parquet").is_file()
    rows = pq.read_table(data1 / "original.parquet").num_rows + sum(pq.read_table(s).num_rows for s in shards)
    assert rows == 32 and pq.read_table(data1 / "original.parquet").num_rows == 8
    assert pq.read_table(tmp_path / "ppl.parquet").column_names == ["block_id", "ppl"]
    # 3. a pickle is refused with one line; our shards train generation 1
    capsys.readouterr()
    assert main(["lm", *tiny, "--load-generate", f"{data1}.pkl", "--save-name", f"{gen1}/"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle" in err[0]
    assert main(["lm", *tiny, "--load-generate", str(data1), "--save-name", f"{gen1}/",
                 "--saveto", str(tmp_path / "gen1.json")]) == 0
    assert json.loads((tmp_path / "gen1.json").read_text())["test_ppl"] > 1
    # 4. evaluate
    capsys.readouterr()
    assert main(["lm", *tiny, "--load-name", f"{gen1}/best.ckpt", "--eval_only"]) == 0
    assert "test_ppl:" in capsys.readouterr().out


def test_reference_flags_parse_and_refuse(tmp_path, capsys):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"\x80\x04not really")
    assert main(["lm", "--load-name", str(bad), "--eval_only"]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["lm", "--optimizer", "sgd", "--eval_only"]) == 2
    assert "adamw" in capsys.readouterr().err
    assert main(["lm", "--load-name", str(tmp_path / "nothing/"), "--eval_only"]) == 2
    assert "no saved model" in capsys.readouterr().err
    (tmp_path / "done.json").write_text("{}")
    assert main(["lm", "--saveto", str(tmp_path / "done.json")]) == 0  # the reference skips finished work
    from collapse_hpc.cli import _parser

    args = _parser().parse_args(["lm", "-tag", "gpt2", "-load", "x/", "-save", "y/", "-saveperplexities", "p",
                                 "-eval", "-eval_gen", "-opt", "adamw", "-lr", "1e-5", "-m", "3", "-st", "r",
                                 "-b", "16", "-d", "-seed", "3", "-w", "2", "-n", "1", "-a", "cpu", "-s", "ddp",
                                 "-p", "-version_name", "v", "-gen", "g", "-load-gen", "lg", "-gen_percent", "0.1"])
    assert (args.model_tag, args.load_name, args.save_name, args.max_epochs, args.seed, args.generate_percentage,
            args.load_generate, args.learning_rate) == ("gpt2", "x/", "y/", 3, 3, 0.1, "lg", 1e-5)
    assert args.eval_only and args.evalgen_only and args.debug and args.pretrained and args.config is None


@pytest.mark.parametrize("flags,expected", [
    (["--generate_percentage", "2", "--generate", "out"], "--generate_percentage 2.0: must be in [0, 1]"),
    (["--accelerator", "tpu"], "--accelerator tpu: must be one of cpu, gpu, cuda, auto"),
    (["--eval_only", "--generate", "earlier"], "--generate earlier: exists and is not an empty folder"),
])
def test_bad_flag_values_are_refused_before_any_work(tmp_path, monkeypatch, capsys, flags, expected):
    # --generate_percentage was checked only once the model had been trained and tested; a tpu ran
    # on; a second --generate into one folder kept the first's shards and original.parquet as its own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "original.parquet").write_bytes(b"blocks of an earlier call")
    assert main(["lm", *_tiny(tmp_path / "data"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected}"), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["earlier", "original.parquet"]


def test_help_says_generate_trains_first_without_eval_only(capsys):
    from collapse_hpc.cli import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(["lm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--generate WITHOUT --eval_only first fine-tunes" in text
    assert "(after training, unless --eval_only)" in text
    assert "--load-name gen0/best.ckpt --eval_only --generate gen1_data" in text  # the README's step 2


@pytest.mark.slow
def test_train_and_generate_in_one_call_samples_as_sample_from_says(tmp_path, lm_data_dir):
    """main.py trains and generates in one call with the weights after the last epoch: the same
    with --set sample_from=last (kept as <save-name>-last); the default samples with the best."""
    from collapse_hpc.experiments.lm.model import model_fingerprint

    tiny = [*_tiny(lm_data_dir), "-m", "2"]
    for how in ("best", "last"):
        saved, data = tmp_path / f"gen0-{how}", tmp_path / f"data-{how}"
        assert main(["lm", *tiny, "--set", f"sample_from={how}", "--save-name", str(saved),
                     "--generate", str(data)]) == 0
        sampled = saved if how == "best" else tmp_path / f"gen0-{how}-last"
        assert sampled.is_dir() and (tmp_path / "gen0-best-last").exists() is False
        meta = pq.read_schema(sorted(data.glob("part-*.parquet"))[0]).metadata
        assert json.loads(meta[b"model_sha256"]) == model_fingerprint(sampled)


def test_several_ranks_without_save_name_are_refused_before_anything_starts(tmp_path, monkeypatch, capsys):
    # ranks above 0 would look for rank 0's model in their own scratch folder
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main(["lm", "-p", *_tiny(tmp_path / "data"), "--generate", "out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save-name is needed with 2 ranks" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, says", [
    (["configs/demo.yaml", "-tag", "tiny"], "--model_tag: a flag of collapse-hpc lm without a CONFIG"),
    (["configs/demo.yaml", "--dataset", "tiny"], "--dataset: a flag of collapse-hpc lm without a CONFIG"),
    (["--run", "RUN", "--eval_only"], "--run: a flag of the lm's chain mode, which needs a CONFIG"),
    (["--unit", "0"], "--unit: a flag of the lm's chain mode, which needs a CONFIG"),
])
def test_a_flag_of_the_other_mode_is_refused_not_ignored(argv, says, tmp_path, capsys):
    """With a CONFIG the reference flags did nothing (the config's chain ran, for hours), and without one
    --run/--unit did nothing (the reference flags trained); one line now, and nothing written."""
    argv = [str(tmp_path / "r") if a == "RUN" else a for a in argv]
    if "--run" not in argv:
        argv += ["--run", str(tmp_path / "r")] if argv[0].endswith(".yaml") else []
    assert main(["lm", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {says}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_loaded_model_is_refused_with_another_tokenizer_than_it_was_trained_with(tmp_path, lm_data_dir, capsys):
    """A tiny model trained on one BPE (another --dataset or vocab_size), loaded with another whose ids fit
    its embedding: it was scored and sampled as other tokens, its perplexities meaningless, nothing said."""
    from collapse_hpc.experiments.lm.model import build_model
    from collapse_hpc.experiments.lm.tokenizer import bpe_tokenizer

    from .conftest import tiny_cfg

    gen0, scores = tmp_path / "gen0", tmp_path / "scores.json"
    learnt = bpe_tokenizer(lm_data_dir, "tiny", 340)
    build_model(tiny_cfg(vocab_size=340), learnt, lm_data_dir).save_pretrained(str(gen0))
    learnt.save_pretrained(str(gen0))
    argv = ["lm", *_tiny(lm_data_dir), "--load-name", str(gen0), "--eval_only", "--saveto", str(scores)]
    capsys.readouterr()
    assert main(argv) == 2  # _tiny's vocab_size=300
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"trained with another tokenizer ({len(learnt)} tokens" in err[0], err
    assert "(300 tokens)" in err[0] and f"--set tokenizer={gen0}" in err[0] and not scores.exists()
    assert main([*argv, "--set", "vocab_size=340"]) == 0 and scores.is_file()  # the tokenizer it learnt
    scores.unlink()
    assert main([*argv, "--set", f"tokenizer={gen0}"]) == 0 and scores.is_file()  # its own, named


def test_generated_blocks_are_refused_with_another_tokenizer_than_sampled_them(tmp_path, lm_data_dir,
                                                                                 lm_tokenizer, capsys):
    """--load-generate's blocks of one data set's BPE, trained on with another's whose ids they fit: the
    model learnt other tokens than were sampled, and nothing said so."""
    import pyarrow as pa

    from collapse_hpc.experiments.lm.data import load_blocks, prepare_local
    from collapse_hpc.store import write_parquet

    from .conftest import corpus_lines

    other = tmp_path / "source"
    other.mkdir()
    for split, n, seed in (("train", 600, 5), ("validation", 80, 6), ("test", 80, 7)):
        (other / f"{split}.txt").write_text("\n".join(line.upper()[::-1] for line in corpus_lines(n, seed)))
    prepare_local("other", other, tmp_path / "data")
    ids = load_blocks(lm_data_dir, "tiny", "train", lm_tokenizer, 16).slice(0, 32).column("input_ids")
    sampled = tmp_path / "gen1_data"
    write_parquet(sampled / "part-000-00000.parquet", pa.table({
        "block_id": pa.array(range(32), pa.int64()), "input_ids": ids,
        "text": lm_tokenizer.batch_decode(ids.to_pylist()), "source": ["generated"] * 32}))
    argv = ["lm", *_tiny(lm_data_dir), "--load-generate", str(sampled), "--saveto", str(tmp_path / "r.json")]
    capsys.readouterr()
    assert main([*argv, "--dataset", "other", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "were sampled with another tokenizer than this call's" in err[0], err
    assert not (tmp_path / "r.json").exists()
    assert main(argv) == 0 and (tmp_path / "r.json").is_file()  # the tokenizer that sampled them


def test_a_tiny_model_loaded_under_the_default_tag_says_so(tmp_path, lm_data_dir, lm_tokenizer, monkeypatch, capsys):
    """--load-name of a tiny model without -tag: the default facebook/opt-125m, not cached offline, was all the
    error named; the saved config.json says the model is a tiny one, and -tag tiny reads it."""
    from collapse_hpc.experiments.lm.model import build_model

    from .conftest import tiny_cfg

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    gen0 = tmp_path / "gen0"
    build_model(tiny_cfg(), lm_tokenizer, lm_data_dir).save_pretrained(str(gen0))
    lm_tokenizer.save_pretrained(str(gen0))
    capsys.readouterr()
    assert main(["lm", "--dataset", "tiny", "--data-dir", str(lm_data_dir), "--load-name", f"{gen0}/best.ckpt",
                 "--eval_only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a tiny model" in err[0] and "-tag tiny" in err[0], err
    assert "'facebook/opt-125m'" in err[0] and f"vocab_size={len(lm_tokenizer)}" in err[0], err


def test_a_fine_tuned_hub_model_loaded_under_another_tag_names_its_own(tmp_path):
    """A model fine-tuned from facebook/opt-350m (its config.json's _name_or_path) loaded under the default tag."""
    from collapse_hpc.errors import UserError
    from collapse_hpc.experiments.lm.cli import check_loaded_tag

    from .conftest import tiny_cfg

    folder = tmp_path / "gen0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "opt", "vocab_size": 50272, "hidden_size": 1024, "num_hidden_layers": 24, "ffn_dim": 4096,
        "_name_or_path": "facebook/opt-350m"}))
    with pytest.raises(UserError, match=r"the hub model 'facebook/opt-350m'.*give -tag facebook/opt-350m$"):
        check_loaded_tag(tiny_cfg(model="facebook/opt-125m"), folder)
    check_loaded_tag(tiny_cfg(), folder)  # -tag tiny: the saved model's own shape is what --eval_only reads


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_loaded_models_config_the_file_system_will_not_read_is_said_and_read_once(tmp_path, monkeypatch, refusal):
    """The --load-name model's config.json read refused counted as a shape unknown: the check passed it by. Its
    origin was then read a second time, bare. The refusal is one line naming the file; once it reads, the
    check reads it once."""
    import builtins
    import io
    import os

    from collapse_hpc.errors import UserError
    from collapse_hpc.experiments.lm.cli import check_loaded_tag
    from collapse_hpc.store.reads import NotRead
    from tests.helpers import refuse_reads

    from .conftest import tiny_cfg

    folder = tmp_path / "gen0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "opt", "vocab_size": 50272, "hidden_size": 1024, "num_hidden_layers": 24, "ffn_dim": 4096,
        "_name_or_path": "facebook/opt-350m"}))
    refuse_reads(monkeypatch, folder / "config.json", refusal)
    with pytest.raises(NotRead) as said:
        check_loaded_tag(tiny_cfg(model="facebook/opt-125m"), folder)
    assert str(said.value) == (f"model file {folder / 'config.json'}: not read ({os.strerror(refusal)}): kept as it "
                               f"is; the command goes on with it once the file reads again (its permissions, the "
                               f"file system): run the same command again")
    monkeypatch.undo()
    opened, real = [], io.open

    def counted(file, *args, **kwargs):
        opened.append(file)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    monkeypatch.setattr(io, "open", counted)
    with pytest.raises(UserError, match="the hub model 'facebook/opt-350m'"):
        check_loaded_tag(tiny_cfg(model="facebook/opt-125m"), folder)
    assert opened.count(folder / "config.json") == 1


@pytest.mark.parametrize("stop", ["full disk", "interrupted"])
def test_a_generate_stopped_midway_leaves_no_shards_the_same_command_would_refuse(stop, tmp_path, lm_data_dir,
                                                                                  monkeypatch, capsys):
    """A full disk at --generate's second shard said 'run the same command again', and the same command then
    refused the folder as holding an earlier call's blocks: the first shard was left there. So did Ctrl-C."""
    import errno

    import pyarrow.parquet as pq_module

    data, write_table = tmp_path / "gen1_data", pq_module.write_table

    def stops_at_the_second_shard(table, where, *args, **kwargs):
        if "part-000-00001" in str(where):
            if stop == "interrupted":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return write_table(table, where, *args, **kwargs)

    argv = ["lm", *_tiny(lm_data_dir), "--eval_only", "--generate", str(data), "--generate_percentage", "0.25"]
    monkeypatch.setattr(pq_module, "write_table", stops_at_the_second_shard)
    capsys.readouterr()
    if stop == "interrupted":
        assert main(argv) == 130
    else:
        assert main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]  # not tqdm's bar
        assert len(err) == 1 and err[0].endswith("then run the same command again"), err
    assert not data.exists()  # neither original.parquet nor the first shard stays
    monkeypatch.undo()
    assert main(argv) == 0
    assert len(list(data.glob("part-*.parquet"))) == 2 and (data / "original.parquet").is_file()


def test_only_the_main_rank_cleans_up_a_generate_stopped_midway_a_peer_its_own_shards(tmp_path):
    """Every rank removed --generate's folder when its own sampling failed: a peer's full disk deleted the
    folder under the ranks still writing into it. The main rank cleans up the folder; a peer removes the
    shards it wrote itself (it may write on after the main rank, failed first, cleaned up), no other file."""
    from collapse_hpc.experiments.lm.cli import _whole_or_none

    out = tmp_path / "gen1_data"
    for rank, left in ((1, ["original.parquet", "part-000-00000.parquet"]), (0, [])):
        with pytest.raises(OSError), _whole_or_none(out, rank):
            out.mkdir(exist_ok=True)
            for name in ("original.parquet", "part-000-00000.parquet", f"part-{rank:03d}-00001.parquet"):
                (out / name).write_bytes(b"shard")
            raise OSError(28, "No space left on device")
        assert sorted(p.name for p in out.iterdir()) == left  # a peer's full disk leaves the folder to rank 0
