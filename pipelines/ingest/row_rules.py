"""Per-row quality rules: each looks at one record only, so a stream can apply them as well.

A rule is a Spark condition that holds when the row is bad, and the reason to record.
The window rules (duplicates, isolated spikes), which need neighbouring rows, are in
:mod:`pipelines.ingest.window_rules`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F

from config.schemas.data import QualitySettings

Rule = tuple[Column, str]


def future_limit(cfg: QualitySettings, now: datetime | None = None) -> Column:
    """The latest acceptable timestamp: now plus ``max_future_minutes``.

    Without ``now`` it is the query's current time, which a stream evaluates per micro-batch
    (and replays with the same value after a restart).
    """
    if now is None:
        return F.current_timestamp() + F.make_dt_interval(mins=F.lit(cfg.max_future_minutes))
    return F.lit((now + timedelta(minutes=cfg.max_future_minutes)).replace(tzinfo=None)).cast("timestamp")


def tick_rules(cfg: QualitySettings, now: datetime | None = None) -> list[Rule]:
    """Key present, price positive, size positive, quote not crossed, timestamp not in the future."""
    return [
        (F.col("symbol").isNull() | F.col("ts").isNull() | F.col("seq").isNull(), "missing key"),
        (F.col("price").isNull() | (F.col("price") <= 0), "missing or non-positive price"),
        (F.col("size").isNotNull() & (F.col("size") <= 0), "non-positive size"),
        (F.col("bid").isNotNull() & F.col("ask").isNotNull() & (F.col("bid") > F.col("ask")), "crossed quote"),
        (F.col("ts") > future_limit(cfg, now), "timestamp in the future"),
    ]


def bar_rules(cfg: QualitySettings, now: datetime | None = None) -> list[Rule]:
    """Key present, prices present and positive, OHLC consistent, volume not negative,
    timestamp not in the future."""
    price_ok = (F.col("open").isNotNull() & F.col("high").isNotNull() & F.col("low").isNotNull()
                & F.col("close").isNotNull())
    return [
        (F.col("symbol").isNull() | F.col("ts").isNull(), "missing key"),
        (~price_ok, "missing price"),
        (price_ok & (F.least("open", "high", "low", "close") <= 0), "non-positive price"),
        (price_ok & (F.col("high") < F.greatest("open", "close")), "high below open/close"),
        (price_ok & (F.col("low") > F.least("open", "close")), "low above open/close"),
        (F.col("volume") < 0, "negative volume"),
        (F.col("ts") > future_limit(cfg, now), "timestamp in the future"),
    ]


def reasons(*rules: Rule) -> Column:
    """``"a; b"`` for every rule whose condition holds, or NULL when none does."""
    parts = [F.when(cond, F.lit(text)) for cond, text in rules]
    joined = F.concat_ws("; ", *parts)
    return F.when(joined == "", F.lit(None)).otherwise(joined)


def any_broken(rules: list[Rule]) -> Column:
    """True when any of ``rules`` holds (a NULL condition counts as not holding)."""
    broken = F.lit(False)
    for cond, _ in rules:
        broken = broken | F.coalesce(cond, F.lit(False))
    return broken
