"""The recursive LM chain end to end on CPU: shards, lineage, metrics, manifests; regimes' mixes."""
import ast
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc.regimes import Regime
from tests.helpers import holds, readme_outputs, refuse_reads, safetensors_refuses

REPO = Path(__file__).resolve().parents[3]

LM = dict(dataset="tiny", model="tiny", pretrained=False, vocab_size=300, hidden_size=32, layers=2, heads=2,
          ffn_size=64, block_size=16, epochs=1, lr=3e-3, lr_min=1e-4, batch_size=16, micro_batch_size=8,
          eval_batch_size=32, max_train_blocks=48, max_eval_blocks=16, num_beams=3, sample_batch_size=16)


def _run(tmp_path, data_dir, executor="debug", generations=2, regimes=("replace:0", "replace:0.25"), **lm):
    from collapse_hpc import engine, experiments
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"name": "t", "generations": generations, "seeds": [0], "regimes": list(regimes),
                                        "executor": executor, "data_dir": str(data_dir), "lm": {**LM, **lm}})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    return store, run


def _execute(store, run):
    from collapse_hpc import engine, launch

    with store.lock():
        return launch.execute(store, run, engine.plan(run), run.executor)


# ------------------------------------------------------------------ regimes -> the right mix

def _pool(n, start=0):
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table({"block_id": ids, "input_ids": pa.array([[int(i)] * 4 for i in ids], pa.list_(pa.int32()))})


@pytest.mark.parametrize("regime,expect", [
    (Regime("replace", 0.0), {1: 40}),
    (Regime("replace", 0.1), {-1: 4, 1: 36}),
    (Regime("accumulate"), {-1: 40, 0: 40, 1: 40}),
])
def test_regime_counts_by_source(regime, expect):
    from collapse_hpc.experiments.lm import mixing

    real, gens = _pool(40), [_pool(40, 100), _pool(40, 200)]
    ts = mixing.training_set(regime, real, gens, np.random.default_rng(0))
    assert mixing.counts_by_source(ts) == expect
    assert ts.column("block_id").to_pylist() == list(range(ts.num_rows))
    # lineage: every row's tokens are those of the block it names
    pools = {-1: real, 0: gens[0], 1: gens[1]}
    for row in ts.to_pylist():
        pool = pools[row["source_generation"]]
        src = pool.filter(pa.compute.equal(pool.column("block_id"), row["source_block_id"]))
        assert src.column("input_ids")[0].as_py() == row["input_ids"]


def test_replace_is_slot_wise_and_subsample_keeps_size():
    from collapse_hpc.experiments.lm import mixing

    real, gens = _pool(40), [_pool(40, 100)]
    ts = mixing.training_set(Regime("replace", 0.25), real, gens, np.random.default_rng(1))
    # slot i holds real block i or the block generated from prompt i
    assert [r["source_block_id"] % 100 for r in ts.to_pylist()] == list(range(40))
    sub = mixing.training_set(Regime("accumulate-subsample"), real, [_pool(40, 100), _pool(40, 200)],
                              np.random.default_rng(2))
    assert sub.num_rows == 40 and len(mixing.counts_by_source(sub)) == 3
    acc = mixing.training_set(Regime("accumulate"), real, gens, np.random.default_rng(0))
    assert mixing.prompts("train_set", acc, real, np.random.default_rng(0)).num_rows == 40


def test_real_prompts_are_the_real_blocks_whatever_the_training_set():
    from collapse_hpc.experiments.lm import mixing

    real, gens = _pool(40), [_pool(40, 100)]
    ts = mixing.training_set(Regime("replace", 0.0), real, gens, np.random.default_rng(0))
    assert mixing.prompts("real", ts, real, np.random.default_rng(0)).equals(real.select(["block_id", "input_ids"]))
    drifted = mixing.prompts("train_set", ts, real, np.random.default_rng(0))  # the generated blocks
    assert drifted.column("input_ids").to_pylist() == gens[0].column("input_ids").to_pylist()


def test_the_next_generation_trains_on_the_sampled_tokens_not_their_text(lm_tokenizer):
    # a byte-level BPE block may end inside a character: its text holds U+FFFD and re-tokenizes to other ids
    from collapse_hpc.experiments.lm import mixing
    from collapse_hpc.experiments.lm.sample import _shard_table

    ids = lm_tokenizer("é 猫 😀", add_special_tokens=False)["input_ids"]
    cut = np.array([ids[:-1], ids[1:]], np.int32)  # the emoji's last byte, then the é's first, cut off
    shards = _shard_table(np.array([0, 1]), cut, lm_tokenizer, 0, "real")
    texts = shards.column("text").to_pylist()
    assert all("\ufffd" in t for t in texts)
    assert [lm_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts] != cut.tolist()
    ts = mixing.training_set(Regime("replace", 0.0), _pool(2), [shards], np.random.default_rng(0))
    assert ts.column("input_ids").to_pylist() == cut.tolist()


@pytest.mark.parametrize("sample_from,hashed", [("best", ["model"]), ("last", ["model", "model_last"])])
def test_each_saved_model_is_fingerprinted_once(monkeypatch, tmp_path, sample_from, hashed):
    """The manifest's weights name the sampling and the scored weights; when both are model/ its
    files are read and hashed once, not twice (500 MB for OPT-125M). The logic, on a stand-in."""
    from types import SimpleNamespace

    from collapse_hpc.experiments.lm import chain, model

    calls = []
    monkeypatch.setattr(model, "model_fingerprint", lambda folder: calls.append(Path(folder).name) or Path(folder).name)
    ctx = SimpleNamespace(config=SimpleNamespace(sample_from=sample_from), path=lambda name: tmp_path / name)
    weights = chain._weights(ctx, {"best_epoch": 1, "epochs": 3})
    assert sorted(calls) == hashed
    epoch = 1 if sample_from == "best" else 2  # the best epoch's weights, or the last's
    assert weights == {"sampled": {"folder": hashed[-1], "sha256": hashed[-1], "epoch": epoch},
                       "scored": {"folder": "model", "sha256": "model", "epoch": 1}}


# ------------------------------------------------------------------ the chain

