"""aggregate writes only where it owns: a new or empty --out, one it made before, or the run's own
report/; never over another folder's files (a unit's metrics.parquet), never through a link."""
import pytest

from collapse_hpc import cli, engine
from collapse_hpc.launch import debug
from tests.helpers import toy_run


@pytest.fixture
def toy(tmp_path):
    store, run = toy_run(tmp_path, generations=2)
    debug.execute(store, run, engine.plan(run))
    return store


def _aggregate(capsys, *argv) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(["aggregate", *map(str, argv)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.startswith("error:")]


def test_out_at_a_folder_it_does_not_own_is_refused(toy, tmp_path, capsys):
    unit = toy.unit_dir("toy", "replace-p0-s0", "chain", 0)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "summary.csv").write_text("the user's own\n")
    for folder, keep in ((theirs, theirs / "summary.csv"), (unit, unit / "metrics.parquet")):
        before = keep.read_bytes()
        code, errors = _aggregate(capsys, toy.root, "--out", folder)
        assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {folder}: the report folder holds")
        assert keep.read_bytes() == before and not (folder / "index.html").exists()
    fresh = tmp_path / "fresh"
    assert _aggregate(capsys, toy.root, "--out", fresh)[0] == 0
    assert _aggregate(capsys, toy.root, "--out", fresh)[0] == 0  # its own: written again


@pytest.mark.parametrize("link", ["report", "report/figures"])
def test_a_linked_report_folder_is_refused(toy, tmp_path, capsys, link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "index.html").write_text("someone else's page")
    (toy.root / link).parent.mkdir(parents=True, exist_ok=True)
    (toy.root / link).symlink_to(elsewhere)
    code, errors = _aggregate(capsys, toy.root)
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {toy.root / link}:")
    assert [p.name for p in elsewhere.iterdir()] == ["index.html"]
    assert (elsewhere / "index.html").read_text() == "someone else's page"


def test_a_report_stopped_by_a_full_disk_leaves_no_page_over_its_new_files(toy, tmp_path, capsys, monkeypatch):
    """The page was written last but the earlier report's stayed: after a report that stopped at its
    figures, index.html described the earlier run over the new metrics.parquet and figures."""
    import errno

    from collapse_hpc.report import drawing

    out = tmp_path / "report"
    assert _aggregate(capsys, toy.root, "--out", out)[0] == 0
    figure = out / "figures" / "toy_value.png"

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device", str(figure))

    monkeypatch.setattr(drawing, "draw", full)
    code, errors = _aggregate(capsys, toy.root, "--out", out)
    assert code == 2 and errors[0].startswith(f"error: {figure}: No space left on device: the file system at ")
    assert not (out / "index.html").exists() and not (out / "results.md").exists()
    assert (out / "metrics.parquet").is_file()  # written whole before the disk filled
    monkeypatch.undo()
    assert _aggregate(capsys, toy.root, "--out", out)[0] == 0 and (out / "index.html").is_file()
