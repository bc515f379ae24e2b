"""The report's long table held compactly (report.longform): the same rows, values, dtypes and order as
the plain way (melt every unit, concatenate, sort), in a fraction of the memory; metrics.parquet and the
summary as they were."""
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc.plotting.plots import KEYS
from collapse_hpc.report import collect, longform, stats
from collapse_hpc.report.collect import VariantInfo
from collapse_hpc.store.atomic import parquet_options
from tests.report import synthetic

REPLACE = {"kind": "replace", "keep_fraction": 0.0, "verifier_quantile": 0.5}


def plain_way(parts: list[longform.Part]) -> pd.DataFrame:
    """Every part melted, concatenated, converted and sorted: the table as the report built it before."""
    df = longform.finish(pd.concat([longform.melted(p, p.wide) for p in parts], ignore_index=True))
    settings = [c for c in df.columns if c not in KEYS + ["replicate", "generation", "metric", "value"]]
    return df.sort_values(KEYS + settings + longform.SORT_TAIL, ignore_index=True)


def parts_of(runs: list[collect.RunData]) -> list[longform.Part]:
    return [p for r in runs for u in r.units if u.done for p in [collect._unit_part(r, u)] if p is not None]


def test_a_variants_parts_interleave_by_metric_generation_and_replicate(tmp_path):
    root = tmp_path / "g"
    synthetic.write_config(root, {"gaussian": {"generations": 2, "samples": [10, 100], "replicates": 2,
                                               "chunk_replicates": 1}})
    for n in (100, 10):
        for r in (0, 1):  # a part per replicate
            synthetic._unit(root, "gaussian", f"replace-p0-samples{n}-s0", f"part_00{r}", {"metrics.parquet": {
                "generation": pa.array([0, 1], pa.int32()), "replicate": pa.array([r, r], pa.int32()),
                "samples": pa.array([n, n], pa.int32()), "mu_hat": [n + 10.0 * r, n + 10.0 * r + 1],
                "sigma_hat": [1 + r / 10, 2 + r / 10]}}, settings={"samples": n})
    df = collect.tidy([collect.load_run(root)])

    rows = [("g", "gaussian", f"replace-p0-samples{n}-s0", "replace-p0", "replace", 0.0, np.nan, 0, n, r, g, m,
             {"mu_hat": n + 10.0 * r + g, "sigma_hat": g + 1 + r / 10, "var_hat": (g + 1 + r / 10) ** 2,
              "log_var_hat": 2 * np.log(g + 1 + r / 10)}[m])  # the last two derived from sigma_hat
            for n in (10, 100) for m in ("log_var_hat", "mu_hat", "sigma_hat", "var_hat") for g in (0, 1)
            for r in (0, 1)]
    expected = pd.DataFrame(rows, columns=KEYS + ["samples", "replicate", "generation", "metric", "value"])
    expected["samples"] = expected["samples"].astype("Int64")
    pd.testing.assert_frame_equal(longform.plain(df), expected, check_exact=True)


def test_every_column_but_the_values_is_a_few_codes_a_row(full_run):
    """The table held each row's run, variant, regime and metric as strings of their own (Arrow strings:
    offsets and bytes, or Python objects): 170 bytes a row of the paper's Gaussian table, 460 at the peak."""
    df = collect.tidy([collect.load_run(full_run)])
    codes = [c for c in df.columns if c not in longform.VALUES]
    assert all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in codes)
    assert df.memory_usage(deep=True, index=False).sum() / len(df) < 3 * 8 + 2 * len(codes)


