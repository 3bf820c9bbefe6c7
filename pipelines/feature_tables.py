"""Spark drivers for the feature and label tables, over the pure functions in ``features``.

Per-symbol time-series features run as ``groupBy("symbol").applyInPandas`` on
:func:`pipelines.features.compute_features`; cross-sectional ranks are Spark window
functions that reproduce :func:`pipelines.features.add_cross_sectional_ranks` exactly
(average rank of ties over the non-null count), which a test checks.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from pipelines.features import compute_features, compute_labels, feature_names, max_lookback

KEYS = [StructField("symbol", StringType()), StructField("ts", TimestampType())]


def _nan_to_null(df: DataFrame, columns: list[str]) -> DataFrame:
    # pandas NaN arrives in Spark as NaN, which sorts above every number; SQL wants NULL
    return df.select(*[F.nanvl(F.col(c), F.lit(None).cast("double")).alias(c) if c in columns else F.col(c)
                       for c in df.columns])


def time_series_features(bars: DataFrame, windows: list[int]) -> DataFrame:
    """symbol, ts and every per-symbol feature, computed from each symbol's full history in ``bars``."""
    names = feature_names(windows)
    schema = StructType(KEYS + [StructField(n, DoubleType()) for n in names])

    def per_symbol(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("ts", kind="stable").reset_index(drop=True)
        feats = compute_features(pdf, windows)
        return pd.concat([pdf[["symbol", "ts"]], feats], axis=1)

    cols = ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap"]
    return _nan_to_null(bars.select(*cols).groupBy("symbol").applyInPandas(per_symbol, schema), names)


def with_cross_sectional_ranks(features: DataFrame, rank_features: list[str]) -> DataFrame:
    """Add ``rank_<name>``: percentile rank across symbols at each ts (ties share their average rank).

    The ranks are computed on a narrow projection and joined back: sorting the full-width
    rows once per ranked column cost twice as much as the features themselves on the
    S&P 500 panel. ``features`` is read twice, so pass a persisted frame.
    """
    if not rank_features:
        return features
    narrow = _ranks(features.select("symbol", "ts", *rank_features), rank_features).drop(*rank_features)
    return features.join(narrow, on=["symbol", "ts"], how="left")


def _ranks(features: DataFrame, rank_features: list[str]) -> DataFrame:
    out = features
    for name in rank_features:
        by_ts = Window.partitionBy("ts")
        ordered = by_ts.orderBy(F.col(name).asc_nulls_last())
        ties = Window.partitionBy("ts", name)
        rank = F.rank().over(ordered) + (F.count(F.lit(1)).over(ties) - 1) / 2.0
        pct = rank / F.count(F.col(name)).over(by_ts)
        out = out.withColumn(f"rank_{name}", F.when(F.col(name).isNotNull(), pct).cast("double"))
    return out


def feature_table(bars: DataFrame, windows: list[int], rank_features: list[str]) -> DataFrame:
    """The gold feature table: symbol, ts, date and all features.

    The per-symbol features are persisted (memory, spilling to disk) so the Python UDF runs
    once although the ranks read them twice; call ``.unpersist()`` on the result's source
    via :func:`release` once the table is written.
    """
    series = time_series_features(bars, windows).persist(StorageLevel.MEMORY_AND_DISK)
    feats = with_cross_sectional_ranks(series, rank_features)
    return feats.withColumn("date", F.date_format("ts", "yyyy-MM-dd")).select(
        "symbol", "ts", "date", *feature_names(windows, rank_features))


def release(spark) -> None:
    """Drop every persisted frame of this session (the per-symbol features after a write)."""
    spark.catalog.clearCache()


def label_table(bars: DataFrame, horizon: int) -> DataFrame:
    """symbol, ts, date, fwd_return and direction from the next ``horizon`` bars only."""
    schema = StructType(KEYS + [StructField("fwd_return", DoubleType()), StructField("direction", DoubleType())])

    def per_symbol(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("ts", kind="stable").reset_index(drop=True)
        return pd.concat([pdf[["symbol", "ts"]], compute_labels(pdf["close"], horizon)], axis=1)

    labels = bars.select("symbol", "ts", "close").groupBy("symbol").applyInPandas(per_symbol, schema)
    labels = _nan_to_null(labels, ["fwd_return", "direction"])
    return labels.withColumn("date", F.date_format("ts", "yyyy-MM-dd")).select(
        "symbol", "ts", "date", "fwd_return", "direction")


def lookback_days(windows: list[int]) -> int:
    """Calendar days of history to read before a range so daily bars have their full lookback."""
    return max(10, math.ceil(max_lookback(windows) * 1.6))


def with_history(silver: DataFrame, start: date, end: date, windows: list[int]) -> DataFrame:
    """Rows in [start, end] plus, per symbol, the last ``max_lookback`` bars before ``start``."""
    lookback = max_lookback(windows)
    first = (start - timedelta(days=lookback_days(windows))).isoformat()
    in_range = silver.where((F.col("date") >= start.isoformat()) & (F.col("date") <= end.isoformat()))
    before = (silver.where((F.col("date") >= first) & (F.col("date") < start.isoformat()))
              .withColumn("_rn", F.row_number().over(Window.partitionBy("symbol").orderBy(F.col("ts").desc())))
              .where(F.col("_rn") <= lookback).drop("_rn"))
    return in_range.unionByName(before)


def with_future(silver: DataFrame, start: date, end: date, horizon: int) -> DataFrame:
    """Rows in [start, end] plus the next ``horizon`` bars after ``end`` per symbol (for labels)."""
    last = (end + timedelta(days=max(7, math.ceil(horizon * 1.6) + 7))).isoformat()
    in_range = silver.where((F.col("date") >= start.isoformat()) & (F.col("date") <= end.isoformat()))
    after = (silver.where((F.col("date") > end.isoformat()) & (F.col("date") <= last))
             .withColumn("_rn", F.row_number().over(Window.partitionBy("symbol").orderBy("ts")))
             .where(F.col("_rn") <= horizon).drop("_rn"))
    return in_range.unionByName(after)
