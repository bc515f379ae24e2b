"""The fifth experiment, end to end: a run through the engine and a real report with its figure,
its section placed by its own order, title and metrics description."""
import pandas as pd
import pytest
import yaml

from collapse_hpc.cli import main
from tests.report.test_figures import ink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("tail")
    cfg = root / "tail.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "tail", "generations": 12, "seeds": [0], "executor": "debug",
        "regimes": ["replace", "accumulate"],
        "tail": {"categories": 300, "samples": 200, "replicates": 6, "chunk_replicates": 4},
        "gaussian": {"samples": [10], "replicates": 4, "chunk_replicates": 4}}))
    run = root / "run"
    assert main(["run", str(cfg), "--run", str(run)]) == 0
    assert main(["aggregate", str(run)]) == 0
    return run / "report"


def test_its_figure_is_in_the_report(report):
    png = report / "figures" / "tail_support.png"
    std, share = ink(png)
    assert std > 10 and share > 0.02, f"tail_support looks blank (std {std:.1f}, ink {share:.3f})"
    assert (report / "figures" / "tail_all_metrics.png").is_file()
    html = (report / "index.html").read_text()
    assert 'src="figures/tail_support.png"' in html
    # its own title and metrics description, after gaussian (order 30 < 50)
    assert html.index("Single Gaussian") < html.index("Zipf tail (categorical)")
    assert "support: categories the fit gives any probability" in html
    assert "## Zipf tail (categorical)" in (report / "results.md").read_text()


def test_the_tail_is_lost_under_replace_and_kept_under_accumulate(report):
    df = pd.read_parquet(report / "metrics.parquet")
    support = df[(df["experiment"] == "tail") & (df["metric"] == "support")]
    assert sorted(support["replicate"].unique()) == list(range(6))  # two parts, every replicate
    for regime, steps in (("replace-p0", "lost"), ("accumulate", "kept")):
        wide = support[support["regime"] == regime].pivot(index="generation", columns="replicate", values="value")
        diffs = wide.diff().dropna()
        if steps == "lost":  # a category that draws no point never comes back
            assert (diffs <= 0).all().all() and (wide.iloc[-1] < wide.iloc[0]).all()
        else:  # the pool only grows: every category seen stays in the support
            assert (diffs >= 0).all().all()
