"""The generation loop: resume skips finished units and redoes unfinished ones; the plan is frozen
once (plan.json) and read by jobs, status and the report."""
import errno
import json
import os
import time

import pyarrow.parquet as pq
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.launch import debug
from collapse_hpc.store import read_manifest
from collapse_hpc.store.manifest import BINDING
from collapse_hpc.store.live import folders_made, not_yet_made
from collapse_hpc.verify import verify_run
from tests import helpers
from tests.helpers import edit_manifest, refuse_reads, toy_run


def gen(store, g):
    return store.unit_dir("toy", "replace-p0-s0", "chain", g)


def test_run_then_resume_skips_everything(tmp_path):
    store, run = toy_run(tmp_path, generations=3)
    chains = engine.plan(run)
    assert [j.label for j in chains[0].jobs] == [f"toy/replace-p0-s0/gen_{g:03d}" for g in range(3)]
    assert debug.execute(store, run, chains) == {"done": 3, "skipped": 0}
    m = read_manifest(gen(store, 2))
    assert m["files"]["metrics.parquet"]["rows"] == 10 and m["config_hash"] == run.hash()
    assert debug.execute(store, run, chains) == {"done": 0, "skipped": 3}
    assert verify_run(store.root) == 0


def test_unfinished_generation_is_cleaned_and_redone(tmp_path):
    store, run = toy_run(tmp_path, generations=3)
    debug.execute(store, run, engine.plan(run))
    before = pq.read_table(gen(store, 2) / "metrics.parquet")
    # generation 2 "died": no manifest, a stray file and a temporary left behind
    os.remove(gen(store, 2) / "manifest.json")
    (gen(store, 2) / "stray.txt").write_text("half")
    (gen(store, 2) / ".tmp-metrics.parquet.x").write_text("half")
    assert debug.execute(store, run, engine.plan(run)) == {"done": 1, "skipped": 2}
    assert sorted(p.name for p in gen(store, 2).iterdir()) == ["manifest.json", "metrics.parquet"]
    assert pq.read_table(gen(store, 2) / "metrics.parquet").equals(before)  # deterministic redo


def test_failed_generation_leaves_no_manifest(tmp_path):
    store, run = toy_run(tmp_path, generations=3, fail_at=1)
    with pytest.raises(RuntimeError, match="toy failure"):
        debug.execute(store, run, engine.plan(run))
    assert read_manifest(gen(store, 0)) is not None
    assert read_manifest(gen(store, 1)) is None


def test_verify_names_the_corrupted_file(tmp_path, capsys):
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    f = gen(store, 1) / "metrics.parquet"
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert str(f) in out and "--unit 1" in out


