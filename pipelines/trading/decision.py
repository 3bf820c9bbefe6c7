"""The trading decision at a bar's close: breaker -> exits -> signal x size -> target positions.

One compiled function that the backtest kernel calls at every close and the live risk
manager calls for every new bar, so a strategy means the same thing in research and live.
It composes the rules of :mod:`pipelines.trading.rules`; the event-by-event reference in
``pipelines.backtest.reference`` composes them on its own, as the test oracle.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipelines.trading import rules as R


@njit(cache=True)
def target_position(halted: bool, shares: float, entry_price: float, price: float, p_up: float, annual_vol: float,
                    base: float, params) -> float:
    """The value one symbol should hold after this close (signed, in currency).

    Flat when trading is halted or the position's stop-loss / take-profit is hit; otherwise
    the signal from ``p_up`` times the configured size times ``base`` (equity or initial
    capital, see :func:`pipelines.trading.rules.sizing_base`). ``params`` is
    :meth:`pipelines.trading.rules.Rules.params`.
    """
    (long_t, short_t, sizing, vol_target, kelly_f, _commission, _half_spread, _slippage, _max_part, max_pos,
     stop_loss, take_profit, _max_dd) = params
    if halted or R.exit_hit(shares, entry_price, price, stop_loss, take_profit):
        return 0.0
    size = R.position_size(p_up, annual_vol, sizing, vol_target, kelly_f, max_pos)
    return R.signal(p_up, long_t, short_t) * size * base


@njit(cache=True)
def decide_targets(equity: float, peak: float, halted: bool, initial_capital: float, shares: np.ndarray,
                   entry_price: np.ndarray, price: np.ndarray, p_up: np.ndarray, annual_vol: np.ndarray, params,
                   target: np.ndarray) -> bool:
    """Fill ``target`` (value per symbol) for the portfolio after a close; return whether trading
    is halted from now on (already halted, or the drawdown breaker trips at this close)."""
    halted = halted or R.breaker_tripped(equity, peak, params[12])
    base = R.sizing_base(equity, initial_capital, params[2])
    for i in range(len(target)):
        target[i] = target_position(halted, shares[i], entry_price[i], price[i], p_up[i], annual_vol[i], base,
                                    params)
    return halted
