"""A unit's manifest binds it to its folder (experiment, variant, unit, the variant's hash) and to
the content of the generations it was built on; every reuse checks that binding, for every
registered experiment (a new one cannot skip it).

The experiments' unit bodies are replaced by a small writer here: what is tested is the engine's
and the store's logic around any unit, fast enough to run for each experiment."""
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError
from collapse_hpc.store import RunStore, read_manifest
from collapse_hpc.verify import verify_run


def _body(calls):
    def run_unit(ctx):
        calls.append((ctx.variant.name, ctx.index))
        prev = [read_manifest(p)["files"]["out.parquet"]["sha256"] for p in ctx.previous]
        # the attempt number too: a redone unit has other content than the one it replaces
        ctx.write_table("out.parquet", pa.table({"variant": [ctx.variant.name], "prev": [",".join(prev)],
                                                 "attempt": [len(calls)]}))
    return run_unit


@pytest.fixture(params=experiments.names())
def two_variants(request, tmp_path, monkeypatch):
    """A run of one experiment with two seeds (two variants), each unit done by the writer."""
    name = request.param
    exp = experiments.get(name)
    calls: list = []
    monkeypatch.setattr(exp, "run_unit", _body(calls))
    # the writer reads no data set, so the experiment's own checks (data prepared, model cached)
    # would only test this checkout's data/ folder
    monkeypatch.setattr(exp, "check", lambda run: None)
    run = experiments.config_from_dict({"name": "b", "generations": 2, "seeds": [0, 1], "executor": "debug",
                                        name: {}})
    store = RunStore(tmp_path / "run")
    chains = engine.open_run(store, run)
    for chain in chains:
        for job in chain.jobs:
            assert engine.run_unit(store.root, job.experiment, job.variant, job.index) == "done"
    return store, run, exp, chains, calls


def _unit(store, chain, index):
    return store.unit_dir(chain.experiment, chain.variant.name, chain.shape, index)


def test_a_unit_copied_into_another_variants_folder_is_refused_and_redone(two_variants, capsys):
    store, run, exp, (a, b, *_), calls = two_variants
    assert verify_run(store.root) == 0
    ua, ub = _unit(store, a, 0), _unit(store, b, 0)
    shutil.rmtree(ua)
    shutil.copytree(ub, ua)
    assert not engine.job_done(store, run, a.jobs[0], deep=True)
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert f"its manifest says variant '{b.variant.name}', the folder says '{a.variant.name}'" in out
    calls.clear()
    assert engine.run_unit(store.root, exp.name, a.variant.name, 0) == "done"  # redone, not skipped
    assert calls == [(a.variant.name, 0)]
    assert pq.read_table(ua / "out.parquet").column("variant").to_pylist() == [a.variant.name]
    assert verify_run(store.root) == 0


def test_a_manifest_edited_to_name_the_folder_still_fails_on_the_variant_hash(two_variants, capsys):
    import json

    store, run, exp, (a, b, *_), calls = two_variants
    ua, ub = _unit(store, a, 0), _unit(store, b, 0)
    shutil.rmtree(ua)
    shutil.copytree(ub, ua)
    from collapse_hpc.store.manifest import SELF, own_digest

    m = json.loads((ua / "manifest.json").read_text())
    m["variant"] = a.variant.name
    m[SELF] = own_digest(m)  # edited with its own checksum made again: the binding still tells
    (ua / "manifest.json").write_text(json.dumps(m))
    assert not engine.job_done(store, run, a.jobs[0])
    assert verify_run(store.root) == 1
    assert "its manifest says variant_hash" in capsys.readouterr().out


def test_verifys_printed_command_repairs_a_corrupt_unit(two_variants, capsys):
    """The printed command, run as printed (no rm first), redoes the unit; verify is clean after."""
    import shlex

    from collapse_hpc import cli

    store, run, exp, (a, *_), calls = two_variants
    f = _unit(store, a, 0) / "out.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    capsys.readouterr()
    assert verify_run(store.root) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "redo with:" in ln)
    argv = shlex.split(line.split("redo with:", 1)[1])
    assert argv[0] == "collapse-hpc" and "rm" not in argv
    calls.clear()
    assert cli.main(argv[1:]) == 0
    assert (a.variant.name, 0) in calls
    assert verify_run(store.root) == 0


