"""Live safety: Kafka down for longer than the producers' delivery timeout while the trader, the
venue and the API desk send. A step whose records were not acknowledged records nothing; done
again once the broker is back, it sends the same records; afterwards nothing is lost, nothing
is marked sent that was not, and nothing is doubled.

The services run in this process (stepped by the test), so the outage lands exactly where the
test wants it: between a record handed to the producer and its acknowledgement."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from kafka import KafkaConsumer

from config import load_settings
from pipelines.trading.orders import ORDER_NAMESPACE
from streaming import live
from streaming.api.desk import Desk, Unavailable
from streaming.kafka_io import ADMIN, client_options
from streaming.portfolio_service import PortfolioService
from streaming.trader import Trader
from streaming.venue_service import IN_FLIGHT, VenueService
from tests.livekit import free_port, live_env, private_server

T0 = datetime(2024, 3, 13, 15, 0, tzinfo=timezone.utc)
SYMBOLS = ("SYN000", "SYN001")


def _bars(ts: datetime) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC").tz_convert(None)
    return pd.DataFrame({"symbol": list(SYMBOLS), "ts": pd.Timestamp(ts).tz_convert(None),
                         "open": [100.0, 50.0], "high": [101.0, 51.0], "low": [99.0, 49.0], "close": [100.0, 50.0],
                         "volume": [1e6, 1e6], "last_append": now})


def _predictions(ts: datetime, p_up: float) -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(SYMBOLS), "ts": pd.Timestamp(ts).tz_convert(None), "p_up": p_up,
                         "expected_return": 0.0, "model_version": "1"})


class Background:
    """The venue's and the portfolio's loops in threads, while Kafka is up."""

    def __init__(self, venue: VenueService, portfolio: PortfolioService) -> None:
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=s.run, args=(self.stop.is_set,), daemon=True)
                        for s in (venue, portfolio)]
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _topic(settings, topic: str) -> list[tuple[str, dict]]:
    consumer = KafkaConsumer(topic, **client_options(settings, ADMIN), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000,
                             value_deserializer=lambda b: json.loads(b))
    try:
        return [(m.key.decode() if m.key else "", m.value) for m in consumer]
    finally:
        consumer.close()


@pytest.mark.timeout(300)
def test_kafka_down_past_the_delivery_timeout_loses_nothing_and_marks_nothing_sent(services, tmp_path) -> None:
    kafka, server_env = private_server("kafka", tmp_path, port=free_port(), controller_port=free_port())
    kafka.up()  # a broker of the test's own: the tests on the shared one must not see it stop
    try:
        _kafka_down(tmp_path, kafka, {k: v for k, v in server_env.items() if k.startswith("QL_PLATFORM__KAFKA")})
    finally:
        kafka.down()


def _kafka_down(tmp_path, kafka, broker: dict[str, str]) -> None:
    env = live_env(tmp_path, **broker, QL_KAFKA__PRODUCER__DELIVERY_TIMEOUT_MS="3000",
                   QL_KAFKA__PRODUCER__REQUEST_TIMEOUT_MS="1500", QL_KAFKA__PRODUCER__MAX_BLOCK_MS="3000",
                   QL_TRADING__LIVE__SEND_RETRY_SECONDS="2", QL_PLATFORM__API__ORDER_ACK_SECONDS="5",
                   QL_TRADING__STRATEGIES__THRESHOLD__LONG_THRESHOLD="0.6",
                   QL_TRADING__STRATEGIES__THRESHOLD__SHORT_THRESHOLD="0.4")
    settings = load_settings(env=env)
    live.fresh_run(settings)
    client = live.redis_client(settings)
    venue, portfolio = VenueService(settings), PortfolioService(settings)
    trader, desk = Trader(settings, periods_per_year=252 * 78), Desk(settings)
    t0, t1, t2 = T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)
    decided = lambda: int(client.get(live.key(settings, "trader", "decided_us")) or -1)  # noqa: E731

    # Kafka up: a decision at t0 (buys), bar t1 fills it, a manual order works at the venue
    background = Background(venue, portfolio)
    (d0,) = trader.on_batch(_bars(t0), _predictions(t0, 0.9))
    assert [o.side for o, *_ in d0.orders] == ["buy", "buy"] and all(limit is None for *_, limit, _ in d0.orders)
    trader._publish_bar(t1, _bars(t1))
    assert live.wait_for(lambda: portfolio.book.as_of_us() >= live.micros(t1), 30)
    manual = desk.submit("SYN001", "sell", 10, None, "safety-1", "test (k1)", "k1")
    assert manual.verdict.accepted and manual.venue and manual.venue["status"] == "ACCEPTED", manual
    background.join()

    kafka.down()
    try:
        # the trader's decision at t1 (sells): its orders are not acknowledged, so t1 is not decided
        with pytest.raises(live.SendFailed):
            trader._decide(pd.Timestamp(t1), 1, _bars(t1), _predictions(t1, 0.1).set_index("symbol"))
        assert decided() < live.micros(t1)
        # the desk: 503, nothing kept in flight, no owner recorded
        with pytest.raises(Unavailable, match="Kafka did not confirm"):
            desk.submit("SYN000", "sell", 5, None, "safety-2", "test (k1)", "k1")
        assert not client.hgetall(live.key(settings, *IN_FLIGHT))
        lost_id = str(uuid.uuid5(ORDER_NAMESPACE, "manual|test (k1)|safety-2"))  # as the desk derives it
        # the venue: bar t2's fills are not acknowledged, so nothing is filled and t2 is not done
        working_before = client.smembers(venue.k("working"))
        with pytest.raises(live.SendFailed):
            venue.on_bar({"ts": live.iso(t2), "bars": json.loads(_bars(t2).drop(columns=["ts", "last_append"])
                                                                   .to_json(orient="records")),
                          "after_decision": {}}, -1)
        assert client.smembers(venue.k("working")) == working_before and working_before
        assert int(client.get(venue.k("last_bar_us"))) == live.micros(t1)
        assert all(json.loads(client.hget(venue.k("orders"), i))["status"] == "ACCEPTED" for i in working_before)
        time.sleep(3.5)  # past the delivery timeout
    finally:
        kafka.up()

    # the broker is back: each step done again sends the same records once
    d1 = trader._decide(pd.Timestamp(t1), 1, _bars(t1), _predictions(t1, 0.1).set_index("symbol"))
    assert [o.side for o, *_ in d1.orders] == ["sell", "sell"] and decided() == live.micros(t1)
    background = Background(venue, portfolio)
    trader._publish_bar(t2, _bars(t2))
    assert live.wait_for(lambda: portfolio.book.as_of_us() >= live.micros(t2), 60)
    background.join()

    orders = Counter(key for key, value in _topic(settings, settings.kafka.topics.orders) if value.get("kind") != "cancel")
    sent = [o.order_id for o, *_ in d0.orders + d1.orders] + [manual.order["order_id"]]
    assert sorted(orders) == sorted(sent) and set(orders.values()) == {1}, orders  # the 503 order is not there
    fills = Counter(key for key, value in _topic(settings, settings.kafka.topics.fills) if value.get("kind") == "fill")
    assert len(fills) == len(sent) and set(fills.values()) == {1}, fills
    states = {i: json.loads(client.hget(venue.k("orders"), i))["status"] for i in sent}
    assert set(states.values()) == {"FILLED"}, states
    acct = portfolio.book.snapshot()
    expected = Counter()
    for o, *_ in d0.orders + d1.orders:
        expected[o.symbol] += o.signed
    expected["SYN001"] -= 10
    assert {s: round(p.qty, 9) for s, p in acct.positions.items() if p.qty} == \
        {s: round(q, 9) for s, q in expected.items() if round(q, 9)}
    assert desk.owner(lost_id) is None and not client.hexists(venue.k("orders"), lost_id)
    for s in (trader, desk, venue, portfolio):
        s.close()
    client.close()


def test_the_submit_rate_is_wall_time_shared_across_processes_and_not_counted_twice(services, tmp_path) -> None:
    """Two submitters of one account (the trader and an API process) share one second of wall
    time: 3 + 3 orders against a limit of 5 admit 5; the same ids again are not counted twice;
    a second later there is room again."""
    settings = load_settings(env=live_env(tmp_path, QL_TRADING__LIMITS__MAX_ORDERS_PER_SECOND="5"))
    a, b = live.redis_client(settings), live.redis_client(settings)
    trader, api = live.SubmitRate(a, settings), live.SubmitRate(b, settings)
    a.delete(trader.key)
    assert trader.take(["t1", "t2", "t3"]) == (3, 3)
    assert api.take(["m1", "m2", "m3"]) == (2, 5)
    assert trader.take(["t1", "t2", "t3"]) == (3, 5)  # a step done again: admitted, not counted again
    assert api.take(["m3"]) == (0, 5)
    time.sleep(1.1)
    assert api.take(["m3"]) == (1, 1)
    a.close(), b.close()


def test_the_desk_counts_orders_in_flight_and_judges_age_by_the_wall_clock(services, tmp_path) -> None:
    """With no venue claiming orders, a second manual buy that the first one's in-flight shares
    would push past the position limit is refused (before, every order was checked against the
    same position until the venue claimed them). A symbol whose last tick arrived longer ago
    than max_data_age_seconds is stale although its bar time is the venue's newest."""
    settings = load_settings(env=live_env(tmp_path, QL_PLATFORM__API__ORDER_ACK_SECONDS="0.05",
                                          QL_TRADING__LIMITS__MAX_DATA_AGE_SECONDS="60"))
    live.fresh_run(settings)
    venue, desk = VenueService(settings), Desk(settings)
    arrived = {"SYN000": time.time_ns() // 1000, "SYN001": time.time_ns() // 1000 - 3_600_000_000}  # 1 h ago
    venue.on_bar({"ts": live.iso(T0), "after_decision": {}, "bars": [
        {"symbol": s, "open": 100.0, "close": 100.0, "volume": 1e6, "arrived_us": arrived[s]} for s in SYMBOLS]}, -1)
    equity = settings.trading.initial_capital
    qty = 0.015 * equity / 100.0  # 1.5% of equity: one fits under the 2.5% limit, two do not
    first = desk.submit("SYN000", "buy", qty, None, "flight-1", "test (k1)", "k1")
    assert first.verdict.accepted and first.venue is None  # sent, not claimed: in flight
    second = desk.submit("SYN000", "buy", qty, None, "flight-2", "test (k1)", "k1")
    assert second.verdict.limit == "max_position_notional", second.verdict
    stale = desk.submit("SYN001", "buy", 1, None, "stale-1", "test (k1)", "k1")
    assert stale.verdict.limit == "max_data_age_seconds" and "stale market data" in stale.verdict.reason
    flying = live.key(settings, *IN_FLIGHT)
    assert list(desk.client.hgetall(flying)) == [first.order["order_id"]]
    assert live.wait_for(lambda: (venue.step(200) or desk.client.sismember(venue.k("working"), first.order["order_id"])),
                         20)  # the venue claims it: working now, no longer in flight
    third = desk.submit("SYN000", "buy", qty, None, "flight-3", "test (k1)", "k1")
    assert third.verdict.limit == "max_position_notional"
    assert not desk.client.hgetall(flying)
    venue.close(), desk.close()


def test_a_crash_point_kills_at_its_nth_arrival_and_an_unknown_one_is_refused() -> None:
    import subprocess
    import sys

    from config.errors import ConfigError
    from streaming import faults

    with pytest.raises(ConfigError, match="unknown crash point 'venue.nope'.*venue.after_fills"):
        faults.arm("venue.nope")
    code = ("from streaming import faults\nfaults.arm('venue.after_fills:2')\n"
            "faults.crash_point('venue.after_claim'); faults.crash_point('venue.after_fills'); print('first', flush=True)\n"
            "faults.crash_point('venue.after_fills'); print('second', flush=True)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == -9 and run.stdout.split() == ["first"], (run.returncode, run.stdout, run.stderr)
    faults.arm(None)
