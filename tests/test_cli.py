"""The collapse-hpc command as a user meets it: one error line and exit 2 on bad input."""
import argparse
import errno
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO


def cli(*args, cwd=None, env=None):
    env = dict(os.environ, **(env or {}))  # PYTHONPATH (conftest): the repository and the tests' entry points
    return subprocess.run([sys.executable, "-m", "collapse_hpc", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or REPO, timeout=300)


def one_error_line(p):
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_missing_config_file(tmp_path):
    line = one_error_line(cli("run", "configs/does-not-exist.yaml", "--run", tmp_path / "r"))
    assert "configs/does-not-exist.yaml" in line and "not found" in line


def test_misspelled_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\ngenerashuns: 2\ntoy: {}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r"))
    assert "bad.yaml" in line and "generashuns" in line and "generations" in line
    assert not (tmp_path / "r").exists()  # nothing written for a bad config


def test_help_everywhere():
    for sub in ([], ["run"], ["submit"], ["status"], ["aggregate"], ["verify"], ["data", "prepare"]):
        p = cli(*sub, "--help")
        assert p.returncode == 0 and "usage: collapse-hpc" in p.stdout, (sub, p.stderr)


def test_data_prepare_help_says_how_own_files_are_read_and_split():
    """`data prepare --help` named the formats but not the field a record's text is read from, nor how rows
    become splits (file names, 90/5/5): a newcomer with a CSV learnt both from refusals. It said a split needs
    a block of lm.block_size tokens, but preparation asks a block of 64 whatever the config (a small corpus
    for blocks of 16 was refused, one for blocks of 512 passed, refused later by the run), and it never said
    which key then reads the data set."""
    from collapse_hpc.experiments.lm.data import DOCUMENTS

    said = " ".join(cli("data", "prepare", "--help").stdout.split())
    for words in ("the field or column named text", "named for a split by a word of their own", "split 90/5/5 by "
                  "file", f"a folder of {DOCUMENTS} files or more", "by a hash of each row",
                  "one block of 64 tokens at least (a run, for one of its lm.block_size)",
                  "lm.dataset: NAME (--set lm.dataset=NAME)", "(vae.dataset: NAME)"):
        assert words in said, said


def test_run_verify_and_tamper(tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    p = cli("run", cfg, "--run", run)
    assert p.returncode == 0, p.stderr
    assert "2 units done" in p.stdout
    assert (run / "config.yaml").is_file() and (run / "logs" / "collapse-hpc.log").is_file()
    assert cli("verify", run).returncode == 0
    f = run / "toy" / "replace-p0-s0" / "gen_001" / "metrics.parquet"
    data = bytearray(f.read_bytes())
    data[50] ^= 0x10
    f.write_bytes(bytes(data))
    p = cli("verify", run)
    assert p.returncode == 1 and str(f) in p.stdout
    # a different config on the same run folder is refused
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 5}\n")
    assert "different config" in one_error_line(cli("run", cfg, "--run", run))


def test_an_edited_regime_override_names_its_chains_and_what_to_do(tmp_path):
    """An edit of a regime's override was refused by the whole regimes list, old and new, and sent the
    researcher to another --run only: the line names the key (regimes[1].toy.rows), the chains it makes other
    ones, and that putting the old value back resumes."""
    text = "name: toy\ngenerations: 1\nexecutor: debug\nregimes: [replace, {name: accumulate, toy: {rows: 5}}]\n" \
           "toy: {rows: 4}\n"
    cfg, run = _toy_config(tmp_path, text=text), tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    cfg.write_text(text.replace("rows: 5", "rows: 6"))
    line = one_error_line(cli("run", cfg, "--run", run))
    assert line == (f"error: {run} was made with a different config (regimes[1].toy.rows: 5 -> 6); that is the toy "
                    f"chains toy/accumulate-*: a regime's values and overrides name its chains, so the edit makes "
                    f"other chains than those the run holds; put the old value back to resume this run, or use "
                    f"another --run for a new one"), line
    cfg.write_text(text)
    p = cli("run", cfg, "--run", run)
    assert p.returncode == 0 and "0 units done, 2 already finished" in p.stdout, p.stdout + p.stderr


def test_python_dash_m_version():
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("collapse-hpc ")


def _toy_config(tmp_path, name="toy.yaml", text="name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n"):
    cfg = tmp_path / name
    cfg.write_text(text)
    return cfg


def test_the_run_log_says_how_a_run_ended_as_well_as_how_it_began(tmp_path):
    """logs/collapse-hpc.log said a run's plan and nothing after it: read later, a run that ended, and how,
    could not be told from one killed as it began. Its last line is the one the command prints."""
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    for executor, done in (("debug", "2 units done, 0 already finished"), ("local", "0 units done, 2 already")):
        p = cli("run", cfg, "--run", run, "--executor", executor)
        assert p.returncode == 0, p.stderr
        said = p.stdout.strip().splitlines()[-1]
        assert done in said, said
        assert (run / "logs" / "collapse-hpc.log").read_text().splitlines()[-1].endswith(f"INFO: {said}")


def _hold_lock(run):
    """The run's lock as a live process other than the launcher holds it (this test process)."""
    import json
    import socket

    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 0}))


def test_refused_launcher_writes_nothing(tmp_path):
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    before = {p: (run / p).read_bytes() for p in ("config.yaml", "run.json", "logs/collapse-hpc.log")}
    _hold_lock(run)
    # more generations is a config open() accepts and would rewrite: the lock must refuse it first
    for argv in (("run", cfg, "--run", run, "--generations", "5"),
                 ("toy", cfg, "--run", run, "--generations", "5")):
        assert "locked by pid" in one_error_line(cli(*argv))
        assert {p: (run / p).read_bytes() for p in before} == before


