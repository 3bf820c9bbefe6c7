"""The threshold strategy written event by event in plain Python, one bar and one symbol at a time,
with each order judged by the Python :class:`~pipelines.trading.risk.RiskGate`.

Slow on purpose and kept apart from the compiled engine: the tests run both on random
inputs and require the same fills, rejections and equity. Not used outside the tests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, Result, marks
from pipelines.trading import rules as R
from pipelines.trading.orders import Order
from pipelines.trading.risk import LIMITS, Book, RiskGate, TradingState
from pipelines.trading.rules import Costs
from pipelines.trading.strategies.threshold import SIZING, ThresholdParams


def _volume_known_before(market: Market, t: int, i: int) -> float:
    """The last volume printed before bar ``t`` (what is known when its order is decided)."""
    for s in range(t - 1, -1, -1):
        if math.isfinite(float(market.volume[s, i])):
            return float(market.volume[s, i])
    return math.nan


def run_reference(market: Market, p: ThresholdParams, trading: TradingSettings) -> Result:
    T, N = market.close.shape
    capital = float(trading.initial_capital)
    c = Costs.from_settings(trading)
    sizing = SIZING[p.sizing]
    closes = marks(market.close)
    gate = RiskGate(trading.limits)
    cash = peak = capital
    book = [{"shares": 0.0, "entry": math.nan} for _ in range(N)]
    last_bar: dict[str, pd.Timestamp] = {}
    orders: dict[int, float] = {}  # symbol -> shares to trade at the next open
    halted_at = None
    equity, positions, fills, rejects = [], [], [], []
    for t in range(T):
        for i, quantity in orders.items():
            price = float(market.open[t, i])
            if not (price > 0 and math.isfinite(price)):
                continue
            pos = book[i]
            known = _volume_known_before(market, t, i)
            qty = R.cap_quantity(quantity, known, c.max_participation)
            if abs(qty) < 1e-9:
                continue
            cost = R.trade_cost(qty, price, known, c.commission, c.half_spread, c.slippage_per_pct_volume)
            cash -= qty * price + cost
            new = pos["shares"] + qty
            pos["entry"] = R.new_entry(pos["shares"], new, pos["entry"], qty, price)
            pos["shares"] = new
            fills.append((t, i, qty, price, cost))
        positions.append([pos["shares"] for pos in book])
        value = cash + sum(pos["shares"] * closes[t, i] for i, pos in enumerate(book)
                           if pos["shares"] != 0 and math.isfinite(closes[t, i]))
        equity.append(value)
        peak = max(peak, value)
        ts = market.ts[t].tz_localize("UTC") if market.ts[t].tzinfo is None else market.ts[t]
        for i, symbol in enumerate(market.symbols):
            if math.isfinite(market.close[t, i]):
                last_bar[symbol] = ts
        if halted_at is None and R.breaker_tripped(value, peak, trading.risk.max_drawdown):
            halted_at = t
        gate_book = Book(value, {s: book[i]["shares"] for i, s in enumerate(market.symbols)},
                         {s: (float(closes[t, i]), last_bar[s]) for i, s in enumerate(market.symbols) if s in last_bar},
                         TradingState.ACTIVE if halted_at is None else TradingState.REDUCING)
        wanted: dict[int, float] = {}
        for i, pos in enumerate(book):
            if not math.isfinite(market.close[t, i]) and pos["shares"] == 0:
                continue  # no bar and no position: no order
            if halted_at is not None or R.exit_hit(pos["shares"], pos["entry"], float(closes[t, i]), p.stop_loss,
                                                   p.take_profit):
                target = 0.0
            else:
                prob, vol = float(market.p_up[t, i]), float(market.annual_vol[t, i])
                size = R.position_size(prob, vol, sizing, p.vol_target_annual, p.kelly_fraction, p.max_position_size)
                target = R.signal(prob, p.long_threshold, p.short_threshold) * size * R.sizing_base(
                    value, capital, sizing)
            quantity = R.order_quantity(target, float(closes[t, i]), pos["shares"])  # shares at this close
            if abs(quantity) >= 1e-9:
                wanted[i] = quantity
        orders = {}
        # the gate sees the orders that shrink a position first, then the others, each in symbol order
        shrinking = [i for i, q in wanted.items() if abs(book[i]["shares"] + q) < abs(book[i]["shares"])]
        for i in shrinking + [i for i in wanted if i not in shrinking]:
            quantity = wanted[i]
            order = Order(f"{t}-{i}", ts, market.symbols[i], "buy" if quantity > 0 else "sell", abs(quantity),
                          float(closes[t, i]))
            verdict = gate.check_and_hold(order, gate_book)
            if verdict.accepted:
                orders[i] = quantity
            else:
                rejects.append((t, i, quantity, float(closes[t, i]), LIMITS.index(verdict.limit), 0.0))
        orders = dict(sorted(orders.items()))  # they fill in symbol order
    rejected = sorted(rejects)  # the engine lists them by bar and symbol
    return Result(np.array(equity), np.array(positions), np.array(fills, dtype=float).reshape(-1, 5), halted_at,
                  capital, market, np.array(rejected, dtype=float).reshape(-1, 6), trading.limits)
