"""The paper venue's matching: next-open timing, the participation cap, the backtest's costs,
order states, and an order id filled at most once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from config import load_settings
from pipelines.trading import rules as R
from pipelines.trading.orders import Order, order_id
from pipelines.trading.rules import Costs
from streaming.kafka_io import ADMIN, client_options
from streaming.venue import OrderStatus, PaperVenue

T0 = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)
BAR = timedelta(minutes=5)
RULES = Costs.from_settings(load_settings(env={}).trading)


def _venue() -> PaperVenue:
    claimed: set[str] = set()

    def claim(oid: str) -> bool:  # what Redis SET NX does in the venue service
        if oid in claimed:
            return False
        claimed.add(oid)
        return True

    return PaperVenue(RULES, claim)


def _order(qty: float, side: str = "buy", symbol: str = "A", at: datetime = T0, kind: str = "market") -> Order:
    return Order(order_id("ens", symbol, at, "1"), at, symbol, side, qty, 100.0, kind, "ens", "1")


def test_a_market_order_fills_at_the_next_bar_s_open_with_the_backtest_s_cost() -> None:
    venue = _venue()
    state = venue.submit(_order(10), decision_volume=10_000)
    assert [s for s, _ in state.history] == [OrderStatus.NEW, OrderStatus.ACCEPTED]
    assert venue.on_bar("A", T0, 99.0) == []              # the decision bar itself: not yet
    assert venue.on_bar("B", T0 + BAR, 50.0) == []        # another symbol's bar: not this order
    [(filled, fill)] = venue.on_bar("A", T0 + BAR, 101.0)
    assert filled.status is OrderStatus.FILLED and filled.filled_qty == 10
    assert (fill.price, fill.qty, fill.side, fill.ts) == (101.0, 10, "buy", T0 + BAR)
    assert fill.fee == pytest.approx(R.trade_cost(10, 101.0, 10_000, RULES.commission, RULES.half_spread,
                                                  RULES.slippage_per_pct_volume))
    assert fill.fill_id == f"{filled.order.order_id}:1"
    assert venue.on_bar("A", T0 + 2 * BAR, 102.0) == []   # filled once


def test_the_participation_cap_fills_part_and_cancels_the_rest_with_the_reason() -> None:
    venue = _venue()
    venue.submit(_order(800, side="sell"), decision_volume=10_000)  # cap: 5% of 10,000 = 500
    [(state, fill)] = venue.on_bar("A", T0 + BAR, 100.0)
    assert fill.qty == 500 and fill.side == "sell"
    assert [s for s, _ in state.history][-2:] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED]
    assert "remainder 300 above max_participation 0.05" in state.reason
    venue.submit(_order(5, at=T0 + BAR), decision_volume=0.0)
    assert venue.on_bar("A", T0 + 2 * BAR, 100.0) == []
    assert venue.working["A"] == []


def test_a_replayed_order_is_never_filled_again_and_other_types_are_rejected() -> None:
    venue = _venue()
    order = _order(10)
    assert venue.submit(order, 10_000) is not None
    assert venue.submit(order, 10_000) is None            # the orders topic replayed
    assert len(venue.on_bar("A", T0 + BAR, 100.0)) == 1
    assert venue.submit(order, 10_000) is None            # and after it filled
    limit = venue.submit(_order(10, symbol="B", kind="limit"), 10_000)
    assert limit.status is OrderStatus.REJECTED and "market orders only" in limit.reason


def test_next_tick_mode_fills_at_the_first_tick_s_quote_and_charges_no_half_spread() -> None:
    from streaming.venue import OrderState, fill_at_open
    from streaming.venue_service import _fill_price

    bar = {"symbol": "A", "open": 100.0, "open_bid": 99.98, "open_ask": 100.03, "close": 100.5, "volume": 1e4}
    assert _fill_price(bar, "buy", next_tick=False) == (100.0, False)      # the backtest's rule
    assert _fill_price(bar, "buy", next_tick=True) == (100.03, True)       # a buy lifts the ask
    assert _fill_price(bar, "sell", next_tick=True) == (99.98, True)       # a sell hits the bid
    assert _fill_price({**bar, "open_bid": None}, "sell", next_tick=True) == (100.0, False)  # no quote: the open
    assert _fill_price(None, "buy", next_tick=True)[0] != _fill_price(None, "buy", next_tick=True)[0]  # NaN: no bar

    state = OrderState(_order(10), 10_000)
    fill = fill_at_open(state, T0 + BAR, 100.03, RULES, quoted=True)
    no_spread = R.trade_cost(10, 100.03, 10_000, RULES.commission, 0.0, RULES.slippage_per_pct_volume)
    assert fill.price == 100.03 and fill.fee == pytest.approx(no_spread)
    assert fill.fee < R.trade_cost(10, 100.03, 10_000, RULES.commission, RULES.half_spread,
                                   RULES.slippage_per_pct_volume)


# ------------------------------------------------------------------ the service (Redis and Kafka)


def _topic(settings, topic: str) -> list[dict]:
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, **client_options(settings, ADMIN), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000,
                             value_deserializer=lambda b: json.loads(b))
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


def test_the_venue_service_claims_once_cancels_once_and_skips_a_replayed_bar(services, tmp_path) -> None:
    """:class:`~streaming.venue_service.VenueService` itself, in this process: a signed order
    claimed once however often it arrives; a cancel that cancels a working order, and a second
    that says it is no longer working; an unsigned cancel refused; a bad record rejected once
    although read twice; a bar replayed after it was stored fills nothing again."""
    import json

    from streaming import live
    from streaming.signing import Signer
    from streaming.venue_service import VenueService, order_record
    from tests.livekit import live_env

    settings = load_settings(env=live_env(tmp_path))
    live.fresh_run(settings)
    venue, trader = VenueService(settings), Signer(settings, "trader")
    desk = Signer(settings, "desk")
    bar = lambda ts: {"ts": live.iso(ts), "after_decision": {}, "bars": [  # noqa: E731
        {"symbol": s, "open": 100.0, "close": 100.0, "volume": 1e6} for s in ("A", "B")]}
    venue.on_bar(bar(T0), 0)
    signed = lambda o: trader.sign({"v": 1, **order_record(o, 1e6)})  # noqa: E731
    a = Order(order_id("s", "A", T0, "1"), T0, "A", "buy", 10, 100.0, "market", "s", "1")
    b = Order(order_id("s", "B", T0, "1"), T0, "B", "sell", 5, 100.0, "market", "s", "1")
    for offset in (0, 1, 2):  # the same order three times (a replayed topic)
        venue.on_order(signed(a), offset)
    venue.on_order(signed(b), 3)
    assert venue.client.smembers(venue.k("working")) == {a.order_id, b.order_id}

    cancel = lambda signer, oid: signer.sign({"v": 1, "kind": "cancel", "order_id": oid,  # noqa: E731
                                              "by": "k1", "request_id": "r1", "ts": live.iso(T0)})
    venue.on_cancel({"v": 1, "kind": "cancel", "order_id": a.order_id, "by": "x", "request_id": "r0"})
    refused = json.loads(venue.client.hget(venue.k("cancels"), a.order_id))
    assert refused["cancelled"] is False and refused["reason"].startswith("cancel refused: unsigned")
    venue.on_cancel(cancel(desk, a.order_id))
    assert json.loads(venue.client.hget(venue.k("cancels"), a.order_id))["cancelled"] is True
    venue.on_cancel(cancel(desk, a.order_id))
    again = json.loads(venue.client.hget(venue.k("cancels"), a.order_id))
    assert again["reason"].startswith("not working: CANCELLED")
    assert venue.client.smembers(venue.k("working")) == {b.order_id}

    bad = {"v": 1, "order_id": "bad-1", "symbol": "A"}
    venue.on_order(bad, 7)
    venue.on_order(bad, 7)  # the same record read again after a restart
    rejected = [r for r in _topic(settings, settings.kafka.topics.orders_rejected) if r.get("order_id") == "bad-1"]
    assert len(rejected) == 1 and rejected[0]["reason"].startswith("missing ts, side, qty, price")

    t1 = T0 + BAR
    venue.on_bar(bar(t1), 1)
    venue.on_bar(bar(t1), 1)  # replayed: at or before the last bar stored
    fills = [r for r in _topic(settings, settings.kafka.topics.fills) if r.get("kind") == "fill"]
    assert [f["order_id"] for f in fills] == [b.order_id] and fills[0]["price"] == 100.0
    states = {o: json.loads(venue.client.hget(venue.k("orders"), o))["status"] for o in (a.order_id, b.order_id)}
    assert states == {a.order_id: "CANCELLED", b.order_id: "FILLED"}
    venue.close()
