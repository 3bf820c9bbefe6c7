"""Backtest inputs from the lake and results to the gold tables, one ``strategy`` at a time.

Gold tables under ``gold/<dataset>/``: ``backtest_trades``, ``backtest_equity``,
``backtest_positions``, ``backtest_metrics``, ``backtest_rejections``, ``long_short``, ``montecarlo_summary`` and ``montecarlo_fan``,
each partitioned by ``strategy`` so re-running one strategy replaces only its rows.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from pipelines import lake
from pipelines.backtest.engine import marks
from pipelines.lake.tables import (
    BACKTEST_EQUITY,
    BACKTEST_METRICS,
    BACKTEST_POSITIONS,
    BACKTEST_REJECTIONS,
    BACKTEST_TRADES,
    LONG_SHORT,
    MONTECARLO_FAN,
    MONTECARLO_SUMMARY,
    PREDICTIONS,
    SILVER_BARS,
    Table,
)


def load_inputs(spark: SparkSession, settings: Settings, family: str, start: date | None = None,
                end: date | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-sample predictions of ``family`` and the silver bars they cover."""
    preds = lake.read(spark, PREDICTIONS.path(settings)).where(F.col("model") == family)
    if start:
        preds = preds.where(F.col("date") >= start.isoformat())
    if end:
        preds = preds.where(F.col("date") <= end.isoformat())
    preds = preds.select("symbol", "ts", "fold", "p_up", "expected_return").toPandas()
    if preds.empty:
        known = [r["model"] for r in lake.read(spark, PREDICTIONS.path(settings))
                 .select("model").distinct().collect()]
        raise ValueError(f"no predictions for {family!r} in the range; the predictions table has {known}")
    first, last = preds["ts"].min(), preds["ts"].max()
    bars = (lake.read(spark, SILVER_BARS.path(settings))
            .where((F.col("ts") >= F.lit(first)) & (F.col("ts") <= F.lit(last)))
            .select("symbol", "ts", "open", "close", "volume").toPandas())
    return preds, bars


def _write(spark: SparkSession, settings: Settings, table: Table, frame: pd.DataFrame, strategy: str) -> str:
    """Replace ``strategy``'s partition of ``table`` by ``frame`` (explicit schema: a strategy that
    never trades still writes its empty tables)."""
    target = table.path(settings)
    df = spark.createDataFrame(frame.assign(strategy=strategy)[table.columns], table.schema)
    lake.replace_partition(df, target, "strategy", strategy)
    return target


def write_backtest(spark: SparkSession, settings: Settings, strategy: str, result, metrics: pd.DataFrame) -> dict:
    """Trades, equity (+ returns, exposure), non-zero positions, metrics and the orders the risk gate
    rejected (with the limit each hit) of one backtest."""
    market = result.market
    equity = result.equity_frame().assign(periods_per_year=market.periods_per_year)
    t, s = np.nonzero(result.positions)
    closes = marks(market.close)
    positions = pd.DataFrame({"ts": market.ts[t], "symbol": [market.symbols[i] for i in s],
                              "shares": result.positions[t, s], "value": result.positions[t, s] * closes[t, s]})
    return {
        "trades": _write(spark, settings, BACKTEST_TRADES, result.fills, strategy),
        "equity": _write(spark, settings, BACKTEST_EQUITY, equity, strategy),
        "positions": _write(spark, settings, BACKTEST_POSITIONS, positions, strategy),
        "metrics": _write(spark, settings, BACKTEST_METRICS, metrics, strategy),
        "rejections": _write(spark, settings, BACKTEST_REJECTIONS,
                             result.rejections.rename(columns={"limit": "limit_hit"}), strategy),
    }


def write_long_short(spark: SparkSession, settings: Settings, strategy: str, daily: pd.DataFrame) -> str:
    """One model's decile long-short periods (:mod:`pipelines.backtest.longshort`)."""
    return _write(spark, settings, LONG_SHORT, daily, strategy)


def load_equity(spark: SparkSession, settings: Settings, strategy: str) -> pd.DataFrame:
    """The equity curve a backtest of ``strategy`` wrote."""
    target = BACKTEST_EQUITY.path(settings)
    try:
        frame = lake.read(spark, target).where(F.col("strategy") == strategy).toPandas()
    except Exception as exc:  # noqa: BLE001 (no table yet: say what to run)
        raise ValueError(f"no backtest equity at {target}: run `python -m pipelines.backtest` first ({exc})") from None
    if frame.empty:
        raise ValueError(f"no backtest of strategy {strategy!r} in {target}: run `python -m pipelines.backtest "
                         f"--strategy {strategy}` first")
    return frame.sort_values("ts").reset_index(drop=True)


def write_montecarlo(spark: SparkSession, settings: Settings, strategy: str, summary,
                     fan: pd.DataFrame | None = None) -> str:
    """The summary table (one row per statistic) of a Monte Carlo run, and its fan quantiles."""
    table = summary.table.reset_index(names="statistic").assign(
        simulations=summary.simulations, method=summary.method, confidence=summary.confidence,
        risk_of_ruin=summary.risk_of_ruin)
    if fan is not None:
        _write(spark, settings, MONTECARLO_FAN, fan, strategy)
    return _write(spark, settings, MONTECARLO_SUMMARY, table, strategy)
