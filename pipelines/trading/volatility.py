"""The trailing volatility a strategy sees: the standard deviation of the last ``VOL_WINDOW`` log
returns of the close (at least half of them), annualized. Written once for the panel (the
backtest's :class:`~pipelines.backtest.engine.Market`) and once bar by bar (the live trader's
:class:`VolWindow`); the live parity tests hold them equal."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd

VOL_WINDOW = 20


def trailing_vol(close: pd.DataFrame, periods_per_year: float, window: int = VOL_WINDOW) -> pd.DataFrame:
    """Per ``(time, symbol)`` of a wide close panel, the annualized volatility known at that close."""
    returns = np.log(close.ffill()).diff()
    return returns.rolling(window, min_periods=max(2, window // 2)).std() * np.sqrt(periods_per_year)


class VolWindow:
    """The last ``window + 1`` closes per symbol, and the volatility :func:`trailing_vol` gives at
    the newest of them. Replaying a bar time already seen does not append its closes again."""

    def __init__(self, periods_per_year: float, window: int = VOL_WINDOW) -> None:
        self.periods_per_year, self.window = periods_per_year, window
        self.closes: dict[str, deque] = {}
        self.last_ts: dict[str, pd.Timestamp] = {}

    def seed(self, history: pd.DataFrame) -> None:
        """Start from past bars (``symbol``, ``ts``, ``close``)."""
        for symbol, rows in history.sort_values("ts").groupby("symbol"):
            for ts, close in zip(rows["ts"], rows["close"]):
                self.add(symbol, ts, float(close))

    def add(self, symbol: str, ts, close: float) -> None:
        """The close of ``symbol``'s bar at ``ts`` (ignored when not newer than the last one added)."""
        ts = pd.Timestamp(ts)
        last = self.last_ts.get(symbol)
        if last is not None and ts <= last:
            return
        self.last_ts[symbol] = ts
        self.closes.setdefault(symbol, deque(maxlen=self.window + 1)).append(close)

    def annual_vol(self, symbol: str) -> float:
        closes = np.asarray(self.closes.get(symbol, ()), dtype=float)
        if len(closes) < 2:
            return math.nan
        returns = np.diff(np.log(closes))[-self.window:]
        if len(returns) < max(2, self.window // 2):
            return math.nan
        return float(np.std(returns, ddof=1) * math.sqrt(self.periods_per_year))
