"""What a launcher checks before it starts anything, local and Slurm alike (engine.pending): finished
units through their manifests, and in full only the finished generations the next unit reads."""
import pytest

from collapse_hpc import engine, experiments
from collapse_hpc.launch import debug, local
from collapse_hpc.store import RunStore
from collapse_hpc.verify import verify_run
from tests.helpers import flip, hashed

DONE, PLANNED = 6, 8  # generations finished, generations asked for now


@pytest.fixture
def longer_run(tmp_path):
    """A toy chain (replace) with DONE generations finished, asked for PLANNED now."""
    run = experiments.config_from_dict({"name": "t", "generations": PLANNED, "seeds": [0], "executor": "local",
                                        "toy": {"rows": 2000}})
    store = RunStore(tmp_path / "run")
    (chain,) = engine.open_run(store, run)
    for g in range(DONE):
        assert engine.run_unit(store.root, "toy", chain.variant.name, g) == "done"
    return store, run, chain


def _starts(store, run, chain) -> list[int]:
    lanes, _ = local._lanes(store, run, [chain], 0)
    return [j.index for lane in lanes for j in lane.jobs]


def test_the_local_launcher_hashes_only_the_generations_the_next_one_reads(longer_run, monkeypatch):
    # it hashed every finished unit before it started one: the paper's ~50 GB of weights, ~70 s
    store, run, chain = longer_run
    seen = hashed(monkeypatch)
    assert _starts(store, run, chain) == list(range(DONE, PLANNED))
    read = experiments.get("toy").reads(chain.variant, DONE)  # generation 0 and the previous one
    assert {p.parent.name for p in seen} == {f"gen_{g:03d}" for g in read}


def test_a_corrupt_generation_the_next_one_reads_is_redone_one_it_does_not_read_is_left_to_verify(longer_run,
                                                                                                   capsys):
    store, run, chain = longer_run
    gens = [store.unit_dir("toy", chain.variant.name, "chain", g) for g in range(DONE)]
    flip(gens[DONE - 1] / "metrics.parquet")  # same size: only a hash sees it
    assert _starts(store, run, chain) == list(range(DONE - 1, PLANNED))  # as submit queues it
    assert engine.run_unit(store.root, "toy", chain.variant.name, DONE - 1) == "done"  # the redo
    flip(gens[2] / "metrics.parquet", keep_time=True)  # read by no generation still to run
    assert _starts(store, run, chain) == list(range(DONE, PLANNED))
    assert verify_run(store.root) == 1 and f"MISMATCH {gens[2] / 'metrics.parquet'}" in capsys.readouterr().out


def test_the_in_process_back_end_hashes_only_the_generations_the_next_one_reads(longer_run, monkeypatch):
    # `--executor debug` ran every job through run_unit, which hashed each finished unit in full to skip it
    store, run, chain = longer_run
    seen = hashed(monkeypatch)
    assert debug.execute(store, run, [chain]) == {"done": PLANNED - DONE, "skipped": DONE}
    read = experiments.get("toy").reads(chain.variant, DONE)
    finished_before = {f"gen_{g:03d}" for g in range(DONE)}
    assert {p.parent.name for p in seen} & finished_before == {f"gen_{g:03d}" for g in read}
    assert all(engine.job_done(store, run, j, deep=True) for j in chain.jobs)