def test_a_refused_launcher_names_the_command_that_holds_the_run_and_how_to_stop_it(tmp_path):
    """The refusal said "run is locked by pid N on HOST" only: not whether a submit (moments), a launcher
    (hours) or a cancel held it, nor that `collapse-hpc cancel RUN` stops a launcher. Following it does."""
    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4, sleep_s: 60}\n")
    run = tmp_path / "r"
    first = subprocess.Popen([sys.executable, "-m", "collapse_hpc", "run", str(cfg), "--run", str(run)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.time() + 60
        while not (run / "toy" / "replace-p0-s0" / "gen_000" / "steps").is_dir():  # it holds the run, working
            assert time.time() < deadline and first.poll() is None, "the first launcher never got going"
            time.sleep(0.2)
        line = one_error_line(cli("run", cfg, "--run", run))
        assert line == (f"error: run is locked by pid {first.pid} on {socket.gethostname()}, collapse-hpc run "
                        f"({run / '.lock'}), a launcher running its units: wait for it to end, or stop it: "
                        f"collapse-hpc cancel {shlex.quote(str(run))}"), line
        assert cli("cancel", run).returncode == 0  # as the line says
        assert first.wait(60) == 130
    finally:
        first.kill()
        first.wait()


def test_unprepared_data_set_writes_nothing(tmp_path):
    data = tmp_path / "data"
    for section, name in (("lm", "wikivital"), ("vae", "mnist")):
        cfg = _toy_config(tmp_path, f"{section}.yaml",
                          f"executor: debug\ndata_dir: {data}\n{section}: {{dataset: {name}}}\n")
        for argv in (("run", cfg), (section, cfg)):
            line = one_error_line(cli(*argv, "--run", tmp_path / "r"))
            assert f"{section}.yaml" in line and f"data prepare {name}" in line, line
            assert not (tmp_path / "r").exists()
    # an experiment left out by --only is not checked
    cfg = _toy_config(tmp_path, "both.yaml", f"executor: debug\ndata_dir: {data}\ngenerations: 1\n"
                                             f"toy: {{rows: 2}}\nvae: {{dataset: mnist}}\n")
    assert cli("run", cfg, "--run", tmp_path / "r", "--only", "toy").returncode == 0


def test_config_refuses_what_run_refuses_before_starting(tmp_path):
    """`config CONFIG --set lm.dataset=nosuch` printed the resolved config, exit 0, where `run` refuses it: config
    checks the inputs as run does (check_inputs), with the same line."""
    cfg = _toy_config(tmp_path, "lm.yaml", f"executor: debug\ndata_dir: {REPO / 'data'}\nlm: {{}}\n")
    said = [one_error_line(cli(command, cfg, "--set", "lm.dataset=nosuch", *extra))
            for command, *extra in (("config",), ("run", "--run", tmp_path / "r"))]
    assert said[0] == said[1] and "lm.dataset" in said[0] and "data prepare nosuch" in said[0], said
    assert not (tmp_path / "r").exists()
    corpus = tmp_path / "corpus.txt"  # a data set of its own, prepared: a fresh clone's data/ has none
    corpus.write_text("\n".join(f"line {i} of a corpus the model collapse runs read" for i in range(200)))
    data = tmp_path / "data"
    assert cli("data", "prepare", "tiny", "--from", corpus, "--data-dir", data).returncode == 0
    assert cli("config", cfg, "--set", f"data_dir={data}", "--set", "lm.dataset=tiny").returncode == 0


def test_config_shows_what_a_config_resolves_to_before_its_inputs_are_checked(tmp_path):
    """`config configs/paper.yaml` where its data set is not prepared printed nothing: a newcomer's first look at
    the paper's config. The resolved config and its hash come first (stdout), then run's line (stderr), exit 2."""
    import yaml

    shown = cli("config", REPO / "configs/paper.yaml", "--set", f"data_dir={tmp_path}", "--set", "seeds=[7]")
    line = one_error_line(shown)
    # paper.yaml's jobs run on Slurm: its data set is staged where the profile's jobs look, with the same --set
    assert "lm.dataset" in line and (f"run: collapse-hpc stage {REPO / 'configs/paper.yaml'} --profile "
                                     f"{REPO / 'slurm/example-cluster.yaml'} --set data_dir={tmp_path} "
                                     f"--set 'seeds=[7]'") in line, line
    first, _, rest = shown.stdout.partition("\n")
    assert re.fullmatch(r"# config_hash: [0-9a-f]{16}", first), shown.stdout
    resolved = yaml.safe_load(rest)
    assert (resolved["name"], resolved["seeds"], resolved["data_dir"]) == ("paper", [7], str(tmp_path))
    assert resolved["lm"]["dataset"] == "wikitext2" and resolved["lm"]["decoding"] == ["beam"]


def test_a_number_given_for_seeds_is_one_line_saying_how_to_write_the_list(tmp_path):
    cfg = _toy_config(tmp_path)
    for flags in (("--set", "seeds=5"), ("--set", "toy.seeds=5")):
        line = one_error_line(cli("run", cfg, "--run", tmp_path / "r", *flags))
        assert line.endswith("seeds: is a list, got 5; write [5] for seed 5, or [0, 1, 2, 3, 4] for 5 replicates"), line
    assert not (tmp_path / "r").exists()


def test_corrupt_run_config_is_one_line(tmp_path):
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    run.mkdir()
    for text in ("a: [\n", "- just\n- a list\n"):
        (run / "config.yaml").write_text(text)
        line = one_error_line(cli("run", cfg, "--run", run))
        assert str(run / "config.yaml") in line
        assert (run / "config.yaml").read_text() == text


def test_a_misspelled_only_experiment_is_told_the_one_meant(tmp_path):
    # "--only gmmm: not a section of demo.yaml (it has: lm, gmm, gaussian, vae)": config keys said "did you mean"
    cfg = _toy_config(tmp_path, text="executor: debug\ntoy: {rows: 2}\ngmm: {enabled: false}\n")
    line = one_error_line(cli("run", cfg, "--run", tmp_path / "r", "--only", "toyy"))
    assert line == f"error: --only toyy: not a section of {cfg} (did you mean 'toy'?); it has: gmm, toy", line
    assert not (tmp_path / "r").exists()


def test_an_experiment_by_hand_that_the_config_lacks_or_disables_names_the_command_typed(tmp_path):
    # `collapse-hpc gmm CFG` said "--only gmm: …", a flag the user never typed
    cfg = _toy_config(tmp_path, text="executor: debug\ntoy: {rows: 2}\ngmm: {enabled: false}\n")
    assert one_error_line(cli("vae", cfg, "--run", tmp_path / "r")).startswith("error: collapse-hpc vae: not a section")
    assert one_error_line(cli("gmm", cfg, "--run", tmp_path / "r")).startswith("error: collapse-hpc gmm: disabled in")
    assert one_error_line(cli("run", cfg, "--run", tmp_path / "r", "--only", "gmm")).startswith("error: --only gmm:")
    assert not (tmp_path / "r").exists()


def test_a_folder_holding_the_users_own_config_is_not_taken_for_a_run(tmp_path):
    # `run exp/config.yaml --run exp`: read as the run's saved config, it was refused as "made with a
    # different config (… None -> 2 …)" after logs/ had been made in the user's folder
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(_toy_config(tmp_path).read_text())
    line = one_error_line(cli("run", exp / "config.yaml", "--run", exp))
    assert f"{exp / 'config.yaml'}: not a config a run saved (no run.json beside it, no '# config_hash:' line)" in line
    assert [p.name for p in exp.iterdir()] == ["config.yaml"]


def test_run_folder_that_cannot_be_made(tmp_path):
    cfg = _toy_config(tmp_path)
    (tmp_path / "afile").write_text("")
    for where in (tmp_path / "afile" / "x", "/proc/nope/x"):
        line = one_error_line(cli("run", cfg, "--run", where))
        assert "afile" in line or "/proc/nope" in line


def test_a_folder_the_file_system_will_not_make_is_named_with_why(tmp_path):
    """--run under /proc (or a mount not there, a read-only one) read mkdir's bare "/proc/x: No such file or
    directory": neither the folder asked for nor why. Now the line names both."""
    for where in ("/proc/nope/x", "/proc/nope"):
        line = one_error_line(cli("run", _toy_config(tmp_path), "--run", where, cwd=tmp_path))
        assert line == (f"error: --run {where}: the folder could not be made: /proc/nope: No such file or "
                        f"directory, though /proc is there (the kernel's file systems, /proc and /sys, take no "
                        f"folders); give a folder that can be made"), line


@pytest.mark.parametrize("refusal, why", [(errno.EROFS, "/ is mounted read-only"),
                                          (errno.EACCES, "no permission to make a folder in {parent}")])
def test_a_folder_refused_by_its_mount_or_permissions_is_named_with_why(tmp_path, monkeypatch, refusal, why):
    from pathlib import Path

    from collapse_hpc.errors import UserError
    from collapse_hpc.store import layout, space

    def refuse(self, *args, **kwargs):
        raise OSError(refusal, os.strerror(refusal), str(tmp_path / "scratch"))

    monkeypatch.setattr(Path, "mkdir", refuse)
    monkeypatch.setattr(space, "mount_point", lambda path: Path("/"))
    with pytest.raises(UserError) as said:
        layout.made_folder(tmp_path / "scratch" / "run", "--run ")
    assert str(said.value) == (f"--run {tmp_path / 'scratch' / 'run'}: the folder could not be made: "
                               f"{tmp_path / 'scratch'}: {os.strerror(refusal)} ({why.format(parent=tmp_path)}); "
                               f"give a folder that can be made")


def test_data_list_with_corrupt_card(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "card.json").write_text('{"source": "here", "splits": {"train": 3}}')
    assert "train: 3" in cli("data", "list", "--data-dir", tmp_path).stdout
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "card.json").write_text("{not json")
    line = one_error_line(cli("data", "list", "--data-dir", tmp_path))
    assert str(tmp_path / "bad" / "card.json") in line


def test_data_list_while_a_data_set_is_prepared_beside_it(tmp_path, capsys):
    """`data list` while `data prepare` ran beside it listed the preparation's temporary folder as a data set, or
    stopped on its card ("No such file or directory", "card is not a JSON mapping") as the folder was swapped in
    between the listing and the read. A preparation comes and goes here in a loop, in another process: its
    temporary folder, and a data set swapped out and in again (--force)."""
    from collapse_hpc import data
    from tests.helpers import churning

    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "card.json").write_text('{"source": "here", "splits": {"train": 3}}')
    card = '{"source": "there", "splits": {"train": 5}}'
    with churning(tmp_path, ".tmp-wiki.x1", "card.json", card), churning(tmp_path, "wiki", "card.json", card):
        deadline = time.time() + 3
        while time.time() < deadline:
            data.list_prepared(tmp_path)
            names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
            assert names in (["good"], ["good", "wiki"]), names


def test_data_list_aligns_names_longer_than_twelve(tmp_path):
    """A --from name over 12 characters pushed its source out of the column the others start in."""
    for name in ("short", "a-name-of-twenty-chr"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text('{"source": "local files: x", "splits": {"train": 3}}')
    lines = cli("data", "list", "--data-dir", tmp_path).stdout.splitlines()
    assert [line.index("local files") for line in lines] == [21, 21]


def test_data_list_of_a_folder_that_is_not_there_is_one_line(tmp_path):
    """A typo of --data-dir read 'no prepared data sets under …' with exit 0."""
    (tmp_path / "afile").write_text("")
    for where, what in ((tmp_path / "nope", "no such folder"), (tmp_path / "afile", "a file, not a folder")):
        assert one_error_line(cli("data", "list", "--data-dir", where)) == \
            f"error: --data-dir {where}: {what} (data sets are prepared under data/ by default)"
    assert "no prepared data sets" in cli("data", "list", "--data-dir", tmp_path).stdout


def test_verify_a_manifest_without_files(tmp_path):
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    manifest = run / "toy" / "replace-p0-s0" / "gen_001" / "manifest.json"
    for text in ('{"config_hash": "x"}', "[1, 2]"):
        manifest.write_text(text)
        p = cli("verify", run)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert f"MISMATCH {manifest}" in p.stdout and "corrupt" in p.stdout and "--unit 1" in p.stdout


def test_status_with_corrupt_jobs_json(tmp_path):
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    assert cli("status", run).returncode == 0
    for text in ("{oops", '["a"]', '{"units": {"toy/replace-p0-s0/gen_000": 3}}'):
        (run / "jobs.json").write_text(text)
        line = one_error_line(cli("status", run))
        assert "jobs.json is corrupt" in line and str(run / "jobs.json") in line


def test_unit_out_of_range(tmp_path):
    cfg = _toy_config(tmp_path)
    line = one_error_line(cli("toy", cfg, "--run", tmp_path / "r", "--unit", "2"))
    assert "--unit 2" in line and "0 to 1" in line
    assert not (tmp_path / "r").exists()


def test_a_generation_by_hand_before_the_one_it_builds_on_is_refused_before_the_run_folder(tmp_path):
    # it made the run folder, then the unit refused
    cfg = _toy_config(tmp_path)
    line = one_error_line(cli("toy", cfg, "--run", tmp_path / "r", "--unit", "1"))
    assert "--unit 1: toy/replace-p0-s0 generation 0 is not finished" in line and "--unit 0" in line
    assert not (tmp_path / "r").exists()
    assert cli("toy", cfg, "--run", tmp_path / "r", "--unit", "0").returncode == 0
    assert cli("toy", cfg, "--run", tmp_path / "r", "--unit", "1").returncode == 0


def test_generations_by_hand_are_the_experiment_s_own_also_where_its_section_sets_them(tmp_path):
    # `collapse-hpc toy CFG --generations 3` where toy says generations: 1 ran 1 (the run-level
    # count changed, the section's stayed), saying nothing
    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4, generations: 1}\n")
    p = cli("toy", cfg, "--run", tmp_path / "r", "--generations", "3")
    assert p.returncode == 0, p.stderr
    assert sorted(d.name for d in (tmp_path / "r" / "toy" / "replace-p0-s0").iterdir()) == [
        "gen_000", "gen_001", "gen_002"]