def _check_chain(store, generations=2):
    from collapse_hpc.experiments.lm import mixing
    from collapse_hpc.store import verify_unit

    variants = sorted(p.name for p in (store.root / "lm").iterdir())
    assert variants == ["replace-p0-s0", "replace-p0.25-s0"]
    for v in variants:
        units = [store.root / "lm" / v / f"gen_{g:03d}" for g in range(generations)]
        for g, unit in enumerate(units):
            assert verify_unit(unit) == [], unit
            assert not (unit / "checkpoints").exists()
            assert [f for f in readme_outputs()["lm"] if not holds(unit, f)] == []  # README, Outputs
            m = pq.read_table(unit / "metrics.parquet").to_pylist()[0]
            assert m["generation"] == g and m["test_ppl"] > 1
            for k in ("distinct_1", "distinct_4", "unigram_entropy", "type_token_ratio", "rare_token_share",
                      "ppl_p50", "ppl_p95", "test_ppl_rare", "test_ppl_middle", "test_ppl_frequent"):
                assert np.isfinite(m[k]), k
            # bookkeeping, constant by construction under replace: not a metric
            assert "train_blocks" not in m and "generated_blocks" not in m
            assert ("real_rare_token_share" in m) == ("real_middle_token_share" in m) == (g == 0)
            assert 0 <= m["rare_token_share"] + m["middle_token_share"] <= 1
            shards = sorted((unit / "shards").glob("part-*.parquet"))
            assert len(shards) == 3  # 48 prompts in chunks of 16
            table = pa.concat_tables(pq.read_table(s) for s in shards)
            assert table.num_rows == 48 and set(table.column("source").to_pylist()) == {"generated"}
            assert {len(x) for x in table.column("input_ids").to_pylist()} == {16}
            meta = json.loads(pq.read_schema(shards[0]).metadata[b"decoding"])
            assert meta == {"preset": "beam", "num_beams": 3, "repetition_penalty": 3.0, "new_tokens": 16,
                            "precision": "fp32", "step": "slots"}  # a CPU's step: the slots written so far
            seq = pq.read_table(unit / "sequence_ppl.parquet")
            assert seq.column_names == ["block_id", "ppl"] and seq.num_rows == 48
            # per-sequence perplexities of the real test split: one row per test block (16)
            test_ppl = pq.read_table(unit / "test_ppl.parquet")
            assert test_ppl.column_names == ["block_id", "ppl"]
            assert test_ppl.column("block_id").to_pylist() == list(range(16))
            ppl = np.array(test_ppl.column("ppl").to_pylist())
            assert (ppl > 1).all() and min(ppl) <= m["test_ppl"] <= max(ppl)
            manifest = json.loads((unit / "manifest.json").read_text())
            assert manifest["files"]["test_ppl.parquet"]["rows"] == 16
            # sample_from: best (the default): the best-validation weights sampled and were scored
            weights = manifest["weights"]
            assert weights["sampled"] == weights["scored"] and weights["scored"]["folder"] == "model"
            assert not (unit / "model_last").exists()
            # the training curve: one row per optimizer step of this generation's training
            curve = pq.read_table(unit / "training_curve.parquet").to_pandas()
            training = json.loads((unit / "model" / "training.json").read_text())
            assert curve["step"].tolist() == list(range(1, training["steps"] + 1))
            assert (curve["generation"] == g).all() and curve["epoch"].max() == training["epochs"]
            assert (curve["loss"] > 0).all() and (curve["lr"] > 0).all() and (curve["tokens_per_s"] > 0).all()
            assert manifest["files"]["training_curve.parquet"]["rows"] == training["steps"]
        ts = pq.read_table(units[1] / "train_set.parquet")
        counts = mixing.counts_by_source(ts)
        assert counts == ({0: 48} if v == "replace-p0-s0" else {-1: 12, 0: 36})
        path = mixing.trace(5, 1, units)
        assert path[0] == (1, 5) and path[-1][0] == -1


@pytest.mark.slow
def test_two_generation_chain_debug(tmp_path, lm_data_dir):
    store, run = _run(tmp_path, lm_data_dir)
    counts = _execute(store, run)
    assert counts["done"] == 4
    _check_chain(store)
    assert _execute(store, run)["skipped"] == 4  # finished units are not redone