def test_a_later_generation_built_on_other_content_is_stale(two_variants):
    """Chains: a corrupt generation 0 is refused before anything builds on it; redone with other
    content, it makes generation 1 stale (redone, not skipped)."""
    store, run, exp, (a, *_), calls = two_variants
    if exp.shape != "chain":
        pytest.skip("an array experiment's units are independent (no earlier generations)")
    g0, g1 = _unit(store, a, 0), _unit(store, a, 1)
    g1_manifest = (g1 / "manifest.json").read_bytes()
    f = g0 / "out.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    (g1 / "manifest.json").unlink()
    with pytest.raises(UserError, match="gen_000: an earlier generation is unfinished or does not verify"):
        engine.run_unit(store.root, exp.name, a.variant.name, 1)
    assert engine.run_unit(store.root, exp.name, a.variant.name, 0) == "done"  # the repair
    (g1 / "manifest.json").write_bytes(g1_manifest)  # generation 1 as it was, built on the old generation 0
    assert not engine.job_done(store, run, a.jobs[1], deep=True)
    calls.clear()
    assert engine.run_unit(store.root, exp.name, a.variant.name, 1) == "done"
    assert calls == [(a.variant.name, 1)]
    g0_sha = read_manifest(g0)["files"]["out.parquet"]["sha256"]
    assert pq.read_table(g1 / "out.parquet").column("prev").to_pylist() == [g0_sha]
    assert verify_run(store.root) == 0


def test_launchers_start_a_chain_from_its_first_unfinished_generation(two_variants):
    """A redo of generation 0 unbinds generation 1 (built on the old content), so the launchers
    queue generation 1 behind it although it is done now: one run or submit repairs the chain,
    not two. Where generation 1 is still bound when its turn comes, run_unit skips it."""
    from collapse_hpc.launch import local

    store, run, exp, (a, b, *_), calls = two_variants
    if exp.shape != "chain":
        pytest.skip("an array experiment's units are independent (no earlier generations)")
    assert engine.pending(store, run, a) == []
    f = _unit(store, a, 0) / "out.parquet"
    f.write_bytes(f.read_bytes() + b"x")  # a size that differs: seen without hashing
    assert engine.job_done(store, run, a.jobs[1], deep=True)  # bound to generation 0's manifest
    assert engine.pending(store, run, a) == a.jobs and engine.pending(store, run, b) == []
    lanes, skipped = local._lanes(store, run, [a, b], 0)
    assert [lane.jobs for lane in lanes] == [a.jobs] and skipped == len(b.jobs)
    # the redo writes other content (its attempt number): generation 1 is then redone, not skipped
    assert [engine.run_unit(store.root, exp.name, a.variant.name, j.index) for j in a.jobs] == ["done", "done"]
    assert verify_run(store.root) == 0


def test_finished_generations_redone_because_one_no_longer_verifies_are_said(two_variants, caplog):
    """A run extended by a generation hashes what that generation reads; one that no longer matches its
    manifest (a byte flipped: same size) is redone with every finished generation after it. That was
    silent: a chain's finished work redone without a word (hours of GPU for the paper's)."""
    store, run, exp, (a, *_), calls = two_variants
    if exp.shape != "chain":
        pytest.skip("an array experiment's units are independent (no earlier generations)")
    longer = experiments.config_from_dict({**run.to_dict(), "generations": 3})
    chain = next(c for c in engine.plan(longer) if c.variant.name == a.variant.name)
    first = min(exp.reads(chain.variant, 2))
    f = _unit(store, a, first) / "out.parquet"
    data, kept = bytearray(f.read_bytes()), f.stat().st_mtime_ns
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(kept, kept))  # as a copy that keeps times leaves it: the skip check's sizes pass it
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        assert [j.index for j in engine.pending(store, longer, chain)] == list(range(first, 3))
    said = f"{chain.jobs[first].label}: its files no longer match its manifest (collapse-hpc verify names them), " \
           f"and generation 2 reads them: redone"
    built = " (and the 1 finished generation built on it, where the redo changes it)"
    assert said + (built if first == 0 else "") in caplog.text, caplog.text


def test_verify_quotes_its_command_and_escapes_file_names(tmp_path, capsys):
    """A run path holding `$(...)` is quoted in the printed command (pasted, it runs nothing), and a
    file name's escape codes are printed escaped, not sent to the terminal."""
    import subprocess

    from tests.helpers import toy_run

    hostile = tmp_path / "$(touch pwned)"
    hostile.mkdir()
    store, run = toy_run(hostile, generations=1)
    engine.run_unit(store.root, "toy", "replace-p0-s0", 0)
    unit = store.unit_dir("toy", "replace-p0-s0", "chain", 0)
    (unit / "red\x1b[31m.txt").write_text("x")
    f = unit / "metrics.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    capsys.readouterr()
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "red\\x1b[31m.txt" in out
    line = next(ln for ln in out.splitlines() if "redo with:" in ln)
    cmd = line.split("redo with:", 1)[1].replace("collapse-hpc", "echo", 1)
    subprocess.run(["bash", "-c", cmd], cwd=tmp_path, check=True, capture_output=True)
    assert not (tmp_path / "pwned").exists()