def test_a_manifest_edited_since_written_is_redone_not_skipped(tmp_path, caplog, capsys):
    """A file's sha256 changed in the manifest, its size not: the skip check (sizes) passed it, and only verify
    (every file hashed) told. The manifest's own checksum catches it at the cost of reading the manifest."""
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    m = json.loads((gen(store, 1) / "manifest.json").read_text())  # by hand: its own checksum left as it was
    m["files"]["metrics.parquet"]["sha256"] = "0" * 64
    (gen(store, 1) / "manifest.json").write_text(json.dumps(m))
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert "edited since it was written" in out and "--unit 1" in out
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert debug.execute(store, run, engine.plan(run)) == {"done": 1, "skipped": 1}
    said = [r.getMessage() for r in caplog.records if "edited since it was written" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(str(gen(store, 1) / "manifest.json")) and "redone" in said[0]
    assert verify_run(store.root) == 0


def test_a_byte_changed_in_place_since_its_unit_finished_is_redone_not_skipped(tmp_path, caplog, capsys):
    """A bit flip or a hand edit keeps a file's size: the skip check (sizes) passed it, run said every unit
    finished and verify alone told. A file written after its manifest is hashed by the skip check too."""
    store, run = toy_run(tmp_path, generations=3)
    debug.execute(store, run, engine.plan(run))
    f, manifest = gen(store, 1) / "metrics.parquet", gen(store, 1) / "manifest.json"
    before = f.read_bytes()
    written = manifest.stat().st_mtime_ns
    os.utime(manifest, ns=(written - 10**9, written - 10**9))  # finished a second ago
    data = bytearray(before)
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    assert verify_run(store.root) == 1 and str(f) in capsys.readouterr().out
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert debug.execute(store, run, engine.plan(run)) == {"done": 1, "skipped": 2}
    assert f"toy/replace-p0-s0/gen_001: {f}: sha256 mismatch; the unit is redone" in caplog.text
    assert f.read_bytes() == before and verify_run(store.root) == 0
    os.utime(f)  # touched, the bytes as listed: hashed, found the same, not redone
    assert debug.execute(store, run, engine.plan(run)) == {"done": 0, "skipped": 3}


def test_a_manifest_without_its_own_checksum_or_only_reformatted_still_counts(tmp_path):
    """An older version's manifest has no checksum of itself; a tool that re-indents one changes no value."""
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    edit_manifest(gen(store, 0), lambda m: None, older=True)
    (gen(store, 1) / "manifest.json").write_text(json.dumps(read_manifest(gen(store, 1)), indent=1))
    assert debug.execute(store, run, engine.plan(run)) == {"done": 0, "skipped": 2}
    assert verify_run(store.root) == 0


def test_array_part_is_redone_when_generations_change(tmp_path):
    store, run = toy_run(tmp_path, generations=2)
    from collapse_hpc import experiments
    unit = gen(store, 0)
    debug.execute(store, run, engine.plan(run))

    class Array:  # a fake array experiment: an array part holds every generation of its config
        name, shape = "toy", "array"

        @staticmethod
        def generations(run):
            return run.generations_of("toy")

    assert engine.finished(store, unit, Array, run)
    longer = experiments.config_from_dict({**run.to_dict(), "generations": 5})
    assert not engine.finished(store, unit, Array, longer)  # a part holds all its generations
    assert engine.finished(store, unit, type("Chain", (), {"name": "toy", "shape": "chain"}), longer)


def test_verify_checks_the_config_hash_and_reports_extra_files(tmp_path, capsys):

    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    (gen(store, 1) / "stray.txt").write_text("not in the manifest")
    assert verify_run(store.root) == 0  # reported, not a failure: the recorded files are intact
    out = capsys.readouterr().out
    assert f"EXTRA {gen(store, 1) / 'stray.txt'}" in out and "1 extra files" in out
    edit_manifest(gen(store, 0), lambda m: m.update(config_hash="0" * 16))
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH {gen(store, 0)}: made under config {'0' * 16}" in out and run.hash() in out
    assert "--unit 0" in out and "1 with mismatches" in out


def test_verify_writes_names_as_they_are_held(tmp_path, capsys):
    """A stray file's name and the run folder's with a newline, a terminal's ESC and CSI, a right-to-left
    override: each line of verify stays one line and shows them escaped (the summary line wrote the run
    folder's raw), as an error line does (errors.one_line)."""
    store, run = toy_run(tmp_path / "run\x1b[31m\u202e", generations=1)
    debug.execute(store, run, engine.plan(run))
    (gen(store, 0) / "stray\n\x9b2J.txt").write_text("not in the manifest")
    assert verify_run(store.root) == 0
    lines = capsys.readouterr().out.splitlines()
    root = str(store.root).replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
    assert lines[0] == f"EXTRA {root}/toy/{gen(store, 0).parent.name}/gen_000/stray\\n\\x9b2J.txt: not in its " \
                       f"manifest (not verified)"
    assert lines[1].startswith(f"{root}: 1 unit verified") and len(lines) == 2


def test_regime_override_is_what_the_unit_sees_and_what_its_manifest_records(tmp_path):
    from collapse_hpc import experiments
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"generations": 1, "executor": "debug", "toy": {"rows": 5},
                                        "regimes": ["replace", {"name": "replace", "toy": {"rows": 7}}]})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    assert debug.execute(store, run, engine.plan(run)) == {"done": 2, "skipped": 0}
    plain = store.unit_dir("toy", "replace-p0-s0", "chain", 0)
    special = store.unit_dir("toy", "replace-p0-rows7-s0", "chain", 0)
    assert pq.read_table(plain / "metrics.parquet").num_rows == 5
    assert pq.read_table(special / "metrics.parquet").num_rows == 7
    a, b = read_manifest(plain), read_manifest(special)
    assert a["config"]["toy"]["rows"] == 5 and b["config"]["toy"]["rows"] == 7
    assert b["config"]["regime"] == {"name": "replace", "keep_fraction": 0.0, "toy": {"rows": 7}}
    # the regime as values (a reader needs no label to parse), its label beside them for folders
    assert b["regime"] == {"kind": "replace", "keep_fraction": 0.0, "verifier_quantile": 0.5, "label": "replace-p0"}
    assert a["variant_hash"] != b["variant_hash"] and a["config_hash"] == b["config_hash"] == run.hash()
    assert verify_run(store.root) == 0


