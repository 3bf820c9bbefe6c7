"""The paper venue's matching: order states and fills with the backtest's timing and costs.

A market order decided at a bar's close fills at the **open of the symbol's next bar**, as
in the backtest; its quantity is capped at ``max_participation`` of the volume known when it
was decided (the decision bar's), and it pays the backtest's costs
(:func:`pipelines.trading.rules.trade_cost`). What the cap leaves unfilled is cancelled, as
the backtest drops it: the next decision sizes the position again.

States follow NautilusTrader: NEW -> ACCEPTED -> (PARTIALLY_FILLED ->) FILLED, or REJECTED /
CANCELLED, each transition timestamped. An order id is claimed once (``claim``: Redis
``SET NX`` in the venue service, so a restarted or duplicated consumer cannot fill an order
twice); a second submission of the same id is ignored. Fill ids derive from the order id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from pipelines.trading import rules as R
from pipelines.trading.orders import Order
from pipelines.trading.rules import Costs
from streaming.portfolio import Fill


class OrderStatus(str, Enum):
    NEW = "NEW"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


@dataclass
class OrderState:
    """An order at the venue: its status, what has filled, why it ended (if it did)."""

    order: Order
    decision_volume: float
    status: OrderStatus = OrderStatus.NEW
    filled_qty: float = 0.0
    reason: str | None = None
    history: list[tuple[OrderStatus, datetime]] = field(default_factory=list)

    def move(self, status: OrderStatus, at: datetime, reason: str | None = None) -> None:
        self.status = status
        self.history.append((status, at))
        if reason:
            self.reason = reason


class PaperVenue:
    """Matches market orders against bars (see the module docstring)."""

    def __init__(self, rules: Costs, claim: Callable[[str], bool]) -> None:
        self.rules, self.claim = rules, claim
        self.working: dict[str, list[OrderState]] = {}

    def submit(self, order: Order, decision_volume: float) -> OrderState | None:
        """Accept (or reject) ``order``; ``None`` when its id was claimed before (a replay)."""
        if not self.claim(order.order_id):
            return None
        state = OrderState(order, decision_volume)
        state.move(OrderStatus.NEW, order.ts)
        if order.order_type != "market":
            state.move(OrderStatus.REJECTED, order.ts, f"order type {order.order_type!r}: the paper venue fills "
                                                       "market orders only")
        elif not (order.quantity > 0) or order.side not in ("buy", "sell"):
            state.move(OrderStatus.REJECTED, order.ts, f"{order.side} {order.quantity}: not an order")
        else:
            state.move(OrderStatus.ACCEPTED, order.ts)
            self.working.setdefault(order.symbol, []).append(state)
        return state

    def on_bar(self, symbol: str, ts: datetime, open_price: float) -> list[tuple[OrderState, Fill]]:
        """Fill the symbol's accepted orders decided before the bar starting at ``ts`` at its open."""
        due = [s for s in self.working.get(symbol, []) if s.order.ts < ts]
        if not due or not (open_price > 0) or not math.isfinite(open_price):
            return []
        self.working[symbol] = [s for s in self.working[symbol] if s.order.ts >= ts]
        out = []
        for state in due:
            fill = fill_at_open(state, ts, open_price, self.rules)
            if fill is not None:
                out.append((state, fill))
        return out


def fill_at_open(state: OrderState, ts: datetime, open_price: float, r: Costs,
                 quoted: bool = False) -> Fill | None:
    """Fill an accepted market order at the open of the bar at ``ts`` (capped at
    ``max_participation`` of the decision bar's volume, charged the backtest's cost) and move
    its state; ``None`` (and CANCELLED) when nothing can fill.

    ``quoted``: ``open_price`` is the first tick's ask (a buy) or bid (a sell), so the spread
    is in the price and the fee is commission and participation slippage only."""
    o = state.order
    qty = R.cap_quantity(o.signed, state.decision_volume, r.max_participation)
    if abs(qty) < 1e-9:
        state.move(OrderStatus.CANCELLED, ts, "no volume known at the decision: nothing can fill")
        return None
    cost = R.trade_cost(qty, open_price, state.decision_volume, r.commission, 0.0 if quoted else r.half_spread,
                        r.slippage_per_pct_volume)
    # fee: the whole cost of the backtest's model (commission, half-spread, participation slippage)
    fill = Fill(f"{o.order_id}:1", o.order_id, ts, o.symbol, o.side, abs(qty), open_price, cost)
    state.filled_qty = abs(qty)
    if abs(qty) < o.quantity - 1e-9:
        state.move(OrderStatus.PARTIALLY_FILLED, ts)
        state.move(OrderStatus.CANCELLED, ts, f"remainder {o.quantity - abs(qty):g} above max_participation "
                                              f"{r.max_participation:g} of the decision bar's volume "
                                              f"{state.decision_volume:g}")
    else:
        state.move(OrderStatus.FILLED, ts)
    return fill