def test_a_manifest_from_before_upstream_was_recorded_still_counts(tmp_path):
    """Runs made by an earlier version are not redone for lacking the upstream record; their folder
    and variant bindings are still checked."""
    import json

    from collapse_hpc.store.manifest import SELF
    from tests.helpers import toy_run

    store, run = toy_run(tmp_path, generations=2)
    for g in range(2):
        engine.run_unit(store.root, "toy", "replace-p0-s0", g)
    path = store.unit_dir("toy", "replace-p0-s0", "chain", 1) / "manifest.json"
    m = json.loads(path.read_text())
    del m["upstream"], m[SELF]  # nor had the earlier version a checksum of the manifest
    path.write_text(json.dumps(m))
    assert engine.run_unit(store.root, "toy", "replace-p0-s0", 1) == "skipped"
    m["variant"] = "replace-p0-s1"
    path.write_text(json.dumps(m))
    assert engine.run_unit(store.root, "toy", "replace-p0-s0", 1) == "done"


def test_a_generation_built_on_one_whose_manifest_is_gone_names_it_and_the_command_repairs_both(two_variants,
                                                                                                 capsys):
    """Generation 0's manifest deleted: verify said generation 1's `upstream` was `{gen_000: }` and
    printed a command redoing generation 1 alone. It now says gen_000 has no manifest, and the
    command, run as printed, redoes generation 0 then 1: verify is clean after."""
    import shlex

    from collapse_hpc import cli

    store, run, exp, (a, *_), calls = two_variants
    if exp.shape == "array":
        pytest.skip("an array's parts are built on no other unit")
    (_unit(store, a, 0) / "manifest.json").unlink()
    capsys.readouterr()
    assert verify_run(store.root) == 1
    out = capsys.readouterr().out
    assert "the run says {gen_000: no manifest}" in out, out
    line = next(ln for ln in out.splitlines() if "redo with:" in ln)
    before = len(calls)  # not cleared: the writer's attempt number makes the redone content another
    assert cli.main(shlex.split(line.split("redo with:", 1)[1])[1:]) == 0
    assert calls[before:] == [(a.variant.name, 0), (a.variant.name, 1)]
    assert verify_run(store.root) == 0


def _measuring(calls, salt):
    """A unit body whose result is derived from the previous generation's alone (and `salt`: a seed), beside a file
    of what the run measured that differs on every attempt (as its timings do)."""
    import json

    def run_unit(ctx):
        calls.append(ctx.index)
        prev = [read_manifest(p)["files"]["out.parquet"]["sha256"] for p in ctx.previous[-1:]]
        ctx.write_table("out.parquet", pa.table({"prev": prev or [""], "salt": [salt[0]]}))
        ctx.write_json("timings.json", {"seconds": len(calls) + 0.5})
        (ctx.dir / "log").mkdir(exist_ok=True)
        (ctx.dir / "log" / "host.json").write_text(json.dumps({"attempt": len(calls)}))
    return run_unit


@pytest.fixture
def measured_chain(tmp_path, monkeypatch):
    """A toy chain of 4 generations whose files hold measured values beside results (timings.json, log/*.json),
    each declared volatile."""
    from tests.helpers import toy_run

    exp, calls, salt = experiments.get("toy"), [], ["a"]
    monkeypatch.setattr(exp, "run_unit", _measuring(calls, salt))
    monkeypatch.setattr(exp, "volatile", ("timings.json", "log/*.json"))
    store, run = toy_run(tmp_path, generations=4)
    chain = engine.plan(run)[0]
    for job in chain.jobs:
        assert engine.run_unit(store.root, "toy", job.variant, job.index) == "done"
    return store, run, chain, calls, salt


def _redo_from_damage(store, run, chain, generation):
    """A byte of the generation's result flipped, then what a launcher runs: its pending jobs, each by
    run_unit -> {index: 'done' or 'skipped'}."""
    from tests.helpers import flip

    flip(_unit(store, chain, generation) / "out.parquet")
    return {j.index: engine.run_unit(store.root, "toy", j.variant, j.index) for j in engine.pending(store, run, chain)}