def test_generations_that_a_section_overrides_are_said_in_a_note(tmp_path):
    # `collapse-hpc run CFG --generations 3` where toy says generations: 1 ran 1 generation and said nothing of it
    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4, generations: 1}\n")
    note = ("note: --generations 3 is the run's count; a section's own generations win over it: toy keeps 1 "
            "(--set toy.generations=3 sets it)")
    p = cli("run", cfg, "--run", tmp_path / "r", "--generations", "3")
    assert p.returncode == 0 and note in p.stderr.splitlines(), p.stderr
    assert [d.name for d in (tmp_path / "r" / "toy" / "replace-p0-s0").iterdir()] == ["gen_000"]
    shown = cli("config", cfg, "--generations", "3")
    assert shown.returncode == 0 and note in shown.stderr.splitlines(), shown.stderr
    for argv in (("config", cfg, "--generations", "3", "--set", "toy.generations=3"),  # the section's, asked for
                 ("config", cfg, "--generations", "1"), ("toy", cfg, "--run", tmp_path / "h", "--generations", "3")):
        p = cli(*argv)
        assert p.returncode == 0 and "note: --generations" not in p.stderr, (argv, p.stderr)


def test_an_unknown_variant_lists_the_variants(tmp_path):
    cfg = _toy_config(tmp_path)
    line = one_error_line(cli("toy", cfg, "--run", tmp_path / "r", "--variant", "replace-s0"))
    assert "--variant replace-s0: no such variant of toy" in line and "(it has: replace-p0-s0)" in line
    assert not (tmp_path / "r").exists()


def test_help_texts():
    prepare = cli("data", "prepare", "--help").stdout
    assert "NAME" in prepare and "wikivital" in prepare.split("positional arguments:")[1]
    config = " ".join(cli("config", "--help").stdout.split())
    assert "own generations" in config and "keeps it" in config and "override one config value" in config
    run = " ".join(cli("run", "--help").stdout.split())
    assert "run's chains" in run and "own generations" in run
    toy = cli("toy", "--help")
    assert toy.returncode == 0 and "--only" not in toy.stdout and "--unit N" in toy.stdout


def test_reader_closing_the_pipe_is_quiet(tmp_path):
    # `collapse-hpc status RUN | head -3` with more than a pipe buffer of output
    code = ("import sys; from collapse_hpc import cli\n"
            "for _ in range(200):\n"
            "    rc = cli.main(['config'])\n"
            "    if rc: break\n"
            "sys.exit(rc)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and "error" not in err.lower() and "Traceback" not in err, err


def test_the_run_header_gives_each_experiments_generations():
    """A section's own generation count (gmm: the notebook's 2050) shows when the run starts, beside
    the run's (here 2), so a config's `generations: 2` is not read as every experiment's."""
    from collapse_hpc import cli, engine, experiments

    run = experiments.config_from_dict({"name": "h", "generations": 2, "seeds": [0, 1], "gaussian": {"enabled": False},
                                        "lm": {"enabled": False}, "vae": {"enabled": False},
                                        "gmm": {"replicates": 4, "chunk_replicates": 2}, "toy": {}})
    chains = engine.plan(run)
    assert cli._generations(run, chains) == "gmm: 4 parts of 2050 generations; toy: 2 chains of 2 generations"
    one = experiments.config_from_dict({"name": "h", "generations": 1, "gaussian": {"enabled": False},
                                        "gmm": {"enabled": False}, "vae": {"enabled": False}, "lm": {"enabled": False},
                                        "toy": {}})
    assert cli._generations(one, engine.plan(one)) == "toy: 1 chain of 1 generation"  # not "1 generations"


def test_a_run_config_cut_short_names_the_sections_it_lacks(tmp_path):
    """RUN/config.yaml cut short (a copy stopped midway) read as an edit whose changes were whole sections
    dumped as dicts (`toy: {'rows': 4, …} -> None`), a line of a thousand characters for a real config."""
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    saved = run / "config.yaml"
    text = saved.read_text()
    saved.write_text(text[:text.index("\ntoy:")])  # every section from toy on is gone
    line = one_error_line(cli("verify", run))
    assert f"{saved} was edited after the run was made (it lacks toy" in line and "{" not in line, line
    assert "run.json keeps a copy of the run's config" in line, line
    for cut in ("", "toy: [1"):  # emptied, or cut inside a value: said where to restore it from too
        saved.write_text(cut)
        line = one_error_line(cli("verify", run))
        assert "restore it (run.json keeps a copy of the run's config under 'config')" in line, line


def test_a_run_config_edited_by_hand_to_a_date_is_refused_in_one_line(tmp_path):
    """An edit YAML reads as a date (seeds: [2024-01-01]) ended status, verify and the report on a traceback
    (TypeError: Object of type date is not JSON serializable): the config's hash took JSON values only."""
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("seeds:\n- 0\n", "seeds:\n- 2024-01-01\n"))
    for command in ("status", "verify", "aggregate"):
        rc, out, err = collapse(command, run)
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"error: {saved} was edited after the run was made (seeds: [0] -> "
                              f"[datetime.date(2024, 1, 1)])"), err

def test_a_run_config_edited_by_hand_is_refused_and_nothing_is_redone(tmp_path):
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    results = {p: p.read_bytes() for p in run.glob("toy/*/gen_*/*.parquet")}
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("rows: 4", "rows: 5"))
    # run on its own saved config would otherwise redo every unit under the new value
    for argv in (("run", saved, "--run", run), ("status", run), ("verify", run), ("aggregate", run)):
        line = one_error_line(cli(*argv))
        assert f"{saved} was edited after the run was made (toy.rows: 4 -> 5)" in line and "restore it" in line, line
    assert {p: p.read_bytes() for p in run.glob("toy/*/gen_*/*.parquet")} == results
    (run / "run.json").unlink()  # config.yaml's own first line records the hash too
    assert "was edited after the run was made" in one_error_line(cli("run", saved, "--run", run))
    # what the hash leaves out may change: one more generation
    saved.write_text(saved.read_text().replace("rows: 5", "rows: 4").replace("generations: 2", "generations: 3"))
    p = cli("run", saved, "--run", run)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr


def test_a_run_config_edited_by_hand_beside_a_damaged_run_json_says_so_not_an_older_version(tmp_path):
    """run.json cut short (not JSON) and config.yaml edited: the line named run.json's hash as "an older version
    wrote [it] without a copy of the config", though the hash came from config.yaml's first line and run.json,
    written by this version, only no longer read."""
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    (run / "run.json").write_text('{"config_hash": "')
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("rows: 4", "rows: 5"))
    line = one_error_line(cli("verify", run))
    assert "of config.yaml's first line (run.json, which keeps a copy of the config, no longer reads as one)" in line
    assert "older version" not in line, line


def _evolving(tmp_path, version: str, knobs: str) -> dict:
    """The env of a third-party experiment `evolving` at one version of its code: its config has
    `knobs` besides rows (a later version adds one)."""
    from tests.experiments.test_registry import _plugin

    env = _plugin(tmp_path / version, ["evolving = evolving:REGISTRATION"])
    package = tmp_path / version / "plugin" / "evolving"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from dataclasses import dataclass\n"
        "from collapse_hpc.config import Section, knob\n"
        "from collapse_hpc.experiments.base import Experiment, Registration\n"
        "from collapse_hpc.experiments.schema import MetricsSchema\n"
        "from collapse_hpc.plotting.metrics import Metric\n\n"
        "@dataclass\nclass EvolvingConfig(Section):\n    rows: int = knob(3)\n" + knobs + "\n\n"
        "class Evolving(Experiment):\n    name = 'evolving'\n"
        "    def generations(self, run):\n        return run.generations_of(self.name)\n"
        "    def memory(self, run, variant):\n        return 8\n"
        "    def metrics_schema(self, section=None):\n"
        "        return MetricsSchema(per_replicate=False, metrics={'value': Metric('value', 'value')})\n"
        "    def run_unit(self, ctx):\n"
        "        ctx.write_metrics({'generation': [ctx.generation], 'value': [float(ctx.config.rows)]})\n\n"
        "REGISTRATION = Registration(EvolvingConfig, Evolving())\n")
    return env