@pytest.mark.slow
def test_two_generation_chain_two_ranks_local(tmp_path, lm_data_dir, monkeypatch):
    pytest.importorskip("collapse_hpc.launch.local")
    store, run = _run(tmp_path, lm_data_dir, executor="local", ranks=2)
    monkeypatch.setenv("COLLAPSE_THREADS", "1")
    _execute(store, run)
    _check_chain(store)
    manifest = json.loads((store.root / "lm" / "replace-p0-s0" / "gen_001" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    names = {p.name.split("-")[1] for p in (store.root / "lm" / "replace-p0-s0" / "gen_000" / "shards").glob("part-*")}
    assert names == {"000", "001"}  # both ranks sampled


@pytest.mark.slow
@pytest.mark.parametrize("init, kept", [("gen0", [0]), ("previous", [0, 1, 2])])
def test_keep_models_needed_keeps_only_the_weights_a_later_generation_reads(tmp_path, lm_data_dir, init, kept):
    """Every generation kept its weights (OPT-125M: 0.5 GB each, paper.yaml 50 GB) though with init:
    gen0 no later step reads those of generations >= 1. keep_models: needed drops them before the
    manifest, which still names them by fingerprint; the chain verifies, is skipped when run again and
    grows by a generation, whose start and scorer are still there."""
    from collapse_hpc.experiments.lm.model import model_fingerprint
    from collapse_hpc.store import verify_unit

    chain = tmp_path / "run" / "lm" / "replace-p0-s0"
    for generations in (2, 3):  # the second: the chain extended, as --generations 3 does
        store, run = _run(tmp_path, lm_data_dir, generations=generations, regimes=("replace:0",), init=init,
                          keep_models="needed", sample_from="last")
        assert _execute(store, run)["done"] == (2 if generations == 2 else 1)
    units = [chain / f"gen_{g:03d}" for g in range(3)]
    assert [g for g, unit in enumerate(units) if (unit / "model").exists()] == kept
    assert not any((unit / "model_last").exists() for unit in units)  # sampled, read by nobody since
    for unit in units:
        assert verify_unit(unit) == [], unit
        weights = json.loads((unit / "manifest.json").read_text())["weights"]
        assert weights["sampled"]["folder"] == "model_last" and len(weights["scored"]["sha256"]) == 16
        if (unit / "model").exists():
            assert weights["scored"]["sha256"] == model_fingerprint(unit / "model")
    assert _execute(store, run)["skipped"] == 3


# ------------------------------------------------------------------ kill during sampling, resume

def _kill_and_resume(tmp_path, store, variant: str, gen: int) -> Path:
    """Kill generation `gen` after its first shard, resume it, and check it against a fresh run of
    that generation (from the same earlier generations); return the fresh run's shards folder."""
    unit = store.root / "lm" / variant / f"gen_{gen:03d}"
    cmd = [sys.executable, "-c", "import sys, logging; logging.basicConfig(level=logging.INFO); "
           "from collapse_hpc import engine; "
           f"engine.run_unit(sys.argv[1], 'lm', '{variant}', {gen})", str(store.root)]
    # the same unit, in a process that kills itself (SIGKILL) once its first chunk is on disk
    kill = ("import os, signal, collapse_hpc.store as store; write = store.write_parquet; "
            "store.write_parquet = lambda path, *a, **k: (write(path, *a, **k), "
            "os.path.basename(path).startswith('part-') and os.kill(os.getpid(), signal.SIGKILL))[0]; ")
    env = {**os.environ, "COLLAPSE_THREADS": "1"}
    proc = subprocess.run([cmd[0], cmd[1], kill + cmd[2], *cmd[3:]], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (unit / "manifest.json").exists()
    assert len(list((unit / "shards").glob("part-*.parquet"))) == 1
    # trained and published: its training checkpoints (GBs for OPT-125M) no longer wait for the manifest
    assert (unit / "model" / "training.json").is_file() and not (unit / "checkpoints").exists()
    first = {p.name: p.read_bytes() for p in (unit / "shards").glob("part-*.parquet")}
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already done" in proc.stderr and "not training again" in proc.stderr
    resumed = {p.name: p.read_bytes() for p in (unit / "shards").glob("part-*.parquet")}
    assert len(resumed) == 3 and all(resumed[k] == v for k, v in first.items())
    # a fresh run of the generation gives the same training set and the same tokens in every shard
    fresh = tmp_path / "fresh"
    shutil.copytree(store.root, fresh, ignore=shutil.ignore_patterns(f"gen_{gen:03d}", ".lock"))
    proc = subprocess.run(cmd[:-1] + [str(fresh)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh_unit = fresh / "lm" / variant / f"gen_{gen:03d}"
    for name in resumed:
        assert pq.read_table(fresh_unit / "shards" / name).equals(pq.read_table(unit / "shards" / name)), name
    assert pq.read_table(fresh_unit / "train_set.parquet").equals(pq.read_table(unit / "train_set.parquet"))
    return fresh_unit / "shards"


@pytest.mark.slow
@pytest.mark.parametrize("decoding,variant", [("beam", "replace-p0-s0"),
                                              ("top_p:0.9", "replace-p0-decodingtop_p0.9-s0"),
                                              ("min_p", "replace-p0-decodingmin_p0.1-s0")])
def test_kill_during_sampling_resumes_identically(tmp_path, lm_data_dir, decoding, variant):
    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), decoding=[decoding])
    fresh_shards = _kill_and_resume(tmp_path, store, variant, 0)
    meta = json.loads(pq.read_schema(sorted(fresh_shards.iterdir())[0]).metadata[b"decoding"])
    assert meta["preset"] == decoding.partition(":")[0]


# ------------------------------------------------------------------ killed, then resumed after a knob changed

def _killed_at(store, hook: str) -> Path:
    """Generation 0 of replace-p0-s0 in a process that kills itself (SIGKILL) where `hook` says; its folder."""
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    code = ("import os, signal, sys, logging; logging.basicConfig(level=logging.INFO); " + hook +
            "from collapse_hpc import engine; engine.run_unit(sys.argv[1], 'lm', 'replace-p0-s0', 0)")
    proc = subprocess.run([sys.executable, "-c", code, str(store.root)], env={**os.environ, "COLLAPSE_THREADS": "1"},
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9 and not (unit / "manifest.json").exists(), proc.stderr[-2000:]
    return unit


AFTER_FIRST_CHECKPOINT = ("from collapse_hpc.experiments.lm import train; save = train._Training.checkpoint; "
                          "train._Training.checkpoint = lambda self: (save(self), "
                          "os.kill(os.getpid(), signal.SIGKILL)); ")


@pytest.mark.slow
@pytest.mark.parametrize("made, changed, kept", [
    ({}, {"checkpoint_every_steps": 2}, True),  # exact: no warning at all
    ({}, {"micro_batch_size": 4}, True),  # the same weights, optimizer state, step and data order
    ({"zero_stage": 1}, {"ranks": 2}, False),  # ZeRO-1 splits the optimizer state by rank
], ids=["checkpoint_every_steps", "micro_batch_size", "ranks under ZeRO-1"])
def test_a_generation_killed_mid_training_keeps_its_checkpoints_after_a_knob_where_they_stay_sound(
        tmp_path, lm_data_dir, capsys, made, changed, kept):
    """A resume after a how-it-runs knob changed (`run --set lm.micro_batch_size=4`) dropped the unfinished
    generation's checkpoints and trained it from its start: the binding of its last attempt named the
    variant's old hash. They are kept where they stay sound, and the warning line names what is redone."""
    from collapse_hpc import engine

    knobs = {"checkpoint_every_steps": 1, **made}
    store, _ = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), **knobs)
    unit = _killed_at(store, AFTER_FIRST_CHECKPOINT)
    assert (unit / "checkpoints" / "step00000001" / "complete.json").is_file()
    capsys.readouterr()
    _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), **(knobs | changed))  # run --set …
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    if "checkpoint_every_steps" in changed:
        assert warnings == []
    elif kept:
        (warning,) = warnings
        assert warning.endswith("unfinished units keep their partial work"), warning
    else:
        (warning,) = warnings
        assert ("unfinished units keep their partial work but lm/replace-p0-s0/gen_000/checkpoints (ZeRO stage 1 "
                "splits the optimizer state by rank), which is redone") in warning, warning
    assert engine.run_unit(store.root, "lm", "replace-p0-s0", 0) == "done"
    training = json.loads((unit / "model" / "training.json").read_text())
    assert training["resumed_from"] == (1 if kept else None)
    manifest = json.loads((unit / "manifest.json").read_text())
    assert {k: manifest["config"]["lm"][k] for k in changed} == changed  # what it ran with now
    from collapse_hpc.store import verify_unit
    assert verify_unit(unit) == []


@pytest.mark.slow
def test_a_generation_killed_mid_sampling_keeps_its_shards_and_model_after_a_knob_changed(tmp_path, lm_data_dir,
                                                                                           caplog):
    """Killed after its first shard, the generation resumed with `--set lm.sample_graphs=on` sampled every
    chunk again and trained again: its shards and model were dropped with the binding's old hash."""
    import logging

    from collapse_hpc import engine

    store, _ = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",))
    unit = _killed_at(store, "import collapse_hpc.store as store; write = store.write_parquet; "
                             "store.write_parquet = lambda path, *a, **k: (write(path, *a, **k), "
                             "os.path.basename(path).startswith('part-') "
                             "and os.kill(os.getpid(), signal.SIGKILL))[0]; ")
    (first,) = (unit / "shards").glob("part-*.parquet")
    written = first.stat().st_mtime_ns
    _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), sample_graphs="on")
    with caplog.at_level(logging.INFO):
        assert engine.run_unit(store.root, "lm", "replace-p0-s0", 0) == "done"
    assert "not training again" in caplog.text
    assert "1 of 3 chunks already done; rank 0 samples 2 of the 2 left" in caplog.text
    assert first.stat().st_mtime_ns == written
    # the manifest named the last attempt's step alone (static: a CPU's with graphs on); the kept shard's too
    manifest = json.loads((unit / "manifest.json").read_text())
    assert (manifest["decoding"]["step"], manifest["decoding"]["steps"]) == ("mixed", {"slots": 1, "static": 2})


