"""docs/extending.md's whole example, run as written: its two files become a package outside the
project, registered by an entry point, and the commands a newcomer would run take it end to end."""
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq

from tests.experiments.test_registry import _plugin
from tests.test_cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _files() -> dict[str, str]:
    """Each python block of the page that a line "`path`:" announces, path -> code."""
    found = re.findall(r"^`([\w/]+\.py)`:\n\n```python\n(.*?)^```", DOC.read_text(), re.M | re.S)
    return dict(found)


def test_the_pages_example_runs_verifies_and_reports(tmp_path):
    files = _files()
    assert set(files) == {"catexp/config.py", "catexp/__init__.py"}
    env = _plugin(tmp_path, ["categorical = catexp:REGISTRATION"])
    for rel, code in files.items():
        (tmp_path / "plugin" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "plugin" / rel).write_text(code)
    config = tmp_path / "cat.yaml"
    config.write_text("name: cat\nseeds: [0, 1]\ncategorical: {generations: 6, categories: 50, samples: 60}\n")
    run = tmp_path / "runs" / "cat"

    listed = cli("config", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "categorical.exponent = 1.1" in listed.stdout

    done = cli("run", str(config), "--run", str(run), "--executor", "debug", env=env)
    assert done.returncode == 0, done.stderr
    for seed in (0, 1):
        chain = run / "categorical" / f"replace-p0-s{seed}"
        units = sorted(chain.glob("gen_*"))
        assert [u.name for u in units] == [f"gen_{g:03d}" for g in range(6)]
        support = [pq.read_table(u / "metrics.parquet").column("support")[0].as_py() for u in units]
        # the discrete case's collapse: a category once missed has probability 0 for good
        assert support == sorted(support, reverse=True) and support[-1] < support[0], support
        counts = [pq.read_table(u / "counts.parquet").column("count").to_numpy() for u in units]
        assert all(c.sum() == 60 and len(c) == 50 for c in counts)
        assert all(((b > 0) <= (a > 0)).all() for a, b in zip(counts, counts[1:]))
        manifest = json.loads((units[-1] / "manifest.json").read_text())
        assert {"counts.parquet", "metrics.parquet"} <= set(manifest["files"])

    verified = cli("verify", str(run), env=env)
    assert verified.returncode == 0, verified.stderr
    assert "12 units verified, 0 with mismatches, 0 unfinished" in verified.stdout + verified.stderr

    report = cli("aggregate", str(run), env=env)
    assert report.returncode == 0, report.stderr
    page = (run / "report" / "index.html").read_text()
    assert "Categorical recursion" in page and "categories drawn" in page
    assert (run / "report" / "figures" / "categorical_all_metrics.png").stat().st_size > 0
    assert os.path.getsize(run / "report" / "metrics.parquet") > 0
