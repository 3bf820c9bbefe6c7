"""Strategy, sizing, cost and risk rules: plain functions on numbers or numpy arrays.

The vectorized backtest, the event-by-event reference and the live risk manager call
these same functions, so a rule means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from config.settings import TradingSettings


@dataclass(frozen=True)
class Rules:
    """The trading settings flattened for fast use (fractions, not basis points)."""

    long_threshold: float
    short_threshold: float
    sizing: str
    vol_target_annual: float
    kelly_fraction: float
    commission: float
    half_spread: float
    slippage_per_pct_volume: float
    max_participation: float
    max_position_size: float
    stop_loss: float
    take_profit: float
    max_drawdown: float

    @classmethod
    def from_settings(cls, t: TradingSettings) -> "Rules":
        c, r = t.costs, t.risk
        return cls(t.signal.long_threshold, t.signal.short_threshold, t.sizing.method, t.sizing.vol_target_annual,
                   t.sizing.kelly_fraction, c.commission_bps / 1e4, c.half_spread_bps / 1e4,
                   c.slippage_bps_per_pct_volume / 1e4, c.max_participation, r.max_position_size, r.stop_loss,
                   r.take_profit, r.max_drawdown)


def signal(p_up, rules: Rules):
    """+1 above the long threshold, -1 below the short one, 0 between or when unknown (NaN)."""
    p = np.asarray(p_up, dtype=float)
    return np.where(p > rules.long_threshold, 1.0, np.where(p < rules.short_threshold, -1.0, 0.0))


def position_size(p_up, annual_vol, rules: Rules):
    """Fraction of equity for one position (before its sign), never above ``max_position_size``.

    fixed_fraction: the cap itself; vol_target: the fraction whose annualized volatility is
    ``vol_target_annual`` (0 when the volatility is unknown); kelly: ``kelly_fraction`` of
    the even-odds Kelly bet ``|2p - 1|``.
    """
    p = np.asarray(p_up, dtype=float)
    if rules.sizing == "fixed_fraction":
        size = np.full_like(p, rules.max_position_size)
    elif rules.sizing == "vol_target":
        vol = np.asarray(annual_vol, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            size = np.where(vol > 0, rules.vol_target_annual / vol, 0.0)
    else:
        size = rules.kelly_fraction * np.abs(2 * p - 1)
    return np.clip(np.nan_to_num(size), 0.0, rules.max_position_size)


def cap_quantity(quantity, volume, rules: Rules):
    """The order quantity limited to ``max_participation`` of the fill bar's volume."""
    cap = rules.max_participation * np.nan_to_num(np.asarray(volume, dtype=float))
    return np.clip(quantity, -cap, cap)


def trade_cost(quantity, price, volume, rules: Rules):
    """Commission + half-spread + slippage growing with participation (in % of the bar's volume)."""
    q = np.abs(np.asarray(quantity, dtype=float))
    vol = np.asarray(volume, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        participation_pct = np.where(vol > 0, 100.0 * q / vol, 0.0)
    rate = rules.commission + rules.half_spread + rules.slippage_per_pct_volume * participation_pct
    return q * np.asarray(price, dtype=float) * rate


def exit_hit(side, entry_price, price, rules: Rules):
    """True where an open position's return since entry reached the stop-loss or take-profit."""
    side = np.asarray(side, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        move = side * (np.asarray(price, dtype=float) / np.asarray(entry_price, dtype=float) - 1.0)
    return (side != 0) & ((move <= -rules.stop_loss) | (move >= rules.take_profit))


def breaker_tripped(equity: float, peak: float, rules: Rules) -> bool:
    """The drawdown circuit breaker: flatten everything and halt once equity falls this far from its peak."""
    return peak > 0 and 1.0 - equity / peak >= rules.max_drawdown
