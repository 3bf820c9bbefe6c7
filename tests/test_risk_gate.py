"""The pre-trade risk gate: each limit rejects with its name, and no sequence of random
predictions, prices and adversarial orders gets an order past a limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from config import load_settings
from config.schemas.trading import LimitSettings
from pipelines.trading.orders import Order
from pipelines.trading.risk import Book, RiskGate, TradingState
from pipelines.trading.strategies.threshold import Threshold
from pipelines.trading.strategy import Context

T0 = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)
LIMITS = LimitSettings(max_order_quantity=500, max_order_notional=20_000, max_position_notional=0.05,
                       max_gross_exposure=0.3, price_band=0.02, max_orders_per_second=3, max_data_age_seconds=60)


def _book(**positions: float) -> Book:
    return Book(equity=100_000, positions=dict(positions), last_price={"A": (100.0, T0), "B": (50.0, T0)})


def _order(side: str = "buy", qty: float = 10, price: float = 100.0, symbol: str = "A", seconds: float = 1) -> Order:
    return Order(f"o-{side}-{qty}-{symbol}-{seconds}", T0 + timedelta(seconds=seconds), symbol, side, qty, price)


@pytest.mark.parametrize("order, book, limit, words", [
    (_order(qty=0), _book(), "quantity", "not positive"),
    (_order(symbol="ZZZ"), _book(), "symbols", "unknown symbol 'ZZZ': no market data"),
    (_order(seconds=61), _book(), "max_data_age_seconds", "stale market data: the last A trade is 61 s old > 60 s"),
    (_order(price=103.0), _book(), "price_band", "price 103 outside +/-2.00% of the last trade 100"),
    (_order(qty=600, price=10.0), Book(100_000, {}, {"A": (10.0, T0)}), "max_order_quantity", "quantity 600 > 500"),
    (_order(qty=300), _book(), "max_order_notional", "notional 30,000.00 > 20,000.00"),
    (_order(qty=60), _book(A=0.0), "max_position_notional", "A position 6,000.00 after the order > 5.00% of equity"),
    (_order(side="sell", qty=61), _book(A=10.0), "max_position_notional", "A position 5,100.00 after the order"),
    (_order(qty=20, price=50.0, symbol="B"), _book(A=45.0, B=60.0, C=200.0), "max_gross_exposure",
     "gross exposure 30,500.00 after the order > 30.00% of equity 100,000.00"),
])
def test_each_limit_rejects_with_its_name_and_numbers(order: Order, book: Book, limit: str, words: str) -> None:
    book.last_price.setdefault("C", (110.0, T0))
    verdict = RiskGate(LIMITS).check(order, book)
    assert not verdict.accepted and verdict.limit == limit and words in verdict.reason, verdict


def test_an_order_that_reduces_a_position_passes_the_position_limits() -> None:
    """Buying 20 against a short of 70 (7,000 > the 5,000 limit, after a price move) shrinks it."""
    assert RiskGate(LIMITS).check(_order(qty=20), _book(A=-70.0)).accepted


def test_trading_states_and_the_submit_rate() -> None:
    gate = RiskGate(LIMITS)
    halted = _book(A=20.0)
    halted.state = TradingState.HALTED
    for side in ("buy", "sell"):  # nothing at all, not even a reduction
        assert gate.check(_order(side=side, qty=5), halted).reason == "trading is HALTED"
    reducing = _book(A=20.0)
    reducing.state = TradingState.REDUCING
    assert gate.check(_order(side="sell", qty=5), reducing).accepted
    grow = gate.check(_order(side="buy", qty=5), reducing)
    assert grow.limit == "trading_state" and "would not reduce the position 20" in grow.reason
    flip = gate.check(_order(side="sell", qty=45), reducing)  # 20 -> -25: larger exposure the other way
    assert flip.limit == "trading_state"
    rate = RiskGate(LIMITS)
    book = _book()
    verdicts = [rate.check(_order(qty=1, seconds=1 + i * 0.1), book) for i in range(5)]
    assert [v.accepted for v in verdicts] == [True, True, True, False, False]
    assert verdicts[3].limit == "max_orders_per_second"
    assert rate.check(_order(qty=1, seconds=2.05), book).accepted  # the first order left the window


def test_the_shipped_limits_load_and_a_bad_value_names_its_key() -> None:
    from config.errors import ConfigError

    assert load_settings(env={}).trading.limits.price_band == 0.05
    with pytest.raises(ConfigError, match="limits.price_band"):
        load_settings(env={"QL_TRADING__LIMITS__PRICE_BAND": "2"})


def test_reducing_never_flips_and_flattening_is_never_refused_for_staleness_or_equity() -> None:
    """REDUCING lets an order through only towards flat (+20 may not become -15); an order that
    flattens passes on stale data and with equity at or below zero, so a tripped breaker always
    reaches flat; the same orders that grow a position are still refused."""
    gate = RiskGate(LIMITS)
    reducing = _book(A=20.0)
    reducing.state = TradingState.REDUCING
    flip = gate.check(_order(side="sell", qty=35, seconds=2), reducing)
    assert flip.limit == "trading_state" and "cross zero" in flip.reason
    assert gate.check(_order(side="sell", qty=20, seconds=3), reducing).accepted  # to flat exactly
    stale = _book(A=20.0)
    assert gate.check(_order(side="sell", qty=20, seconds=600), stale).accepted
    assert gate.check(_order(side="buy", qty=1, seconds=601), stale).limit == "max_data_age_seconds"
    broke = _book(A=20.0)
    broke.equity = -5_000.0
    assert gate.check(_order(side="sell", qty=10, seconds=4), broke).accepted
    assert gate.check(_order(side="buy", qty=1, seconds=5), broke).limit == "equity"


def test_no_random_sequence_gets_an_order_past_a_limit() -> None:
    """Property test over seeded random runs: the threshold strategy on random predictions
    and random-walk prices, mixed with adversarial orders (random sizes, sides, symbols, stale
    or off-band prices) and random switches of the trading state. Every accepted order is
    within the order limits, an accepted order that grows a position leaves it and the gross
    exposure within their limits at its price, HALTED accepts nothing, REDUCING only shrinks,
    and no second of event time holds more accepted orders than the rate limit."""
    strategy = Threshold()
    # limits that bind: four positions at the cap exceed the gross limit, an order can exceed the cap
    limits = LIMITS.model_copy(update={"max_order_quantity": 100, "max_order_notional": 12_000,
                                       "max_position_notional": 0.1, "max_gross_exposure": 0.15,
                                       "max_orders_per_second": 6})
    symbols = ["A", "B", "C", "D"]
    accepted_total = rejected_total = working_seen = 0
    for trial in range(60):
        rng = np.random.default_rng(trial)
        gate, book = RiskGate(limits), Book(equity=100_000.0)
        cash, price = 100_000.0, rng.uniform(20, 200, len(symbols))
        accepted_at: list[datetime] = []
        pending: list[Order] = []  # accepted, working: filled some steps later, as a venue does
        now = T0
        for step in range(150):
            for o in [o for o in pending if rng.random() < 0.4]:  # some working orders fill now
                pending.remove(o)
                book.working[o.symbol] -= o.signed
                book.positions[o.symbol] = book.positions.get(o.symbol, 0.0) + o.signed
                cash -= o.signed * o.price
            now += timedelta(seconds=float(rng.choice([0.2, 1.0, 45.0])))
            price *= np.exp(rng.normal(0, 0.01, len(symbols)))
            for i, s in enumerate(symbols):
                if rng.random() > 0.2:  # now and then a symbol's data goes quiet (stale)
                    book.last_price[s] = (float(price[i]), now)
            book.equity = cash + sum(q * book.last_price[s][0] for s, q in book.positions.items())
            if rng.random() < 0.05:
                book.state = TradingState(rng.choice(["ACTIVE", "REDUCING", "HALTED"], p=[0.6, 0.2, 0.2]))
            shares = np.array([book.position(s) for s in symbols])
            target = strategy.targets(Context(
                pd.Timestamp(now), step, np.array(symbols, dtype=object), price.copy(), np.full(len(symbols), 1e6),
                rng.uniform(0, 1, len(symbols)), np.full(len(symbols), np.nan), shares, np.full(len(symbols), np.nan),
                np.zeros(len(symbols)), np.full(len(symbols), 0.2), book.equity, book.equity, 100_000.0, 100_000.0))
            orders = []
            for i, s in enumerate(symbols if rng.random() < 0.3 else []):  # the decision, on some bars
                delta = target[i] / price[i] - shares[i]
                if abs(delta) > 1e-9:
                    orders.append(Order(f"{trial}-{step}-{s}", now, s, "buy" if delta > 0 else "sell", abs(delta),
                                        float(price[i])))
            for _ in range(rng.integers(0, 5)):  # adversarial orders
                s = rng.choice(symbols + ["ZZZ"])
                ref = book.last_price.get(s, (100.0, now))[0]
                orders.append(Order(f"x{trial}-{step}-{len(orders)}", now, s, rng.choice(["buy", "sell"]),
                                    float(rng.choice([0.0, rng.uniform(1, 150), rng.uniform(150, 2000)])),
                                    float(ref * rng.choice([1.0, 1.0, 1.01, 0.9, 1.3]))))
            for o in orders:
                before_state, before_qty = book.state, book.position(o.symbol)
                gross_before = book.gross_exposure()
                verdict = gate.check(o, book)
                if not verdict.accepted:
                    rejected_total += 1
                    assert verdict.limit and verdict.reason
                    continue
                accepted_total += 1
                after_qty = before_qty + o.signed
                assert before_state is not TradingState.HALTED
                reduces = abs(after_qty) < abs(before_qty) and after_qty * before_qty >= 0
                if before_state is TradingState.REDUCING:
                    assert reduces  # towards flat, never across it
                assert o.quantity <= limits.max_order_quantity and o.quantity * o.price <= limits.max_order_notional
                last = book.last_price[o.symbol][0]
                assert abs(o.price / last - 1) <= limits.price_band
                if not reduces:  # flattening is never refused for stale data
                    assert (o.ts - book.last_price[o.symbol][1]).total_seconds() <= limits.max_data_age_seconds
                if abs(after_qty) > abs(before_qty):
                    assert abs(after_qty) * o.price <= limits.max_position_notional * book.equity + 1e-6
                    gross = gross_before - abs(before_qty) * last + abs(after_qty) * o.price
                    assert gross <= limits.max_gross_exposure * book.equity + 1e-6
                book.working[o.symbol] = book.working.get(o.symbol, 0.0) + o.signed  # working until it fills
                pending.append(o)
                accepted_at.append(o.ts)
                working_seen = max(working_seen, len(pending))
        times = np.array([t.timestamp() for t in accepted_at])
        for k, t in enumerate(times):  # the rate limit over every one-second window
            assert ((times[: k + 1] > t - 1.0)).sum() <= limits.max_orders_per_second
    assert accepted_total > 1000 and rejected_total > 1000, (accepted_total, rejected_total)
    assert working_seen >= 5  # the gate judged orders with several others still working


def test_order_ids_are_deterministic_and_orders_move_positions_to_targets() -> None:
    from pipelines.trading.orders import order_id, orders_for_targets

    a = order_id("ens", "A", T0, "3")
    assert a == order_id("ens", "A", T0, "3")  # a replay sends the same id
    assert len({a, order_id("ens", "B", T0, "3"), order_id("ens", "A", T0 + timedelta(minutes=5), "3"),
                order_id("ens", "A", T0, "4"), order_id("lstm", "A", T0, "3")}) == 5
    with pytest.raises(ValueError, match="no time zone"):
        order_id("ens", "A", T0.replace(tzinfo=None), "3")
    orders = orders_for_targets({"A": 2_000.0, "B": -1_000.0, "C": 500.0, "D": 0.0}, {"A": 10.0, "C": 5.0, "E": 3.0},
                                {"A": 100.0, "B": 50.0, "C": 100.0, "D": 10.0}, T0, "ens", "3")
    assert [(o.symbol, o.side, o.quantity) for o in orders] == [("A", "buy", 10.0), ("B", "sell", 20.0)]
    assert orders[0].order_id == order_id("ens", "A", T0, "3") and orders[0].price == 100.0
