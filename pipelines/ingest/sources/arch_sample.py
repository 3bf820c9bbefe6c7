"""A small real sample shipped by the ``arch`` package: daily S&P 500, NASDAQ, VIX and WTI.

S&P 500 and NASDAQ come with OHLC, adjusted close and volume (1999-2018); VIX and WTI
are close-only series, taken as bars with open = high = low = close and no volume.
"""

from __future__ import annotations

import importlib
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from config.schemas.data import ArchSourceSettings
from pipelines.lake.tables import SOURCE_BAR_SCHEMA

SERIES = {"sp500": "SPX", "nasdaq": "IXIC", "vix": "VIX", "wti": "WTI"}


def load_arch_bars(series: list[str]) -> pd.DataFrame:
    """Daily bars of the chosen series in the bar contract (plus ``adj_close``)."""
    frames = []
    for name in series:
        raw = importlib.import_module(f"arch.data.{name}").load()
        if {"Open", "High", "Low", "Close"} <= set(raw.columns):
            df = pd.DataFrame({"open": raw["Open"], "high": raw["High"], "low": raw["Low"], "close": raw["Close"],
                               "volume": raw["Volume"].astype(float), "adj_close": raw["Adj Close"]})
        else:
            close = raw.iloc[:, 0].astype(float)
            df = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                               "volume": float("nan"), "adj_close": float("nan")})
        df.insert(0, "ts", pd.to_datetime(raw.index).tz_localize("UTC"))
        df.insert(0, "symbol", SERIES[name])
        frames.append(df.reset_index(drop=True))
    return pd.concat(frames, ignore_index=True)


class ArchSource:
    """The ``arch`` sample as a :class:`~pipelines.ingest.sources.base.Source` of daily bars."""

    kind = "bars"
    interval = "1d"

    def __init__(self, cfg: ArchSourceSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._bars: pd.DataFrame | None = None

    def bars(self) -> pd.DataFrame:
        if self._bars is None:
            self._bars = load_arch_bars(list(self.cfg.series))
        return self._bars

    def read(self, spark: SparkSession, start: date, end: date) -> DataFrame:
        bars = self.bars()
        days = bars["ts"].dt.date
        return spark.createDataFrame(bars[(days >= start) & (days <= end)].reset_index(drop=True), SOURCE_BAR_SCHEMA)

    def date_range(self, spark: SparkSession) -> tuple[date, date]:
        ts = self.bars()["ts"]
        return ts.min().date(), ts.max().date()

    def facts(self) -> dict[str, float]:
        return {}
