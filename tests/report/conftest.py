"""Synthetic run folders and their report, built once per session (figures take seconds each)."""
import pytest

from tests.report import synthetic


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    return synthetic.full_run(tmp_path_factory.mktemp("runs") / "full", small=True)


@pytest.fixture(scope="session")
def full_report(full_run):
    from collapse_hpc.report import aggregate

    index = aggregate.build([str(full_run)])
    return index.parent
