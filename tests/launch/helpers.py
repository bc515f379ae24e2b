"""Helpers for the launch tests: tiny configs of the toy experiments, the CLI in-process."""
import contextlib
import io
import json
from pathlib import Path

import yaml

from collapse_hpc import cli

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, name: str = "t", **sections) -> Path:
    cfg = {"name": name, "seeds": [0], "generations": 2, **sections}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def collapse(*argv) -> tuple[int, str, str]:
    """Run the collapse-hpc CLI in this process; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def jobs(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "jobs.json").read_text())
