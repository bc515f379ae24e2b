"""A report made again from the same run writes the same figure files, byte for byte: a PDF dated
when it was written differed every time (and a checkout or a diff of reports showed every figure changed)."""
import time

import pytest

from collapse_hpc.plotting import style
from collapse_hpc.plotting.plots import save
from collapse_hpc.report.drawing import figure_style


def _draw(out):
    with figure_style():
        fig, axes = style.figure(1, 2)
        axes[0, 0].plot([0, 1, 2], [1.0, 3.0, 2.0], label="replace")
        axes[0, 0].fill_between([0, 1, 2], [0.5, 2.0, 1.0], [1.5, 4.0, 3.0], alpha=0.18, linewidth=0)
        axes[0, 0].set_title("fitted σ (↓ worse)")
        axes[0, 1].set_yscale("log")
        axes[0, 1].plot([0, 1, 2], [1.0, 10.0, 100.0])
        return save(fig, out, "fig")


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = {p.name: p.read_bytes() for p in _draw(tmp_path / "a")}
    time.sleep(1.1)  # the PDF's date had a resolution of one second
    second = {p.name: p.read_bytes() for p in _draw(tmp_path / "b")}
    assert first == second
    assert b"/CreationDate" not in first["fig.pdf"] and first["fig.pdf"].startswith(b"%PDF-")


def test_source_date_epoch_dates_the_pdf(tmp_path, monkeypatch):
    """Where SOURCE_DATE_EPOCH is set (reproducible builds) the PDF carries that date, the same each time."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = [p.read_bytes() for p in _draw(tmp_path / "a")]
    assert b"/CreationDate (D:20231114221320Z)" in first[1]
    time.sleep(1.1)
    assert [p.read_bytes() for p in _draw(tmp_path / "b")] == first


@pytest.mark.slow
def test_the_report_made_again_rewrites_no_figure(full_run, full_report):
    from collapse_hpc.report import aggregate

    figures = full_report / "figures"
    before = {p.name: p.read_bytes() for p in figures.iterdir() if p.suffix in (".png", ".pdf")}
    assert any(name.endswith(".pdf") for name in before)
    aggregate.build([str(full_run)])
    after = {p.name: p.read_bytes() for p in figures.iterdir() if p.suffix in (".png", ".pdf")}
    assert after.keys() == before.keys()
    assert [name for name in before if after[name] != before[name]] == []
