"""`collapse-hpc lm`: run the LM experiment of a config, or drive one step by hand with the flags
of the authors' reference implementation (main.py), on our formats.

  collapse-hpc lm CONFIG [--variant V] [--unit G]      the chain of a config, in this process

  The reference README's four commands (Parquet and safetensors instead of pickle):
  collapse-hpc lm -p --model_tag facebook/opt-125m --save-name gen0/      train generation 0
  collapse-hpc lm --load-name gen0/best.ckpt --eval_only --generate gen1_data
                                                     sample gen0's model -> gen1_data/ shards
  collapse-hpc lm --load-generate gen1_data --save-name gen1/             train on generated data
  collapse-hpc lm --load-name gen1/best.ckpt --eval_only                  test perplexity

Every invocation trains first unless --eval_only is given (as the reference main.py does), then
scores the test split, then samples if --generate is given. So --generate WITHOUT --eval_only
first fine-tunes (the --load-name model, else the initial one) on the training data for
--max-epochs and samples from the model it trained: its best-validation weights, or with
--set sample_from=last (what main.py does) the weights after the last epoch (kept as
<--save-name>-last). The test split is always scored with the best weights.

A --save-name folder holds the best-validation model (save_pretrained, safetensors); --load-name
takes that folder (or its old `best.ckpt` path, read as the folder). --generate writes a folder of
Parquet shards (what a chain's gen_NNN/shards holds); --load-generate reads such a folder or one
.parquet file. Pickle files (.pkl, Lightning .ckpt) are refused.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from collapse_hpc.errors import UserError, path_argument
from collapse_hpc.logs import count
from collapse_hpc.machine import leave_process_group

PICKLE = (".pkl", ".pickle", ".pt", ".pth")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("config", type=path_argument, nargs="?", default=None,
                   help="config YAML: run its lm section (chain mode)")
    p.add_argument("--run", type=path_argument, metavar="DIR",
                   help="chain mode: run folder (default: runs/<config file name>)")
    p.add_argument("--generations", type=int, metavar="N", help="chain mode: the LM's generations (lm.generations)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config value (chain mode: lm.epochs=1; reference mode: epochs=1)")
    p.add_argument("--only", action="append", metavar="EXPERIMENT", help=argparse.SUPPRESS)
    p.add_argument("--variant", help="chain mode: run one variant only")
    p.add_argument("--unit", type=int, help="chain mode: run one generation only")
    p.add_argument("--dataset", default="wikitext2", help="reference mode: prepared data set (default wikitext2)")
    p.add_argument("--data-dir", type=path_argument, default="data",
                   help="reference mode: prepared data sets (default data)")
    ref = p.add_argument_group("the reference implementation's flags")
    _reference_flags(ref)
    # with a CONFIG these would be ignored: collapse-hpc refuses them there (its run_by_hand)
    own = [a for a in p._actions if a.dest in ("dataset", "data_dir")] + ref._group_actions
    p.set_defaults(own_flags={a.dest: (a.option_strings[-1], a.default) for a in own})


def _reference_flags(ref) -> None:
    """main.py's flags, under its own short and long names."""
    ref.add_argument("-tag", "--model_tag", default="facebook/opt-125m", help="model tag (or tiny)")
    ref.add_argument("-load", "--load-name", dest="load_name", type=path_argument,
                     help="saved model folder to start from")
    ref.add_argument("-save", "--save-name", dest="save_name", type=path_argument,
                     help="folder for the trained (best) model")
    ref.add_argument("-saveperplexities", "--saveperplexities", type=path_argument,
                     help="per-sequence test perplexities (.parquet)")
    ref.add_argument("-eval", "--eval_only", action="store_true",
                     help="no training: evaluate (and --generate) with the loaded model as it is")
    ref.add_argument("-eval_gen", "--evalgen_only", action="store_true", help="evaluate on the training data")
    ref.add_argument("-opt", "--optimizer", default="adamw", help="optimizer (adamw)")
    ref.add_argument("-lr", "--learning-rate", dest="learning_rate", type=float, default=2e-5,
                     help="peak learning rate, lm.lr (default 2e-5)")
    ref.add_argument("-m", "--max-epochs", dest="max_epochs", type=int, default=5,
                     help="training epochs, lm.epochs (default 5)")
    ref.add_argument("-st", "--saveto", type=path_argument,
                     help="write the evaluation result here (JSON); skip all if it exists")
    ref.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=128,
                     help="global batch in blocks, lm.batch_size; also the scoring batch (default 128)")
    ref.add_argument("-d", "--debug", action="store_true", help="a quick pass over one batch of each split")
    ref.add_argument("-seed", "--seed", type=int, default=0,
                     help="seed of the initial weights, the data order and the sampling (default 0)")
    ref.add_argument("-w", "--num_workers", type=int, default=1, help="accepted; data is in memory")
    ref.add_argument("-n", "--num_devices", type=int, default=1, help="ranks (start them with a launcher)")
    ref.add_argument("-a", "--accelerator", default=None, help="cpu, gpu/cuda or auto")
    ref.add_argument("-s", "--strategy", default="ddp", help="accepted; training is always DeepSpeed")
    ref.add_argument("-p", "--pretrained", action="store_true", help="start from pretrained weights")
    ref.add_argument("-version_name", "--version_name", default=None, help="name shown in the logs")
    ref.add_argument("-gen", "--generate", type=path_argument,
                     help="sample the next generation's data into this new or empty folder "
                          "(after training, unless --eval_only)")
    ref.add_argument("-load-gen", "--load-generate", dest="load_generate", type=path_argument,
                     help="train on these shards")
    ref.add_argument("-gen_percent", "--generate_percentage", type=float, default=0.0,
                     help="fraction of the original blocks kept unchanged in --generate's output")