def test_which_partial_work_of_a_generation_another_knob_leaves_sound():
    """Checkpoints go where the optimizer state does not fit: another rank count under ZeRO 1-3 (bf16
    weights: from ZeRO-1 on, as DeepSpeed runs them), or the other AdamW; nothing else is redone."""
    from collapse_hpc.experiments import get

    lm = get("lm")
    zero0 = {"zero_stage": 0, "precision": "auto"}
    assert lm.redone_after({"ranks": False}, zero0) == {}
    assert lm.redone_after({"micro_batch_size": False, "sample_graphs": False}, zero0) == {}
    assert lm.redone_after({"checkpoint_every_steps": True}, {"zero_stage": 2}) == {}
    for section in ({"zero_stage": 2}, {"zero_stage": 0, "precision": "bf16"},
                    {"zero_stage": 0, "deepspeed": {"zero_optimization": {"stage": 1}}}):
        assert list(lm.redone_after({"ranks": False}, section)) == ["checkpoints"], section
    assert list(lm.redone_after({"fused_adam": False}, zero0)) == ["checkpoints"]


# ------------------------------------------------------------------ curated regimes: chain, kill, resume

@pytest.mark.slow
@pytest.mark.parametrize("regime,variant", [("detector-resample", "detector-resample-s0"),
                                            ("verifier-filter", "verifier-filter-q0.5-s0")])
def test_curated_regime_chain_kill_and_resume(tmp_path, lm_data_dir, regime, variant):
    from collapse_hpc import engine
    from collapse_hpc.experiments.lm import mixing

    store, run = _run(tmp_path, lm_data_dir, generations=2, regimes=(regime,))
    assert engine.run_unit(store.root, "lm", variant, 0) == "done"
    _kill_and_resume(tmp_path, store, variant, 1)
    gen0, gen1 = (store.root / "lm" / variant / f"gen_{g:03d}" for g in (0, 1))
    ts = pq.read_table(gen1 / "train_set.parquet")
    m = pq.read_table(gen1 / "metrics.parquet").to_pylist()[0]
    assert ts.num_rows == 48
    counts = mixing.counts_by_source(ts)
    if regime == "verifier-filter":  # only generation 0's blocks with perplexity at or below the median
        assert set(counts) == {0} and "verifier_pass_share" not in m  # q by construction: not a metric
        seq = pq.read_table(gen0 / "sequence_ppl.parquet").to_pandas().set_index("block_id")["ppl"]
        kept = seq.loc[ts.column("source_block_id").to_pylist()]
        assert kept.max() <= m["verifier_threshold_ppl"] == pytest.approx(seq.median())
        assert 0.5 <= m["train_distinct_share"] < 1
    else:  # real and generated blocks pooled, weighed by a detector
        assert set(counts) <= {-1, 0} and 0 < m["train_real_share"] < 1
        assert 0 <= m["detector_auc"] <= 1 and np.isfinite(m["detector_accuracy"])
# ------------------------------------------------------------------ the paper's method

@pytest.mark.slow
def test_paper_method_real_prompts_gen0_base_per_regime_epochs(tmp_path, lm_data_dir):
    """Prompts are the real train blocks in every generation, generation g >= 1 starts from
    generation 0's weights, a regime's override reaches training, and generation 0 reports the
    initial model's (zero-shot) perplexity beside its own."""
    import torch

    from collapse_hpc.experiments.lm.data import block_array, load_blocks
    from collapse_hpc.experiments.lm.model import load_model, weights_fingerprint
    from collapse_hpc.experiments.lm.sample import Decoding, generate, read_shards
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    special = {"name": "replace", "keep_fraction": 0.25, "lm": {"epochs": 2}}
    store, run = _run(tmp_path, lm_data_dir, generations=3, regimes=("replace:0", special))
    assert run.section("lm").init == "gen0" and run.section("lm").prompts == "real"  # the defaults
    assert _execute(store, run)["done"] == 6
    cfg = run.section("lm")
    real = load_blocks(lm_data_dir, "tiny", "train", load_tokenizer(cfg, lm_data_dir), cfg.block_size).slice(0, 48)
    for variant, epochs in (("replace-p0-s0", 1), ("replace-p0.25-epochs2-s0", 2)):
        units = [store.root / "lm" / variant / f"gen_{g:03d}" for g in range(3)]
        gen0 = weights_fingerprint(load_model(units[0] / "model"))
        for g, unit in enumerate(units):
            shards = read_shards(unit / "shards")
            # 1. every generation continues exactly the real training blocks
            assert shards.column("prompt_block_id").to_pylist() == real.column("block_id").to_pylist()
            assert set(shards.column("prompt_source").to_pylist()) == {"real"}
            # 2. g >= 1 fine-tunes generation 0's model (the initial model for g = 0)
            training = json.loads((unit / "model" / "training.json").read_text())
            assert training["init_from"] == ("initial" if g == 0 else "gen_000")
            if g:
                assert training["init_weights_sha256"] == gen0
            # 3. the regime's override reaches training
            assert training["epochs"] == epochs and len(training["val_loss"]) == epochs
            m = pq.read_table(unit / "metrics.parquet").to_pylist()[0]
            assert np.isfinite(m["real_train_ppl"]) and m["real_train_ppl"] > 1
            assert pq.read_table(unit / "real_train_ppl.parquet").num_rows == 48
            ex = pq.read_table(unit / "examples.parquet").to_pylist()
            assert [e["prompt_block_id"] for e in ex] == [0, 15, 31, 47] and all(e["continuation"] for e in ex)
        # the tokens of generation 2 are its model's continuation of the real blocks (not of its data)
        model = load_model(units[2] / "model").eval()
        with torch.no_grad():
            first = generate(model, torch.from_numpy(block_array(real.slice(0, 16))), Decoding.from_config(cfg),
                             generator=torch.Generator().manual_seed(0))
        assert first.numpy().tolist() == read_shards(units[2] / "shards").column("input_ids").to_pylist()[:16]
        m0 = pq.read_table(units[0] / "metrics.parquet").to_pylist()[0]
        assert m0["zero_shot_test_ppl"] > m0["test_ppl"] > 1  # fine-tuning on real data beats the initial model
    # the override is part of what the variant computes: its manifest's hash differs from the plain one's
    plain = json.loads((store.root / "lm" / "replace-p0-s0" / "gen_001" / "manifest.json").read_text())
    longer = json.loads((store.root / "lm" / "replace-p0.25-epochs2-s0" / "gen_001" / "manifest.json").read_text())
    assert longer["config"]["lm"]["epochs"] == 2 and plain["config"]["lm"]["epochs"] == 1
    assert longer["variant_hash"] != plain["variant_hash"]
    from collapse_hpc.experiments.base import Variant
    from collapse_hpc.config import config_hash
    from collapse_hpc.regimes import Regime as R

    without = Variant("lm", R("replace", 0.25), 0)
    assert config_hash(without.config(run)) != longer["variant_hash"]


