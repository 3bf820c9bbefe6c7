"""The trading decision at a bar's close, shared by the backtest engine and the live trader:

1. the drawdown breaker (``risk.max_drawdown``): once it trips, or whenever trading is not
   ACTIVE, every target is flat and the strategy is not asked;
2. the strategy's targets (:mod:`pipelines.trading.strategy`);
3. orders: the shares that move each position (plus its working orders) to its target at the decision bar's close
   (:func:`pipelines.trading.rules.order_quantity`), for symbols with a bar at this close or a
   position, in symbol order;
4. the :func:`~pipelines.trading.risk.check_order` gate on each, against positions plus working
   orders; an accepted order becomes working, so the next one sees it.

Steps 3 and 4 are one compiled function, :func:`orders_and_verdicts`, which the backtest calls
in its compiled loop and the live trader calls on the cross-section it built, so the same
inputs give the same orders and the same rejections in both.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipelines.trading import rules as R
from pipelines.trading.risk import check_order

MIN_QUANTITY = 1e-9  # an order smaller than this (in shares) is no order


@njit(cache=True)
def halted_now(halted: bool, equity: float, peak: float, max_drawdown: float) -> bool:
    """Whether trading is halted after this close: it was, or the drawdown breaker trips now."""
    return halted or R.breaker_tripped(equity, peak, max_drawdown)


@njit(cache=True)
def orders_and_verdicts(ts_ns: int, close: np.ndarray, last_px: np.ndarray, tradable: np.ndarray, shares: np.ndarray,
                        working: np.ndarray, target: np.ndarray, last_ts_ns: np.ndarray, listed: np.ndarray,
                        equity: float, state: int, limits, window: np.ndarray, qty: np.ndarray, code: np.ndarray,
                        value: np.ndarray) -> int:
    """Orders for ``target`` (signed value per symbol) and the gate's verdict on each: first the
    orders that shrink a position, then the others, each group in symbol order (so a rebalance's
    sales free the exposure its purchases need); returns how many orders there are.

    Fills ``qty`` (signed shares; 0: no order), ``code`` (0 accepted, else the limit's index in
    :data:`pipelines.trading.risk.LIMITS`) and ``value`` (the number that broke it). Only
    ``tradable`` symbols (a bar at this close, or a position) get orders. ``close`` is each
    symbol's price at the decision (the orders' price); ``last_px`` the last trade the gate
    judges them against (at ``last_ts_ns``): in a backtest the same close, live the venue's own
    last price and the wall-clock age of the symbol's data. ``working`` gains every accepted order."""
    gross = 0.0
    for i in range(len(close)):
        held = shares[i] + working[i]
        if held != 0.0 and close[i] > 0:
            gross += abs(held) * close[i]
    n = 0
    for i in range(len(close)):  # code holds the pass an order is judged in until its verdict
        qty[i], code[i], value[i] = 0.0, 0, 0.0
        if tradable[i]:
            now = shares[i] + working[i]
            q = R.order_quantity(target[i], close[i], now)
            if abs(q) >= MIN_QUANTITY:
                qty[i] = q
                code[i] = -1 if abs(now + q) < abs(now) else -2
                n += 1
    for group in (-1, -2):  # orders that shrink a position first, as a desk sells before it buys
        for i in range(len(close)):
            if code[i] != group:
                continue
            now = shares[i] + working[i]
            c, v = check_order(qty[i], close[i], ts_ns, state, now, last_px[i], last_ts_ns[i], listed[i], equity, gross,
                               limits, window)
            code[i], value[i] = c, v
            if c == 0:
                working[i] += qty[i]
                gross += (abs(now + qty[i]) - abs(now)) * close[i]
    return n
