"""Destructive changes of a finished run's shape need --force: a generation count that redoes
finished array parts is one line naming what would go, and nothing is touched without it."""
from collapse_hpc import cli

CONFIG = "name: f\nexecutor: debug\nseeds: [0]\ntail: {replicates: 4, chunk_replicates: 2}\n"


def _run(tmp_path, capsys, *extra) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(["run", str(tmp_path / "c.yaml"), "--run", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.startswith("error:")]


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "logs" not in p.parts and p.name != ".lock"}


def test_fewer_generations_of_a_finished_array_run_need_force(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert _run(tmp_path, capsys, "--generations", "6")[0] == 0
    before = _snapshot(tmp_path / "run")
    code, errors = _run(tmp_path, capsys, "--generations", "3")
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path / 'run'}: this config would redo 2 finished units")
    assert "tail/" in errors[0] and "6 generations -> 3" in errors[0] and "--force" in errors[0]
    assert _snapshot(tmp_path / "run") == before  # nothing touched, the config and plan included
    assert _run(tmp_path, capsys, "--generations", "6")[0] == 0
    assert _snapshot(tmp_path / "run") == before  # resumes to the same bytes
    assert _run(tmp_path, capsys, "--generations", "3", "--force")[0] == 0
