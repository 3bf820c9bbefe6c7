"""The backtest engine: a strategy's targets -> orders through the risk gate -> fills at the next
bar's open -> equity.

One pass over time. Each bar's fills, marking and the gate are compiled (numba); the decision
at each close is the shared kernel of :mod:`pipelines.trading.decision` (the breaker, the
strategy, :func:`~pipelines.trading.decision.orders_and_verdicts`). A
:class:`~pipelines.trading.strategy.CompiledStrategy` runs inside the compiled loop; a plain
numpy :class:`~pipelines.trading.strategy.Strategy` is called from a Python loop around the
same compiled steps. ``pipelines.backtest.reference`` is the threshold rule written event by
event in plain Python, used by the tests to show both agree.

Timing, per bar ``t``:

1. orders accepted at the close of ``t - 1`` fill at the **open of ``t``**: quantity capped
   at ``max_participation`` of the volume known when the order was decided (the last bar's
   volume up to ``t - 1``: bar ``t``'s own volume is not known at its open), costs =
   commission + half-spread + slippage growing with that participation, charged in cash;
2. equity is marked at the close of ``t``;
3. at that close the drawdown breaker is checked (it flattens everything and halts for good),
   then the strategy decides target values; each becomes an order in **shares** at that close
   (target value / close - shares held), as a live order is sent: the venue fills that
   quantity, it does not re-size it at the open;
4. the :class:`~pipelines.trading.risk.RiskGate` checks each order against the limits; a
   rejected one is kept with the limit it hit (``Result.rejections``) and never fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from numba import njit

from config.schemas.trading import LimitSettings, TradingSettings
from pipelines.trading import rules as R
from pipelines.trading.decision import halted_now, orders_and_verdicts
from pipelines.trading.risk import LIMITS, limit_params, new_rate_window, reason
from pipelines.trading.rules import Costs
from pipelines.trading.strategy import Context, Strategy, StrategyError, checked_targets, first_non_finite, strategy_name
from pipelines.trading.volatility import VOL_WINDOW, trailing_vol


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
    expected_return: np.ndarray | None = None  # NaN where absent

    def __post_init__(self) -> None:
        if self.expected_return is None:
            self.expected_return = np.full(np.shape(self.close), np.nan)

    @classmethod
    def from_frames(cls, bars: pd.DataFrame, predictions: pd.DataFrame, vol_window: int = VOL_WINDOW,
                    periods_per_year: float | None = None) -> "Market":
        """Pivot long ``bars`` (symbol, ts, open, close, volume) and ``predictions`` (symbol, ts,
        p_up, optionally expected_return) onto one grid; bars without a prediction get none."""
        scored = [c for c in ("p_up", "expected_return") if c in predictions.columns]
        frame = bars.merge(predictions[["symbol", "ts", *scored]], on=["symbol", "ts"], how="left")
        columns = ("open", "close", "volume", *scored)
        wide = {c: frame.pivot(index="ts", columns="symbol", values=c).sort_index() for c in columns}
        close = wide["close"]
        ppy = periods_per_year or infer_periods_per_year(close.index)
        vol = trailing_vol(close, ppy, vol_window)
        er = wide["expected_return"].to_numpy(float) if "expected_return" in wide else None
        return cls(pd.DatetimeIndex(close.index), list(close.columns), wide["open"].to_numpy(float),
                   close.to_numpy(float), wide["volume"].to_numpy(float), wide["p_up"].to_numpy(float),
                   vol.to_numpy(float), ppy, er)


def infer_periods_per_year(ts: pd.Index) -> float:
    """252 trading days times the median number of bars per day."""
    days = pd.Series(1, index=pd.DatetimeIndex(ts)).groupby(pd.DatetimeIndex(ts).date).size()
    return 252.0 * float(days.median()) if len(days) else 252.0


@dataclass
class Result:
    equity: np.ndarray        # after marking at each close
    positions: np.ndarray     # shares held after each bar's fills, (time, symbol)
    fill_rows: np.ndarray     # t, symbol index, quantity, price, cost (``fills`` as a table)
    halted_at: int | None     # bar whose close tripped the breaker
    initial_capital: float
    market: Market
    reject_rows: np.ndarray = field(default_factory=lambda: np.empty((0, 6)))  # t, symbol index, qty, price, code, value
    limits: LimitSettings = field(default_factory=LimitSettings)
    strategy: dict = field(default_factory=dict)  # name and parameters

    @cached_property
    def fills(self) -> pd.DataFrame:
        """t, ts, symbol, quantity (signed shares), price, cost."""
        return fills_frame(self.market, self.fill_rows)

    @cached_property
    def rejections(self) -> pd.DataFrame:
        """Orders the gate rejected: ts, symbol, quantity (signed shares), price, limit, reason."""
        return rejections_frame(self.market, self.reject_rows, self.limits, self.equity)

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
    return _ffill(np.ascontiguousarray(close, dtype=np.float64))


@njit(cache=True)
def _ffill(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for t in range(1, out.shape[0]):
        for i in range(out.shape[1]):
            if np.isnan(out[t, i]):
                out[t, i] = out[t - 1, i]
    return out


def known_volume(volume: np.ndarray) -> np.ndarray:
    """Per bar and symbol, the last volume printed up to and including that bar (gaps carried);
    an order filled at bar ``t`` is sized and charged with row ``t - 1`` of this."""
    return marks(volume)


# the run's state between the compiled steps: acct = [cash, equity, peak, initial capital, state]
# (the strategy's ACCOUNT), counts = [fills, rejections, halted_at, error bar, error symbol]
CASH, EQUITY, PEAK, CAPITAL, STATE = range(5)
N_FILLS, N_REJECTS, HALTED_AT, ERROR_T, ERROR_I = range(5)


@njit(cache=True)
def _grow(buffer: np.ndarray, used: int, more: int) -> np.ndarray:
    if used + more <= len(buffer):
        return buffer
    bigger = np.empty((max(2 * len(buffer), used + more), buffer.shape[1]))
    bigger[:used] = buffer[:used]
    return bigger


@njit(cache=True)
def _open(t, open_, closes, raw_close, volume, ts_ns, costs, max_drawdown, shares, entry, order_qty, last_ts,
          acct, counts, fills, equity, positions):
    """Bar ``t`` up to its decision: fill the orders accepted at ``t - 1`` at this open, mark at
    this close (``equity[t]``, ``positions[t]``), check the breaker. Returns the fill buffer
    (grown when full)."""
    commission, half_spread, slippage, max_part = costs
    N = open_.shape[1]
    fills = _grow(fills, counts[N_FILLS], N)
    if t > 0:
        for i in range(N):
            price = open_[t, i]
            if order_qty[i] == 0.0 or not (price > 0) or not math.isfinite(price):
                continue
            known = volume[t - 1, i]  # decision-time volume (see known_volume)
            qty = R.cap_quantity(order_qty[i], known, max_part)
            if abs(qty) < 1e-9:
                continue
            cost = R.trade_cost(qty, price, known, commission, half_spread, slippage)
            acct[CASH] -= qty * price + cost
            new = shares[i] + qty
            entry[i] = R.new_entry(shares[i], new, entry[i], qty, price)
            shares[i] = new
            n = counts[N_FILLS]
            fills[n, 0], fills[n, 1], fills[n, 2], fills[n, 3], fills[n, 4] = t, i, qty, price, cost
            counts[N_FILLS] = n + 1
    value = acct[CASH]
    for i in range(N):
        if shares[i] != 0.0 and math.isfinite(closes[t, i]):
            value += shares[i] * closes[t, i]
        if math.isfinite(raw_close[t, i]):
            last_ts[i] = ts_ns[t]
    acct[EQUITY] = value
    acct[PEAK] = max(acct[PEAK], value)
    equity[t] = value
    positions[t] = shares
    if halted_now(acct[STATE] != 0.0, value, acct[PEAK], max_drawdown):
        if counts[HALTED_AT] < 0:
            counts[HALTED_AT] = t
        acct[STATE] = 1.0  # REDUCING: the gate lets only the flattening orders through
    return fills


@njit(cache=True)
def _close(t, target, closes, raw_close, ts_ns, shares, working, last_ts, listed, limits, window, acct, counts,
           order_qty, code, value, rejects):
    """Bar ``t``'s decision after the strategy: orders for ``target`` through the gate; accepted
    ones wait in ``order_qty`` for the next open, rejected ones go to ``rejects``."""
    N = len(target)
    if acct[STATE] != 0.0:
        target[:] = 0.0
    tradable = value.astype(np.bool_)  # a scratch array (value is overwritten by the verdicts)
    for i in range(N):
        tradable[i] = math.isfinite(raw_close[t, i]) or shares[i] != 0.0
    orders_and_verdicts(ts_ns[t], closes[t], closes[t], tradable, shares, working, target, last_ts, listed, acct[EQUITY],
                        int(acct[STATE]), limits, window, order_qty, code, value)
    working[:] = 0.0  # filled or lapsed at the next open: no backtest order is working at a decision
    rejects = _grow(rejects, counts[N_REJECTS], N)
    for i in range(N):
        if order_qty[i] != 0.0 and code[i] != 0:
            n = counts[N_REJECTS]
            rejects[n, 0], rejects[n, 1], rejects[n, 2], rejects[n, 3] = t, i, order_qty[i], closes[t, i]
            rejects[n, 4], rejects[n, 5] = code[i], value[i]
            counts[N_REJECTS] = n + 1
            order_qty[i] = 0.0
    return rejects


@njit(cache=True)
def _simulate(open_, closes, raw_close, volume, p_up, expected_return, annual_vol, ts_ns, listed, costs,
              max_drawdown, limits, signal_fn, size_fn, kparams, acct, counts, window, fills, rejects):
    """The whole run compiled, for a compiled strategy (``signal_fn`` / ``size_fn``)."""
    T, N = open_.shape
    shares, working, order_qty = np.zeros(N), np.zeros(N), np.zeros(N)
    entry = np.full(N, np.nan)
    last_ts = np.full(N, np.iinfo(np.int64).min // 2)
    signal, target, value = np.zeros(N), np.zeros(N), np.zeros(N)
    code = np.zeros(N, dtype=np.int64)
    equity, positions = np.empty(T), np.empty((T, N))
    for t in range(T):
        fills = _open(t, open_, closes, raw_close, volume, ts_ns, costs, max_drawdown, shares, entry, order_qty,
                      last_ts, acct, counts, fills, equity, positions)
        if acct[STATE] == 0.0:
            signal_fn(t, closes[t], volume[t], p_up[t], expected_return[t], shares, entry, working, annual_vol[t],
                      acct, kparams, signal)
            size_fn(t, closes[t], volume[t], p_up[t], expected_return[t], shares, entry, working, annual_vol[t],
                    acct, kparams, signal, target)
            bad = first_non_finite(target)
            if bad >= 0:
                counts[ERROR_T], counts[ERROR_I] = t, bad
                return equity, positions, fills, rejects
        rejects = _close(t, target, closes, raw_close, ts_ns, shares, working, last_ts, listed, limits, window, acct,
                         counts, order_qty, code, value, rejects)
    return equity, positions, fills, rejects


def run_backtest(market: Market, strategy: Strategy, trading: TradingSettings,
                 initial_capital: float | None = None) -> Result:
    """Simulate ``strategy`` over ``market`` with ``trading``'s costs, breaker and gate limits
    (see the module docstring for the timing). Raises
    :class:`~pipelines.trading.strategy.StrategyError` naming the strategy, the bar and what was
    wrong when the strategy raises or returns a target that is not one finite number per symbol."""
    capital = float(trading.initial_capital if initial_capital is None else initial_capital)
    T, N = market.close.shape
    raw_close = np.ascontiguousarray(market.close, dtype=np.float64)
    arrays = dict(open_=np.ascontiguousarray(market.open, dtype=np.float64), closes=marks(market.close),
                  raw_close=raw_close, volume=known_volume(market.volume),
                  p_up=np.ascontiguousarray(market.p_up, dtype=np.float64),
                  expected_return=np.ascontiguousarray(market.expected_return, dtype=np.float64),
                  annual_vol=np.ascontiguousarray(market.annual_vol, dtype=np.float64),
                  ts_ns=np.ascontiguousarray(market.ts.asi8, dtype=np.int64))
    allowed = trading.limits.symbols
    listed = np.array([allowed is None or s in allowed for s in market.symbols], dtype=np.bool_)
    acct = np.array([capital, capital, capital, capital, 0.0])
    counts = np.array([0, 0, -1, -1, -1], dtype=np.int64)
    run = (Costs.from_settings(trading).params(), float(trading.risk.max_drawdown), limit_params(trading.limits))
    window = new_rate_window(trading.limits)
    fills, rejects = np.empty((min(T * N, 1 << 20) + N, 5)), np.empty((16, 6))
    if strategy.compiled:
        equity, positions, fills, rejects = _simulate(
            *arrays.values(), listed, *run, type(strategy).signal_kernel, type(strategy).size_kernel,
            strategy.kernel_params(), acct, counts, window, fills, rejects)
        if counts[ERROR_T] >= 0:
            t, i = int(counts[ERROR_T]), int(counts[ERROR_I])
            ctx = _context(market, arrays, t, np.zeros(N), np.zeros(N), np.zeros(N), acct)
            checked_targets(strategy, ctx)  # the same call in Python names what was wrong
            raise StrategyError(f"strategy {strategy_name(strategy)!r} at {market.ts[t]}: target of "
                                f"{market.symbols[i]} is not finite")
    else:
        equity, positions, fills, rejects = _simulate_python(market, strategy, arrays, listed, run, acct, counts,
                                                             window, fills, rejects)
    n_fills, n_rejects = int(counts[N_FILLS]), int(counts[N_REJECTS])
    halted = int(counts[HALTED_AT])
    return Result(equity, positions, fills[:n_fills], None if halted < 0 else halted, capital, market,
                  rejects[:n_rejects], trading.limits, strategy.describe())


def _context(market: Market, arrays: dict, t: int, shares, entry, working, acct) -> Context:
    return Context(market.ts[t], t, np.asarray(market.symbols), arrays["closes"][t], arrays["volume"][t],
                   arrays["p_up"][t], arrays["expected_return"][t], shares, entry, working, arrays["annual_vol"][t],
                   float(acct[CASH]), float(acct[EQUITY]), float(acct[PEAK]), float(acct[CAPITAL]))


def _simulate_python(market: Market, strategy: Strategy, a: dict, listed, run, acct, counts, window, fills, rejects):
    """The loop for a plain numpy strategy: the same compiled steps around one Python call per bar."""
    costs, max_drawdown, limits = run
    T, N = market.close.shape
    shares, working, order_qty = np.zeros(N), np.zeros(N), np.zeros(N)
    entry = np.full(N, np.nan)
    last_ts = np.full(N, np.iinfo(np.int64).min // 2)
    value, code, flat = np.zeros(N), np.zeros(N, dtype=np.int64), np.zeros(N)
    equity, positions = np.empty(T), np.empty((T, N))
    ctx = _context(market, a, 0, shares, entry, working, acct)
    times = list(market.ts)
    open_, raw, ts_ns = a["open_"], a["raw_close"], a["ts_ns"]
    closes, volume, p_up, er, vol = a["closes"], a["volume"], a["p_up"], a["expected_return"], a["annual_vol"]
    fills = _open(0, open_, closes, raw, volume, ts_ns, costs, max_drawdown, shares, entry, order_qty, last_ts, acct,
                  counts, fills, equity, positions)
    for t in range(T):
        if acct[STATE] == 0.0:
            ctx.ts, ctx.step, ctx.close, ctx.volume, ctx.p_up, ctx.expected_return, ctx.annual_vol = (
                times[t], t, closes[t], volume[t], p_up[t], er[t], vol[t])
            ctx.cash, ctx.equity, ctx.peak = acct[CASH], acct[EQUITY], acct[PEAK]
            target = checked_targets(strategy, ctx)
        else:
            target = flat
        fills, rejects = _close_and_open(t, target, open_, closes, raw, volume, ts_ns, costs, max_drawdown, shares,
                                         entry, working, order_qty, last_ts, listed, limits, window, acct, counts,
                                         code, value, fills, rejects, equity, positions)
    return equity, positions, fills, rejects


@njit(cache=True)
def _close_and_open(t, target, open_, closes, raw_close, volume, ts_ns, costs, max_drawdown, shares, entry, working,
                    order_qty, last_ts, listed, limits, window, acct, counts, code, value, fills, rejects, equity,
                    positions):
    """Bar ``t``'s orders, then bar ``t + 1`` up to its decision: one call between two strategy calls."""
    rejects = _close(t, target, closes, raw_close, ts_ns, shares, working, last_ts, listed, limits, window, acct,
                     counts, order_qty, code, value, rejects)
    if t + 1 < open_.shape[0]:
        fills = _open(t + 1, open_, closes, raw_close, volume, ts_ns, costs, max_drawdown, shares, entry, order_qty,
                      last_ts, acct, counts, fills, equity, positions)
    return fills, rejects