@pytest.mark.parametrize("init", ["gen0", "previous"])
def test_generation_0s_model_is_read_once_per_generation(tmp_path, lm_data_dir, monkeypatch, init):
    """Generation 1 read generation 0's model from disk twice: to fine-tune from and to score its
    generated blocks. Now once, the scorer a copy taken before training changes the model; its
    scores are generation 0's as read from disk."""
    from collapse_hpc.experiments.lm import model
    from collapse_hpc.experiments.lm.chain import MODEL
    from collapse_hpc.experiments.lm.evaluate import score
    from collapse_hpc.experiments.lm.sample import read_shards

    store, run = _run(tmp_path, lm_data_dir, regimes=("replace:0",), init=init)
    loaded, load_model = [], model.load_model
    monkeypatch.setattr(model, "load_model", lambda folder: loaded.append(Path(folder)) or load_model(folder))
    assert _execute(store, run)["done"] == 2
    units = [store.root / "lm" / "replace-p0-s0" / f"gen_{g:03d}" for g in range(2)]
    # generation 0's best weights; generation 1's start, then its own best weights (training reads
    # its checkpoints too: those are not saved models)
    assert [p for p in loaded if p.name == MODEL] == [units[0] / MODEL, units[0] / MODEL, units[1] / MODEL]
    from_disk = score(load_model(units[0] / MODEL).eval(), read_shards(units[1] / "shards"), batch_size=32)
    assert pq.read_table(units[1] / "sequence_ppl.parquet").column("ppl").to_pylist() == pytest.approx(
        from_disk.per_sequence.tolist(), rel=1e-6)


# ------------------------------------------------------------------ fp32 master weights (issue: fp16 checkpoints)

@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_an_fp16_checkpoint_trains_scores_and_samples_in_fp32(tmp_path, lm_data_dir, lm_tokenizer, stage,
                                                               monkeypatch):
    """A model saved in float16 (as facebook/opt-125m's config.json declares) is loaded in float32
    everywhere: DeepSpeed trains float32 master weights on CPU under ZeRO 0, 1 and 2 (float16 ones
    fail there: 'unsupported grad type'), every perplexity and every sampled token comes from
    float32 weights, and the saved generation model is F32; training.json says what ran."""
    import torch

    from collapse_hpc.experiments.lm import evaluate, sample
    from collapse_hpc.experiments.lm.model import random_model, saved_dtypes, tiny_config
    from tests.experiments.lm.conftest import tiny_cfg

    folder = tmp_path / "opt-fp16"
    random_model(tiny_config(tiny_cfg(**{k: LM[k] for k in ("hidden_size", "layers", "heads", "ffn_size")}),
                             lm_tokenizer)).half().save_pretrained(folder)
    lm_tokenizer.save_pretrained(folder)
    assert saved_dtypes(folder) == ["F16"]
    seen = []
    for module, name in ((evaluate, "_loss_sums"), (sample, "generate")):
        real = getattr(module, name)

        def spy(model, *args, _real=real, _name=name, **kwargs):
            seen.append((_name, next(model.parameters()).dtype))
            return _real(model, *args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), model=str(folder),
                      pretrained=True, zero_stage=stage)
    assert _execute(store, run)["done"] == 1
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    training = json.loads((unit / "model" / "training.json").read_text())
    assert (training["master_dtype"], training["compute_dtype"], training["autocast_dtype"],
            training["saved_dtype"], training["precision"]) == ("float32", "float32", None, "float32", "fp32")
    assert saved_dtypes(unit / "model") == ["F32"]
    assert {n for n, _ in seen} == {"_loss_sums", "generate"} and {d for _, d in seen} == {torch.float32}
    m = pq.read_table(unit / "metrics.parquet").to_pylist()[0]
    assert m["zero_shot_test_ppl"] > m["test_ppl"] > 1  # the float32 copy of the fp16 weights, then trained


# ------------------------------------------------------------------ which weights sample, which are scored

@pytest.mark.slow
def test_sample_from_last_samples_with_the_last_epoch_and_scores_with_the_best(tmp_path, lm_data_dir):
    """sample_from: last (the authors' main.py) writes the next generation's data with the weights
    after the last epoch (model_last/); every perplexity is still the best-validation model's, and
    the manifest names both by fingerprint and epoch."""
    import torch

    from collapse_hpc.experiments.lm.data import block_array, load_blocks
    from collapse_hpc.experiments.lm.evaluate import perplexity
    from collapse_hpc.experiments.lm.model import load_model, model_fingerprint
    from collapse_hpc.experiments.lm.sample import Decoding, generate, read_shards
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    store, run = _run(tmp_path, lm_data_dir, generations=2, regimes=("replace:0",), sample_from="last", epochs=3,
                      lr=3e-2)  # generation 1 then forgets the real data after its first epoch
    assert run.section("lm").sample_from == "last"
    assert _execute(store, run)["done"] == 2
    cfg = run.section("lm")
    tok = load_tokenizer(cfg, lm_data_dir)
    real = load_blocks(lm_data_dir, "tiny", "train", tok, cfg.block_size).slice(0, 48)
    test = load_blocks(lm_data_dir, "tiny", "test", tok, cfg.block_size).slice(0, 16)
    differ = []
    for g in (0, 1):
        unit = store.root / "lm" / "replace-p0-s0" / f"gen_{g:03d}"
        manifest = json.loads((unit / "manifest.json").read_text())
        training = json.loads((unit / "model" / "training.json").read_text())
        weights = manifest["weights"]
        assert weights["sampled"] == {"folder": "model_last", "sha256": model_fingerprint(unit / "model_last"),
                                      "epoch": 2}
        assert weights["scored"] == {"folder": "model", "sha256": model_fingerprint(unit / "model"),
                                     "epoch": training["best_epoch"]}
        assert "model_last/model.safetensors" in manifest["files"]  # the weights that sampled are kept
        differ.append(weights["sampled"]["sha256"] != weights["scored"]["sha256"])
        assert differ[-1] == (training["best_epoch"] != 2)
        shards = read_shards(unit / "shards")
        first = sorted((unit / "shards").glob("part-*.parquet"))[0]
        assert json.loads(pq.read_schema(first).metadata[b"model_sha256"]) == weights["sampled"]["sha256"]
        last = load_model(unit / "model_last").eval()
        with torch.no_grad():
            tokens = generate(last, torch.from_numpy(block_array(real.slice(0, 16))), Decoding.from_config(cfg),
                              generator=torch.Generator().manual_seed(0))
        assert tokens.numpy().tolist() == shards.column("input_ids").to_pylist()[:16]
        m = pq.read_table(unit / "metrics.parquet").to_pylist()[0]
        assert m["test_ppl"] == pytest.approx(perplexity(load_model(unit / "model"), test)[0], rel=1e-6)
    assert any(differ), "no generation's best epoch came before its last: the test shows nothing"