def main(args) -> int:
    """Without a CONFIG (with one, the collapse-hpc command runs its lm chain by hand itself)."""
    return reference(args)


# ------------------------------------------------------------------ reference mode

def _refuse_pickle(path: str, flag: str) -> None:
    if Path(path).suffix in PICKLE or (Path(path).suffix == ".ckpt" and Path(path).is_file()):
        raise UserError(f"{flag} {path}: pickle files are not read (unsafe); give a folder written by "
                        f"collapse-hpc ({'--generate' if 'gen' in flag else '--save-name'}) instead")


def model_folder(path: str) -> Path:
    """--load-name: a saved-model folder, or the reference's `<folder>/best.ckpt` naming it."""
    _refuse_pickle(path, "--load-name")
    folder = Path(path)
    if folder.suffix == ".ckpt":
        folder = folder.parent
    if not (folder / "config.json").is_file():
        raise UserError(f"--load-name {path}: no saved model in {folder} (expected a --save-name folder)")
    return folder


def check_loaded_tag(cfg, folder: Path) -> None:
    """UserError where the --load-name model's saved config.json is not --model_tag's shape (a tiny model
    scored under the default facebook/opt-125m): say what it is and the -tag that reads it."""
    from collapse_hpc.experiments.lm.model import SHAPES, saved_shape, shape

    if cfg.model == "tiny":  # its knobs need not match: --eval_only reads the saved model's own shape
        return
    saved, expected = saved_shape(folder), shape(cfg)
    if saved is None or expected is None or saved == expected:
        return
    tag = next((t for t, s in SHAPES.items() if s == saved), None) or _saved_tag(folder)
    what = (f"the hub model {tag!r}" if tag else
            f"a tiny model ({saved.kind}, {saved.layers} layers of {saved.hidden}, {saved.vocab} tokens)")
    hint = f"-tag {tag}" if tag else f"-tag tiny (with the --dataset it was trained on; --set vocab_size={saved.vocab})"
    raise UserError(f"--load-name {folder}: its config.json shows {what}, not --model_tag {cfg.model!r}: "
                    f"give {hint}")


def _saved_tag(folder: Path) -> str | None:
    """The hub tag a fine-tuned model's config.json names as its origin (_name_or_path); None for a
    model built here (tiny), whose origin is a folder or nothing."""
    from collapse_hpc.experiments.lm.model import saved_config

    name = str(saved_config(folder).get("_name_or_path") or "")
    local = name.startswith((".", "/", "~")) or Path(name).expanduser().exists()
    return name if name.count("/") == 1 and not local else None


