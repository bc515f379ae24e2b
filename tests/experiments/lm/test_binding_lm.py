"""The LM chain on CPU against corrupt artefacts: verify's printed command repairs a corrupt model
(not "already trained"), and the cached base model under data/ is checked by content hash."""
import shlex
import shutil

from collapse_hpc import cli, engine
from collapse_hpc.store import read_manifest
from collapse_hpc.verify import verify_run
from tests.experiments.lm.test_chain import _execute, _run


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_model_and_base_model_are_caught_and_repaired(tmp_path, lm_data_dir, capsys):
    data_dir = tmp_path / "data"
    shutil.copytree(lm_data_dir, data_dir)  # the session's data stays intact
    store, run = _run(tmp_path, data_dir, regimes=("replace:0",), pretrained=True, pretrain_blocks=32)
    assert _execute(store, run)["done"] == 2
    gen0, gen1 = (store.unit_dir("lm", "replace-p0-s0", "chain", g) for g in (0, 1))
    m1 = read_manifest(gen1)
    assert any(k.startswith("tiny/base/") and k.endswith("model.safetensors") for k in m1["data"])
    model = gen0 / "model" / "model.safetensors"
    original = model.read_bytes()

    # 1. a flipped byte in generation 0's model: verify's command, as printed, retrains it
    _flip(model)
    capsys.readouterr()
    assert verify_run(store.root) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "redo with:" in ln)
    assert cli.main(shlex.split(line.split("redo with:", 1)[1])[1:]) == 0
    assert model.read_bytes() == original  # retrained, deterministically: the byte-identical model
    # generation 1 was built on generation 0's former content (its timings differ): stale, and resume redoes it
    capsys.readouterr()
    assert verify_run(store.root) == 1
    assert f"{gen1}: its manifest says upstream" in capsys.readouterr().out
    assert _execute(store, run) == {"done": 1, "skipped": 1}
    assert verify_run(store.root) == 0

    # 2. a flipped byte in the cached base model: verify names it, and no run builds on it
    base = next((data_dir / "tiny" / "base").glob("*/model.safetensors"))
    _flip(base)
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

    # 3. removed as the line says, it is built again: the same base, the run verifies again
    shutil.rmtree(base.parent)
    assert cli.main(["lm", str(store2.config_path), "--run", str(store2.root), "--variant", "replace-p0-s0",
                     "--unit", "0"]) == 0
    assert verify_run(store.root) == 0