# ------------------------------------------------------------------ the frozen plan (plan.json)

def test_the_plan_is_written_once_with_every_variant_its_config_and_hash(tmp_path):
    import json

    from collapse_hpc import experiments
    from collapse_hpc.store import RunStore

    run = experiments.config_from_dict({"generations": 2, "seeds": [0, 1], "executor": "debug", "toy": {"rows": 5},
                                        "regimes": ["replace", {"name": "replace", "toy": {"rows": 7}}]})
    store = RunStore(tmp_path / "run")
    engine.open_run(store, run)
    plan = json.loads(store.plan_path.read_text())
    assert plan["config_hash"] == run.hash() and plan["generations"] == {"toy": 2}
    by_name = {c["variant"]: c for c in plan["chains"]}
    assert sorted(by_name) == ["replace-p0-rows7-s0", "replace-p0-rows7-s1", "replace-p0-s0", "replace-p0-s1"]
    special = by_name["replace-p0-rows7-s1"]
    assert special["config"]["toy"]["rows"] == 7 and special["seed"] == 1 and special["units"] == 2
    assert special["regime"] == {"kind": "replace", "keep_fraction": 0.0, "verifier_quantile": 0.5,
                                 "overrides": {"rows": 7}, "label": "replace-p0"}
    written = store.plan_path.stat().st_mtime_ns
    engine.open_run(store, run)  # the same config again: the plan stands as it was written
    assert store.plan_path.stat().st_mtime_ns == written
    debug.execute(store, run, engine.plan(run))
    unit = read_manifest(store.unit_dir("toy", "replace-p0-rows7-s1", "chain", 1))
    assert unit["variant_hash"] == special["variant_hash"] and unit["config"] == special["config"]
    longer = experiments.config_from_dict({**run.to_dict(), "generations": 3})
    engine.open_run(store, longer)  # a longer chain is a new plan
    assert {c["units"] for c in json.loads(store.plan_path.read_text())["chains"]} == {3}


def test_jobs_status_and_report_read_the_plan_instead_of_planning_again(tmp_path, monkeypatch, capsys):
    from collapse_hpc import experiments
    from collapse_hpc.launch.listing import show
    from collapse_hpc.report import collect

    store, run = toy_run(tmp_path, generations=2)
    chains = engine.plan(run)
    toy = type(experiments.get("toy"))

    def replanned(self, run):
        raise AssertionError("planned again")

    monkeypatch.setattr(toy, "variants", replanned)
    monkeypatch.setattr(toy, "units", replanned)
    assert debug.execute(store, run, chains) == {"done": 2, "skipped": 0}
    assert show(store.root) == 0 and "generation 1 reached (2/2 done)" in capsys.readouterr().out
    info = collect.load_run(store.root).variant("toy", "replace-p0-s0")
    assert (info.regime, info.seed, info.planned) == ("replace-p0", 0, 2)


