"""The table catalog: one declaration per Delta table, paths by dataset, schemas enforced on write."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from pipelines.lake import tables
from pipelines.lake.tables import CATALOG, FEATURES, PREDICTIONS, SMOKE_PRICES


def test_every_table_is_declared_once_under_its_layer(settings) -> None:
    keys = [(t.layer, t.name) for t in CATALOG]
    assert len(keys) == len(set(keys))
    declared = {v for v in vars(tables).values() if isinstance(v, tables.Table)}
    assert declared == set(CATALOG)  # nothing declared outside the catalog tuple
    root = settings.platform.lake_root
    assert PREDICTIONS.path(settings) == str(root / "gold" / settings.data.dataset / "predictions")
    assert PREDICTIONS.path(settings, "sp500") == str(root / "gold" / "sp500" / "predictions")
    assert SMOKE_PRICES.path(settings) == str(root / "bronze" / "smoke_prices")
    assert FEATURES.columns == ["symbol", "ts", "date"]


def test_conform_orders_casts_and_names_what_does_not_fit(spark) -> None:
    df = spark.createDataFrame([("2024-01-01", 1, 0.6, "A")], "date string, fold int, p_up double, symbol string")
    with pytest.raises(ValueError, match=r"gold/predictions: missing columns \['ts', 'direction'"):
        PREDICTIONS.conform(df)
    features = spark.createDataFrame([("A", "2024-01-01", 0.1)], "symbol string, date string, roc_5 double")
    with pytest.raises(ValueError, match=r"missing columns \['ts'\]"):
        FEATURES.conform(features)
    ok = FEATURES.conform(features.selectExpr("symbol", "timestamp'2024-01-01 10:00:00' AS ts", "date", "roc_5"))
    assert ok.columns == ["symbol", "ts", "date", "roc_5"]  # open schema: feature columns follow the keys
    closed = SMOKE_PRICES.conform(spark.createDataFrame(
        [("A", "2024-01-01 00:00:00", 1, 0.0, "2024-01-01")], "symbol string, ts string, close int, ret double, "
                                                              "date string"))
    assert dict(closed.dtypes) == {"symbol": "string", "ts": "timestamp", "close": "double", "ret": "double",
                                   "date": "string"}
    with pytest.raises(ValueError, match=r"undeclared columns \['extra'\]"):
        SMOKE_PRICES.conform(closed.withColumn("extra", closed["close"]))


def test_no_code_builds_a_lake_path_from_strings() -> None:
    """Only the catalog joins the lake root with layer and table names."""
    offenders = []
    for folder in ("pipelines", "models", "orchestration", "streaming", "warehouse", "tableau"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            if path == PROJECT_ROOT / "pipelines" / "lake" / "tables.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                joined = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                if joined and isinstance(node.left, ast.Attribute) and node.left.attr == "lake_root":
                    offenders.append(f"{Path(path).relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []
