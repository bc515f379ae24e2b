"""The LM chain on CPU against corrupt artefacts: verify's printed command repairs a corrupt model
(not "already trained"), and the cached base model under data/ is checked by content hash."""
import shlex
import shutil

import pytest
import yaml

from collapse_hpc import cli, engine
from collapse_hpc.store import read_manifest
from collapse_hpc.verify import verify_run
from tests.experiments.lm.test_chain import LM, _execute, _run
from tests.helpers import flip


def test_corrupt_model_and_base_model_are_caught_and_repaired(tmp_path, lm_data_dir, capsys):
    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir, data_dir)  # the session's data stays intact
    store, run = _run(tmp_path, data_dir, regimes=("replace:0",), pretrained=True, pretrain_blocks=32)
    assert _execute(store, run)["done"] == 2
    gen0, gen1 = (store.unit_dir("lm", "replace-p0-s0", "chain", g) for g in (0, 1))
    m0, m1 = read_manifest(gen0), read_manifest(gen1)
    bases = [k for k in m1["data"] if k.startswith("tiny/base/") and k.endswith("model.safetensors")]
    assert len(bases) == 1
    model = gen0 / "model" / "model.safetensors"
    original, built = model.read_bytes(), {p: p.stat().st_mtime_ns for p in gen1.rglob("*")}

    # 1. a flipped byte in generation 0's model: verify's command, as printed, retrains it
    flip(model)
    capsys.readouterr()
    assert verify_run(store.root) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "redo with:" in ln)
    assert cli.main(shlex.split(line.split("redo with:", 1)[1])[1:]) == 0
    assert model.read_bytes() == original  # retrained, deterministically: the byte-identical model
    # its timings alone differ (metrics.parquet, training_curve.parquet, model/training.json: Lm.volatile), which
    # generation 1 was not built on: it stays bound, and is neither redone nor rewritten (it was, on the redo's
    # new timings: every later generation of a paper chain retrained)
    assert read_manifest(gen0)["files"]["model/training.json"] != m0["files"]["model/training.json"]
    capsys.readouterr()
    assert verify_run(store.root) == 0, capsys.readouterr().out
    assert _execute(store, run) == {"done": 0, "skipped": 2}
    assert {p: p.stat().st_mtime_ns for p in gen1.rglob("*")} == built

    # 2. a flipped byte in the cached base model: verify names it, and no run builds on it
    base = data_dir / bases[0]  # the one this run built on (the data folder may hold others)
    flip(base)
    capsys.readouterr()
    assert verify_run(store.root) == 1
    assert f"MISMATCH {base}: sha256 mismatch" in capsys.readouterr().out
    store2, run2 = _run(tmp_path / "second", data_dir, regimes=("replace:0",), pretrained=True, pretrain_blocks=32,
                        generations=1)
    assert cli.main(["lm", str(store2.config_path), "--run", str(store2.root), "--variant", "replace-p0-s0",
                     "--unit", "0"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]  # besides the progress bar
    assert "Traceback" not in err and len(lines) == 1
    assert lines[0].startswith(f"error: {base}: not the file its card.json recorded")
    assert not engine.job_done(store2, run2, engine.plan(run2)[0].jobs[0])
    assert not (store2.root / "lm").exists()  # refused inside the unit: no binding file, no unit folder left

    # 3. removed as the line says, it is built again: the same base, the run verifies again
    shutil.rmtree(base.parent)
    assert cli.main(["lm", str(store2.config_path), "--run", str(store2.root), "--variant", "replace-p0-s0",
                     "--unit", "0"]) == 0
    assert verify_run(store.root) == 0


@pytest.mark.parametrize("cached", ["tokenizer", "blocks"])
def test_a_changed_byte_in_a_cached_tokenizer_or_block_file_is_refused(tmp_path, lm_data_dir, capsys, cached):
    from collapse_hpc.experiments.lm.config import LMConfig
    from collapse_hpc.experiments.lm.data import SPLITS, blocks_path, load_blocks
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir, load_tokenizer

    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir, data_dir)  # the session's data stays intact
    cfg = LMConfig(**LM)
    tok = load_tokenizer(cfg, data_dir)
    for s in SPLITS:  # cached, as an earlier run leaves them
        load_blocks(data_dir, cfg.dataset, s, tok, cfg.block_size, cfg.block_grouping)
    if cached == "tokenizer":
        target = bpe_dir(data_dir, cfg.dataset, cfg.vocab_size) / "tokenizer.json"
        redo = target.parent
    else:
        target = redo = blocks_path(data_dir, cfg.dataset, "train", tok, cfg.block_size, cfg.block_grouping)
    flip(target)
    flipped = sorted((p, p.read_bytes()) for p in data_dir.rglob("*") if p.is_file())
    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump({"name": "t", "generations": 1, "seeds": [0], "regimes": ["replace:0"],
                                      "data_dir": str(data_dir), "lm": LM}))
    run = tmp_path / "run"
    for runner in (["run", str(config), "--run", str(run), "--executor", "debug"],  # a new run
                   ["lm", str(config), "--run", str(run), "--unit", "0"]):  # one unit, as verify's redo does
        capsys.readouterr()
        assert cli.main(runner) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert "Traceback" not in err and len(lines) == 1
        assert f" {target}: not the file its card.json recorded" in lines[0]
        assert lines[0].endswith(f"remove {redo} to build it again")
        assert not run.exists()  # nothing written: no run folder
        assert sorted((p, p.read_bytes()) for p in data_dir.rglob("*") if p.is_file()) == flipped  # nor in data/

    # removed as the line says, it is built again (the same bytes: deterministic) and the run goes on
    shutil.rmtree(redo) if redo.is_dir() else redo.unlink()
    assert cli.main(["run", str(config), "--run", str(run), "--executor", "debug"]) == 0
    assert target.is_file() and verify_run(run) == 0


def test_a_unit_refused_by_a_cache_check_leaves_nothing_behind(tmp_path, lm_data_dir):
    """A job's unit (engine.run_unit, as launchers start it: the CLI's checks ran long before) whose
    cached tokenizer changed since is refused before it writes: no binding file, no unit folder."""
    from collapse_hpc.errors import UserError
    from collapse_hpc.experiments.lm.config import LMConfig
    from collapse_hpc.experiments.lm.tokenizer import bpe_dir

    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir, data_dir)  # the session's data stays intact
    store, run = _run(tmp_path, data_dir, regimes=("replace:0",), generations=1)

    def listing():  # .units/ included: the register of unit processes goes with the last one out
        return sorted(p.relative_to(store.root) for p in store.root.rglob("*"))

    before = listing()
    target = bpe_dir(data_dir, "tiny", LMConfig(**LM).vocab_size) / "tokenizer.json"
    flip(target)
    with pytest.raises(UserError, match="not the file its card.json recorded"):
        engine.run_unit(store.root, "lm", "replace-p0-s0", 0)
    assert listing() == before


def _texts(folder, change):
    """The tests' corpus, each line changed by `change`, as split files in `folder`."""
    from tests.experiments.lm.conftest import corpus_lines

    folder.mkdir()
    for split, n, seed in (("train", 600, 0), ("validation", 80, 1), ("test", 80, 2)):
        (folder / f"{split}.txt").write_text("\n".join(change(line) for line in corpus_lines(n, seed)))
    return folder


def test_a_generation_on_a_data_set_prepared_again_is_trained_and_sampled_again(tmp_path):
    """`data prepare NAME --from OTHER --force` redoes the generations that read NAME; the redo kept their
    model/ and shards/ ("model already trained, not training again"): the old text's model, published as
    built on the new text where the new tokenizer's ids fitted it, else a token id error."""
    from collapse_hpc.experiments.lm.data import prepare_local
    from collapse_hpc.store.atomic import sha256_file

    data_dir = tmp_path / "data"
    prepare_local("mine", _texts(tmp_path / "a", str), data_dir)
    store, run = _run(tmp_path, data_dir, regimes=("replace:0",), generations=1, dataset="mine")
    assert _execute(store, run)["done"] == 1
    gen0 = store.unit_dir("lm", "replace-p0-s0", "chain", 0)
    old = {p: sha256_file(gen0 / p) for p in ("model/model.safetensors", "shards/part-000-00000.parquet")}
    prepare_local("mine", _texts(tmp_path / "b", lambda line: line.upper()[::-1]), data_dir, force=True)
    assert _execute(store, run)["done"] == 1
    assert all(sha256_file(gen0 / p) != sha for p, sha in old.items())  # trained and sampled on the new text
    assert verify_run(store.root) == 0


@pytest.mark.slow
@pytest.mark.parametrize("prepared_again", [False, True])
def test_a_generation_killed_mid_training_resumes_afresh_on_a_data_set_prepared_again(tmp_path, prepared_again):
    """The binding file of a generation killed mid-training listed no data, so a resume after `data prepare
    NAME --from OTHER --force` went on from the checkpoint trained on the old text. It lists the data files the
    generation read (hashed): on other data the resume trains from the initial weights; on the same it goes on
    from the checkpoint."""
    import json

    from collapse_hpc.experiments.lm.data import prepare_local
    from tests.experiments.lm.test_chain import AFTER_FIRST_CHECKPOINT, _killed_at

    data_dir = tmp_path / "data"
    prepare_local("mine", _texts(tmp_path / "a", str), data_dir)
    store, run = _run(tmp_path, data_dir, regimes=("replace:0",), generations=1, dataset="mine", epochs=2,
                      checkpoint_every_steps=1)
    unit = _killed_at(store, AFTER_FIRST_CHECKPOINT)
    assert (unit / "checkpoints").is_dir()
    if prepared_again:
        prepare_local("mine", _texts(tmp_path / "b", lambda line: line.upper()[::-1]), data_dir, force=True)
    assert engine.run_unit(store.root, "lm", "replace-p0-s0", 0) == "done"
    resumed = json.loads((unit / "model" / "training.json").read_text())["resumed_from"]
    assert (resumed is None) == prepared_again, resumed
    assert verify_run(store.root) == 0