def load_generated(path: str):
    """--load-generate: a folder of shards (or a chain's gen_NNN) or one Parquet file."""
    import pyarrow.parquet as pq

    from collapse_hpc.experiments.lm.sample import read_shards

    _refuse_pickle(path, "--load-generate")
    p = Path(path)
    if p.is_dir():
        return read_shards(p / "shards" if (p / "shards").is_dir() else p)
    if p.suffix == ".parquet" and p.is_file():
        try:
            table = pq.read_table(p)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise UserError(f"--load-generate {path}: not a readable Parquet file ({e})") from None
        if "input_ids" not in table.column_names:
            raise UserError(f"--load-generate {path}: no input_ids column")
        return table
    if not p.exists() and Path(path + ".parquet").is_file():
        return load_generated(path + ".parquet")
    raise UserError(f"--load-generate {path}: no such shards folder or .parquet file")


def check_generated_tokens(path: str, table, tokenizer, rows: int = 16) -> None:
    """UserError where --load-generate's blocks were sampled under another tokenizer than this call's: each
    shard keeps its text as decoded when written, and the same ids decode to other text under another one
    (training would read them as other tokens). Blocks not written by a sampling (no source and text) pass."""
    if not {"source", "text"} <= set(table.column_names):
        return
    head = table.slice(0, rows)
    for ids, text in zip(head.column("input_ids").to_pylist(), head.column("text").to_pylist()):
        if text is not None and tokenizer.decode(ids) != text:
            raise UserError(f"--load-generate {path}: its blocks were sampled with another tokenizer than this "
                            f"call's (their ids decode to other text than the text they hold): give the "
                            f"--model_tag (tiny: also the --dataset and --set vocab_size) that sampled them")


def reference_config(a):
    from collapse_hpc import config as cfgmod
    from collapse_hpc.experiments.lm.config import LMConfig

    if a.optimizer.lower() != "adamw":
        raise UserError(f"--optimizer {a.optimizer}: only adamw is supported (the reference's default)")
    values = {"dataset": a.dataset, "model": a.model_tag, "pretrained": bool(a.pretrained),
              "lr": a.learning_rate, "epochs": a.max_epochs, "batch_size": a.batch_size,
              "micro_batch_size": min(16, a.batch_size), "eval_batch_size": a.batch_size}
    if a.learning_rate < 1e-6:  # the cosine's floor must stay below the peak
        values["lr_min"] = 0.0
    for item in a.overrides:
        keys, value = cfgmod.parse_override(item)
        values[keys[-1]] = value
    if a.debug:  # Lightning's fast_dev_run: one batch of each split, one epoch
        values.update(epochs=1, max_train_blocks=a.batch_size, max_eval_blocks=a.batch_size)
    return cfgmod.build(LMConfig, values, "collapse-hpc lm", prefix="lm.")


def reference(a) -> int:
    """The reference main.py's order of the pipeline's steps: train (unless --eval_only), score the
    test split, then sample (--generate)."""
    from collapse_hpc.experiments.lm.pipeline import Pipeline

    if a.saveto and Path(a.saveto).exists():
        print(f"{a.saveto} exists: nothing to do (as the reference)")
        return 0
    _check_flags(a)
    cfg = reference_config(a)
    load = model_folder(a.load_name) if a.load_name else None
    generated = load_generated(a.load_generate) if a.load_generate else None
    if load:  # before the tag's sources: an uncached default tag would hide that the model is another
        check_loaded_tag(cfg, load)
    _check_sources(cfg)  # the tokenizer is the tag's, also for a --load-name model
    lm = Pipeline.start(cfg, Path(a.data_dir))
    if a.num_devices != lm.world_size:
        lm.log.warning("--num_devices %d but %s started; ranks come from the launcher", a.num_devices,
                       count(lm.world_size, "rank"))
    if generated is not None:
        check_generated_tokens(a.load_generate, generated, lm.tokenizer)
    train, val, test = _splits(lm, generated, a.evalgen_only)
    model = _start_model(a, lm, load)
    with tempfile.TemporaryDirectory(prefix="lm-model-") as scratch:  # the models nobody asked to keep
        sampler = None
        if a.eval_only:
            model = model.to(lm.device).eval()
        else:
            load, sampler = _train(a, lm, model, train, val, Path(scratch))
            model = lm.load(load)
        _test(a, lm, model, test)
        if a.generate:
            with _whole_or_none(Path(a.generate), lm.rank):
                _generate(a, lm, *(sampler or (model, load)), train)
    leave_process_group()
    return 0


ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


