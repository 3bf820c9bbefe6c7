"""What every market data source offers the ingest layer."""

from __future__ import annotations

from datetime import date
from typing import Literal, Protocol

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F


class Source(Protocol):
    """A market data source: a named dataset of ticks or bars over a range of dates."""

    name: str                             # the dataset its tables live under
    kind: Literal["ticks", "bars"]
    interval: str                         # bar interval: "5m", "1d" (ticks are aggregated to it)

    def read(self, spark: SparkSession, start: date, end: date) -> DataFrame:
        """The records dated in ``[start, end]``, as received (the tick or source-bar contract)."""

    def date_range(self, spark: SparkSession) -> tuple[date, date]:
        """First and last date the source has data for."""

    def facts(self) -> dict[str, float]:
        """Numbers known about the source itself, e.g. the synthetic market's Bayes bound."""


def interval_minutes(interval: str) -> int:
    """``"5m"`` -> 5, ``"1h"`` -> 60, ``"1d"`` -> 1440."""
    units = {"m": 1, "h": 60, "d": 1440}
    if len(interval) < 2 or interval[-1] not in units or not interval[:-1].isdigit():
        raise ValueError(f"bar interval {interval!r}: expected a number and one of m, h, d (e.g. '5m', '1d')")
    return int(interval[:-1]) * units[interval[-1]]


def in_range(df: DataFrame, start: date, end: date) -> DataFrame:
    """Rows dated in ``[start, end]``, plus rows no range would ever take (no timestamp, or one
    after today) so that silver quarantines them instead of losing them."""
    day = F.to_date("ts")
    inside: Column = (day >= F.lit(start.isoformat()).cast("date")) & (day <= F.lit(end.isoformat()).cast("date"))
    return df.where(inside | F.col("ts").isNull() | (day > F.current_date()))
