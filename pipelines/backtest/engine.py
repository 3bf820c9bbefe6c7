"""The backtest engine: predictions -> target positions -> fills at the next bar's open -> equity.

One compiled pass over time and symbols (numba), because stops, the drawdown breaker and
equity-based sizing are path-dependent and a Python loop per bar would dominate; the
decision at each close is the shared :func:`pipelines.trading.decision.decide_targets`.
``pipelines.backtest.reference`` is the same rules written event by event in plain Python,
used by the tests to show both agree.

Timing, per bar ``t``:

1. orders decided at the close of ``t - 1`` fill at the **open of ``t``**: quantity capped
   at ``max_participation`` of the volume known when the order was decided (the last bar's
   volume up to ``t - 1``: bar ``t``'s own volume is not known at its open), costs =
   commission + half-spread + slippage growing with that participation, charged in cash;
2. equity is marked at the close of ``t``;
3. at that close the next targets are decided: the drawdown breaker (flatten everything
   and halt for good), then stop-loss / take-profit against the entry price (flatten that
   symbol), then the signal from ``p_up[t]`` sized as configured; each becomes an order in
   **shares** at that close (target value / close - shares held), as a live order is sent:
   the venue fills that quantity, it does not re-size it at the open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from pipelines.trading import rules as R
from pipelines.trading.decision import decide_targets
from pipelines.trading.rules import Rules


@dataclass
class Market:
    """Aligned ``(time, symbol)`` arrays; missing bars are NaN (no fill, last close for marking)."""

    ts: pd.DatetimeIndex
    symbols: list[str]
    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    p_up: np.ndarray
    annual_vol: np.ndarray  # trailing volatility known at each close, annualized
    periods_per_year: float

    @classmethod
    def from_frames(cls, bars: pd.DataFrame, predictions: pd.DataFrame, vol_window: int = 20,
                    periods_per_year: float | None = None) -> "Market":
        """Pivot long ``bars`` (symbol, ts, open, close, volume) and ``predictions`` (symbol, ts,
        p_up) onto one grid; bars without a prediction get none (flat)."""
        frame = bars.merge(predictions[["symbol", "ts", "p_up"]], on=["symbol", "ts"], how="left")
        wide = {c: frame.pivot(index="ts", columns="symbol", values=c).sort_index() for c in
                ("open", "close", "volume", "p_up")}
        close = wide["close"]
        ppy = periods_per_year or infer_periods_per_year(close.index)
        vol = np.log(close.ffill()).diff().rolling(vol_window, min_periods=max(2, vol_window // 2)).std() * np.sqrt(ppy)
        return cls(pd.DatetimeIndex(close.index), list(close.columns), wide["open"].to_numpy(float),
                   close.to_numpy(float), wide["volume"].to_numpy(float), wide["p_up"].to_numpy(float),
                   vol.to_numpy(float), ppy)


def infer_periods_per_year(ts: pd.Index) -> float:
    """252 trading days times the median number of bars per day."""
    days = pd.Series(1, index=pd.DatetimeIndex(ts)).groupby(pd.DatetimeIndex(ts).date).size()
    return 252.0 * float(days.median()) if len(days) else 252.0


@dataclass
class Result:
    equity: np.ndarray        # after marking at each close
    positions: np.ndarray     # shares held after each bar's fills, (time, symbol)
    fills: pd.DataFrame       # t, ts, symbol, quantity, price, cost
    halted_at: int | None     # bar whose close tripped the breaker
    initial_capital: float
    market: Market

    @property
    def returns(self) -> np.ndarray:
        prev = np.r_[self.initial_capital, self.equity[:-1]]
        return self.equity / prev - 1.0

    def last_marks(self) -> dict[str, float]:
        """Each symbol's last known close (to value positions still open at the end)."""
        return dict(zip(self.market.symbols, marks(self.market.close)[-1].tolist()))

    def equity_frame(self) -> pd.DataFrame:
        gross = np.nansum(np.abs(self.positions) * marks(self.market.close), axis=1)
        return pd.DataFrame({"ts": self.market.ts, "equity": self.equity, "returns": self.returns,
                             "gross_exposure": gross / self.equity})