def _check_sources(cfg) -> None:
    """The model tag (whose tokenizer every call loads) and tokenizer, checked as a config's are: the HF
    cache, else one request to the hub (10 s at most), not transformers' retries for a minute."""
    from collapse_hpc.experiments.lm.hub import check_source
    from collapse_hpc.experiments.lm.tokenizer import check_tokenizer, tokenizer_tag

    for flag, tag in (("--model_tag", None if cfg.model == "tiny" else cfg.model), ("tokenizer", cfg.tokenizer)):
        if tag:
            check_source(flag, tag)
    tag = tokenizer_tag(cfg)
    if tag:  # the files a tokenizer needs, as a config's are checked
        check_tokenizer("tokenizer" if cfg.tokenizer else "--model_tag", tag, model=not cfg.tokenizer)


def _check_flags(a) -> None:
    """The flags' values, before anything is trained (a bad one used to stop only the sampling)."""
    chain = next((flag for flag, value in (("--run", a.run), ("--generations", a.generations),
                                           ("--variant", a.variant), ("--unit", a.unit)) if value is not None), None)
    if chain:  # else ignored: the reference flags would train what the user did not ask for
        raise UserError(f"{chain}: a flag of the lm's chain mode, which needs a CONFIG (collapse-hpc lm CONFIG "
                        f"{chain} …); without one, the reference implementation's flags run")
    if not 0.0 <= a.generate_percentage <= 1.0:
        raise UserError(f"--generate_percentage {a.generate_percentage}: must be in [0, 1]")
    out = Path(a.generate) if a.generate else None
    if out and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        # its shards would count as this call's (same chunk names) beside a stale original.parquet
        raise UserError(f"--generate {a.generate}: exists and is not an empty folder (an earlier --generate's "
                        f"blocks would be mixed with this one's); give a new folder, or remove it")
    if a.accelerator and a.accelerator.lower() not in ACCELERATORS:
        raise UserError(f"--accelerator {a.accelerator}: must be one of {', '.join(ACCELERATORS)}")
    if a.accelerator and a.accelerator.lower() == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    for path, flag in ((a.generate, "--generate"), (a.saveperplexities, "--saveperplexities"),
                       (a.saveto, "--saveto")):
        if path and Path(path).suffix in PICKLE:
            raise UserError(f"{flag} {path}: results are written as Parquet/JSON, not pickle; drop the suffix")
    if int(os.environ.get("WORLD_SIZE") or 1) > 1 and not (a.save_name or a.eval_only):
        # the model rank 0 trains is what every rank tests and samples with: a per-process scratch
        # folder would leave the other ranks without it
        raise UserError(f"--save-name is needed with {os.environ['WORLD_SIZE']} ranks: the other ranks load the "
                        f"model rank 0 trains from it (a folder every rank can read)")


def _splits(lm, generated, evalgen_only: bool):
    """(train, validation, test) blocks: train is --load-generate's blocks or the real train split;
    --evalgen_only scores the training blocks in place of the test split."""
    cfg = lm.cfg
    train = (generated.select(["block_id", "input_ids"]) if generated is not None
             else lm.blocks("train", cfg.max_train_blocks))
    if cfg.max_train_blocks:
        train = train.slice(0, cfg.max_train_blocks)
    val, test = lm.blocks("validation", cfg.max_eval_blocks), lm.blocks("test", cfg.max_eval_blocks)
    return train, val, train if evalgen_only else test


def _start_model(a, lm, load: Path | None):
    """The --load-name model, else the initial one (seeded by --seed), checked against the tokenizer."""
    import torch

    from collapse_hpc.experiments.lm.model import build_model, check_positions, check_vocab, load_model
    from collapse_hpc.experiments.lm.tokenizer import check_trained_with

    torch.manual_seed(a.seed)
    if load:  # the tokenizer is the tag's (as the reference's): it must be the one the model learnt
        check_trained_with(load, lm.tokenizer, "--load-name")
    model = load_model(load) if load else build_model(lm.cfg, lm.tokenizer, lm.data_dir, samples=bool(a.generate))
    check_vocab(model, lm.tokenizer)  # before any block is scored: say which two do not fit
    if load:  # its positions, as build_model checks a tag's
        check_positions("lm.block_size", lm.cfg, model.config.to_dict(), bool(a.generate), str(load))
    return model


