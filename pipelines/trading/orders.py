"""Orders: the difference between the decision's target positions and the current ones.

An order's id is derived from what decided it (strategy, symbol, the decision bar's time and
the model version), never drawn at random, so a replay of the same bars and predictions
produces the same ids and a venue that remembers ids cannot fill an order twice.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from pipelines.trading import rules as R

# a fixed namespace: the same inputs give the same id on every machine and in every run
ORDER_NAMESPACE = uuid.UUID("6f1d2c9e-5b7a-4c1e-9d2f-0a8b3c4d5e6f")


def order_id(strategy: str, symbol: str, decided_at: datetime, model_version: str) -> str:
    """The deterministic id of the order ``strategy`` sends for ``symbol`` at the close of the
    bar at ``decided_at`` with model ``model_version`` (a UUID5, as text)."""
    if decided_at.tzinfo is None:
        raise ValueError(f"order_id: decided_at {decided_at!r} has no time zone (decision times are UTC)")
    key = f"{strategy}|{symbol}|{decided_at.isoformat()}|{model_version}"
    return str(uuid.uuid5(ORDER_NAMESPACE, key))


@dataclass(frozen=True)
class Order:
    """The order record of the data contract (status and reason live with the order's state)."""

    order_id: str
    ts: datetime           # the decision time: the close of the bar it was decided on
    symbol: str
    side: str              # "buy" | "sell"
    quantity: float        # shares, > 0
    price: float           # the reference price (the decision bar's close), or the limit
    order_type: str = "market"
    strategy: str = ""
    model_version: str = ""

    @property
    def signed(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity


def orders_for_targets(targets: dict[str, float], positions: dict[str, float], prices: dict[str, float],
                       decided_at: datetime, strategy: str, model_version: str,
                       min_quantity: float = 1e-9) -> list[Order]:
    """Market orders that move ``positions`` (shares) to ``targets`` (signed value) at ``prices``
    (the decision bar's closes), one per symbol whose difference is at least ``min_quantity``
    shares, in symbol order. Symbols held but absent from ``targets`` are left alone."""
    orders = []
    for symbol in sorted(targets):
        price = prices.get(symbol, math.nan)
        if not (price > 0) or not math.isfinite(targets[symbol]):
            continue
        delta = R.order_quantity(targets[symbol], price, positions.get(symbol, 0.0))
        if abs(delta) < min_quantity:
            continue
        orders.append(Order(order_id(strategy, symbol, decided_at, model_version), decided_at, symbol,
                            "buy" if delta > 0 else "sell", abs(delta), price, "market", strategy, model_version))
    return orders