def marks(close: np.ndarray) -> np.ndarray:
    """Close prices with gaps filled by the last close (for marking positions)."""
    return np.ascontiguousarray(pd.DataFrame(close).ffill().to_numpy(dtype=np.float64))


@njit(cache=True)
def _simulate(open_, closes, volume, p_up, annual_vol, params, initial_capital):
    """The compiled loop: one pass over time, an inner pass over symbols (see the module docstring)."""
    commission, half_spread, slippage, max_part = params[5], params[6], params[7], params[8]
    T, N = open_.shape
    shares = np.zeros(N)
    entry = np.full(N, np.nan)
    target = np.zeros(N)
    order_qty = np.zeros(N)
    equity = np.empty(T)
    positions = np.empty((T, N))
    fills = np.empty((T * N, 5))  # t, symbol, quantity, price, cost
    n_fills = 0
    cash = initial_capital
    peak = initial_capital
    halted_at = -1
    for t in range(T):
        if t > 0:  # orders decided at the previous close fill at this open
            for i in range(N):
                price = open_[t, i]
                if not (price > 0) or not math.isfinite(price):
                    continue
                known = volume[t - 1, i]  # decision-time volume (see known_volume)
                qty = R.cap_quantity(order_qty[i], known, max_part)
                if abs(qty) < 1e-9:
                    continue
                cost = R.trade_cost(qty, price, known, commission, half_spread, slippage)
                cash -= qty * price + cost
                new = shares[i] + qty
                entry[i] = R.new_entry(shares[i], new, entry[i], qty, price)
                shares[i] = new
                fills[n_fills, 0] = t
                fills[n_fills, 1] = i
                fills[n_fills, 2] = qty
                fills[n_fills, 3] = price
                fills[n_fills, 4] = cost
                n_fills += 1
        value = cash
        for i in range(N):
            positions[t, i] = shares[i]
            if shares[i] != 0.0 and math.isfinite(closes[t, i]):
                value += shares[i] * closes[t, i]
        equity[t] = value
        peak = max(peak, value)
        was_halted = halted_at >= 0
        if decide_targets(value, peak, was_halted, initial_capital, shares, entry, closes[t], p_up[t],
                          annual_vol[t], params, target) and not was_halted:
            halted_at = t
        for i in range(N):
            order_qty[i] = R.order_quantity(target[i], closes[t, i], shares[i])
    return equity, positions, fills[:n_fills], halted_at


def run_backtest(market: Market, rules: Rules, initial_capital: float) -> Result:
    """Simulate the strategy over ``market``; see the module docstring for the timing."""
    equity, positions, fills, halted = _simulate(
        np.ascontiguousarray(market.open, dtype=np.float64), marks(market.close), known_volume(market.volume), np.ascontiguousarray(market.p_up, dtype=np.float64),
        np.ascontiguousarray(market.annual_vol, dtype=np.float64), rules.params(), float(initial_capital))
    return Result(equity, positions, fills_frame(market, fills), None if halted < 0 else int(halted),
                  float(initial_capital), market)


def known_volume(volume: np.ndarray) -> np.ndarray:
    """Per bar and symbol, the last volume printed up to and including that bar (gaps carried);
    an order filled at bar ``t`` is sized and charged with row ``t - 1`` of this."""
    return marks(volume)


def fills_frame(market: Market, fills: np.ndarray) -> pd.DataFrame:
    """Fills as a table: t, ts, symbol, quantity, price, cost."""
    t = fills[:, 0].astype(np.int64)
    symbols = np.asarray(market.symbols, dtype=object)[fills[:, 1].astype(np.int64)]
    return pd.DataFrame({"t": t, "ts": market.ts[t], "symbol": symbols, "quantity": fills[:, 2],
                         "price": fills[:, 3], "cost": fills[:, 4]})
