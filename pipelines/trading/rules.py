"""Signal, sizing, cost and exit rules: small compiled functions on plain numbers.

The built-in strategies, the backtest engine, the event-by-event reference, the venue and the
live trader call these same functions (numba-compiled, callable from Python too), so a rule
means the same thing everywhere. :class:`Costs` carries the cost settings as the flat tuple
they take.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

from numba import njit

from config.schemas.trading import TradingSettings

@dataclass(frozen=True)
class Costs:
    """What a fill costs and how much can fill (``trading_config.yaml`` ``costs``), as fractions."""

    commission: float
    half_spread: float
    slippage_per_pct_volume: float
    max_participation: float

    @classmethod
    def from_settings(cls, t: TradingSettings) -> "Costs":
        c = t.costs
        return cls(c.commission_bps / 1e4, c.half_spread_bps / 1e4, c.slippage_bps_per_pct_volume / 1e4,
                   c.max_participation)

    def params(self) -> tuple:
        return tuple(float(x) for x in astuple(self))


@njit(cache=True)
def signal(p_up: float, long_threshold: float, short_threshold: float) -> float:
    """+1 above the long threshold, -1 below the short one, 0 between or when unknown (NaN)."""
    if p_up > long_threshold:
        return 1.0
    if p_up < short_threshold:
        return -1.0
    return 0.0


@njit(cache=True)
def position_size(p_up: float, annual_vol: float, sizing: float, vol_target_annual: float, kelly_fraction: float,
                  max_position_size: float) -> float:
    """Fraction for one position (before its sign), in [0, max_position_size].

    fixed_fraction / fixed_notional: the cap itself (of current equity / of the initial
    capital, see :func:`sizing_base`); vol_target: the fraction whose annualized volatility
    is ``vol_target_annual`` (0 when unknown); kelly: ``kelly_fraction`` of the even-odds
    Kelly bet ``|2p - 1|`` (0 when unknown).
    """
    if sizing <= 1:
        size = max_position_size
    elif sizing == 2:
        size = vol_target_annual / annual_vol if annual_vol > 0 else 0.0
    else:
        size = kelly_fraction * abs(2.0 * p_up - 1.0)
    if not math.isfinite(size) or size < 0.0:
        return 0.0
    return min(size, max_position_size)


@njit(cache=True)
def sizing_base(equity: float, initial_capital: float, sizing: float) -> float:
    """What a position's fraction applies to: current equity, or the initial capital (fixed notional)."""
    return initial_capital if sizing == 1 else equity


@njit(cache=True)
def cap_quantity(quantity: float, volume: float, max_participation: float) -> float:
    """The order quantity limited to ``max_participation`` of the fill bar's volume (none if unknown)."""
    cap = max_participation * volume if math.isfinite(volume) else 0.0
    return max(-cap, min(cap, quantity))


@njit(cache=True)
def order_quantity(target_value: float, price: float, shares: float) -> float:
    """Shares to trade so the position is worth ``target_value`` at ``price`` (the decision bar's
    close): flattening needs no price; nothing when a non-zero target has no price."""
    if target_value == 0.0:
        return -shares
    if not (price > 0) or not math.isfinite(price):
        return 0.0
    return target_value / price - shares


@njit(cache=True)
def trade_cost(quantity: float, price: float, volume: float, commission: float, half_spread: float,
               slippage_per_pct_volume: float) -> float:
    """Commission + half-spread + slippage growing with participation (in % of the bar's volume)."""
    q = abs(quantity)
    participation_pct = 100.0 * q / volume if volume > 0 else 0.0
    return q * price * (commission + half_spread + slippage_per_pct_volume * participation_pct)


@njit(cache=True)
def exit_hit(shares: float, entry_price: float, price: float, stop_loss: float, take_profit: float) -> bool:
    """True when an open position's return since entry reached the stop-loss or the take-profit."""
    if shares == 0.0 or not (entry_price > 0) or not math.isfinite(price):
        return False
    move = (price / entry_price - 1.0) * (1.0 if shares > 0 else -1.0)
    return move <= -stop_loss or move >= take_profit


@njit(cache=True)
def breaker_tripped(equity: float, peak: float, max_drawdown: float) -> bool:
    """The drawdown circuit breaker: flatten everything and halt once equity falls this far from its peak."""
    return peak > 0 and 1.0 - equity / peak >= max_drawdown


@njit(cache=True)
def new_entry(old_shares: float, new_shares: float, entry: float, quantity: float, price: float) -> float:
    """Average entry price after a fill: reset on opening or reversing, averaged when adding,
    unchanged when reducing, NaN when flat."""
    if new_shares == 0.0:
        return math.nan
    if old_shares == 0.0 or (new_shares > 0) != (old_shares > 0):
        return price
    if abs(new_shares) > abs(old_shares):
        return (old_shares * entry + quantity * price) / new_shares
    return entry


@njit(cache=True)
def held_value(shares: float, working: float, close: float) -> float:
    """A position plus its working orders valued at ``close``: the target that keeps it as it is."""
    held = shares + working
    return held * close if held != 0.0 else 0.0