def _train(a, lm, model, train, val, scratch: Path):
    """Fine-tune: the best weights to --save-name (else scratch); with --generate and sample_from:
    last (main.py's way) also the last epoch's, which then sample -> (best folder, (sampler, its
    folder) or None)."""
    out = Path(a.save_name) if a.save_name else scratch / "best"
    last = None
    if a.generate and lm.cfg.sample_from == "last":
        last = Path(f"{out}-last") if a.save_name else scratch / "last"
    result = lm.train(model, train, val, out, seed=a.seed, checkpoints=out / "checkpoints", last=last)
    if lm.is_main:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        print(f"trained {a.version_name or ''} model: best validation loss {result['best_val_loss']:.4f} "
              f"(epoch {result['best_epoch'] + 1}) -> {out if a.save_name else '(not saved: no --save-name)'}")
    return out, ((lm.load(last), last) if last is not None else None)


def _test(a, lm, model, test) -> None:
    """Test perplexity, printed; per block to --saveperplexities, the total to --saveto."""
    import numpy as np

    from collapse_hpc.experiments.lm.evaluate import perplexity_table
    from collapse_hpc.store import write_json, write_parquet

    scores = lm.score(model, test)
    if not lm.is_main:
        return
    test_ppl = scores.corpus_ppl
    print(f"test_loss: {float(np.log(test_ppl)):.4f}\ntest_ppl: {test_ppl:.4f}")
    if a.saveperplexities:
        write_parquet(a.saveperplexities, perplexity_table(test, scores.per_sequence))
    if a.saveto:
        write_json(a.saveto, {"test_loss": float(np.log(test_ppl)), "test_ppl": test_ppl})


def _generate(a, lm, model, load: Path | None, train) -> None:
    """The reference's --generate: a fraction p of the blocks stays original, the rest is the model's
    continuation of each block (same slot); written as a shards folder."""
    import numpy as np
    import pyarrow as pa

    from collapse_hpc.experiments.lm.model import model_fingerprint
    from collapse_hpc.experiments.lm.sample import Decoding
    from collapse_hpc.regimes import REAL, Regime, mix

    out = Path(a.generate)
    picks = dict(mix(Regime("replace", a.generate_percentage), train.num_rows, [train.num_rows],
                     np.random.default_rng(a.seed)))
    keep = picks[REAL]
    if lm.is_main and len(keep):
        _write_original(out, train.take(pa.array(keep)), lm.tokenizer, a.generate_percentage)
    prompts = train.select(["block_id", "input_ids"]).take(pa.array(picks[0]))
    lm.sample(model, prompts, Decoding.from_config(lm.cfg), out, generation=0, seed=a.seed,
              model_hash=model_fingerprint(load) if load else "")
    if lm.is_main:
        print(f"{out}: {train.num_rows} blocks ({len(keep)} original, {len(picks[0])} generated) written")


@contextlib.contextmanager
def _whole_or_none(out: Path, rank: int = 0):
    """--generate's folder ends holding all of this call's blocks or none: the shards of a call stopped
    midway (a full disk, Ctrl-C) would have the same command, which the error line says to run again, refuse
    the folder as an earlier call's. _check_flags made sure it was new or empty. The main rank (0) cleans up
    the folder: a failed peer's cleanup of it removed it under ranks still writing into it. A peer removes the
    files it wrote itself (its shards, its seconds' record): where the main rank failed first, a peer still
    sampling wrote on after its cleanup, and stops only at the barrier after sampling (or at the launcher's
    SIGTERM)."""
    from collapse_hpc.experiments.lm.sample import rank_files

    made = not out.exists()
    try:
        yield
    except BaseException:
        written = rank_files(out, rank) if rank else ([out] if made else list(out.iterdir()))
        for path in written:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _write_original(out: Path, kept, tokenizer, percentage: float) -> None:
    """The blocks --generate_percentage keeps unchanged, as shards (source "original")."""
    import numpy as np
    import pyarrow as pa

    from collapse_hpc.experiments.lm.sample import ORIGINAL
    from collapse_hpc.store import write_parquet

    write_parquet(out / ORIGINAL, pa.table({
        "block_id": kept.column("block_id"), "prompt_block_id": kept.column("block_id"),
        "input_ids": kept.column("input_ids").cast(pa.list_(pa.int32())),
        "text": pa.array(tokenizer.batch_decode(kept.column("input_ids").to_pylist()), pa.string()),
        "generation": pa.array(np.zeros(len(kept), np.int32)),
        "source": pa.array(["original"] * len(kept), pa.string())}),
        {"generate_percentage": percentage})
