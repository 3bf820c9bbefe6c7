"""The backtest engine: predictions -> target positions -> fills at the next bar's open -> equity.

Vectorized across symbols (every step is a handful of numpy operations on arrays of one
value per symbol); time is a loop, because stops, the drawdown breaker and equity-based
sizing are path-dependent. ``pipelines.backtest.reference`` is the same rules written
event by event, used by the tests to show both agree.

Timing, per bar ``t``:

1. orders decided at the close of ``t - 1`` fill at the **open of ``t``**: quantity capped
   at ``max_participation`` of bar ``t``'s volume, costs = commission + half-spread +
   slippage growing with participation, charged in cash;
2. equity is marked at the close of ``t``;
3. at that close the next targets are decided: the drawdown breaker (flatten everything
   and halt for good), then stop-loss / take-profit against the entry price (flatten that
   symbol), then the signal from ``p_up[t]`` sized as configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipelines.backtest import rules as R
from pipelines.backtest.rules import Rules


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

    def equity_frame(self) -> pd.DataFrame:
        gross = np.nansum(np.abs(self.positions) * _marks(self.market.close), axis=1)
        return pd.DataFrame({"ts": self.market.ts, "equity": self.equity, "returns": self.returns,
                             "gross_exposure": gross / self.equity})


def _marks(close: np.ndarray) -> np.ndarray:
    """Close prices with gaps filled by the last close (for marking positions)."""
    return pd.DataFrame(close).ffill().to_numpy()


def run_backtest(market: Market, rules: Rules, initial_capital: float, progress: bool = False) -> Result:
    """Simulate the strategy over ``market``; see the module docstring for the timing."""
    T, N = market.close.shape
    marks = _marks(market.close)
    shares = np.zeros(N)
    entry = np.full(N, np.nan)
    cash, peak = float(initial_capital), float(initial_capital)
    target = np.zeros(N)  # target value per symbol for the next open
    pending = False
    halted_at: int | None = None
    equity = np.empty(T)
    positions = np.empty((T, N))
    fills: list[tuple] = []
    for t in tqdm(range(T), desc="backtest", unit="bar", disable=not progress, mininterval=0.5):
        if pending:
            price = market.open[t]
            tradable = np.isfinite(price) & (price > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                wanted = np.where(tradable, target / price - shares, 0.0)
            qty = np.where(tradable, R.cap_quantity(wanted, market.volume[t], rules), 0.0)
            qty[np.abs(qty) < 1e-9] = 0.0
            traded = np.flatnonzero(qty)
            if len(traded):
                px, q = price[traded], qty[traded]
                cost = R.trade_cost(q, px, market.volume[t, traded], rules)
                cash -= float(np.sum(q * px) + np.sum(cost))
                old = shares[traded]
                new = old + q
                opened = (old == 0) | (np.sign(new) != np.sign(old))
                added = ~opened & (np.abs(new) > np.abs(old))
                e = entry[traded]
                with np.errstate(divide="ignore", invalid="ignore"):
                    e = np.where(opened, px, np.where(added, (old * e + q * px) / new, e))
                entry[traded] = np.where(new == 0, np.nan, e)
                shares[traded] = new
                fills.extend(zip([t] * len(traded), traded.tolist(), q.tolist(), px.tolist(), cost.tolist()))
        positions[t] = shares
        value = float(cash + np.nansum(shares * marks[t]))
        equity[t] = value
        peak = max(peak, value)
        if halted_at is not None:
            target = np.zeros(N)
        elif R.breaker_tripped(value, peak, rules):
            halted_at, target = t, np.zeros(N)
        else:
            side = np.sign(shares)
            stop = R.exit_hit(side, entry, marks[t], rules)
            sig = R.signal(market.p_up[t], rules)
            size = R.position_size(market.p_up[t], market.annual_vol[t], rules)
            target = np.where(stop, 0.0, sig * size * value)
        pending = True
    frame = pd.DataFrame(fills, columns=["t", "symbol_index", "quantity", "price", "cost"])
    frame.insert(1, "ts", market.ts[frame["t"].to_numpy()] if len(frame) else pd.DatetimeIndex([]))
    frame.insert(2, "symbol", [market.symbols[i] for i in frame["symbol_index"]])
    return Result(equity, positions, frame.drop(columns="symbol_index"), halted_at, float(initial_capital), market)