# ------------------------------------------------------------------ rarity over the whole real split

@pytest.mark.slow
def test_rarity_is_counted_over_the_whole_real_split(tmp_path, lm_data_dir):
    """The rare types are those of the whole real train split (not of the chain's first
    max_train_blocks, whose rarest types are singletons no model emits): the manifest records the
    count's basis and the classes' real mass, and generation 0 the real blocks' own rare share."""
    from collapse_hpc.experiments.lm import metrics
    from collapse_hpc.experiments.lm.data import block_array, load_blocks
    from collapse_hpc.experiments.lm.model import load_model
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",))
    assert _execute(store, run)["done"] == 1
    cfg = run.section("lm")
    whole = block_array(load_blocks(lm_data_dir, "tiny", "train", load_tokenizer(cfg, lm_data_dir), cfg.block_size))
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    rarity = json.loads((unit / "manifest.json").read_text())["rarity"]
    assert rarity["real_train_tokens"] == whole.size > 48 * 16
    vocab = load_model(unit / "model").get_input_embeddings().num_embeddings
    classes = metrics.token_classes(metrics.token_counts(whole, vocab), 0.1, 0.5)
    assert rarity["real_train_mass"] == pytest.approx(metrics.class_shares(whole, classes))
    assert 0 < rarity["real_train_mass"]["rare"] <= 0.1 and 0 < rarity["real_train_mass"]["frequent"] <= 0.5
    m = pq.read_table(unit / "metrics.parquet").to_pylist()[0]
    real = metrics.class_shares(whole[:48], classes)
    assert (m["real_rare_token_share"], m["real_middle_token_share"]) == pytest.approx((real["rare"], real["middle"]))


# ------------------------------------------------------------------ start-up phases, compile cache

def _brought_by_transformers() -> set[str]:
    """Which of matplotlib, sklearn and datasets importing transformers' causal-LM classes imports."""
    code = ("import sys; from transformers import AutoModelForCausalLM, OPTForCausalLM; "
            "print(' '.join(m for m in ('matplotlib', 'sklearn', 'datasets') if m in sys.modules))")
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              timeout=300).stdout.split())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_job_logs_its_start_up_phases_and_keeps_the_compile_cache_in_the_run_folder(tmp_path, lm_data_dir):
    """A generation job logs one line with the seconds of each start-up phase (and its manifest
    keeps them, and those of training, sampling and evaluation); with `compile`, inductor's and
    Triton's caches are folders of the run, not the node's shared /tmp ones (aot_eager here: the
    same code path, without minutes of C compiling); sample_precision bf16 is recorded. The job's
    entry point (UnitJob) imports neither matplotlib, scikit-learn nor datasets."""
    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), compile=True,
                      compile_backend="aot_eager", sample_precision="bf16")
    code = ("import os, sys; from collapse_hpc.launch.job import UnitJob; "
            "UnitJob()(sys.argv[1], 'lm', 'replace-p0-s0', 0); "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'datasets') if m in sys.modules)); "
            "print(os.environ['TORCHINDUCTOR_CACHE_DIR']); print(os.environ['TRITON_CACHE_DIR'])")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    proc = subprocess.run([sys.executable, "-c", code, str(store.root)], env={**env, "COLLAPSE_THREADS": "1"},
                          cwd=REPO, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if "gen 0: start-up:" in x)
    for phase in ("imports", "process group", "tokenizer", "model load", "DeepSpeed import", "DeepSpeed init",
                  "first step (compiles)"):
        assert f"{phase} " in line, line
    # the job's entry point never imports what only reports and other experiments need, beyond what
    # transformers' own model classes bring (5.17's generation imports sklearn.metrics when installed)
    assert set(ast.literal_eval(proc.stdout.splitlines()[-3])) <= _brought_by_transformers(), proc.stdout[-500:]
    caches = [Path(p) for p in proc.stdout.split()[-2:]]
    assert caches == [store.root.absolute() / ".compile-cache" / "inductor",
                      store.root.absolute() / ".compile-cache" / "triton"]
    manifest = json.loads((store.root / "lm" / "replace-p0-s0" / "gen_000" / "manifest.json").read_text())
    assert set(manifest["startup_seconds"]) == {"imports", "process_group", "tokenizer", "model_load",
                                                "deepspeed_import", "deepspeed_init", "first_step"}
    assert all(v >= 0 for v in manifest["startup_seconds"].values())
    assert set(manifest["phase_seconds"]) == {"train", "sample", "evaluate"}
    # the weights' precision while sampling: in the manifest and in every shard's metadata
    assert manifest["decoding"]["precision"] == "bf16"
    assert manifest["decoding"]["step"] == "slots"  # the step that ran: a CPU's default
    shard = next((store.root / "lm" / "replace-p0-s0" / "gen_000" / "shards").glob("part-*.parquet"))
    assert json.loads(pq.read_schema(shard).metadata[b"decoding"])["precision"] == "bf16"
    assert all(v > 0 for v in manifest["phase_seconds"].values())


def test_a_read_only_data_set_without_its_caches_is_one_line_naming_the_folder(tmp_path, lm_data_dir, monkeypatch):
    """A data set prepared by a colleague (read-only to this user) whose token-block cache for this
    block size is not built yet: the unit stops in one line naming the data set's folder and what to
    do (it was a bare PermissionError on a lock or cache file). Root writes anywhere, and a forked child
    of a process that has run torch may hang, so the cache write is made to fail as it fails for another
    user; a PermissionError elsewhere stays what it is."""
    from collapse_hpc import engine
    from collapse_hpc.errors import UserError
    from collapse_hpc.experiments.lm import data

    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), block_size=12)  # not cached

    def refused(path, *a, **k):  # as the cache's write fails for a user who may only read the folder
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "write_blocks", refused)
    with pytest.raises(UserError) as e:
        engine.run_unit(store.root, "lm", "replace-p0-s0", 0)
    folder = Path(lm_data_dir).absolute() / "tiny"
    assert str(e.value).startswith(f"{folder}: not writable by you ("), e.value
    assert "built once on first use; run once as the folder's owner, or prepare the data set in a folder " \
           "of yours (data_dir)" in str(e.value)

    def elsewhere(path, *a, **k):  # not the data set's folder: no hint about it
        raise PermissionError(13, "Permission denied", "/elsewhere/x")

    monkeypatch.setattr(data, "write_blocks", elsewhere)
    with pytest.raises(PermissionError):
        engine.run_unit(store.root, "lm", "replace-p0-s0", 0)


