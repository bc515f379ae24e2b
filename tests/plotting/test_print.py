"""The report's figures as a paper takes them: fonts a journal's PDF check accepts."""
from collapse_hpc.plotting import style
from collapse_hpc.plotting.plots import save
from collapse_hpc.report.drawing import figure_style


def test_pdf_embeds_its_text_as_truetype_not_type3(tmp_path):
    """Journals' PDF checks (Nature's, IEEE's PDF eXpress) reject Type 3 fonts, and their text cannot be
    edited or searched: the PDF embeds TrueType (Type 42) fonts, math included."""
    with figure_style():
        fig, axes = style.figure(1, 1)
        axes[0, 0].plot([0, 1, 2], [1.0, 0.5, 0.2], label="replace")
        axes[0, 0].set_title(r"$E\,\hat\sigma^2$ (↓ worse)")
        axes[0, 0].set_xlabel("generation")
        pdf = save(fig, tmp_path, "fig")[1].read_bytes()
    assert b"/Type3" not in pdf
    assert b"/TrueType" in pdf or b"/CIDFontType2" in pdf
