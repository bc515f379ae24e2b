"""The one metrics writer (UnitContext.write_metrics): every registered experiment's metrics.parquet is
checked against the schema its Experiment declares, and a table that breaks it writes nothing."""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collapse_hpc import experiments
from collapse_hpc.experiments.base import UnitContext, Variant
from collapse_hpc.experiments.schema import FLOAT, MetricsSchema
from collapse_hpc.plotting.metrics import Metric
from collapse_hpc.regimes import Regime

NAMES = experiments.names()


def _context(name: str, folder: Path) -> UnitContext:
    section = experiments.config_class(name)()  # the section's defaults (gmm: its components)
    return UnitContext(run=None, config=section, variant=Variant(name, Regime(), 0), index=0, dir=folder,
                       previous=[], run_dir=folder, data_dir=folder,
                       schema=experiments.get(name).metrics_schema(section))


def _table(schema: MetricsSchema, drop: str = "", **extra) -> dict:
    """Two rows holding every column the schema asks for (its optional metrics left out)."""
    cols = {c: pa.array([0, 0], pa.type_for_alias(t)) for c, t in schema.columns.items()
            if c not in schema.optional and c != drop}
    return cols | extra


@pytest.mark.parametrize("name", NAMES)
def test_a_table_as_declared_is_written_with_its_metadata(tmp_path, name):
    ctx = _context(name, tmp_path)
    path = ctx.write_metrics(_table(ctx.schema), {"why": "test"})
    assert path == tmp_path / "metrics.parquet"
    table = pq.read_table(path)
    assert {f.name: str(f.type) for f in table.schema} == {c: t for c, t in ctx.schema.columns.items()
                                                          if c not in ctx.schema.optional}
    assert b"why" in table.schema.metadata


def _refused(ctx, table, *says: str) -> None:
    with pytest.raises(ValueError) as e:
        ctx.write_metrics(table)
    assert str(e.value).startswith(f"{ctx.variant.experiment}: metrics.parquet ")
    assert all(s in str(e.value) for s in says), str(e.value)
    assert list(ctx.dir.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_column_is_refused(tmp_path, name):
    ctx = _context(name, tmp_path)
    column = next(c for c in ctx.schema.metrics if c not in ctx.schema.optional)
    _refused(ctx, _table(ctx.schema, drop=column), f"lacks column {column}")
    _refused(ctx, _table(ctx.schema, drop="generation"), "lacks column generation")


@pytest.mark.parametrize("name", NAMES)
def test_an_undeclared_column_is_refused(tmp_path, name):
    ctx = _context(name, tmp_path)
    _refused(ctx, _table(ctx.schema, surprise=pa.array([1.0, 2.0])), "column surprise", "does not declare")


@pytest.mark.parametrize("name", NAMES)
def test_a_wrongly_typed_column_is_refused(tmp_path, name):
    ctx = _context(name, tmp_path)
    metric = next(iter(ctx.schema.metrics))
    wrong = {metric: pa.array([1, 2], pa.int64()), "generation": pa.array([0.0, 1.0])}
    _refused(ctx, _table(ctx.schema) | wrong, f"column {metric} is int64, declared {FLOAT}",
             f"column generation is double, declared {ctx.schema.generation}")


def test_per_replicate_rows_have_a_replicate_key_and_settings_are_keys():
    gaussian = experiments.get("gaussian").metrics_schema()
    assert gaussian.per_replicate and list(gaussian.keys) == ["generation", "replicate", "samples"]
    lm = experiments.get("lm").metrics_schema()
    assert not lm.per_replicate and list(lm.keys) == ["generation"]
    assert "zero_shot_test_ppl" in lm.optional and "test_ppl" not in lm.optional
    gmm = experiments.get("gmm")
    section = experiments.config_class("gmm")(components=3)
    assert "c2_weight" in gmm.metrics_schema(section).metrics and "c2_weight" not in gmm.metrics_schema().metrics


def test_a_schema_refuses_contradictions():
    with pytest.raises(ValueError, match="not declared metrics"):
        MetricsSchema(per_replicate=False, metrics={}, optional=frozenset({"x"}))
    with pytest.raises(ValueError, match="replicate: declared both"):
        MetricsSchema(per_replicate=True, metrics={"replicate": Metric("replicate", "r")})
    with pytest.raises(ValueError, match="x: declared both as a stored column and as a derived metric"):
        MetricsSchema(per_replicate=False, metrics={"x": Metric("x", "x")}, derived={"x": Metric("x", "x")})


def test_a_derived_metric_is_shown_by_the_report_and_never_stored(tmp_path):
    # the gaussian's var_hat: its parts stored it beside sigma_hat, whose square it is
    ctx = _context("gaussian", tmp_path)
    assert "var_hat" in ctx.schema.derived and "var_hat" in experiments.describe("gaussian").metric_specs([])
    _refused(ctx, _table(ctx.schema, var_hat=pa.array([0.0, 0.0])), "column var_hat", "does not declare")