def test_a_unit_outside_the_plan_or_without_one_is_one_error_line(tmp_path):
    from collapse_hpc.errors import UserError

    store, run = toy_run(tmp_path, generations=1)
    with pytest.raises(UserError, match="no variant 'replace-p0.5-s0' in this run's plan"):
        engine.run_unit(store.root, "toy", "replace-p0.5-s0", 0)
    store.plan_path.unlink()
    with pytest.raises(UserError, match=r"plan.json: missing .*; run or submit the run's config again"):
        engine.run_unit(store.root, "toy", "replace-p0-s0", 0)
    store.plan_path.write_text("{not json")
    with pytest.raises(UserError, match="not a plan"):
        engine.run_unit(store.root, "toy", "replace-p0-s0", 0)


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_plan_the_file_system_will_not_read_is_said_not_planned_anew(tmp_path, monkeypatch, capsys, refusal):
    """plan.json read refused went up as a raw OSError (opening the run, a unit reading it), or counted as no plan:
    finished units were judged without their variant's hash, and a hand-edited config's original was not found
    back; verify and the report went on without it. Each says it in one line, the plan kept."""
    from collapse_hpc import cli
    from collapse_hpc.store import made
    from collapse_hpc.store.reads import NotRead

    store, run = toy_run(tmp_path, generations=1)
    kept = (store.plan_path.stat().st_ino, store.plan_path.read_bytes())
    refuse_reads(monkeypatch, store.plan_path, refusal)
    said = (f"plan {store.plan_path}: not read ({os.strerror(refusal)}): the run and its plan are kept as they are "
            f"(not planned anew) once the file reads again (its permissions, the file system): run the same "
            f"command again")
    for reads in (lambda: engine.open_run(store, run), lambda: engine.run_unit(store.root, "toy", "replace-p0-s0", 0),
                  lambda: engine.planned_hashes(store),  # what finished units are judged by (verify, launchers)
                  lambda: made.inferred(store.root, {}, "0" * 16, {})):  # the config made, found back
        with pytest.raises(NotRead) as e:
            reads()
        assert str(e.value) == said
    for command in ("verify", "aggregate"):  # neither goes on without the plan (the folders alone, the manifests)
        capsys.readouterr()
        assert cli.main([command, str(store.root)]) == 2
        assert capsys.readouterr().err == f"error: {said}\n"
    monkeypatch.undo()
    assert (store.plan_path.stat().st_ino, store.plan_path.read_bytes()) == kept
    assert engine.run_unit(store.root, "toy", "replace-p0-s0", 0) == "done"


@pytest.mark.parametrize("section,says", [({"lm": {"model": "facebook/opt-13b"}}, "lm: one task of replace-p0-s0"),
                                          ({"vae": {"dataset": "mnist", "eval_samples": 30_000_000}},
                                           "vae: one task of replace-p0-s0")])
def test_the_memory_guard_sees_the_chain_experiments_too(section, says):
    """lm and vae estimate their memory as gmm and gaussian do (no experiment may leave it out)."""
    with pytest.raises(UserError, match=f"{says} would hold about .* GiB in memory, more than"):
        engine.check(experiments.config_from_dict(section))
    small = {name: {k: v for k, v in keys.items() if k == "dataset"} for name, keys in section.items()}
    engine.check(experiments.config_from_dict(small))


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_hub_model_too_large_is_not_told_to_lower_the_tiny_model_s_sizes(executor):
    """The refusal of a hub model too large advised lowering lm.hidden_size, lm.layers and the tiny OPT's
    other keys, which a hub model ignores: it names what does apply there."""
    profile = {"profile": "slurm/example-cluster.yaml"} if executor == "slurm" else {}
    run = experiments.config_from_dict({"executor": executor, **profile, "lm": {"model": "facebook/opt-13b"}})
    with pytest.raises(UserError, match="lm: one task of replace-p0-s0 would hold about") as refused:
        engine.check(run)
    said = str(refused.value)
    assert "lm.hidden_size" not in said and "lower lm.micro_batch_size or lm.sample_batch_size" in said, said
    assert ("under a profile whose mem holds it" in said) == (executor == "local"), said
    assert ("lm.zero_stage: 3" in said) == (executor == "slurm"), said
    tiny = experiments.config_from_dict({"lm": {"model": "tiny", "hidden_size": 1_000_000}})
    with pytest.raises(UserError, match=r"lower lm.hidden_size, lm.layers, lm.ffn_size"):
        engine.check(tiny)


@pytest.mark.parametrize("key", ["capacity", "batch_size", "latent", "classifier_hidden"])
def test_a_vae_size_no_machine_holds_is_refused_before_the_run_naming_its_keys(key):
    """vae.capacity: 1e8 (or batch_size, latent, classifier_hidden) passed every check and failed only in
    the unit, after the run folder existed: the VAE's memory counted its images alone. It now counts the
    model, the classifier and a batch's activations, and the refusal names the section's size keys."""
    with pytest.raises(UserError, match=r"vae: one task of replace-p0-s0 would hold about .* GiB in memory, "
                                        r"more than 64 GiB; lower vae.capacity, vae.latent, vae.batch_size"):
        engine.check(experiments.config_from_dict({"vae": {key: 100_000_000}}))
    engine.check(experiments.config_from_dict({"vae": {key: 64}}))