def fills_frame(market: Market, fills: np.ndarray) -> pd.DataFrame:
    """Fills as a table: t, ts, symbol, quantity, price (the bar's open), cost, and the close
    of the bar the order was decided at (``decision_close``, the last known close of the symbol
    at ``t - 1``), for execution analysis."""
    t = fills[:, 0].astype(np.int64)
    i = fills[:, 1].astype(np.int64)
    symbols = np.asarray(market.symbols, dtype=object).take(i)
    decided = marks(market.close)[np.maximum(t - 1, 0), i] if len(t) else np.empty(0)
    return pd.DataFrame({"t": t, "ts": market.ts.take(t), "symbol": symbols,
                         "quantity": fills[:, 2], "price": fills[:, 3], "cost": fills[:, 4],
                         "decision_close": decided})


def rejections_frame(market: Market, rejects: np.ndarray, limits: LimitSettings, equity: np.ndarray) -> pd.DataFrame:
    """Orders the gate rejected: ts, symbol, quantity (signed shares), price, limit, reason."""
    columns = ["ts", "symbol", "quantity", "price", "limit", "reason"]
    if not len(rejects):
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "ts" else float if c in ("quantity", "price")
                                          else object) for c in columns})
    rows = []
    for t, i, qty, price, code, value in rejects:
        t, i, code = int(t), int(i), int(code)
        symbol = market.symbols[i]
        side = "buy" if qty > 0 else "sell"
        rows.append({"ts": market.ts[t], "symbol": symbol, "quantity": float(qty), "price": float(price),
                     "limit": LIMITS[code],
                     "reason": reason(code, float(value), symbol, side, abs(float(qty)), float(price),
                                      market.ts[t].tz_localize("UTC") if market.ts[t].tzinfo is None else market.ts[t],
                                      float(price), float(equity[t]), limits)})
    return pd.DataFrame(rows, columns=columns)
