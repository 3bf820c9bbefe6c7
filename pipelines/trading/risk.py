"""The pre-trade risk gate: every order is checked against hard limits before it reaches a venue.

The checks follow what NautilusTrader's ``RiskEngine`` and LEAN's pre-order checks do, plus a
price band: trading state, zero quantity, unknown symbol, stale market data, price band around
the last trade, maximum order quantity and notional, maximum position per symbol and gross
exposure after the order, and an order submit-rate limit. The strategies already size within
their own rules; this gate is the independent last line that holds whatever the decision
upstream did.

The checks are one compiled function, :func:`check_order`, that the backtest engine calls in
its compiled loop and :class:`RiskGate` calls for the live trader and the API desk, so an order
is judged the same way in both, rejections included. The book it judges against is positions
**plus working orders** (accepted, not yet filled): an order cannot slip past a limit because
the orders before it have not filled yet.

In a backtest time is event time (the order's ``ts``: the close of the bar it was decided on).
Live, the callers add what only a live run has: the data's age by the wall clock since the
symbol's last tick arrived, the venue's own last price as the band's reference, and the submit
rate in wall time shared by every process that submits (``streaming.live.SubmitRate``).

An order that shrinks a position without crossing zero (flattening) is never refused for stale
data or for equity, and in REDUCING only such orders pass: a breaker that trips always reaches flat.

A rejected order is never dropped: :meth:`RiskGate.check` returns the limit it hit and the
numbers, and the caller keeps the order with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import numpy as np
import pandas as pd
from numba import njit

from config.schemas.trading import LimitSettings
from pipelines.trading.orders import Order


class TradingState(str, Enum):
    """NautilusTrader's trading states: ACTIVE trades, REDUCING only shrinks exposure, HALTED
    lets nothing through (the drawdown breaker halts for good)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


STATE_CODE = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

# what check_order returns: 0 accepted, else the index of the limit (its config key or check name)
LIMITS = ("accepted", "quantity", "trading_state", "trading_state", "symbols", "symbols", "max_data_age_seconds",
          "price_band", "max_order_quantity", "max_order_notional", "equity", "max_position_notional",
          "max_gross_exposure", "max_orders_per_second")
(OK, QUANTITY, HALTED, REDUCING, NOT_LISTED, NO_DATA, STALE, BAND, MAX_QTY, MAX_NOTIONAL, EQUITY, MAX_POSITION,
 MAX_GROSS, MAX_RATE) = range(len(LIMITS))
NS = 1_000_000_000


def limit_params(limits: LimitSettings, count_rate: bool = True) -> tuple[float, ...]:
    """The limits as the flat tuple :func:`check_order` takes. ``count_rate=False``: the submit
    rate is counted elsewhere (live, in wall time, across processes: ``streaming.live.SubmitRate``)."""
    return (float(limits.max_order_quantity), float(limits.max_order_notional), float(limits.max_position_notional),
            float(limits.max_gross_exposure), float(limits.price_band),
            float(limits.max_orders_per_second) if count_rate else math.inf, float(limits.max_data_age_seconds))


def new_rate_window(limits: LimitSettings) -> np.ndarray:
    """The submit-rate limit's memory: accepted orders' times (ns) in a ring, then head and count."""
    return np.zeros(int(limits.max_orders_per_second) + 2, dtype=np.int64)


@njit(cache=True)
def check_order(qty: float, price: float, ts_ns: int, state: int, now_qty: float, last_px: float, last_ts_ns: int,
                listed: bool, equity: float, gross: float, limits, window: np.ndarray) -> tuple[int, float]:
    """Judge an order of ``qty`` shares (signed) at ``price``: ``(0, 0)`` when accepted (its time is
    then remembered in ``window``), else ``(code, the number that broke the limit)``; the code
    indexes :data:`LIMITS`.

    ``now_qty``: the symbol's position plus its working orders; ``last_px`` / ``last_ts_ns``: its
    last trade (NaN: no market data); ``gross``: the book's gross exposure, positions and
    working orders at their last prices; ``limits``: :func:`limit_params`."""
    max_qty, max_notional, max_position, max_gross, band, max_rate, max_age = limits
    size = abs(qty)
    if not (size > 0) or not math.isfinite(size):
        return QUANTITY, qty
    if state == 2:
        return HALTED, 0.0
    after = now_qty + qty
    # an order that shrinks the position without crossing zero: flattening is never refused for
    # stale data or for equity, so a breaker's REDUCING always reaches flat
    reduces = abs(after) < abs(now_qty) - 1e-12 and after * now_qty >= 0.0
    if state == 1 and not reduces:
        return REDUCING, now_qty
    if not listed:
        return NOT_LISTED, 0.0
    if not (last_px > 0):
        return NO_DATA, 0.0
    if not reduces and ts_ns - last_ts_ns > max_age * NS:
        return STALE, (ts_ns - last_ts_ns) / NS
    if price != last_px and (not (price > 0) or abs(price / last_px - 1.0) > band):
        return BAND, price
    if size > max_qty:
        return MAX_QTY, size
    notional = size * price
    if notional > max_notional:
        return MAX_NOTIONAL, notional
    if not reduces and not (equity > 0):
        return EQUITY, equity
    grows = abs(after) > abs(now_qty)
    position_value = abs(after) * price
    if grows and position_value > max_position * equity:
        return MAX_POSITION, position_value
    gross_after = gross - abs(now_qty) * last_px + position_value
    if grows and gross_after > max_gross * equity:
        return MAX_GROSS, gross_after
    if not math.isfinite(max_rate):  # counted by the caller (live: in wall time, in Redis)
        return OK, 0.0
    ring = len(window) - 2
    head, count = window[ring], window[ring + 1]
    while count > 0 and ts_ns - window[head] >= NS:
        head = head + 1 if head + 1 < ring else 0
        count -= 1
    if count >= max_rate:
        window[ring], window[ring + 1] = head, count
        return MAX_RATE, float(count)
    slot = head + count
    window[slot if slot < ring else slot - ring] = ts_ns
    window[ring], window[ring + 1] = head, count + 1
    return OK, 0.0


