"""The pre-trade risk gate: every order is checked against hard limits before it reaches a venue.

The checks follow what NautilusTrader's ``RiskEngine`` and LEAN's pre-order checks do, plus a
price band: trading state, zero quantity, unknown symbol, stale market data, price band around
the last trade, maximum order quantity and notional, maximum position per symbol and gross
exposure after the order, and an order submit-rate limit. The sizing rules already keep
targets inside ``risk.max_position_size``; this gate is the independent last line that holds
whatever the decision upstream did.

Time is event time (the order's ``ts``: the close of the bar it was decided on), not the wall
clock, so a replay of the same bars is judged exactly as the live run was.

A rejected order is never dropped: :meth:`RiskGate.check` returns the limit it hit and the
numbers, and the caller keeps the order with that reason.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from config.schemas.trading import LimitSettings
from pipelines.trading.orders import Order


class TradingState(str, Enum):
    """NautilusTrader's trading states: ACTIVE trades, REDUCING only shrinks exposure, HALTED
    lets nothing through (the drawdown breaker halts for good)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True)
class Verdict:
    """``accepted``, else ``limit`` (the config key it hit, or the check's name) and ``reason``."""

    accepted: bool
    limit: str | None = None
    reason: str | None = None


ACCEPTED = Verdict(True)


@dataclass
class Book:
    """What the gate needs to know about the account: positions, the last trade per symbol,
    equity and the trading state. The portfolio keeps it current."""

    equity: float
    positions: dict[str, float] = field(default_factory=dict)
    last_price: dict[str, tuple[float, datetime]] = field(default_factory=dict)  # symbol -> (price, ts)
    state: TradingState = TradingState.ACTIVE

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def gross_exposure(self) -> float:
        """Sum of |position| x last price over symbols."""
        return sum(abs(q) * self.last_price[s][0] for s, q in self.positions.items() if q and s in self.last_price)


class RiskGate:
    """Checks orders against :class:`~config.schemas.trading.LimitSettings` (``trading_config.yaml``
    ``limits``); remembers accepted orders' times for the submit-rate limit."""

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self._recent: deque[datetime] = deque()

    def check(self, order: Order, book: Book) -> Verdict:
        """Accept ``order`` or name the first limit it breaks. An accepted order counts towards
        the submit rate; the caller applies its fill to ``book`` when it fills."""
        verdict = self._first_breach(order, book)
        if verdict.accepted:
            self._recent.append(order.ts)
        return verdict

    def _first_breach(self, o: Order, book: Book) -> Verdict:
        lim = self.limits
        if not (o.quantity > 0) or not math.isfinite(o.quantity):
            return Verdict(False, "quantity", f"quantity {o.quantity} is not positive")
        if o.side not in ("buy", "sell"):
            return Verdict(False, "side", f"side {o.side!r} is neither buy nor sell")
        if book.state is TradingState.HALTED:
            return Verdict(False, "trading_state", "trading is HALTED")
        now_qty = book.position(o.symbol)
        after_qty = now_qty + o.signed
        if book.state is TradingState.REDUCING and abs(after_qty) > abs(now_qty) - 1e-12:
            return Verdict(False, "trading_state", f"trading is REDUCING: {o.side} {o.quantity:g} {o.symbol} would "
                                                   f"not reduce the position {now_qty:g}")
        if lim.symbols is not None and o.symbol not in lim.symbols:
            return Verdict(False, "symbols", f"unknown symbol {o.symbol!r} (not in limits.symbols)")
        if o.symbol not in book.last_price:
            return Verdict(False, "symbols", f"unknown symbol {o.symbol!r}: no market data for it")
        last, last_ts = book.last_price[o.symbol]
        age = (o.ts - last_ts).total_seconds()
        if age > lim.max_data_age_seconds:
            return Verdict(False, "max_data_age_seconds", f"stale market data: the last {o.symbol} trade is "
                                                          f"{age:g} s old > {lim.max_data_age_seconds:g} s")
        if not (o.price > 0) or abs(o.price / last - 1.0) > lim.price_band:
            return Verdict(False, "price_band", f"price {o.price:g} outside +/-{lim.price_band:.2%} of the last "
                                                f"trade {last:g}")
        if o.quantity > lim.max_order_quantity:
            return Verdict(False, "max_order_quantity", f"quantity {o.quantity:g} > {lim.max_order_quantity:g}")
        notional = o.quantity * o.price
        if notional > lim.max_order_notional:
            return Verdict(False, "max_order_notional", f"notional {notional:,.2f} > {lim.max_order_notional:,.2f}")
        equity = book.equity
        if not (equity > 0):
            return Verdict(False, "equity", f"equity {equity:,.2f} is not positive")
        position_value = abs(after_qty) * o.price
        if abs(after_qty) > abs(now_qty) and position_value > lim.max_position_notional * equity:
            return Verdict(False, "max_position_notional", f"{o.symbol} position {position_value:,.2f} after the "
                                                           f"order > {lim.max_position_notional:.2%} of equity "
                                                           f"{equity:,.2f}")
        gross_after = book.gross_exposure() - abs(now_qty) * last + position_value
        if abs(after_qty) > abs(now_qty) and gross_after > lim.max_gross_exposure * equity:
            return Verdict(False, "max_gross_exposure", f"gross exposure {gross_after:,.2f} after the order > "
                                                        f"{lim.max_gross_exposure:.2%} of equity {equity:,.2f}")
        while self._recent and (o.ts - self._recent[0]).total_seconds() >= 1.0:
            self._recent.popleft()
        if len(self._recent) >= lim.max_orders_per_second:
            return Verdict(False, "max_orders_per_second", f"{len(self._recent)} orders accepted in the second "
                                                           f"before {o.ts.isoformat()} (limit "
                                                           f"{lim.max_orders_per_second})")
        return ACCEPTED
