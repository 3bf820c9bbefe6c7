"""The same strategy written event by event in plain Python, one bar and one symbol at a time.

Slow on purpose and kept apart from the compiled engine: the tests run both on random
inputs and require the same fills and equity. Not used outside the tests.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.trading import rules as R
from pipelines.backtest.engine import Market, Result, fills_frame, marks
from pipelines.trading.rules import Rules


def _volume_known_before(market: Market, t: int, i: int) -> float:
    """The last volume printed before bar ``t`` (what is known when its order is decided)."""
    for s in range(t - 1, -1, -1):
        if math.isfinite(float(market.volume[s, i])):
            return float(market.volume[s, i])
    return math.nan


def run_reference(market: Market, rules: Rules, initial_capital: float) -> Result:
    T, N = market.close.shape
    closes = marks(market.close)
    p = rules
    cash = peak = float(initial_capital)
    book = [{"shares": 0.0, "entry": math.nan} for _ in range(N)]
    orders: dict[int, float] = {}  # symbol -> shares to trade at the next open
    halted_at = None
    equity, positions, fills = [], [], []
    for t in range(T):
        for i, quantity in orders.items():
            price = float(market.open[t, i])
            if not (price > 0 and math.isfinite(price)):
                continue
            pos = book[i]
            known = _volume_known_before(market, t, i)
            qty = R.cap_quantity(quantity, known, p.max_participation)
            if abs(qty) < 1e-9:
                continue
            cost = R.trade_cost(qty, price, known, p.commission, p.half_spread, p.slippage_per_pct_volume)
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
        if halted_at is None and R.breaker_tripped(value, peak, p.max_drawdown):
            halted_at = t
        orders = {}
        for i, pos in enumerate(book):
            if halted_at is not None or R.exit_hit(pos["shares"], pos["entry"], float(closes[t, i]), p.stop_loss,
                                                   p.take_profit):
                orders[i] = -pos["shares"]  # flatten
                continue
            prob, vol = float(market.p_up[t, i]), float(market.annual_vol[t, i])
            size = R.position_size(prob, vol, p.sizing, p.vol_target_annual, p.kelly_fraction, p.max_position_size)
            target = R.signal(prob, p.long_threshold, p.short_threshold) * size * R.sizing_base(
                value, initial_capital, p.sizing)
            orders[i] = R.order_quantity(target, float(closes[t, i]), pos["shares"])  # shares at this close
    table = np.array(fills, dtype=float).reshape(-1, 5)
    return Result(np.array(equity), np.array(positions), fills_frame(market, table), halted_at,
                  float(initial_capital), market)
