"""The gold feature and label tables for one date range, from silver bars.

Each function replaces exactly the range of its Delta table, so re-running never appends.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from pipelines import lake
from pipelines.features.driver import feature_table, label_table, with_future, with_history
from pipelines.lake.tables import FEATURES, LABELS, SILVER_BARS


def write_features(spark: SparkSession, settings: Settings, start: date, end: date) -> lake.LayerResult:
    """Gold features for the range, each row from its symbol's history up to that bar only."""
    f = settings.data.features
    silver = lake.read(spark, SILVER_BARS.path(settings))
    table = feature_table(with_history(silver, start, end, f.windows), f.windows, f.rank_features)
    table = FEATURES.conform(table.where(lake.date_between(start, end)))
    target = FEATURES.path(settings)
    version = lake.replace_range(table, target, "date", start.isoformat(), end.isoformat())
    written = lake.read(spark, target).where(lake.date_between(start, end))
    return lake.LayerResult(target, written.count(), version, {"features": len(table.columns) - 3})


def write_labels(spark: SparkSession, settings: Settings, start: date, end: date) -> lake.LayerResult:
    """Gold labels for the range: forward return over ``model.label_horizon`` bars and direction,
    close-to-close or open-to-open from the fill bar (``model.label_price``)."""
    m = settings.model
    horizon = m.label_horizon
    silver = lake.read(spark, SILVER_BARS.path(settings))
    table = label_table(with_future(silver, start, end, m.label_span), horizon, m.label_price).where(
        lake.date_between(start, end))
    target = LABELS.path(settings)
    version = lake.replace_range(LABELS.conform(table), target, "date", start.isoformat(), end.isoformat())
    written = lake.read(spark, target).where(lake.date_between(start, end))
    stats = written.agg(F.count("direction").alias("n"), F.avg("direction").alias("up")).collect()[0]
    return lake.LayerResult(target, written.count(), version, {
        "horizon_bars": horizon, "label_price": m.label_price, "labelled": int(stats["n"]),
        "share_up": float(stats["up"] or 0.0)})
