"""Spark drivers for the feature and label tables, over the pure functions in ``features``.

Per-symbol time-series features run as ``groupBy("symbol").applyInArrow`` on the compiled
kernel (:func:`pipelines.features.kernel.compute`): each symbol's bars arrive as Arrow columns,
go to the kernel as one float64 matrix, and its column-major result goes back to Arrow without
a per-row step. Cross-sectional ranks are Spark window functions that reproduce
:func:`pipelines.features.library.add_cross_sectional_ranks` exactly (average rank of ties over
the non-null count), which a test checks.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from pipelines.features import kernel
from pipelines.features.labels import compute_labels
from pipelines.features.library import feature_names, max_lookback
from pipelines.lake.io import newest_per_symbol

KEYS = [StructField("symbol", StringType()), StructField("ts", TimestampType())]


def _nan_to_null(df: DataFrame, columns: list[str]) -> DataFrame:
    # pandas NaN arrives in Spark as NaN, which sorts above every number; SQL wants NULL
    return df.select(*[F.nanvl(F.col(c), F.lit(None).cast("double")).alias(c) if c in columns else F.col(c)
                       for c in df.columns])


def kernel_features(table: pa.Table, windows: list[int], names: list[str], passthrough: list[str]) -> pa.Table:
    """One symbol's bars (Arrow) -> symbol, ts, the ``names`` features and ``passthrough``
    columns, in time order; a missing feature is a null, as SQL expects."""
    table = table.take(pc.sort_indices(table, [("ts", "ascending")]))
    matrix = np.empty((table.num_rows, len(kernel.INPUTS)))
    for j, name in enumerate(kernel.INPUTS):
        matrix[:, j] = table.column(name).to_numpy()   # nulls arrive as NaN
    feats = kernel.compute(matrix, windows)
    index = {n: j for j, n in enumerate(feature_names(windows))}
    columns = [table.column("symbol"), table.column("ts")]
    columns += [pa.array(feats[:, index[n]], from_pandas=True) for n in names]
    columns += [table.column(n) for n in passthrough]
    return pa.Table.from_arrays(columns, names=["symbol", "ts", *names, *passthrough])


def time_series_features(bars: DataFrame, windows: list[int], keep: list[str] | None = None,
                         passthrough: list[str] | None = None) -> DataFrame:
    """symbol, ts and the per-symbol features (or only ``keep``), from each symbol's history in ``bars``.

    ``passthrough`` columns of ``bars`` (double) are carried to the output unchanged.
    """
    names = keep or feature_names(windows)
    passthrough = passthrough or []
    schema = StructType(KEYS + [StructField(n, DoubleType()) for n in names + passthrough])
    cols = ["symbol", "ts", *kernel.INPUTS, *passthrough]
    return bars.select(*[F.col(c).cast("double") if c in kernel.INPUTS else F.col(c) for c in cols]) \
        .groupBy("symbol").applyInArrow(lambda t: kernel_features(t, windows, names, passthrough), schema)


def with_cross_sectional_ranks(features: DataFrame, rank_features: list[str]) -> DataFrame:
    """Add ``rank_<name>``: percentile rank across symbols at each ts (ties share their average
    rank, over the non-null count), as :func:`~pipelines.features.library.add_cross_sectional_ranks`
    computes it: pandas' grouped rank on each day's rows, so the ranks cost one shuffle by day
    (Spark window functions needed a sort per ranked column and one more for ties)."""
    schema = StructType(features.schema.fields + [StructField(f"rank_{n}", DoubleType()) for n in rank_features])
    columns = features.columns

    def per_day(table: pa.Table) -> pa.Table:
        frame = table.select(["ts", *rank_features]).to_pandas()
        ranks = frame.groupby("ts")[rank_features].rank(pct=True)
        out = table.select(columns)
        for name in rank_features:
            out = out.append_column(f"rank_{name}", pa.array(ranks[name].to_numpy(float), from_pandas=True))
        return out

    return features.withColumn("_day", F.to_date("ts")).groupBy("_day").applyInArrow(per_day, schema)


def windows_for(names: list[str], windows: list[int]) -> list[int]:
    """The rolling windows that ``names`` need (the smallest one if they need none)."""
    needed = {int(n.rsplit("_", 1)[1]) for n in names if n.rsplit("_", 1)[-1].isdigit()} & set(windows)
    return sorted(needed) or [min(windows)]


def feature_table(bars: DataFrame, windows: list[int], rank_features: list[str]) -> DataFrame:
    """The gold feature table: symbol, ts, date and all features.

    Ranks need every symbol at a timestamp, the rest one symbol's history. So a narrow
    first pass computes just the ranked columns (same library, only the windows they
    need), ranks them across symbols, and joins the ranks onto the bars; the full
    per-symbol pass then carries them through. Wide feature rows are never shuffled:
    sorting or joining them cost more than computing them (see benchmarks/).
    """
    rank_cols = [f"rank_{n}" for n in rank_features]
    if rank_features:
        sources = time_series_features(bars, windows_for(rank_features, windows), keep=rank_features)
        ranks = with_cross_sectional_ranks(sources, rank_features).drop(*rank_features)
        bars = bars.join(ranks, on=["symbol", "ts"], how="left")
    feats = time_series_features(bars, windows, passthrough=rank_cols)
    return feats.withColumn("date", F.date_format("ts", "yyyy-MM-dd")).select(
        "symbol", "ts", "date", *feature_names(windows, rank_features))


def label_table(bars: DataFrame, horizon: int, price: str = "close") -> DataFrame:
    """symbol, ts, date, fwd_return and direction from the next bars only (see
    :func:`~pipelines.features.labels.compute_labels` for ``price``)."""
    schema = StructType(KEYS + [StructField("fwd_return", DoubleType()), StructField("direction", DoubleType())])

    def per_symbol(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("ts", kind="stable").reset_index(drop=True)
        return pd.concat([pdf[["symbol", "ts"]], compute_labels(pdf, horizon, price)], axis=1)

    labels = bars.select("symbol", "ts", "open", "close").groupBy("symbol").applyInPandas(per_symbol, schema)
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
    before = newest_per_symbol(silver.where((F.col("date") >= first) & (F.col("date") < start.isoformat())), lookback)
    return in_range.unionByName(before)


def with_future(silver: DataFrame, start: date, end: date, horizon: int) -> DataFrame:
    """Rows in [start, end] plus the next ``horizon`` bars after ``end`` per symbol (for labels)."""
    last = (end + timedelta(days=max(7, math.ceil(horizon * 1.6) + 7))).isoformat()
    in_range = silver.where((F.col("date") >= start.isoformat()) & (F.col("date") <= end.isoformat()))
    after = (silver.where((F.col("date") > end.isoformat()) & (F.col("date") <= last))
             .withColumn("_rn", F.row_number().over(Window.partitionBy("symbol").orderBy("ts")))
             .where(F.col("_rn") <= horizon).drop("_rn"))
    return in_range.unionByName(after)