def test_a_run_folder_of_an_older_version_resumes_where_its_new_keys_are_at_their_defaults(tmp_path):
    """A later version adds keys whose defaults keep the old behaviour: the run folder the older one made
    (its config.yaml, run.json and manifests without them) goes on; a new key set otherwise is a change."""
    old = _evolving(tmp_path, "v1", "")
    new = _evolving(tmp_path, "v2", "    scale: float = knob(1.0)\n    shift: float = knob(0.0)")
    cfg = _toy_config(tmp_path, "evolving.yaml", "name: e\ngenerations: 2\nexecutor: debug\nevolving: {rows: 4}\n")
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run, env=old).returncode == 0
    assert cli("status", run, env=new).returncode == 0
    # a job queued by the older version that the newer one runs: the run folder as it was made
    variant = next(run.glob("evolving/*"))
    shutil.rmtree(variant / "gen_001")
    job = subprocess.run([sys.executable, "-c", "import sys; from collapse_hpc import engine; "
                          "print(engine.run_unit(sys.argv[1], 'evolving', sys.argv[2], 1))", str(run), variant.name],
                         capture_output=True, text=True, env=dict(os.environ, **new), timeout=300)
    assert job.stdout.strip() == "done", job.stderr
    made = {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*")}
    verified = cli("verify", run, env=new)
    assert verified.returncode == 0 and "2 units verified, 0 with mismatches" in verified.stdout, verified.stdout
    scaled = _toy_config(tmp_path, "scaled.yaml", "name: e\ngenerations: 2\nexecutor: debug\n"
                                                  "evolving: {rows: 4, scale: 2.0}\n")
    line = one_error_line(cli("run", scaled, "--run", run, env=new))
    assert "made with a different config (evolving.scale: 1.0 -> 2.0)" in line, line
    other = _toy_config(tmp_path, "other.yaml", "name: e\ngenerations: 2\nexecutor: debug\nevolving: {rows: 5}\n")
    assert "made with a different config (evolving.rows: 4 -> 5)" in one_error_line(
        cli("run", other, "--run", run, env=new))
    p = cli("run", cfg, "--run", run, "--generations", "3", env=new)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr
    assert {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*") if "gen_002" not in str(p)} == made
    verified = cli("verify", run, env=new)
    assert verified.returncode == 0 and "3 units verified, 0 with mismatches" in verified.stdout, verified.stdout
    assert cli("aggregate", run, env=new).returncode == 0


def _stored_hash(config: dict) -> str:
    """The config hash as run folders of every version so far record it (written out here, so that a
    change of config_hash shows)."""
    import hashlib
    import json

    kept = {k: ({s: x for s, x in v.items() if s != "generations"} if isinstance(v, dict) else v)
            for k, v in config.items() if k not in ("name", "executor", "profile", "data_dir", "generations")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def test_a_run_resumes_after_a_knob_of_how_it_runs_changed_also_one_made_while_it_was_hashed(tmp_path):
    """The allocation shrank (a knob like lm.ranks: 4 -> 2): the run goes on with one warning line, each
    manifest records what its unit ran with, and verify vouches for the generations of both. The run
    folder was made while the knob was still hashed (every key in the hash, as collapse-hpc did before
    knob's hashed=False): its recorded hashes are kept, and verify still checks them."""
    import json

    import yaml

    before = _evolving(tmp_path, "v1", "    workers: int = knob(1)\n    log_every: int = knob(10)")
    now = _evolving(tmp_path, "v2", "    workers: int = knob(1, hashed=False, exact=False)\n"
                                    "    log_every: int = knob(10, hashed=False)")
    text = "name: e\ngenerations: 2\nexecutor: debug\nevolving: {{rows: 4, workers: {}, log_every: {}}}\n"
    run = tmp_path / "r"
    assert cli("run", _toy_config(tmp_path, "four.yaml", text.format(4, 10)), "--run", run, env=before).returncode == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    recorded = json.loads((run / "run.json").read_text())["config_hash"]
    assert recorded == _stored_hash(saved)
    variant = next(run.glob("evolving/*"))
    first = json.loads((variant / "gen_000" / "manifest.json").read_text())
    assert first["config_hash"] == recorded and first["variant_hash"] == _stored_hash(first["config"])
    made = {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*")}

    p = cli("run", _toy_config(tmp_path, "two.yaml", text.format(2, 10)), "--run", run, "--generations", "3", env=now)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "evolving.workers: 4 -> 2: the run goes on" in warnings[0], p.stderr
    assert "rounding and random draws" in warnings[0]
    assert {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*") if "gen_002" not in str(p)} == made
    ran = [json.loads((variant / f"gen_{g:03d}" / "manifest.json").read_text())["config"]["evolving"]["workers"]
           for g in range(3)]
    assert ran == [4, 4, 2]
    assert json.loads((run / "run.json").read_text())["earlier"] == [recorded]
    verified = cli("verify", run, env=now)
    assert verified.returncode == 0 and "3 units verified, 0 with mismatches" in verified.stdout, verified.stdout
    assert "; 2 made under an earlier config of the run (how they ran: their manifests' config)" in verified.stdout

    # a knob whose change leaves every result as it was: no warning; a computing one: refused as ever
    p = cli("run", _toy_config(tmp_path, "quiet.yaml", text.format(2, 50)), "--run", run, "--generations", "3",
            env=now)
    assert p.returncode == 0 and "warning" not in p.stderr and "3 already finished" in p.stdout, p.stdout + p.stderr
    verified = cli("verify", run, env=now)
    assert verified.returncode == 0 and "3 units verified, 0 with mismatches" in verified.stdout, verified.stdout
    rows = _toy_config(tmp_path, "rows.yaml", text.format(2, 50).replace("rows: 4", "rows: 5"))
    line = one_error_line(cli("run", rows, "--run", run, env=now))
    assert "made with a different config (evolving.rows: 4 -> 5)" in line, line


def test_a_knob_of_how_it_runs_edited_by_hand_in_the_saved_config_resumes_as_with_set(tmp_path):
    """A researcher edits RUN/config.yaml (workers: 4 -> 2, a how-it-runs knob) and runs it again: that was
    refused as an edit of the run's config, though `--set evolving.workers=2` resumed. It resumes the same
    way now (one warning line; the manifests record what each unit ran with), status and verify before that
    run read the run's config as it was made; an edit of a key the hash covers is refused, naming it."""
    import yaml

    env = _evolving(tmp_path, "v1", "    workers: int = knob(1, hashed=False, exact=False)")
    cfg = _toy_config(tmp_path, "four.yaml", "name: e\ngenerations: 2\nexecutor: debug\n"
                                             "evolving: {rows: 4, workers: 4}\n")
    run, saved = tmp_path / "r", tmp_path / "r" / "config.yaml"
    assert cli("run", cfg, "--run", run, env=env).returncode == 0
    made = {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*")}
    saved.write_text(saved.read_text().replace("workers: 4", "workers: 2"))
    for argv in (("status", run), ("verify", run)):
        p = cli(*argv, env=env)
        assert p.returncode == 0 and "error" not in p.stderr, p.stdout + p.stderr
    p = cli("run", saved, "--run", run, "--generations", "3", env=env)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "evolving.workers: 4 -> 2: the run goes on" in warnings[0], p.stderr
    assert {p: p.read_bytes() for p in run.glob("evolving/*/gen_*/*") if "gen_002" not in str(p)} == made
    variant = next(run.glob("evolving/*"))
    ran = [yaml.safe_load((variant / f"gen_{g:03d}" / "manifest.json").read_text())["config"]["evolving"]["workers"]
           for g in range(3)]
    assert ran == [4, 4, 2]
    verified = cli("verify", run, env=env)
    assert verified.returncode == 0 and "3 units verified, 0 with mismatches" in verified.stdout, verified.stdout
    p = cli("run", saved, "--run", run, "--generations", "3", env=env)  # saved as it runs now: nothing to say
    assert p.returncode == 0 and "warning" not in p.stderr and "3 already finished" in p.stdout, p.stdout + p.stderr
    saved.write_text(saved.read_text().replace("workers: 2", "workers: 1").replace("rows: 4", "rows: 5"))
    for argv in (("run", saved, "--run", run), ("status", run)):
        line = one_error_line(cli(*argv, env=env))
        assert f"{saved} was edited after the run was made (evolving.rows: 4 -> 5): " in line, line


def test_a_hand_edit_of_a_knob_overwritten_by_another_config_given_says_so(tmp_path):
    """A researcher edits RUN/config.yaml (workers: 4 -> 2) but resumes with the config file the run was
    made from (workers: 4): that one wins and is saved over the edit, which went silently; one warning
    line now names the key and both values. Resuming with the edited file itself says nothing of it."""
    env = _evolving(tmp_path, "v1", "    workers: int = knob(1, hashed=False)")
    cfg = _toy_config(tmp_path, "four.yaml", "name: e\ngenerations: 2\nexecutor: debug\n"
                                             "evolving: {rows: 4, workers: 4}\n")
    run, saved = tmp_path / "r", tmp_path / "r" / "config.yaml"
    assert cli("run", cfg, "--run", run, env=env).returncode == 0
    saved.write_text(saved.read_text().replace("workers: 4", "workers: 2"))
    p = cli("run", cfg, "--run", run, env=env)
    assert p.returncode == 0 and "2 already finished" in p.stdout, p.stdout + p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, p.stderr
    assert f"{saved} was edited by hand (evolving.workers: 2 by hand, 4 in the config given)" in warnings[0], p.stderr
    assert "workers: 4" in saved.read_text()
    saved.write_text(saved.read_text().replace("workers: 4", "workers: 2"))
    p = cli("run", saved, "--run", run, env=env)
    assert p.returncode == 0 and "edited by hand" not in p.stderr, p.stderr


def _as_an_older_version_wrote_it(run) -> str:
    """run.json as written before hand edits of knobs were taken: the hash alone, no copy of the config."""
    import json

    recorded = json.loads((run / "run.json").read_text())["config_hash"]
    (run / "run.json").write_text(json.dumps({"config_hash": recorded, "updated": 0.0}))
    return recorded


def test_a_knob_edited_by_hand_in_a_run_folder_of_an_older_version_resumes_where_its_config_is_found(tmp_path):
    """run.json of an older version keeps the config's hash alone: a hand edit of a how-it-runs knob in
    RUN/config.yaml was refused there as an edit of the run's config. The config the run was made with is
    found back now (the knob at plan.json's value, at its default, or unset where the older version had no
    such key: the one whose hash is the recorded one), and the edit resumes as --set does; where it cannot
    be found, one line says what cannot be told and what to do."""
    import json

    import yaml

    v0 = _evolving(tmp_path, "v0", "")  # no knob yet: its config.yaml writes no workers key
    env = _evolving(tmp_path, "v1", "    workers: int = knob(1, hashed=False, exact=False)")
    text = "name: e\ngenerations: 2\nexecutor: debug\nevolving: {rows: 4, workers: 4}\n"
    run, saved = tmp_path / "r", tmp_path / "r" / "config.yaml"
    assert cli("run", _toy_config(tmp_path, "four.yaml", text), "--run", run, env=env).returncode == 0
    made = saved.read_text()
    _as_an_older_version_wrote_it(run)
    saved.write_text(made.replace("workers: 4", "workers: 2"))  # plan.json tells the 4
    for argv in (("status", run), ("verify", run), ("aggregate", run)):
        p = cli(*argv, env=env)
        assert p.returncode == 0 and "error" not in p.stderr, p.stdout + p.stderr
    p = cli("run", saved, "--run", run, "--generations", "3", env=env)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr
    (warning,) = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:")]
    assert "evolving.workers: 4 -> 2: the run goes on" in warning, p.stderr
    variant = next(run.glob("evolving/*"))
    ran = [yaml.safe_load((variant / f"gen_{g:03d}" / "manifest.json").read_text())["config"]["evolving"]["workers"]
           for g in range(3)]
    assert ran == [4, 4, 2]
    assert json.loads((run / "run.json").read_text())["config"]["evolving"]["workers"] == 2  # its own from now on

    # without plan.json, an edit away from a value other than the default is not found: one line says so
    _as_an_older_version_wrote_it(run)
    (run / "plan.json").unlink()
    saved.write_text(saved.read_text().replace("workers: 2", "workers: 3"))
    for argv in (("status", run), ("run", saved, "--run", run)):
        line = one_error_line(cli(*argv, env=env))
        assert line == (f"error: {saved} was edited after the run was made: its values no longer hash to the "
                        f"{json.loads((run / 'run.json').read_text())['config_hash']} of run.json, which an older "
                        f"version wrote without a copy of the config, so which keys the edit changed cannot be told "
                        f"(a how-it-runs knob may change, other keys not); restore the file and give the knob with "
                        f"--set KEY=VALUE, or start another --run with the new values"), line

    # a run of a version before the knob, edited to set it: found unset, and an edit of a hashed key is refused
    old = tmp_path / "old"
    assert cli("run", _toy_config(tmp_path, "zero.yaml", text.replace(", workers: 4", "")), "--run", old,
               env=v0).returncode == 0
    assert "workers" not in (old / "config.yaml").read_text()
    _as_an_older_version_wrote_it(old)
    before = (old / "config.yaml").read_text()
    (old / "config.yaml").write_text(before.replace("rows: 4", "rows: 4\n  workers: 2"))
    p = cli("run", old / "config.yaml", "--run", old, "--generations", "3", env=env)
    assert p.returncode == 0 and "1 unit done, 2 already finished" in p.stdout, p.stdout + p.stderr
    assert "evolving.workers: 1 -> 2: the run goes on" in p.stderr, p.stderr
    _as_an_older_version_wrote_it(old)
    (old / "config.yaml").write_text((old / "config.yaml").read_text().replace("rows: 4", "rows: 5"))
    assert "so which keys the edit changed cannot be told" in one_error_line(cli("status", old, env=env))


def test_verify_counts_the_generations_a_stopped_chain_never_started(tmp_path):
    """A chain that failed at generation 1 of 4 read '1 units verified, 0 with mismatches, 1 unfinished':
    generations 2 and 3, never started, have no folder and went uncounted. An experiment left out
    with --only is not the run's, and is not counted."""
    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 4\nexecutor: debug\ntoy: {rows: 4, fail_at: 1}\n"
                                     "tail: {replicates: 1, samples: 20, categories: 30}\n")
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run, "--only", "toy").returncode != 0
    p = cli("verify", run)
    assert p.returncode == 0, p.stderr
    assert "1 unit verified, 0 with mismatches, 3 unfinished" in p.stdout, p.stdout


def test_verify_after_the_generations_were_shortened_checks_the_plan_and_names_the_rest_in_one_line(tmp_path):
    """A run made with 4 generations, then run with --generations 2: verify read '4 units verified' for
    a plan of 2 (status: 2/2 done), and failed on a changed generation the plan no longer holds."""
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 4\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    assert collapse("run", cfg, "--run", run, "--generations", "2")[0] == 0
    gen3 = run / "toy" / "replace-p0-s0" / "gen_003" / "metrics.parquet"
    data, kept = bytearray(gen3.read_bytes()), gen3.stat().st_mtime_ns
    data[len(data) // 2] ^= 0xFF
    gen3.write_bytes(bytes(data))
    os.utime(gen3, ns=(kept, kept))  # its time kept (a copy's): the skip check, by sizes, passes it
    rc, out, _ = collapse("verify", run)
    assert rc == 0 and "MISMATCH" not in out, out
    assert out.splitlines()[-2:] == [
        f"{run}: 2 units verified, 0 with mismatches, 0 unfinished",
        "2 finished generations beyond the plan, left from a run with more generations: 2 of toy (past its 2); "
        "not verified or counted above (a run with more --generations takes them up again)"]
    assert "generation 1 reached (2/2 done)" in collapse("status", run)[1]
    assert collapse("run", cfg, "--run", run, "--generations", "4")[0] == 0  # taken up again
    # run checks finished units through their manifests (sizes; a file's sha256 where it was written since), as
    # every launcher does; verify hashes them and names the changed one with the command that redoes it
    rc, out, _ = collapse("verify", run)
    assert rc == 1 and f"{run}: 3 units verified, 1 with mismatches, 0 unfinished" in out and "beyond" not in out
    redo = next(ln for ln in out.splitlines() if "redo with:" in ln).split("redo with: collapse-hpc ", 1)[1]
    assert collapse(*shlex.split(redo))[0] == 0
    rc, out, _ = collapse("verify", run)
    assert rc == 0 and f"{run}: 4 units verified, 0 with mismatches, 0 unfinished" in out


def test_the_report_after_the_generations_were_shortened_counts_the_plan_and_notes_the_rest(tmp_path):
    """As verify and status: a run made with 4 generations, then run with --generations 2; the report's
    Progress table said 4 finished units of 2 planned. It counts the plan's now, the rest in one note."""
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 4\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    assert collapse("run", cfg, "--run", run, "--generations", "2")[0] == 0
    assert collapse("aggregate", run)[0] == 0
    for page, heading in (("results.md", "## Progress"), ("index.html", '<h2 id="progress">')):
        text = (run / "report" / page).read_text()
        progress = text[text.index(heading):text.index("Compute", text.index(heading))]
        assert "2 finished generations beyond the plan, left from a run with more generations: 2 of toy (past " \
               "its 2); not counted above" in progress, progress
    progress = (run / "report" / "results.md").read_text().split("## Progress")[1].split("## Compute")[0]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in progress.splitlines() if "replace-p0-s0" in ln]
    assert [r[1:] for r in rows] == [["toy", "replace-p0-s0", "2", "2", "0", "0", "0"]], progress


@pytest.mark.parametrize("argv, says", [
    (("run", "configs/demo.yaml", "--generations", "abc"), "collapse-hpc run: argument --generations: invalid int"),
    (("nosuch",), "collapse-hpc: argument COMMAND: invalid choice: 'nosuch'"),
    (("data", "prepare"), "collapse-hpc data prepare: the following arguments are required: NAME"),
    (("lm", "configs/demo.yaml", "--generate_percentage", "x"), "collapse-hpc lm: argument"),
    # a subcommand's unknown flag: its own --help lists its flags, the top one does not
    (("lm", "--bogus"), "collapse-hpc lm: unrecognized arguments: --bogus"),
    (("config", "configs/demo.yaml", "--run", "r"), "collapse-hpc config: unrecognized arguments: --run r"),
    (("data", "prepare", "x", "--bogus"), "collapse-hpc data prepare: unrecognized arguments: --bogus"),
    (("--bogus", "status", "r"), "collapse-hpc: unrecognized arguments: --bogus"),
])
def test_bad_usage_is_one_error_line_naming_the_commands_help(argv, says):
    line = one_error_line(cli(*argv))
    command = says.split(":")[0]
    assert line.startswith(f"error: {says}") and line.endswith(f"(see {command} --help)"), line


def test_every_commands_help_ends_with_what_bad_input_does():
    from collapse_hpc import cli as cli_module

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    yield from parsers(sub)

    said = " ".join(cli_module.EPILOG.split())
    for parser in parsers(cli_module._parser()):
        assert " ".join(parser.format_help().split()).endswith(said), parser.prog


def test_a_folder_given_as_config_or_profile_is_said_to_be_a_folder(tmp_path):
    """Not 'not found': the folder is there; the user named it instead of the YAML file in it."""
    line = one_error_line(cli("run", tmp_path, "--run", tmp_path / "r"))
    assert f"{tmp_path}: a folder, not a config file" in line, line
    line = one_error_line(cli("run", "configs/demo.yaml", "--run", tmp_path / "r", "--profile", tmp_path))
    assert f"{tmp_path}: a folder, not a cluster profile" in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, says", [
    (("run", "configs/demo.yaml"), "finished units are kept"),
    (("gmm", "configs/demo.yaml", "--unit", "0"), "finished units are kept"),
    (("aggregate", "runs/demo"), "the report has no page"),
])
def test_ctrl_c_says_what_is_left_and_how_to_go_on(argv, says, monkeypatch, capsys):
    from collapse_hpc import cli as cli_module

    def stopped(args):
        raise KeyboardInterrupt
    for name in ("run", "aggregate"):
        monkeypatch.setitem(cli_module.COMMANDS, name, stopped)
    monkeypatch.setattr(cli_module, "cmd_experiment", stopped)
    assert cli_module.main(list(argv)) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted: ") and says in err and "the same command" in err, err


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    """The command's module imported numpy and the config's modules before main() was entered: a Ctrl-C in
    that first half second was a KeyboardInterrupt traceback. The interrupt is made to land in numpy's import,
    wherever that now happens; the entry point is the console script's (collapse_hpc.cli:main)."""
    script = (
        "import sys\n"
        "class Ctrl_c:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Ctrl_c())\n"
        "from collapse_hpc.cli import main\n"
        f"sys.exit(main(['verify', {str(tmp_path)!r}]))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert (p.returncode, p.stderr) == (130, "interrupted\n"), p.stderr


def test_an_empty_path_is_refused_not_taken_as_the_default(tmp_path):
    """`--run "$RUN"` with RUN unset ran into runs/<config name> (the default), `aggregate ""` read as
    ': not a run folder'; every path argument now refuses an empty one, writing nothing."""
    cfg = _toy_config(tmp_path)
    for argv, arg in ((("run", cfg, "--run", ""), "--run"), (("run", ""), "config"), (("aggregate", ""), "RUN"),
                      (("verify", ""), "run"), (("status", ""), "run"), (("cancel", ""), "run"),
                      (("aggregate", tmp_path, "--out", ""), "--out"), (("submit", cfg, "--profile", ""), "--profile"),
                      (("data", "prepare", "digits", "--data-dir", ""), "--data-dir"), (("config", ""), "config")):
        line = one_error_line(cli(*argv, cwd=tmp_path))
        assert f": argument {arg}: an empty path (an unset shell variable?)" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


def test_the_lm_command_refuses_every_empty_path_as_the_others_do(tmp_path):
    """`collapse-hpc lm CONFIG --run "$RUN"` with RUN unset ran into runs/<config name>, and an empty
    --save-name or --generate trained into the current folder: its path arguments now take the same type
    as every other command's, with the same words."""
    cfg = _toy_config(tmp_path)
    cases = [(("lm", cfg, "--run", ""), "--run"), (("lm", ""), "config"), (("lm", "--data-dir", ""), "--data-dir")]
    cases += [(("lm", flag, ""), f"{short}/{flag}") for short, flag in (
        ("-load", "--load-name"), ("-save", "--save-name"), ("-saveperplexities", "--saveperplexities"),
        ("-st", "--saveto"), ("-gen", "--generate"), ("-load-gen", "--load-generate"))]
    for argv, arg in cases:
        line = one_error_line(cli(*argv, cwd=tmp_path))
        assert line == (f"error: collapse-hpc lm: argument {arg}: an empty path (an unset shell variable?); "
                        f"give a path (see collapse-hpc lm --help)"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.yaml"]


def test_run_folder_that_is_a_file_is_named(tmp_path):
    """--run naming a file: said as such before anything, not mkdir's bare 'File exists'."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n")
    (tmp_path / "r").write_text("notes\n")
    for args in (("run", cfg), ("submit", cfg, "--dry-run", "--profile", REPO / "slurm/local.yaml"), ("toy", cfg)):
        line = one_error_line(cli(*args, "--run", tmp_path / "r", cwd=tmp_path))
        assert f"--run {tmp_path / 'r'}: a file, not a folder" in line, line
    assert (tmp_path / "r").read_text() == "notes\n"


def test_a_folder_to_make_behind_a_file_or_a_link_to_nothing_is_named(tmp_path):
    """A run folder, --data-dir or --out below a file, or a symbolic link to a folder not there (a scratch
    folder cleaned away): each read mkdir's bare 'File exists' or 'Not a directory'."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n")
    (tmp_path / "afile").write_text("notes\n")
    (tmp_path / "gone").symlink_to(tmp_path / "scratch")
    for where, said in ((tmp_path / "afile" / "r", f"{tmp_path / 'afile'}: a file, not a folder"),
                        (tmp_path / "gone", f"{tmp_path / 'gone'}: a symbolic link to {tmp_path / 'scratch'}, which "
                                            f"is not there"),
                        (tmp_path / "gone" / "r", f"{tmp_path / 'gone'}: a symbolic link")):
        for args, flag in ((("run", cfg, "--run"), "--run"),
                           (("data", "prepare", "digits", "--data-dir"), "--data-dir"),
                           (("aggregate", tmp_path / "nothing", "--out"), "--out")):
            line = one_error_line(cli(*args, where, cwd=tmp_path))
            assert line.startswith(f"error: {flag} {said}"), line
    assert not (tmp_path / "scratch").exists() and (tmp_path / "afile").read_text() == "notes\n"


def test_held_notes_are_said_once_the_command_goes_ahead(capsys):
    import logging

    from collapse_hpc import logs

    logs.setup()
    log = logging.getLogger("collapse_hpc.gmm")
    with logs.held() as notes:
        log.warning("a note of the checks")
    assert "a note of the checks" not in capsys.readouterr().err
    notes.say()
    assert "a note of the checks" in capsys.readouterr().err
    try:
        with logs.held():
            log.warning("dropped")
            raise ValueError
    except ValueError:
        pass
    log.warning("after")
    err = capsys.readouterr().err
    assert "dropped" not in err and "after" in err


def test_what_an_error_line_quotes_from_the_input_shows_what_it_holds(tmp_path):
    """A path holding a terminal's control sequences (ESC, the one-character CSI U+009B), a right-to-left
    override or a no-break space: the error line escaped C0 controls only and wrote the rest raw (the
    terminal acted on the CSI, the override reordered the line, the space passed for a plain one). Each
    is now written as its escape, as verify writes file names (errors.one_line, the one function)."""
    odd = tmp_path / "a\x1b[2J\x9b2Jb\u202ecba\xa0c"
    line = one_error_line(cli("data", "prepare", "x", "--from", odd, "--data-dir", tmp_path / "data"))
    assert line == f"error: --from {tmp_path}/a\\x1b[2J\\x9b2Jb\\u202ecba\\xa0c: no such file or folder"


@pytest.mark.parametrize("name", ["images.npz", "images.npy"])
def test_a_file_of_no_format_prepare_reads_says_what_image_data_the_vae_takes(tmp_path, name):
    """`data prepare NAME --from images.npz`: the line listed the lm's text formats only, never the vae's
    IDX images that --help documents; it names them now, and nothing is written."""
    (tmp_path / name).write_bytes(b"\x93NUMPY not text")
    line = one_error_line(cli("data", "prepare", "mine", "--from", tmp_path / name, "--data-dir", tmp_path / "data"))
    assert line.startswith(f"error: --from {tmp_path / name}: not a format prepare reads; give text (.txt"), line
    assert "; or, for the vae, grey images as a folder of the four IDX files of MNIST's names (train-images-idx3-" \
           "ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or not" in line, line
    assert not (tmp_path / "data" / "mine").exists()


@pytest.mark.parametrize("name,said", [("dataset_dict.json", "datasets' description of the data set saved in"),
                                       ("corpus.parquet.gz", "gz-compressed Parquet, which compresses its own"),
                                       ("notes.md", "not a format prepare reads (text")])
def test_a_file_of_text_prepare_does_not_read_is_told_so_without_the_vaes_images(tmp_path, name, said):
    """A lone file of text (datasets' description, a Parquet file gzipped, Markdown) was told, after how to give
    it, "; or, for the vae, grey images as … IDX files": images it cannot be. That is said where it may apply."""
    (tmp_path / name).write_bytes(b"\x1f\x8b not read" if name.endswith(".gz") else b'{"splits": ["train"]}')
    line = one_error_line(cli("data", "prepare", "mine", "--from", tmp_path / name, "--data-dir", tmp_path / "data"))
    assert line.startswith(f"error: --from {tmp_path / name}: {said}"), line
    assert "for the vae" not in line, line
    assert not (tmp_path / "data").exists()


def test_a_folder_of_markdown_notes_is_told_how_to_read_them_without_the_vaes_images(tmp_path):
    """A folder of Markdown (and a README.json) was told the find line that names them .txt, then "; or, for the
    vae, grey images as … IDX files"; beside a file of no text (an .npz) that is still said."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nsome text\n")
    (notes / "README.json").write_text('{"license": "mine"}')
    line = one_error_line(cli("data", "prepare", "mine", "--from", notes, "--data-dir", tmp_path / "data"))
    assert line.startswith(f"error: --from {notes}: no file of a format prepare reads"), line
    assert line.endswith(".md files are plain text, read as a row per line when named .txt: find "
                         f"{notes} -name '*.md' -exec sh -c 'cp \"$0\" \"${{0%.md}}.txt\"' {{}} \\;"), line
    (notes / "images.npz").write_bytes(b"\x93NUMPY not text")
    line = one_error_line(cli("data", "prepare", "mine", "--from", notes, "--data-dir", tmp_path / "data"))
    assert "; or, for the vae, grey images as a folder of the four IDX files" in line, line
    assert not (tmp_path / "data").exists()


def test_one_line_escapes_what_does_not_print_as_itself_and_keeps_the_rest():
    from collapse_hpc.errors import one_line

    assert one_line("key 'a\nb'\tin\r\x00\x7f\x85\u2028\u2029") == "key 'a\\nb'\\tin\\r\\x00\\x7f\\x85\\u2028\\u2029"
    assert one_line("\x9b\u202e\u2066\u200b\u200d\xa0\u3000\udcff") == \
        "\\x9b\\u202e\\u2066\\u200b\\u200d\\xa0\\u3000\\udcff"
    kept = "σ̂² → 10⁻³ … — ‘quoted’ 数据 émigré path/with spaces and \\ backslash"
    assert one_line(kept) == kept and one_line(3) == "3"


@pytest.mark.parametrize("flags", [("--set", "lm.epochs=3"), ("--generations", "5")])
def test_config_without_a_file_refuses_what_only_a_file_takes(flags):
    # `collapse-hpc config --set lm.epochs=3` printed the key list, exit 0, the override silently dropped
    p = cli("config", *flags)
    assert one_error_line(p).startswith(f"error: config: {flags[0]} resolves a config: give its file")
    assert p.stdout == ""


def test_verify_reads_each_units_manifest_once(tmp_path, monkeypatch, capsys):
    # its binding, its state, its inputs and the earlier-config count each read it: ~5 times a unit
    import pathlib

    from collapse_hpc.verify import verify_run
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 3\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    reads, real = [], pathlib.Path.read_text
    monkeypatch.setattr(pathlib.Path, "read_text",
                        lambda self, *a, **k: (self.name == "manifest.json" and reads.append(self.parent.name))
                        or real(self, *a, **k))
    assert verify_run(run) == 0
    assert sorted(reads) == ["gen_000", "gen_001", "gen_002"]
    assert "3 units verified, 0 with mismatches" in capsys.readouterr().out


def test_verify_reads_the_runs_config_once(tmp_path, monkeypatch, capsys):
    # the hashes the run was made under, the hash it is under now and the plan's config each read config.yaml
    from collapse_hpc import yamlfile
    from collapse_hpc.verify import verify_run
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 2\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    reads, read = [], yamlfile.read
    monkeypatch.setattr(yamlfile, "read", lambda path, *a: reads.append(path) or read(path, *a))
    assert verify_run(run) == 0
    assert reads == [run / "config.yaml"]
    assert "2 units verified, 0 with mismatches" in capsys.readouterr().out


def test_a_data_set_of_your_own_files_prepared_again_by_name_asks_for_them(tmp_path):
    # `data prepare NAME --force`, which a changed or unreadable split's line tells, answered
    # "unknown data set" for a name prepared from the user's files; without --force, so did a rerun
    from collapse_hpc.data import prepare
    from collapse_hpc.errors import UserError

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("".join(f"line {i} of a story about a cat\n" for i in range(3000)))
    assert prepare("story", tmp_path / "data", source=str(tmp_path / "text")) == 0
    p = cli("data", "prepare", "story", "--data-dir", tmp_path / "data")
    assert p.returncode == 0 and "story: already prepared from local files: text (to redo: --from PATH --force)" \
        in p.stdout, p.stdout + p.stderr
    with pytest.raises(UserError, match=r"story: prepared from local files: text; to prepare it again give them: "
                                        r"collapse-hpc data prepare story --from PATH --force$"):
        prepare("story", tmp_path / "data", force=True)
    with pytest.raises(UserError, match="unknown data set 'tale'"):
        prepare("tale", tmp_path / "data", force=True)


def test_a_run_or_data_folder_whose_path_is_not_utf8_is_refused_before_anything_is_written(tmp_path):
    """A folder named in latin-1 (b'r\\xe9sultats'): Parquet's writer takes only UTF-8 paths, so every
    unit failed there on a UnicodeEncodeError, and data prepare stopped on its traceback."""
    cfg = _toy_config(tmp_path)
    where = tmp_path / os.fsdecode(b"r\xe9sultats")
    line = one_error_line(cli("run", cfg, "--run", where / "run"))
    assert "the path is not UTF-8" in line and "--run " in line
    (tmp_path / "corpus.txt").write_text("a line of text\n" * 400)
    line = one_error_line(cli("data", "prepare", "mine", "--from", tmp_path / "corpus.txt", "--data-dir", where))
    assert "--data-dir " in line and "the path is not UTF-8" in line
    assert not where.exists()


def test_a_run_estimated_past_its_file_systems_free_space_is_warned_of_before_it_starts(tmp_path, caplog):
    """gaussian over 100,000 generations of a million replicates: 8.8 TB of metrics, learnt only when
    the disk filled midway. The warning comes with the checks, before the run folder is made."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.cli import _warn_disk
    from collapse_hpc.store import RunStore

    cfg = tmp_path / "big.yaml"
    cfg.write_text("name: big\nexecutor: local\nseeds: [0]\nregimes: [replace]\nlm: {enabled: false}\n"
                   "vae: {enabled: false}\ngmm: {enabled: false}\ngaussian: {generations: 100000, samples: [10], "
                   "replicates: 1000000, chunk_replicates: 100}\n")
    store = RunStore(tmp_path / "run")
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        run = experiments.load_config(str(cfg), [], None)
        _warn_disk(store, run, engine.plan(run))
        small = experiments.load_config(str(cfg), ["gaussian.generations=10", "gaussian.replicates=100"], None)
        _warn_disk(store, small, engine.plan(small))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "TiB still to write, more than the " in warned[0], warned
    assert "it may stop on a full disk midway" in warned[0] and not store.root.exists()


def test_a_report_to_or_of_a_folder_whose_path_is_not_utf8_is_one_line_and_writes_nothing(tmp_path):
    """aggregate --out b'r\\xe9port' stopped on pyarrow's UnicodeEncodeError, leaving the folder half made."""
    cfg = _toy_config(tmp_path)
    assert cli("run", cfg, "--run", tmp_path / "run").returncode == 0
    out = tmp_path / os.fsdecode(b"r\xe9port")
    line = one_error_line(cli("aggregate", tmp_path / "run", "--out", out))
    assert line.startswith("error: --out ") and "the path is not UTF-8" in line and not out.exists()
    moved = tmp_path / os.fsdecode(b"run-\xe9")
    shutil.copytree(tmp_path / "run", moved)
    assert "the path is not UTF-8" in one_error_line(cli("aggregate", moved))
    assert not (moved / "report").exists()


def test_a_pipe_given_to_data_prepare_is_said_to_be_a_pipe(tmp_path):
    """`--from /dev/stdin` or `--from <(zcat corpus.gz)`: the line said "no file of a format prepare
    reads", as if the text were of the wrong kind; it says a pipe is not read, and what to give."""
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    line = one_error_line(cli("data", "prepare", "mine", "--from", fifo, "--data-dir", tmp_path / "data"))
    assert line.startswith(f"error: --from {fifo}: a pipe, which prepare does not read"), line
    assert "write the text to a file first" in line
    piped = subprocess.run([sys.executable, "-m", "collapse_hpc", "data", "prepare", "mine", "--from", "/dev/stdin",
                            "--data-dir", str(tmp_path / "data")], input="a line of text\n" * 400,
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert one_error_line(piped).startswith("error: --from /dev/stdin: a pipe, which prepare does not read")
    assert not (tmp_path / "data").exists()


def test_a_file_redirected_to_stdin_is_prepared_as_that_file(tmp_path):
    """`--from /dev/stdin < corpus.txt`: standard input is then the file itself, not a pipe, and was read as a
    file named "stdin": the line said it was "not a format prepare reads" of a .txt file. The file is read
    by its own name (its format, and the card's source); one deleted since it was opened is refused in a line
    that says so."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a small corpus with words {i % 7} and {i % 11}\n" for i in range(400)))
    command = [sys.executable, "-m", "collapse_hpc", "data", "prepare", "mine", "--from", "/dev/stdin",
               "--data-dir", str(tmp_path / "data")]
    with corpus.open() as stdin:
        done = subprocess.run(command, stdin=stdin, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"--from /dev/stdin: reading {corpus}" in done.stderr
    assert json.loads((tmp_path / "data" / "mine" / "card.json").read_text())["source"] == "local files: corpus.txt"
    gone = tmp_path / "gone.txt"
    gone.write_text(corpus.read_text())
    with gone.open() as stdin:
        gone.unlink()
        refused = subprocess.run([*command[:5], "other", *command[6:]], stdin=stdin, capture_output=True,
                                 text=True, cwd=REPO, timeout=300)
    line = one_error_line(refused)
    assert line.startswith("error: --from /dev/stdin: an open file no longer there under its name ("), line
    assert not (tmp_path / "data" / "other").exists()


def test_kaggles_mnist_csv_given_to_data_prepare_is_said_to_be_images(tmp_path):
    """Kaggle's MNIST as CSV (a label and 784 pixel columns 1x1 … 28x28): the line listed all 785 column
    names (some 4 KB) and asked to name the text column 'text'. It says these are images, names a few
    columns, and says what the vae reads."""
    header = "label," + ",".join(f"{i}x{j}" for i in range(1, 29) for j in range(1, 29))
    (tmp_path / "mnist_train.csv").write_text(header + "\n" + "5," + ",".join("0" * 784) + "\n")
    line = one_error_line(cli("data", "prepare", "handwriting", "--from", tmp_path / "mnist_train.csv",
                              "--data-dir", tmp_path / "data"))
    assert line.startswith(f"error: {tmp_path / 'mnist_train.csv'}: 784 pixel columns (label, 1x1, 1x2 and 782 more): "
                           f"images, not text"), line
    assert "; or, for the vae, grey images as a folder of the four IDX files" in line and len(line) < 800
    assert not (tmp_path / "data").exists()


def test_data_prepare_into_a_data_dir_that_is_a_file_is_one_line_before_reading(tmp_path):
    """--data-dir naming a file, or a path under one: the line named the data set's temporary folder
    (.tmp-x.preparing: Not a directory) once the text was read, or said 'File exists' for a built-in one."""
    from collapse_hpc import data
    from collapse_hpc.errors import UserError

    (tmp_path / "afile").write_text("")
    (tmp_path / "c.txt").write_text("a line of text\n" * 10)
    said = f"--data-dir {tmp_path / 'afile'}: a file, not a folder; a folder is made there: give a folder's path"
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        for source in (["--from", tmp_path / "c.txt"], []):
            name = "x" if source else "digits"
            assert one_error_line(cli("data", "prepare", name, *source, "--data-dir", where)) == f"error: {said}"
            with pytest.raises(UserError, match=re.escape(said)):  # called from code, as a run prepares digits
                data.prepare(name, where, source=str(source[1]) if source else None)
    assert (tmp_path / "afile").read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c.txt"]


def test_data_prepare_into_a_folder_the_file_system_will_not_make_names_it_with_why(tmp_path):
    """--data-dir under /proc read a preparer's bare "[Errno 2] No such file or directory: '/proc/nope/.tmp-…'":
    neither the folder asked for nor why. Now the line names both, as --run's does; a refused preparation still
    leaves no data folder it made."""
    for where in ("/proc/nope/x", "/proc/nope"):
        line = one_error_line(cli("data", "prepare", "digits", "--data-dir", where, cwd=tmp_path))
        assert line == (f"error: --data-dir {where}: the folder could not be made: /proc/nope: No such file or "
                        f"directory, though /proc is there (the kernel's file systems, /proc and /sys, take no "
                        f"folders); give a folder that can be made"), line
    one_error_line(cli("data", "prepare", "nosuchset", "--data-dir", tmp_path / "data" / "sub"))
    assert not (tmp_path / "data").exists()


def test_every_command_that_reads_a_run_folder_words_a_path_that_is_none_alike(tmp_path):
    # cancel said "no such run folder" where status, verify and aggregate said "not a run folder (no config.yaml)"
    from tests.launch.helpers import collapse

    (tmp_path / "empty").mkdir()
    (tmp_path / "a file").write_text("x")
    for name, what in [("nowhere", "no such run folder"), ("empty", "not a run folder (no config.yaml)"),
                       ("a file", "not a run folder (a file)")]:
        said = set()
        for command in ("status", "cancel", "verify", "aggregate"):
            rc, out, err = collapse(command, tmp_path / name)
            assert (rc, out) == (2, ""), (command, err)
            said.add(err)
        assert said == {f"error: {tmp_path / name}: {what}; collapse-hpc run or submit makes one (runs/<config "
                        f"name>, or --run FOLDER)\n"}, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "empty"]  # nothing written


def _without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


# plan.json damaged by hand or by a tool: valid JSON of another shape than the one a run writes
DAMAGED_PLANS = [
    (lambda d: [d], "the file is a list, not a mapping"),
    (lambda d: {**d, "chains": [["toy"]]}, "chain 1 is a list, not a mapping"),
    (lambda d: {k: v for k, v in d.items() if k != "config_hash"}, "the file has no 'config_hash'"),
    (lambda d: {**d, "chains": [{k: v for k, v in d["chains"][0].items() if k != "seed"}]}, "chain 1 has no 'seed'"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "settings": []}]}, "chain 1's 'settings' is a list, not a mapping"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "units": "2"}]}, "chain 1's 'units' is text, not a whole number"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "regime": _without(d["chains"][0]["regime"], "overrides")}]},
     "chain 1 (toy/replace-p0-s0) lacks 'overrides'"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "regime": {}}]}, "chain 1's regime has no 'label'"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "regime": _without(d["chains"][0]["regime"], "keep_fraction")}]},
     "chain 1's regime has no 'keep_fraction'"),
    (lambda d: {**d, "chains": [{**d["chains"][0], "setting": [1]}]},
     "chain 1 (toy/replace-p0-s0) holds a value of another kind than this version writes"),
]


def test_a_plan_of_another_shape_is_one_line_naming_the_file_and_what_to_do(tmp_path):
    # a chain that is a list, a missing key: status printed "(TypeError: list indices must be integers …)",
    # "(KeyError: 'seed')", or for a plan without its config_hash that it was made for another config
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    plan = run / "plan.json"
    written = json.loads(plan.read_text())
    for damage, what in DAMAGED_PLANS:
        plan.write_text(json.dumps(damage(written)))
        rc, out, err = collapse("status", run)
        assert (rc, out) == (2, "") and err == (f"error: {plan}: not a plan this version reads ({what}); run or "
                                                f"submit the run's config again to plan it anew\n"), err
        rc, out, err = collapse("verify", run)  # its units are verified still; which are unfinished is unknown
        assert rc == 0 and "2 units verified" in out and err.startswith(f"note: {plan}: not a plan this version "
                                                                         f"reads ({what})"), err
    rc, out, err = collapse("run", cfg, "--run", run)  # what the line says to do
    assert rc == 0 and json.loads(plan.read_text()) == written, err
    assert collapse("status", run)[0] == 0


def test_the_report_of_a_run_whose_plan_has_another_shape_reads_the_manifests_and_says_why(tmp_path, caplog):
    # a plan whose chain's settings were a list ended the report on a traceback (AttributeError: 'list' …)
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    plan = run / "plan.json"
    written = json.loads(plan.read_text())
    for damage, what in [("settings", "chain 1's 'settings' is a list"), ("regime", "chain 1's regime has no 'label'")]:
        caplog.clear()  # a regime without its label read as "no usable plan ('label')", a KeyError's words
        chain = {**written["chains"][0], "settings": []} if damage == "settings" else \
            {**written["chains"][0], "regime": _without(written["chains"][0]["regime"], "label")}
        plan.write_text(json.dumps({**written, "chains": [chain]}))
        rc, out, err = collapse("aggregate", run)
        assert rc == 0 and out.strip() == str(run / "report" / "index.html"), err
        said = [r.getMessage() for r in caplog.records if "no usable plan" in r.getMessage()]
        assert len(said) == 1 and f"{plan}: not a plan this version reads ({what}" in said[0], said
        assert "| r | toy | replace-p0-s0 | 2 | ? |" in (run / "report" / "results.md").read_text()  # the manifests


def test_a_unit_redone_by_hand_keeps_the_run_s_own_executor(tmp_path):
    """verify's redo command (collapse-hpc EXPERIMENT RUN/config.yaml --run RUN --unit N) saved the run's config
    with executor debug: the run's own command then ran every unit left in one process (a Slurm run's on the
    login node). The unit runs in this process; the run's config still says where the run runs."""
    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 2\nexecutor: local\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    for by_hand in ((cfg, "--unit", "0"), (run / "config.yaml", "--unit", "1")):
        p = cli("toy", *by_hand, "--run", run)
        assert p.returncode == 0, p.stderr
        assert "\nexecutor: local\n" in (run / "config.yaml").read_text()
    assert json.loads((run / "run.json").read_text())["config"]["executor"] == "local"


def test_the_run_log_says_what_aggregate_did(tmp_path):
    """aggregate printed its lines (figures drawn, the page's path) to the terminal only: the run's log said how
    the run began and ended, but not that its report was written. They go into the run's log too; a report
    written elsewhere (--out) leaves the run's log as it was."""
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    assert cli("run", cfg, "--run", run).returncode == 0
    log = run / "logs" / "collapse-hpc.log"
    before = log.read_text()
    p = cli("aggregate", run, "--out", tmp_path / "elsewhere")
    assert p.returncode == 0 and log.read_text() == before, p.stderr
    p = cli("aggregate", run)
    assert p.returncode == 0, p.stderr
    added = log.read_text()[len(before):].splitlines()
    said = p.stdout.strip().splitlines()[-1]
    assert said.endswith("index.html") and added[-1].endswith(f"INFO: {said}"), added
    assert any("report: toy:" in ln and "figures" in ln for ln in added), added  # as on the terminal


def test_verify_of_a_run_folder_removed_while_it_reads_ends_in_one_line(tmp_path, monkeypatch):
    """rm -rf RUN while verify ran: the units it had not reached yet were counted unfinished, exit 0."""
    from collapse_hpc import verify
    from tests.launch.helpers import collapse

    cfg = _toy_config(tmp_path, text="name: toy\ngenerations: 3\nexecutor: debug\ntoy: {rows: 4}\n")
    run = tmp_path / "r"
    assert collapse("run", cfg, "--run", run)[0] == 0
    real = verify.verify_unit

    def then_removed(unit, **kwargs):
        problems = real(unit, **kwargs)
        shutil.rmtree(run)
        return problems

    monkeypatch.setattr(verify, "verify_unit", then_removed)
    rc, out, err = collapse("verify", run)
    assert rc == 2, (out, err)
    assert "unfinished" not in out
    assert err.strip().splitlines() == [
        f"error: {run}: the run folder was removed while verify read it; the units it had not reached are not "
        f"verified (nothing of the run is made again)"]
    assert not run.exists()


@pytest.mark.parametrize("command", ["run", "toy"])
def test_a_run_log_that_is_a_folder_is_refused_in_one_line_before_any_unit(tmp_path, command):
    """RUN/logs/collapse-hpc.log a folder: the launcher ended on 'error: [Errno 21] Is a directory', naming neither
    the file nor what to do."""
    cfg = _toy_config(tmp_path)
    run = tmp_path / "r"
    (run / "logs" / "collapse-hpc.log").mkdir(parents=True)
    line = one_error_line(cli(command, cfg, "--run", run))
    assert line == (f"error: {run}/logs/collapse-hpc.log: a folder where the run keeps its log file; move it away, "
                    f"then run the same command again"), line
    assert not list(run.glob("toy/*/gen_*/manifest.json"))


def test_a_run_log_that_cannot_be_opened_is_named_with_what_to_do(tmp_path, monkeypatch):
    """A read-only log file (or file system): 'error: …: Permission denied' said nothing of what to do."""
    import errno

    from collapse_hpc import logs
    from collapse_hpc.errors import UserError

    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(logs, "RunLog", refused)
    with pytest.raises(UserError) as e:
        logs.setup(run_dir=tmp_path)
    assert str(e.value) == (f"{tmp_path}/logs/collapse-hpc.log: the run's log file cannot be written (Permission "
                            f"denied); make it writable to you (or move it), then run the command again")