def test_a_generation_redone_to_the_same_results_keeps_the_later_ones(measured_chain):
    """A damaged generation redone to byte-identical results (deterministic seeds) differed from its first
    attempt only in what the run measured (timings): its manifest's digest changed, and every later generation
    was redone (hours of GPU at the paper's scale). The measured files are left out of the digest: the later
    generations stay as they are, not rewritten, and verify passes."""
    store, run, chain, calls, _ = measured_chain
    later = [_unit(store, chain, g) / "manifest.json" for g in (2, 3)]
    kept = [p.stat().st_mtime_ns for p in later]
    first = read_manifest(_unit(store, chain, 1))
    calls.clear()
    assert _redo_from_damage(store, run, chain, 1) == {1: "done", 2: "skipped", 3: "skipped"}
    assert calls == [1]
    redone = read_manifest(_unit(store, chain, 1))
    assert redone["files"]["timings.json"] != first["files"]["timings.json"]  # measured again: other bytes
    assert redone["volatile"] == ["log/host.json", "timings.json"]
    assert [p.stat().st_mtime_ns for p in later] == kept
    assert verify_run(store.root) == 0


def test_a_generation_redone_to_other_results_still_redoes_the_later_ones(measured_chain):
    """A redo whose results differ (another seed, other data) makes every generation built on it stale, the
    measured files left out of the digest or not."""
    store, run, chain, calls, salt = measured_chain
    salt[0] = "b"
    calls.clear()
    assert _redo_from_damage(store, run, chain, 1) == {1: "done", 2: "done", 3: "done"}
    assert calls == [1, 2, 3]
    assert verify_run(store.root) == 0


def test_a_run_made_before_files_were_declared_volatile_is_kept_after_the_upgrade(tmp_path, monkeypatch):
    """An older version's manifests name no volatile files: their digest is of every file, as the later
    generations recorded it, so nothing is redone for the upgrade. The first redo of one of its generations
    under the new version redoes the generations after it once (their record is of every file)."""
    from tests.helpers import toy_run

    exp, calls, salt = experiments.get("toy"), [], ["a"]
    monkeypatch.setattr(exp, "run_unit", _measuring(calls, salt))
    store, run = toy_run(tmp_path, generations=3)
    chain = engine.plan(run)[0]
    for job in chain.jobs:
        assert engine.run_unit(store.root, "toy", job.variant, job.index) == "done"
    assert "volatile" not in read_manifest(_unit(store, chain, 1))
    monkeypatch.setattr(exp, "volatile", ("timings.json", "log/*.json"))  # the upgrade
    assert engine.pending(store, run, chain) == []
    assert _redo_from_damage(store, run, chain, 1) == {1: "done", 2: "done"}
    assert _redo_from_damage(store, run, chain, 1) == {1: "done", 2: "skipped"}  # from then on, kept


def test_verifys_printed_command_repairs_a_unit_whose_shared_input_was_damaged(tmp_path, monkeypatch, capsys):
    """A file of the run that units use (the VAE's classifier) damaged after they finished: verify named it and
    printed a command that, run as printed, redid nothing ("0 units done, 1 already finished"): the mismatch
    stayed for good. A unit named by hand now checks the run's files it used too, and is redone; the shared
    file is made again where damaged (as the classifier is), and verify is clean after."""
    import shlex

    from collapse_hpc import cli

    exp = experiments.get("vae")
    calls: list = []

    def run_unit(ctx):
        calls.append(ctx.index)
        judge = ctx.run_dir / "judge" / "judge.bin"
        if not judge.is_file() or judge.read_bytes() != b"yardstick":  # a damaged cache: made again
            judge.parent.mkdir(exist_ok=True)
            judge.write_bytes(b"yardstick")
        ctx.uses(judge)
        ctx.write_table("out.parquet", pa.table({"generation": [ctx.index]}))

    monkeypatch.setattr(exp, "run_unit", run_unit)
    monkeypatch.setattr(exp, "check", lambda run: None)
    run = experiments.config_from_dict({"name": "b", "generations": 2, "executor": "debug", "vae": {}})
    store = RunStore(tmp_path / "run")
    for chain in engine.open_run(store, run):
        for job in chain.jobs:
            assert engine.run_unit(store.root, job.experiment, job.variant, job.index) == "done"
    (store.root / "judge" / "judge.bin").write_bytes(b"yardstic")
    capsys.readouterr()
    assert verify_run(store.root) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "redo with:" in ln)
    calls.clear()
    assert cli.main(shlex.split(line.split("redo with:", 1)[1])[1:]) == 0
    assert calls == [0]
    assert verify_run(store.root) == 0