def test_a_unit_larger_than_the_machine_that_runs_it_is_refused_before_the_run(tmp_path):
    """gaussian.samples: [1000000000] on a laptop (a typo of 1000) planned 1000 parts of 22 GiB each, under
    the 64 GiB bound: the local launcher started them one after another, each killed by the OOM killer
    after two minutes. A run whose units run on this machine (local, debug, by hand) now also refuses a
    unit over its memory; on Slurm a job's node may have more."""
    import subprocess
    import sys

    from collapse_hpc.machine import total_memory

    big = {"gmm": {"enabled": False}, "lm": {"enabled": False}, "vae": {"enabled": False},
           "gaussian": {"generations": 2, "samples": [100_000_000], "replicates": 1, "chunk_replicates": 1}}
    run = experiments.config_from_dict(big)
    need = engine.check(run)  # under 64 GiB: passes where nothing says which machine runs it
    assert need is not None and 2**30 < need < 64 * 2**30
    with pytest.raises(UserError, match=r"gaussian: one task of replace-p0-samples100000000-s0 would hold about "
                                        r"5.22 GiB in memory, more than this machine's 1 GiB, where the local "
                                        r"executor runs it; lower gaussian.replicates"):
        engine.check(run, memory=2**30)
    memory = total_memory()
    assert memory is not None and memory > 2**30  # /proc/meminfo says it (Linux)
    samples = int(2 * memory / 56)  # 7 float64 arrays of n (gaussian.WORKING_ARRAYS + pool): twice this machine
    if samples * 56 > 60 * 2**30:
        pytest.skip("this machine holds units near the 64 GiB bound every run has")
    cfg = tmp_path / "big.yaml"
    cfg.write_text(json.dumps({**big, "gaussian": {**big["gaussian"], "samples": [samples]}}))
    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "run", str(cfg), "--run", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "more than this machine's" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_gpu_units_estimate_is_weighed_against_this_machine_only_where_it_has_no_gpu():
    """A GPU unit's memory estimate is its GPU's (the lm's weights and caches, the vae's): a workstation
    whose GPU holds more than its own memory must not be refused; without a GPU the unit runs on the CPU."""
    run = experiments.config_from_dict({"gmm": {"enabled": False}, "lm": {"enabled": False},
                                        "gaussian": {"enabled": False}, "vae": {}})
    need = engine.check(run)
    assert need is not None and engine.check(run, memory=need // 2, gpus_here=True) is None
    with pytest.raises(UserError, match="vae: one task of replace-p0-s0 would hold about .* more than this machine's"):
        engine.check(run, memory=need // 2, gpus_here=False)


def test_a_file_replaced_by_a_folder_is_named_so_not_missing(tmp_path, capsys):
    store, run = toy_run(tmp_path, generations=1)
    debug.execute(store, run, engine.plan(run))
    f = gen(store, 0) / "metrics.parquet"
    f.unlink()
    f.mkdir()
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH {f}: a folder, not the file its manifest lists" in out and "--unit 0" in out
    assert debug.execute(store, run, engine.plan(run)) == {"done": 1, "skipped": 0}  # redone, the folder gone
    assert f.is_file() and verify_run(store.root) == 0


@pytest.mark.parametrize("key, value, said", [("seconds", "soon", "its 'seconds' is text, not a number"),
                                              ("resources", [1], "its 'resources' is a list, not a mapping"),
                                              ("packages", "none", "its 'packages' is text, not a mapping"),
                                              ("volatile", "metrics.parquet", "its 'volatile' is text, not a list"),
                                              ("volatile", [1], "its 'volatile' are not file names")])
def test_a_manifest_of_another_shape_is_corrupt_for_status_verify_and_the_report(tmp_path, capsys, key, value, said):
    """An older manifest (no checksum of its own) edited into valid JSON of another shape: status stopped on
    int('soon') and the report on float('soon'), each with a traceback; now the unit is one that does not verify."""
    from collapse_hpc import cli

    store, run = toy_run(tmp_path, generations=1)
    debug.execute(store, run, engine.plan(run))
    edit_manifest(gen(store, 0), lambda m: m.update({key: value}), older=True)
    assert verify_run(store.root) == 1
    assert f"manifest is corrupt ({said})" in capsys.readouterr().out
    assert cli.main(["status", str(store.root)]) == 0
    assert said in capsys.readouterr().out
    assert cli.main(["aggregate", str(store.root)]) == 0
    assert "toy/replace-p0-s0: 0 of 1 generations finished" in (store.root / "report" / "results.md").read_text()


def test_a_config_whose_sections_are_all_disabled_names_the_experiments_it_left_out():
    """lm and vae disabled, gmm and gaussian without a section: the line said every experiment was disabled, and
    pointed at lm, while the ones the config left out were what did not run."""
    run = experiments.config_from_dict({"lm": {"enabled": False}, "vae": {"enabled": False}})
    with pytest.raises(UserError) as e:
        engine.check(run, "c.yaml")
    said = str(e.value)
    assert said.startswith("c.yaml: every experiment it has a section for is disabled (lm, vae: enabled: false), "
                           "and one without a section does not run ("), said
    assert "gmm" in said.split("does not run")[1] and "gaussian" in said.split("does not run")[1], said
    assert said.endswith(f"; enable one, e.g. --set {said.split('does not run (')[1].split(',')[0]}.enabled=true")


def test_units_refusing_side_by_side_remove_only_their_own_empty_folders(tmp_path):
    """The units of an experiment new to the run refuse the same input (a changed cache file) side by side, each
    removing the folders it made (the unit's, its variant's, the experiment's): one looked at a folder another had
    just removed, or removed one another had just made a unit in, and the unit ended on "No such file or directory"
    or "Directory not empty", not its refusal. Another unit comes and goes here in a loop, in another process."""
    root = tmp_path / "run"
    root.mkdir()
    unit = root / "toy" / "a" / "gen_000"
    with helpers.churning(root, "toy/b/gen_000"):
        deadline = time.time() + 3
        while time.time() < deadline:
            made = not_yet_made(unit, root)
            folders_made(unit, lambda: (unit / BINDING).write_text("{}"))
            engine._refused(unit, made)
            assert not unit.parent.exists()


def _removed_once(folder, when):
    """A thread that removes `folder` (rm -rf) once `when` exists, as a user does while the run works in it."""
    import shutil
    import threading

    def remove():
        deadline = time.time() + 20
        while not when.exists() and time.time() < deadline:
            time.sleep(0.01)
        shutil.rmtree(folder, ignore_errors=True)

    thread = threading.Thread(target=remove, daemon=True)
    thread.start()
    return thread


def test_a_run_folder_removed_while_its_unit_runs_stops_it_in_one_line_and_is_not_made_again(tmp_path):
    """rm -rf RUN while a unit ran: its next writes made the run folder's skeleton again (the unit's folder, its
    files, .units) and it ended on "No such file or directory"."""
    store, run = toy_run(tmp_path, generations=2, sleep_s=2.0)
    remover = _removed_once(store.root, gen(store, 0) / "steps" / "0.done")
    with pytest.raises(UserError, match="the run folder was removed while the run was working in it"):
        debug.execute(store, run, engine.plan(run))
    remover.join()
    assert not store.root.exists()


def test_a_write_into_a_removed_run_folder_makes_none_of_it_again(tmp_path):
    from collapse_hpc.store import atomic
    from collapse_hpc.store.live import at_work
    from collapse_hpc.store.lock import working

    root = tmp_path / "run"
    root.mkdir()
    with at_work(root):
        (tmp_path / "run").rmdir()
        with pytest.raises(UserError, match=f"{root}: the run folder was removed"):
            atomic.write_json(root / "toy" / "a" / "gen_000" / "x.json", {})
        with pytest.raises(UserError, match="was removed"), working(root):
            pass
        with pytest.raises(UserError, match="was removed"):
            folders_made(root / "logs" / "ranks")
    assert not root.exists()


def test_a_run_folder_whose_stat_fails_otherwise_than_gone_is_not_judged_removed(tmp_path, monkeypatch):
    """A shared file system's hiccup (EIO, a soft NFS mount's timeout) or a folder above it made unsearchable failed
    the run folder's stat: the unit ended on "the run folder was removed" though it was there, and its next writes
    were refused alike."""
    import errno
    import os

    from collapse_hpc.store import atomic
    from collapse_hpc.store.live import at_work, removed

    root = tmp_path / "run"
    root.mkdir()
    stat = os.stat
    failing = set()

    def flaky(path, *args, **kwargs):
        if str(path) in failing:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", flaky)
    with at_work(root):
        failing.add(str(root))
        assert not removed(root)
        atomic.write_json(root / "toy" / "gen_000" / "x.json", {})
    assert (root / "toy" / "gen_000" / "x.json").is_file()
    with at_work(root):  # not read as it began: judged by nothing
        failing.clear()
        assert not removed(root)
