"""The same strategy written event by event, one bar and one symbol at a time.

Slow and plain on purpose: it exists so the tests can show the vectorized engine gives the
same fills and equity on random inputs. Not used outside the tests.
"""

from __future__ import annotations

import math

import pandas as pd

from pipelines.backtest import rules as R
from pipelines.backtest.engine import Market, Result, _marks
from pipelines.backtest.rules import Rules


def run_reference(market: Market, rules: Rules, initial_capital: float) -> Result:
    T, N = market.close.shape
    marks = _marks(market.close)
    cash = float(initial_capital)
    peak = cash
    book: dict[int, dict] = {i: {"shares": 0.0, "entry": math.nan} for i in range(N)}
    orders: dict[int, float] = {}  # symbol -> target value for the next open
    halted_at = None
    equity, positions, fills = [], [], []
    for t in range(T):
        for i, target in orders.items():  # fills at this bar's open
            price = market.open[t, i]
            if not (price == price and price > 0):
                continue
            pos = book[i]
            qty = float(R.cap_quantity(target / price - pos["shares"], market.volume[t, i], rules))
            if abs(qty) < 1e-9:
                continue
            cost = float(R.trade_cost(qty, price, market.volume[t, i], rules))
            cash -= qty * price + cost
            old, new = pos["shares"], pos["shares"] + qty
            if old == 0 or math.copysign(1, new) != math.copysign(1, old):
                pos["entry"] = price
            elif abs(new) > abs(old):
                pos["entry"] = (old * pos["entry"] + qty * price) / new
            if new == 0:
                pos["entry"] = math.nan
            pos["shares"] = new
            fills.append((t, i, qty, price, cost))
        positions.append([book[i]["shares"] for i in range(N)])
        value = cash + sum(book[i]["shares"] * marks[t, i] for i in range(N) if book[i]["shares"] != 0)
        equity.append(value)
        peak = max(peak, value)
        orders = {}
        if halted_at is None and R.breaker_tripped(value, peak, rules):
            halted_at = t
        for i in range(N):
            pos = book[i]
            if halted_at is not None:
                orders[i] = 0.0
                continue
            side = 0.0 if pos["shares"] == 0 else math.copysign(1, pos["shares"])
            if bool(R.exit_hit(side, pos["entry"], marks[t, i], rules)):
                orders[i] = 0.0
                continue
            p = market.p_up[t, i]
            sig = float(R.signal(p, rules))
            orders[i] = sig * float(R.position_size(p, market.annual_vol[t, i], rules)) * value
    import numpy as np

    frame = pd.DataFrame(fills, columns=["t", "symbol_index", "quantity", "price", "cost"])
    frame.insert(1, "ts", market.ts[frame["t"].to_numpy()] if len(frame) else pd.DatetimeIndex([]))
    frame.insert(2, "symbol", [market.symbols[i] for i in frame["symbol_index"]])
    return Result(np.array(equity), np.array(positions), frame.drop(columns="symbol_index"), halted_at,
                  float(initial_capital), market)