def test_a_read_only_data_set_lacking_a_cache_the_run_needs_is_refused_before_the_run(tmp_path, lm_data_dir,
                                                                                        monkeypatch):
    """A colleague's data set (read-only to this user) without the BPE of this lm.vocab_size or the
    token blocks of this lm.block_size: each unit failed on it, one line in its own log, after the run had
    started. The launcher's check now refuses it, naming the folder, what it lacks and what to do. Root
    writes anywhere, so the folder is made to read as another user's."""
    import shutil

    from collapse_hpc import experiments
    from collapse_hpc.errors import UserError
    from collapse_hpc.experiments.lm import caches, data
    from collapse_hpc.experiments.lm.tokenizer import bpe_tokenizer

    shared = tmp_path / "shared"
    shutil.copytree(lm_data_dir, shared)
    for cache in ("blocks", "base"):  # what other tests built there
        shutil.rmtree(shared / "tiny" / cache, ignore_errors=True)
    folder = (shared / "tiny").absolute()
    lm = experiments.get("lm")
    monkeypatch.setattr(caches, "writable", lambda path: Path(path).absolute() != folder)
    def refused(tag, lacks, **knobs):
        _, run = _run(tmp_path / tag, shared, **knobs)
        with pytest.raises(UserError) as e:
            lm.check(run)
        assert str(e.value).startswith(f"{folder}: not writable by you, and it lacks {lacks}"), e.value
        assert "prepare the data set into a data_dir of yours" in str(e.value)

    refused("vocab", "the BPE tokenizer of lm.vocab_size 500 (tokenizer-bpe500/)", vocab_size=500)
    refused("blocks", "the token blocks of lm.block_size 12 (blocks/", block_size=12)
    tokenizer = bpe_tokenizer(shared, "tiny", 300)
    for split in ("train", "validation", "test"):  # built, as by the folder's owner: nothing is lacking
        data.load_blocks(shared, "tiny", split, tokenizer, 12)
    _, run = _run(tmp_path / "built", shared, block_size=12)
    lm.check(run)
    refused("base", "the tiny base model of these lm knobs (base/", block_size=12, pretrained=True)


def test_a_read_only_cache_folder_in_a_writable_data_set_is_refused_before_the_run(tmp_path, lm_data_dir,
                                                                                    monkeypatch, capsys):
    """The data set's folder writable, its blocks/ not (a colleague's caches kept read-only): the check
    looked at the data set's folder alone, and each unit failed on the blocks' lock file once the run had
    started. `collapse-hpc run` now refuses it in one line naming blocks/, exit 2, before it writes
    anything. Root writes anywhere, so blocks/ is made to read as another user's."""
    import yaml
    from collapse_hpc import cli, experiments
    from collapse_hpc.experiments.lm import caches

    shared = tmp_path / "shared"
    shutil.copytree(lm_data_dir, shared)
    shutil.rmtree(shared / "tiny" / "blocks", ignore_errors=True)  # what other tests built there
    (shared / "tiny" / "blocks").mkdir()
    blocks = (shared / "tiny" / "blocks").absolute()
    monkeypatch.setattr(caches, "writable", lambda path: Path(path).absolute() != blocks)
    raw = {"name": "t", "generations": 1, "seeds": [0], "regimes": ["replace"], "executor": "debug",
           "data_dir": str(shared), "lm": {**LM, "block_size": 12}}  # not cached
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert cli.main(["run", str(config), "--run", str(tmp_path / "run"), "--only", "lm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{blocks}: not writable by you, and it lacks the token blocks of lm.block_size 12 (blocks/" in err, err
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(caches, "writable", lambda path: True)  # its owner: the same run is let through
    experiments.get("lm").check(experiments.config_from_dict(raw))


# ------------------------------------------------------------------ knobs of how a generation runs

TIMINGS = ("seconds", "tokens_per_s", "startup")  # wall-clock: differ between any two runs


def _values(unit: Path) -> dict:
    """Every file of a finished unit as its values, wall-clock timings left out."""
    def untimed(v):
        if isinstance(v, dict):
            return {k: untimed(x) for k, x in v.items() if not any(t in k for t in TIMINGS)}
        return [untimed(x) for x in v] if isinstance(v, list) else v

    out = {}
    for rel in json.loads((unit / "manifest.json").read_text())["files"]:
        p = unit / rel
        if p.suffix == ".parquet":
            t = pq.read_table(p)
            out[rel] = t.select([c for c in t.column_names if not any(x in c for x in TIMINGS)]).to_pylist()
        elif p.suffix == ".json":
            out[rel] = untimed(json.loads(p.read_text()))
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.mark.slow
def test_a_knob_marked_exact_leaves_a_generation_as_it_was_and_one_marked_inexact_does_not(tmp_path, lm_data_dir):
    """knob(hashed=False) says a run resumes after the knob changed; exact says the results stay bit for
    bit (checkpoint_every_steps only adds checkpoints), exact=False that they may not (micro_batch_size
    changes the dropout masks: equal in distribution only)."""
    from collapse_hpc.config import how_it_runs
    from collapse_hpc.experiments.lm.config import LMConfig

    assert how_it_runs(LMConfig)["checkpoint_every_steps"] and not how_it_runs(LMConfig)["micro_batch_size"]
    made = {}
    runs = {"base": {}, "checkpoints": {"checkpoint_every_steps": 1}, "micro": {"micro_batch_size": 4}}
    for name, knobs in runs.items():
        store, run = _run(tmp_path / name, lm_data_dir, generations=1, regimes=("replace:0",), **knobs)
        _execute(store, run)
        made[name] = _values(store.root / "lm" / "replace-p0-s0" / "gen_000")
    assert made["checkpoints"] == made["base"]
    assert made["micro"]["model/model.safetensors"] != made["base"]["model/model.safetensors"]


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _summary_without_epochs(path: Path) -> None:
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "best_epoch"}))