def reason(code: int, value: float, symbol: str, side: str, qty: float, price: float, ts: datetime,
           last_px: float, equity: float, limits: LimitSettings) -> str:
    """The words of a rejection (:func:`check_order`'s code and number), the same live and in a backtest."""
    if code == QUANTITY:
        return f"quantity {value} is not positive"
    if code == HALTED:
        return "trading is HALTED"
    if code == REDUCING:
        return (f"trading is REDUCING: {side} {qty:g} {symbol} would not reduce the position {value:g} "
                "towards flat (nor may it cross zero)")
    if code == NOT_LISTED:
        return f"unknown symbol {symbol!r} (not in limits.symbols)"
    if code == NO_DATA:
        return f"unknown symbol {symbol!r}: no market data for it"
    if code == STALE:
        return (f"stale market data: the last {symbol} trade is {value:g} s old > "
                f"{limits.max_data_age_seconds:g} s")
    if code == BAND:
        return f"price {value:g} outside +/-{limits.price_band:.2%} of the last trade {last_px:g}"
    if code == MAX_QTY:
        return f"quantity {value:g} > {limits.max_order_quantity:g}"
    if code == MAX_NOTIONAL:
        return f"notional {value:,.2f} > {limits.max_order_notional:,.2f}"
    if code == EQUITY:
        return f"equity {value:,.2f} is not positive"
    if code == MAX_POSITION:
        return (f"{symbol} position {value:,.2f} after the order > {limits.max_position_notional:.2%} of equity "
                f"{equity:,.2f}")
    if code == MAX_GROSS:
        return f"gross exposure {value:,.2f} after the order > {limits.max_gross_exposure:.2%} of equity {equity:,.2f}"
    return (f"{value:g} orders accepted in the second before {ts.isoformat()} (limit "
            f"{limits.max_orders_per_second})")


@dataclass(frozen=True)
class Verdict:
    """``accepted``, else ``limit`` (the config key it hit, or the check's name) and ``reason``."""

    accepted: bool
    limit: str | None = None
    reason: str | None = None


ACCEPTED = Verdict(True)


@dataclass
class Book:
    """What the gate needs to know about the account: positions, working orders (accepted, not
    filled), the last trade per symbol, equity and the trading state."""

    equity: float
    positions: dict[str, float] = field(default_factory=dict)
    last_price: dict[str, tuple[float, datetime]] = field(default_factory=dict)  # symbol -> (price, ts)
    state: TradingState = TradingState.ACTIVE
    working: dict[str, float] = field(default_factory=dict)  # symbol -> signed shares not yet filled

    def position(self, symbol: str) -> float:
        """Shares held plus shares working."""
        return self.positions.get(symbol, 0.0) + self.working.get(symbol, 0.0)

    def gross_exposure(self) -> float:
        """Sum of |position + working| x last price over symbols."""
        symbols = set(self.positions) | set(self.working)
        return sum(abs(self.position(s)) * self.last_price[s][0] for s in symbols if s in self.last_price)


class RiskGate:
    """Checks orders against :class:`~config.schemas.trading.LimitSettings` (``trading_config.yaml``
    ``limits``) with :func:`check_order`; remembers accepted orders' times for the submit-rate limit."""

    def __init__(self, limits: LimitSettings, count_rate: bool = True) -> None:
        self.limits = limits
        self.params = limit_params(limits, count_rate)
        self.window = new_rate_window(limits)

    def check(self, order: Order, book: Book, at: datetime | None = None) -> Verdict:
        """Accept ``order`` or name the first limit it breaks. An accepted order counts towards
        the submit rate; the caller adds it to ``book.working`` (:meth:`check_and_hold` does).
        ``at``: when the order is judged (the data's age is measured to it); the order's own
        time by default."""
        o = order
        if o.side not in ("buy", "sell"):
            return Verdict(False, "side", f"side {o.side!r} is neither buy nor sell")
        last_px, last_ts = book.last_price.get(o.symbol, (math.nan, o.ts))
        listed = self.limits.symbols is None or o.symbol in self.limits.symbols
        qty = float(o.quantity) if o.side == "buy" else -float(o.quantity)
        code, value = check_order(qty, float(o.price), _ns(at or o.ts), STATE_CODE[TradingState(book.state)],
                                  book.position(o.symbol), float(last_px), _ns(last_ts), listed, float(book.equity),
                                  book.gross_exposure(), self.params, self.window)
        if code == OK:
            return ACCEPTED
        return Verdict(False, LIMITS[code], reason(code, value, o.symbol, o.side, o.quantity, o.price, o.ts,
                                                   last_px, book.equity, self.limits))

    def check_and_hold(self, order: Order, book: Book) -> Verdict:
        """:meth:`check`, and an accepted order joins ``book.working`` (so the next order in the
        same decision sees it)."""
        verdict = self.check(order, book)
        if verdict.accepted:
            book.working[order.symbol] = book.working.get(order.symbol, 0.0) + order.signed
        return verdict


def _ns(ts: datetime) -> int:
    return int(pd.Timestamp(ts).value)