def test_the_table_is_the_plain_ways_for_every_experiment(full_run, tmp_path):
    runs = [collect.load_run(full_run)]
    expected = plain_way(parts_of(runs))
    df = collect.tidy(runs)
    pd.testing.assert_frame_equal(longform.plain(df), expected, check_exact=True)
    # metrics.parquet: the file pyarrow made of the whole table as strings
    longform.write(tmp_path / "compact.parquet", df)
    table = pa.Table.from_pandas(expected, preserve_index=False)
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=longform.ROW_GROUP,
                   **parquet_options(table.schema))
    assert (tmp_path / "compact.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


def _part(run, variant, wide, *, regime="replace-p0", seed=0, settings=None, values=REPLACE, experiment="gaussian"):
    info = VariantInfo(variant, regime, seed, settings or {}, None, "array", values or {})
    ids = [c for c in ("generation", "replicate", "samples") if c in wide]
    return longform.Part(run, experiment, variant, info, wide, ids, [c for c in wide if c not in ids])


def _wide(rng, generations, replicates, metrics=("a", "b"), first=0, **keys):
    g, r = np.meshgrid(np.arange(generations), np.arange(first, first + replicates), indexing="ij")
    out = {"generation": g.ravel().astype(np.int32), "replicate": r.ravel().astype(np.int32)}
    out.update({k: np.resize(np.asarray(v), g.size) for k, v in keys.items()})
    out.update({m: rng.normal(size=g.size) for m in metrics})
    return pd.DataFrame(out)


def test_parts_of_every_shape_come_as_the_plain_way_has_them():
    """Text and numeric settings (absent from some experiments), a key column whose values vary within a
    unit, a unit without rows, one with a further metric, a regime without values, two runs with
    variants alike, parts given out of order."""
    def parts():
        rng = np.random.default_rng(0)
        return [
            _part("b", "replace-p0-samples10-s0", _wide(rng, 3, 2, samples=[10]), settings={"samples": 10}),
            _part("a", "replace-p0-samples10-s0", _wide(rng, 3, 2, samples=[10]), settings={"samples": 10}),
            _part("a", "mixed-s1", _wide(rng, 2, 3, samples=[10, 20, 10]), seed=1, regime="mixed", values=None),
            _part("a", "replace-p0-samples10-s0", _wide(rng, 3, 2, metrics=("a", "b", "c"), first=2, samples=[10]),
                  settings={"samples": 10}),
            _part("a", "empty-s0", _wide(rng, 0, 2, samples=[10]), settings={"samples": 10}),
            _part("a", "replace-p0-s0", _wide(rng, 2, 2, metrics=("l2", "a")), experiment="gmm",
                  settings={"mode": "two", "scale": 0.5}),
            _part("a", "replace-p0-s1", _wide(rng, 2, 2, metrics=("l2", "a")), experiment="gmm", seed=1,
                  settings={"mode": "blob", "scale": 2}),
        ]
    expected = plain_way(parts())
    df = longform.build(parts())
    pd.testing.assert_frame_equal(longform.plain(df), expected, check_exact=True)
    assert list(expected["scale"].dropna().unique()) == ["0.5", "2.0"]  # a text setting: not every one whole


def test_a_row_group_at_a_time_writes_the_whole_tables_file(tmp_path):
    rng = np.random.default_rng(1)
    parts = [_part("r", f"replace-p0-samples{n}-s0", _wide(rng, 300, 200, metrics=tuple("abcdefghij"),
                                                           samples=[n]), settings={"samples": n}) for n in (10, 100)]
    df = longform.build(parts)
    assert len(df) > longform.ROW_GROUP  # more than one row group
    longform.write(tmp_path / "compact.parquet", df)
    table = pa.Table.from_pandas(longform.plain(df), preserve_index=False)
    pq.write_table(table, tmp_path / "plain.parquet", row_group_size=longform.ROW_GROUP,
                   **parquet_options(table.schema))
    assert (tmp_path / "compact.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


WRITE_PEAK = """
import sys
from pathlib import Path
import numpy as np
from collapse_hpc.report import longform
from tests.report.test_longform import _part, _wide

rng = np.random.default_rng(4)
df = longform.build([_part("r", f"replace-p0-samples{n}-s{s}", _wide(rng, 300, 250, metrics=tuple("abcdefghijk"),
                                                                   samples=[n]), seed=s, settings={"samples": n})
                     for n in (10, 100) for s in (0, 1)])
def kib(key):
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])

open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) from here: building the table's is not the write's
held = kib("VmRSS:")
longform.write(Path(sys.argv[1]), df)
print(len(df), (kib("VmHWM:") - held) * 1024)
"""


def test_writing_the_table_holds_a_row_group_of_strings_at_most(tmp_path):
    """Beyond the table, writing it took 383 MiB (a row group of pandas' strings, 1Mi rows: the report's peak
    where its table is small); a row group's strings are now Arrow's, taken by code, 256Ki rows: 116 MiB
    with the writer's own buffers."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WRITE_PEAK, str(tmp_path / "m.parquet")], capture_output=True,
                         text=True, cwd=Path(__file__).parents[2], check=True).stdout.split()
    rows, grew = int(out[0]), int(out[1])
    assert rows > 3 * 2**20 and grew < 200 * 2**20, grew / 2**20
    assert pq.ParquetFile(tmp_path / "m.parquet").metadata.num_row_groups == -(-rows // longform.ROW_GROUP)


# 16 values whose mean pandas gives as 0.009125 summed one after another and 0.009125000000000001 pairwise
CLOSE = [0.008, 0.007, 0.009, 0.013, 0.007, 0.007, 0.005, 0.01, 0.01, 0.011, 0.006, 0.007, 0.01, 0.018, 0.013, 0.005]


def one_grouping(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as one pandas groupby of every row makes it (summarise before it went a metric at a time)."""
    keys = stats.group_keys(df)
    values = df["value"].astype(float)
    g = df.assign(value=values, infinite=np.isinf(values)).groupby(keys, dropna=False, sort=True, observed=True)
    out = g["value"].agg(n="count", mean="mean", std="std").reset_index()
    out.insert(out.columns.get_loc("mean"), "n_infinite", g["infinite"].sum().to_numpy().astype(int))
    return out


@pytest.mark.parametrize("seeds, other", [((0,), 1.0), ((0, 1), 1.0), ((0,), np.nan)],
                         ids=["one-seed", "two-seeds", "a-nan-elsewhere"])
def test_the_summary_is_one_groupings_and_its_mean_does_not_hang_on_how_pandas_sums(seeds, other):
    """The groups, their order, dtypes and counts of one groupby of every row, and its means and stds to the
    rounding; the mean of CLOSE is the same to the last bit however the rows come and whether a NaN is
    elsewhere (pandas' groupby summed it pairwise or one value after another by those, 0.009125000000000001
    or 0.009125)."""
    def wide(seed):
        return pd.DataFrame({"generation": np.repeat(np.arange(2, dtype=np.int32), 16),
                             "replicate": np.tile(np.arange(16, dtype=np.int32), 2),
                             "samples": np.int32(10), "tail": CLOSE * 2, "other": other})
    parts = [_part("r", f"replace-p0-samples10-s{s}", wide(s), seed=s, settings={"samples": 10}) for s in seeds]
    expected = one_grouping(plain_way(parts))
    df = longform.build(parts)
    out = stats.summarise(df)
    pd.testing.assert_frame_equal(out[expected.columns], expected, check_exact=False, rtol=1e-15, atol=0)
    pd.testing.assert_frame_equal(stats.summarise(longform.plain(df)), out, check_exact=True)
    assert (out.loc[out["metric"] == "tail", "mean"] == 0.009125).all()


def test_an_experiments_rows_of_one_run_are_a_view_not_a_copy(full_run, tmp_path):
    df = collect.tidy([collect.load_run(full_run)])
    gmm = longform.rows(df, "experiment", "gmm")
    assert np.shares_memory(gmm["value"].to_numpy(), df["value"].to_numpy())
    pd.testing.assert_frame_equal(gmm, df[df["experiment"] == "gmm"], check_exact=True)
    two = collect.tidy([collect.load_run(full_run, "a"), collect.load_run(full_run, "b")])
    pd.testing.assert_frame_equal(longform.rows(two, "experiment", "gmm"),
                                  two[two["experiment"] == "gmm"].reset_index(drop=True), check_exact=True)


def test_an_experiments_rows_of_several_runs_are_one_copy_of_its_blocks():
    """Sorted by run first, an experiment of two runs is two blocks: a boolean mask's copy kept each row's old
    number and peaked at 1.5 times the rows (the report's figures of two demo runs: +417 MiB for 285)."""
    rng = np.random.default_rng(5)
    df = longform.build([_part(run, f"replace-p0-samples10-s{s}", _wide(rng, 200, 100, metrics=tuple("abcdef"),
                                                                       samples=[10]),
                               experiment=experiment, seed=s, settings={"samples": 10})
                         for run in ("q", "r") for experiment in ("gaussian", "gmm") for s in (0, 1)])
    expected = df[(df["experiment"] == "gaussian").to_numpy()].reset_index(drop=True)
    tracemalloc.start()
    got = longform.rows(df, "experiment", "gaussian")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)  # a copy: the same values to the bit
    assert isinstance(got.index, pd.RangeIndex) and peak < 1.2 * got.memory_usage(deep=True).sum()


def test_the_table_and_its_summary_peak_at_a_fraction_of_the_plain_ways():
    """The plain way's peak (melted parts, their concatenation, the sort's copy, one grouping's codes for
    each of its nine keys), as numpy allocates it, against the compact table's and its summary's."""
    def parts():
        rng = np.random.default_rng(2)
        return [_part("r", f"{regime}-samples{n}-s{s}", _wide(rng, 100, 100, metrics=tuple("abcdefghijk"), samples=[n]),
                      regime=regime, seed=s, settings={"samples": n})
                for regime in ("replace-p0", "accumulate") for n in (10, 100) for s in (0, 1)]
    peaks = {}
    for name, way in (("plain", lambda ps: one_grouping(plain_way(ps))),
                      ("compact", lambda ps: stats.summarise(longform.build(ps)))):
        given = parts()
        tracemalloc.start()
        way(given)
        peaks[name] = tracemalloc.get_traced_memory()[1] / (8 * 100 * 100 * 11)  # bytes a row
        tracemalloc.stop()
    assert peaks["compact"] < 80 and peaks["plain"] > 3 * peaks["compact"]  # measured: 56 and 194


def _peak(step) -> float:
    """The most bytes numpy and Python hold at once while `step()` runs, beyond what they held before."""
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_the_pages_checks_of_the_table_copy_a_metrics_rows_not_every_row():
    """The overview's checks (a metric one value throughout, or recorded at one generation) grouped every row
    at once (a copy of each key column), the Compute table copied a run's rows, the generation axis made a
    Python int of each row: 25-50 bytes a row they read, beyond the table, where now a few suffice."""
    from collapse_hpc.plotting.plots import Context, gens_axis
    from collapse_hpc.report import drawing, tables

    rng = np.random.default_rng(3)
    df = longform.build([_part(run, f"{regime}-samples{n}-s{s}", _wide(rng, 300, 100, metrics=tuple("abcdefghijk"),
                                                                       samples=[n]),
                               regime=regime, seed=s, settings={"samples": n})
                         for run in ("q", "r") for regime in ("replace-p0", "accumulate") for n in (10, 100)
                         for s in (0, 1)])
    ctx = Context("gaussian", longform.rows(df, "run", "r"), stats.summarise(df), [])
    run = collect.RunData("r", Path("r"), "", {}, {}, [], {})
    for step in (lambda: drawing.constant_metrics(ctx), lambda: drawing.one_generation_metrics(ctx),
                 lambda: tables.phases(df, [run], {})):
        assert _peak(step) / len(df) < 12
    assert _peak(lambda: gens_axis(None, df["generation"])) < 8 * 1000  # the axis itself: 300 generations
