"""The run never deletes or writes through a symbolic link in its folder: one error line naming
the link, exit 2, the link's target untouched; removed, the run resumes to the same results."""
import pyarrow.parquet as pq
import pytest

from collapse_hpc import cli

TOY = "name: t\nexecutor: debug\ngenerations: 3\nseeds: [0]\ntoy: {rows: 4}\n"


def _run(tmp_path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(["run", str(tmp_path / "c.yaml"), "--run", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize("where", ["unit", "inside"])
def test_a_symlink_in_the_run_is_refused_and_its_target_kept(tmp_path, capsys, where):
    (tmp_path / "c.yaml").write_text(TOY)
    assert _run(tmp_path, capsys)[0] == 0
    variant = tmp_path / "run" / "toy" / "replace-p0-s0"
    expected = pq.read_table(variant / "gen_002" / "metrics.parquet")
    important = tmp_path / "important"
    important.mkdir()
    (important / "thesis.tex").write_text("years of work")
    if where == "unit":  # a unit folder that is a link
        for g in ("gen_001", "gen_002"):
            for p in sorted((variant / g).rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            (variant / g).rmdir()
        (variant / "gen_001").symlink_to(important)
        link = variant / "gen_001"
    else:  # a resumable sub-folder of an unfinished unit that is a link
        (variant / "gen_002" / "manifest.json").unlink()
        (variant / "gen_002" / "steps").symlink_to(important)
        link = variant / "gen_002" / "steps"
    code, errors = _run(tmp_path, capsys)
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {link}: a symbolic link")
    assert (important / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in important.iterdir()) == ["thesis.tex"]
    link.unlink()
    assert _run(tmp_path, capsys)[0] == 0
    assert pq.read_table(variant / "gen_002" / "metrics.parquet").equals(expected)


def test_the_job_pickles_folder_is_writable_by_its_owner_only(tmp_path, capsys):
    """submitit's pickles in logs/submitit are code the jobs run: the run closes that folder to
    group and others, whatever the umask, and refuses a link there."""
    import os
    import stat

    (tmp_path / "c.yaml").write_text(TOY)
    old = os.umask(0o002)  # a shared group's umask
    try:
        assert _run(tmp_path, capsys)[0] == 0
    finally:
        os.umask(old)
    for folder in ("logs", "logs/submitit"):
        assert not stat.S_IMODE((tmp_path / "run" / folder).stat().st_mode) & 0o022, folder
    os.chmod(tmp_path / "run" / "logs" / "submitit", 0o777)  # opened by someone since
    assert _run(tmp_path, capsys)[0] == 0
    assert stat.S_IMODE((tmp_path / "run" / "logs" / "submitit").stat().st_mode) == 0o755


@pytest.mark.parametrize("where", ["unit", "variant", "logs"])
def test_a_file_where_the_run_keeps_a_folder_is_named_kept_and_moved_away_the_run_goes_on(tmp_path, capsys, where):
    """A plain file where a unit's (or its variant's) folder goes was said as a refused read, "not read (Not a
    directory) … run the same command again", which never helped (logs/: "File exists"). Now the line names the
    file, which is kept; moved away, the run remakes what was there to the same results."""
    (tmp_path / "c.yaml").write_text(TOY)
    assert _run(tmp_path, capsys)[0] == 0
    variant = tmp_path / "run" / "toy" / "replace-p0-s0"
    expected = pq.read_table(variant / "gen_002" / "metrics.parquet")
    stray = {"unit": variant / "gen_001", "variant": variant, "logs": tmp_path / "run" / "logs"}[where]
    for p in sorted(stray.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    stray.rmdir()
    stray.write_text("notes")
    for command in (["run", str(tmp_path / "c.yaml"), "--run", str(tmp_path / "run")],
                    *([["status", str(tmp_path / "run")]] if where != "logs" else [])):
        capsys.readouterr()
        assert cli.main(command) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"error: {stray}: a file where the run keeps a folder, which it makes once the file is gone; move it "
            f"away (nothing the run did not write is deleted), then run the same command again")
    assert stray.read_text() == "notes"
    stray.rename(tmp_path / "notes")
    assert _run(tmp_path, capsys)[0] == 0
    assert pq.read_table(variant / "gen_002" / "metrics.parquet").equals(expected)


@pytest.mark.parametrize("where", ["experiment", "variant", "unit"])
def test_verify_names_a_file_where_the_run_keeps_a_folder_as_a_problem_found(tmp_path, capsys, where):
    """verify counted the units under a plain file (an experiment's, a variant's or a unit's folder replaced by
    one) as unfinished, exit 0, the file unnamed; run and status named it. Now verify names it once, as they do,
    and counts the units under it as problems found (exit 1)."""
    (tmp_path / "c.yaml").write_text(TOY)
    assert _run(tmp_path, capsys)[0] == 0
    experiment = tmp_path / "run" / "toy"
    stray = {"experiment": experiment, "variant": experiment / "replace-p0-s0",
             "unit": experiment / "replace-p0-s0" / "gen_001"}[where]
    for p in sorted(stray.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    stray.rmdir()
    stray.write_text("notes")
    capsys.readouterr()
    assert cli.main(["verify", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out.splitlines()
    said = [ln for ln in out if ln.startswith(f"MISMATCH {stray}")]
    assert said == [f"MISMATCH {stray}: a file where the run keeps a folder, which it makes once the file is gone; "
                    f"move it away (nothing the run did not write is deleted), then run the same command again"]
    bad = 2 if where == "unit" else 3  # gen_002 was made on the gen_001 gone
    assert out[-1].endswith(f": {3 - bad} unit{'s' * (bad == 3)} verified, {bad} with mismatches, 0 unfinished")
    assert stray.read_text() == "notes"


def test_a_folder_where_the_run_lock_goes_is_named_to_move_away_not_to_retry(tmp_path, capsys):
    """A folder at the run's .lock was said as a refused read, "not read (Is a directory) … once the file reads
    again: run the same command again": no retry mends it. Now the line says what stands there and what to do."""
    (tmp_path / "c.yaml").write_text(TOY)
    assert _run(tmp_path, capsys)[0] == 0
    lock = tmp_path / "run" / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    code, errors = _run(tmp_path, capsys)
    assert code == 2 and errors == [f"error: run lock {lock}: a folder where a file goes: the run and its lock are "
                                    f"kept as they are (not taken over); move it away (nothing the run did not "
                                    f"write is deleted), then run the same command again"]
    assert lock.is_dir()
    lock.rmdir()
    assert _run(tmp_path, capsys)[0] == 0
