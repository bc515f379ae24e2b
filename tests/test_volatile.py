"""Experiment.volatile's promise, checked: the files it names hold what a run measured, which no later generation
reads, so they are left out of the digest later generations are bound to. A generation 1 that read one would be
kept, silently, after a redo of generation 0 that measured other seconds. Experiments do not declare which files
of their upstream they read (reads() names generations), so the promise is tried, not looked up: tests.helpers.
volatile_unread builds generation 1 again on them changed and compares."""
from pathlib import Path

from collapse_hpc import engine, experiments
from collapse_hpc.store import RunStore
from tests.helpers import volatile_unread

# built-in chain experiments whose volatile files their own test tries (a tiny config needs prepared data)
TRIED_APART = {"lm": "tests/experiments/lm/test_chain.py::test_no_later_generation_reads_the_volatile_files"}


def _chain(tmp_path, name: str):
    """A two-generation chain of the experiment `name` under its section's defaults -> (store, name, variant)."""
    run = experiments.config_from_dict({"name": "t", "generations": 2, "seeds": [0], "executor": "debug", name: {}})
    store = RunStore(tmp_path / name)
    return store, name, engine.open_run(store, run)[0].variant.name


def test_volatile_files_no_later_generation_reads_leave_it_byte_identical(tmp_path, monkeypatch):
    """ltchain's env.json (each rank's environment), which its later generations do not read, declared volatile:
    generation 1 is built to the same bytes on it changed or unreadable."""
    monkeypatch.setattr(experiments.get("ltchain"), "volatile", ("env.json",))
    before, after = volatile_unread(*_chain(tmp_path, "ltchain"))
    assert after == {"other numbers": before, "unreadable": before} and "metrics.parquet" in before


def test_a_volatile_file_a_later_generation_reads_is_caught(tmp_path, monkeypatch):
    """The toy's generation g adds noise to generation g-1's metrics.parquet: declared volatile, generation 1 is
    built otherwise on other numbers there (its own metrics.parquet, volatile too, repeats on the same input: it
    is compared), and fails on garbage."""
    monkeypatch.setattr(experiments.get("toy"), "volatile", ("metrics.parquet",))
    before, after = volatile_unread(*_chain(tmp_path, "toy"))
    assert after["other numbers"].keys() == before.keys() == {"metrics.parquet"}
    assert after["other numbers"] != before
    assert after["unreadable"].startswith("generation 1 raised"), after["unreadable"]


def test_every_chain_experiment_declaring_volatile_files_has_them_tried(tmp_path):
    """A test experiment (toy, ltchain: its defaults run in a blink) that declares volatile files is tried here,
    so the toy, whose generations read the previous one's metrics.parquet, cannot declare it volatile and pass;
    a built-in one is tried by its own test, named in TRIED_APART (a third party's, by its own tests)."""
    for name in experiments.names():
        exp = experiments.get(name)
        if exp.shape != "chain" or not exp.volatile:
            continue
        if name in experiments.BUILTIN:
            assert name in TRIED_APART, f"{name} declares volatile files no test tries (TRIED_APART)"
            file, test = TRIED_APART[name].split("::")
            assert f"def {test}(" in (Path(__file__).parents[1] / file).read_text(), TRIED_APART[name]
        elif type(exp).__module__.startswith("tests."):
            before, after = volatile_unread(*_chain(tmp_path, name))
            assert after == {"other numbers": before, "unreadable": before}, f"{name}: generation 1 reads them"