@pytest.mark.parametrize("damaged, damage, sample_from, said", [
    ("model/model.safetensors", _cut, "best", "model: does not read ("),
    ("model_last/model.safetensors", _cut, "last", "model_last: does not read ("),
    ("model/training.json", _cut, "best", "training.json: does not read (Expecting"),
    ("model/training.json", lambda p: p.write_bytes(b"\xff\xfe garbage"), "best", "training.json: does not read ("),
    ("model/training.json", lambda p: p.write_text("[1, 2]"), "best", "training.json: not a JSON mapping"),
    ("model/training.json", _summary_without_epochs, "last", "training.json: best_epoch missing or not numbers"),
], ids=["weights cut short", "last weights cut short", "summary cut short", "summary not UTF-8",
        "summary a list", "summary without best_epoch"])
def test_a_published_model_cut_short_is_trained_again_to_the_same_weights(tmp_path, lm_data_dir, caplog, damaged,
                                                                          damage, sample_from, said):
    # model/ of an unfinished generation is published whole (renamed in); a node's crash before its data
    # reached the disk, or a stopped copy, left it cut short, and every redo failed on loading it
    # (safetensors' own error, a line with no way out; a raw JSONDecodeError for its training.json). With
    # sample_from: last the same training publishes model_last/ too, and sampling reads it: cut short, it
    # is trained again with model/
    from collapse_hpc.experiments.lm.model import model_fingerprint

    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), sample_from=sample_from)
    assert _execute(store, run)["done"] == 1
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    folders = ("model", "model_last") if sample_from == "last" else ("model",)
    before = {"weights": {f: model_fingerprint(unit / f) for f in folders},
              "metrics": pq.read_table(unit / "metrics.parquet")}
    (unit / "manifest.json").unlink()
    damage(unit / damaged)
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert _execute(store, run)["done"] == 1
    assert any(said in r.getMessage() and "training it again" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert {f: model_fingerprint(unit / f) for f in folders} == before["weights"]
    after = pq.read_table(unit / "metrics.parquet")
    same = [c for c in after.column_names if "seconds" not in c and "per_s" not in c]
    assert after.select(same).equals(before["metrics"].select(same))


@pytest.mark.slow
def test_a_refused_read_under_the_debug_executor_is_one_line_not_torchs_rank_traceback(tmp_path, lm_data_dir):
    """Under the debug executor the unit runs in the command's own process, in the process group it joined, whose
    hook prefixes an escaped exception's traceback with [rank0]: a refused read (NotRead) that stops the unit
    there is still the one line and exit status 2 of bad input, its model kept."""
    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",))
    assert _execute(store, run)["done"] == 1
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    (unit / "manifest.json").unlink()  # unfinished: its redo reads the published model's summary
    summary = (unit / "model" / "training.json").absolute()
    script = ("import errno, sys; from _pytest.monkeypatch import MonkeyPatch; from pathlib import Path; "
              "from tests.helpers import refuse_reads; from collapse_hpc.cli import main; "
              "refuse_reads(MonkeyPatch(), Path(sys.argv[1]), errno.EIO); sys.exit(main(sys.argv[2:]))")
    proc = subprocess.run([sys.executable, "-c", script, str(summary), "run", str(store.config_path), "--run",
                           str(store.root), "--executor", "debug"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "COLLAPSE_THREADS": "1"}, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "[rank0]" not in proc.stderr, proc.stderr
    assert lines == [f"error: model file {summary}: not read ({os.strerror(errno.EIO)}): kept as it is (not trained "
                     f"again); gen 0 goes on from it once the file reads again (its permissions, the file system): "
                     f"run the same command again"], proc.stderr
    assert summary.is_file() and not (unit / "manifest.json").exists()


@pytest.mark.parametrize("refused, refusal, refuse", [
    ("model/config.json", errno.EACCES, refuse_reads),
    ("model/model.safetensors", errno.EACCES, refuse_reads),  # at its open
    ("model_last/model.safetensors", errno.EIO, safetensors_refuses),  # past it: safetensors' words alone
    ("model/training.json", errno.EIO, refuse_reads),  # a redo past training reads the summary alone
], ids=["config not permitted", "weights not permitted", "last weights with an I/O error", "summary with an I/O error"])
def test_a_published_model_the_file_system_will_not_read_now_is_kept_and_gone_on_from_once_it_reads(
        tmp_path, lm_data_dir, monkeypatch, refused, refusal, refuse):
    """A read of a published model refused by the file system (a permissions slip, an I/O error on a network
    file system) was taken for damage: the model was removed and, its checkpoints gone with its publishing,
    the generation trained from its start. Now the unit stops in one line naming the file and the error,
    the model kept as it is; once the file reads, the unit goes on from it, training nothing again."""
    from collapse_hpc import engine
    from collapse_hpc.errors import UserError

    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",), sample_from="last")
    assert _execute(store, run)["done"] == 1
    unit = store.root / "lm" / "replace-p0-s0" / "gen_000"
    (unit / "manifest.json").unlink()  # unfinished: its redo reads the published model
    before = {p: (p.stat().st_ino, p.read_bytes()) for f in ("model", "model_last") for p in (unit / f).iterdir()}
    target = (unit / refused).absolute()
    refuse(monkeypatch, target, refusal)
    with pytest.raises(UserError) as said:
        engine.run_unit(store.root, "lm", "replace-p0-s0", 0)
    monkeypatch.undo()
    assert str(said.value) == (
        f"model file {target}: not read ({os.strerror(refusal)}): kept as it is (not trained again); gen 0 goes "
        f"on from it once the file reads again (its permissions, the file system): run the same command again")
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in before} == before
    assert engine.run_unit(store.root, "lm", "replace-p0-s0", 0) == "done"
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in before} == before  # not trained again


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["replace:0", "verifier-filter"])
def test_no_later_generation_reads_the_volatile_files(tmp_path, lm_data_dir, regime):
    """Lm.volatile (metrics.parquet, training_curve.parquet, model/training.json: seconds and tokens/s beside
    results) is left out of the digest generation 1 is bound to, so a redo of generation 0 that measured other
    seconds keeps it. Generation 1, under the paper's regime and one that reads generation 0's sequence_ppl.parquet
    besides, is built to the same bytes on them holding other numbers or garbage (tests.helpers.volatile_unread:
    changed where the redo or the engine would leave them, not around their checks)."""
    from collapse_hpc import engine
    from tests.helpers import volatile_unread

    store, run = _run(tmp_path, lm_data_dir, regimes=(regime,))
    before, after = volatile_unread(store, "lm", engine.plan(run)[0].variant.name)
    assert {"model/model.safetensors", "train_set.parquet", "shards/part-000-00000.parquet", "test_ppl.parquet",
            "sequence_ppl.parquet", "examples.parquet"} <= before.keys()
    assert after == {"other numbers": before, "unreadable": before}
