"""One pipeline, two orders: a chain generation and the reference CLI run the same named steps
(pipeline.Pipeline), and only those reach training, sampling and scoring."""
import pytest

from collapse_hpc.cli import main
from collapse_hpc.experiments.lm import pipeline
from tests.experiments.lm.test_chain import _execute, _run
from tests.experiments.lm.test_reference_cli import _tiny

STEPS = ("start", "blocks", "train", "load", "sample", "score")


@pytest.fixture
def steps(monkeypatch):
    """The pipeline's steps called, in order (each still runs)."""
    called = []
    for name in STEPS:
        step = getattr(pipeline.Pipeline, name)
        if name == "start":
            def spy(cls, *a, _step=step.__func__, **k):
                called.append("start")
                return _step(cls, *a, **k)
            monkeypatch.setattr(pipeline.Pipeline, name, classmethod(spy))
        else:
            def spy(self, *a, _step=step, _name=name, **k):
                called.append(_name)
                return _step(self, *a, **k)
            monkeypatch.setattr(pipeline.Pipeline, name, spy)
    return called


@pytest.mark.slow
def test_the_chain_and_the_reference_cli_run_the_same_steps(tmp_path, lm_data_dir, steps):
    store, run = _run(tmp_path, lm_data_dir, generations=1, regimes=("replace:0",))
    assert _execute(store, run)["done"] == 1
    chain = list(steps)
    steps.clear()
    assert main(["lm", *_tiny(lm_data_dir), "--save-name", str(tmp_path / "gen0"),
                 "--generate", str(tmp_path / "gen1_data")]) == 0
    reference = list(steps)
    assert set(chain) == set(reference) == set(STEPS)
    assert chain[0] == reference[0] == "start"
    # each orders them its own way: the chain scores after sampling, the reference before
    assert chain.index("sample") < chain.index("score", chain.index("train"))
    assert reference.index("score") < reference.index("sample")
