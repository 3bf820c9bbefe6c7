"""Bars from ticks: one aggregation for the batch tables and the streaming job alike.

Only aggregate functions that Structured Streaming supports are used (``min_by``/``max_by``
on ``(ts, seq)`` instead of ``first``/``last``, whose order a stream does not keep).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

BAR_COLUMNS = ["symbol", "ts", "interval", "open", "high", "low", "close", "volume", "vwap", "trades"]


def interval_label(minutes: int) -> str:
    return f"{minutes}m" if minutes < 1440 else f"{minutes // 1440}d"


def ticks_to_bars(ticks: DataFrame, minutes: int, extra: dict[str, Column] | None = None) -> DataFrame:
    """Aggregate ticks into ``minutes`` bars keyed by bar start (bar contract columns).

    ``extra`` adds aggregate columns after the contract's (the stream adds the Kafka append
    time of each bar's last tick).
    """
    extra = extra or {}
    order = F.struct("ts", "seq")
    size = F.coalesce(F.col("size"), F.lit(0.0))
    bars = ticks.groupBy("symbol", F.window("ts", f"{minutes} minutes").alias("w")).agg(
        F.min_by("price", order).alias("open"),
        F.max("price").alias("high"),
        F.min("price").alias("low"),
        F.max_by("price", order).alias("close"),
        F.sum(size).alias("volume"),
        (F.sum(F.col("price") * size) / F.sum(size)).alias("vwap"),
        F.count(F.lit(1)).alias("trades"),
        *[agg.alias(name) for name, agg in extra.items()],
    )
    return bars.select(
        "symbol", F.col("w.start").alias("ts"), F.lit(interval_label(minutes)).alias("interval"),
        "open", "high", "low", "close", "volume",
        F.coalesce("vwap", "close").alias("vwap"), F.col("trades").cast("long").alias("trades"), *extra,
    )


def with_bar_defaults(bars: DataFrame, interval: str) -> DataFrame:
    """Give source bars (files, samples) the bar contract's vwap, trades and interval."""
    typical = (F.col("high") + F.col("low") + F.col("close")) / 3.0
    return bars.select(
        "symbol", "ts", F.lit(interval).alias("interval"), "open", "high", "low", "close",
        F.coalesce(F.col("volume"), F.lit(0.0)).alias("volume"),
        typical.alias("vwap"), F.lit(None).cast("long").alias("trades"),
    )
