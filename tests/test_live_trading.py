"""The live trading path against the real Kafka, Redis and Spark: stream -> trader -> risk gate ->
``orders`` -> venue -> ``fills`` -> portfolio, with the venue and the portfolio killed (SIGKILL)
and restarted mid-run, hand-typed bad orders on the topic, and the result compared with the
backtest engine on the same bars and predictions."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections import Counter
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer

from config import load_settings
from pipelines import lake
from pipelines.backtest.engine import Market, run_backtest
from pipelines.ingest.sources.synthetic import generate_market, generate_ticks
from pipelines.lake.tables import LIVE_BARS, LIVE_EQUITY, LIVE_FILLS, LIVE_ORDERS, LIVE_POSITIONS, LIVE_PREDICTIONS
from pipelines.trading.strategies import load_strategy
from streaming import job, live
from streaming.faults import POINTS
from streaming.feed import publish
from streaming.kafka_io import ADMIN, client_options
from streaming.signing import Signer
from streaming.portfolio import RedisPortfolio
from streaming.status import read_status
from streaming.venue_service import order_states
from tests.livekit import Services, live_env, research_with_champion

pytestmark = pytest.mark.services


def _as_of(settings) -> int:
    client = live.redis_client(settings)
    try:
        return RedisPortfolio(client, live.account(settings)).as_of_us()
    finally:
        client.close()


def _settled(settings, last: int) -> bool:
    """The trader decided at ``last`` and the venue holds every order it sent then."""
    client = live.redis_client(settings)
    try:
        if int(client.get(live.key(settings, "trader", "decided_us")) or -1) < last:
            return False
        ids = json.loads(client.get(live.key(settings, "trader", "last")) or "{}").get("order_ids") or []
        return not ids or all(client.smismember(live.key(settings, "venue", "claimed"), ids))
    finally:
        client.close()


def _bad_orders(settings) -> list[tuple[bytes, str]]:
    """Hand-typed orders a venue must reject (raw bytes, the reason's first words)."""
    good = {"v": 1, "order_id": "hand-1", "ts": "2024-03-13T15:00:00Z", "symbol": "SYN000", "side": "buy", "qty": 5,
            "price": 100.0, "order_type": "market"}
    cases = [
        (b"{not json", "malformed record"),
        (json.dumps({**good, "order_id": "hand-2", "qty": -5}).encode(), "quantity -5 is not positive"),
        (b'{"v": 1, "order_id": "hand-4", "ts": "2024-03-13T15:00:00Z", "symbol": "SYN000", "side": "buy", '
         b'"qty": 5, "price": NaN}', "price nan is not positive"),
        (json.dumps({"v": 1, "order_id": "hand-5", "symbol": "SYN000"}).encode(), "missing ts, side, qty, price"),
        (json.dumps({**good, "order_id": "hand-6", "side": "hold"}).encode(), "side 'hold' is neither"),
    ]
    # well-formed records: the venue's own checks, whoever produced them
    trader = Signer(settings, "trader")
    altered = {**trader.sign({**good, "order_id": "hand-8"}), "qty": 500}
    cases += [
        (json.dumps({**good, "order_id": "hand-7"}).encode(), "unsigned: only the trader's or the API desk's"),
        (json.dumps(altered).encode(), "bad signature for signer 'trader'"),
        (json.dumps({**good, "order_id": "hand-9", "signer": "intruder", "sig": "00"}).encode(),
         "signer 'intruder' is neither"),
        (json.dumps(trader.sign({**good, "order_id": "hand-3", "symbol": "NOPE"})).encode(), "unknown symbol 'NOPE'"),
        (json.dumps(trader.sign({**good, "order_id": "hand-10", "qty": 2e6})).encode(),
         "quantity 2e+06 > the venue's max_order_quantity"),
        (json.dumps(trader.sign({**good, "order_id": "hand-11", "qty": 9e5})).encode(), "notional"),
        (json.dumps(trader.sign({**good, "order_id": "hand-12", "price": 1e7})).encode(), "price 1e+07 outside"),
    ]
    return cases


class InProcessStream:
    """The live job in the test's own Spark session (its errors surface as they happen)."""

    def __init__(self, spark, settings) -> None:
        self.query, self.sink = job.start(spark, settings, starting_offsets="earliest")

    def failed(self) -> str | None:
        return None if self.query.exception() is None else str(self.query.exception())

    def stop(self) -> None:
        job.stop_between_batches(self.query)
        self.sink.trader.close()


def _faults(svc: Services, fault: str, settings, on_fault: Callable | None = None) -> None:
    """One fault, mid-run: a service killed with SIGKILL and restarted, a server restarted, or
    whatever ``on_fault(fault, svc, settings)`` does for a fault of the caller's."""
    if on_fault is not None and on_fault(fault, svc, settings):
        return
    if fault in POINTS:  # a named crash point: the service kills itself exactly there
        svc.crash_at(fault)
    elif fault in ("venue", "portfolio", "stream"):
        svc.kill(fault)
        svc.start(fault)
    else:  # "kafka" / "redis": the real server stopped and started again; "redis-kill": SIGKILL, no shutdown save
        from infra.services import all_services

        (server,) = all_services(settings, [fault.removesuffix("-kill")])
        if fault.endswith("-kill"):
            pid = server.pid()
            os.kill(pid, signal.SIGKILL)  # the append-only file is all it restarts from
            try:
                os.waitpid(pid, 0)  # reaped here when this process started it (no zombie holds the pid)
            except ChildProcessError:
                pass
            assert live.wait_for(lambda: server.pid() is None, 10)
        else:
            server.down()
        time.sleep(2)
        server.up()


class PacedFeed(threading.Thread):
    """The feed, one bar time's ticks every ``pause`` seconds, so it keeps running through the
    faults (one idempotent producer, as ``streaming feed`` has)."""

    def __init__(self, settings, ticks: pd.DataFrame, bar_minutes: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.ticks, self.pause = settings, ticks, pause
        self.bars = ticks["ts"].dt.floor(f"{bar_minutes}min")
        self.sent_bars = 0  # bar times sent so far
        self.error: Exception | None = None

    def run(self) -> None:
        from streaming.kafka_io import ADMIN, ensure_topics, make_producer
        from streaming.records import encode

        topic = self.settings.kafka.topics.market_data
        ensure_topics(self.settings, [topic], ADMIN)
        producer = make_producer(self.settings, ADMIN, enable_idempotence=True, key_serializer=None, value_serializer=None)
        try:
            for _, chunk in self.ticks.groupby(self.bars, sort=True):
                for key, value in encode(chunk):
                    producer.send(topic, key=key, value=value)
                producer.flush()
                self.sent_bars += 1
                time.sleep(self.pause)
        except Exception as error:  # surfaced by the test
            self.error = error
        finally:
            producer.close()


def _volume_gap(bars: pd.DataFrame, ticks: pd.DataFrame, bar_minutes: int) -> int:
    """How many live bars' volume differs from the sizes of the ticks sent for them (a tick lost
    or counted twice shows here)."""
    sent = (ticks.assign(ts=ticks["ts"].dt.floor(f"{bar_minutes}min").dt.tz_localize(None))
            .groupby(["symbol", "ts"])["size"].sum().rename("sent").reset_index())
    live_bars = bars.assign(ts=pd.to_datetime(bars["ts"]).dt.tz_localize(None))
    both = live_bars.merge(sent, on=["symbol", "ts"], how="left")
    return int((~np.isclose(both["volume"], both["sent"].fillna(-1))).sum())


def run_live(spark, tmp_path, faults: tuple[str, ...], stream_process: bool = False, env: dict | None = None,
             on_fault: Callable | None = None, feed_pause: float | None = None) -> dict:
    """The synthetic market's last two days through the whole live path, with ``faults`` spread
    over the run; then the live tables next to the backtest engine on the same bars and
    predictions. Returns what the assertions need.

    ``env`` adds variables (the cluster's master and brokers); ``on_fault`` handles faults of the
    caller's (returns True when it did); ``feed_pause`` paces the feed a bar time at a time
    instead of sending everything first."""
    env = live_env(tmp_path, **(env or {}), QL_DATA__SYNTHETIC__N_SYMBOLS="4", QL_DATA__SYNTHETIC__N_DAYS="8",
                   QL_DATA__SYNTHETIC__START_DATE="2024-03-04", QL_DATA__SYNTHETIC__BAD_TICK_RATE="0",
                   QL_PLATFORM__MLFLOW__REGISTERED_MODEL=f"live-{tmp_path.name[-12:]}",
                   # the replay runs far faster than the market: the submit rate counts wall time
                   # live, bar time in the backtest, so it must not bind for them to be compared
                   QL_TRADING__LIMITS__MAX_ORDERS_PER_SECOND="100000",
                   # thresholds near the linear model's probabilities, so it trades often
                   QL_TRADING__STRATEGIES__THRESHOLD__LONG_THRESHOLD="0.505",
                   QL_TRADING__STRATEGIES__THRESHOLD__SHORT_THRESHOLD="0.495")
    settings = load_settings(env=env)
    cfg = settings.data.synthetic
    days = pd.bdate_range(cfg.start_date, periods=cfg.n_days)
    research_with_champion(spark, settings, days[:6])
    ticks = generate_ticks(generate_market(cfg), cfg)
    ticks = ticks[ticks["ts"].dt.date >= days[6].date()].reset_index(drop=True)

    live.fresh_run(settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = Services(env, settings, logs)
    svc.start("venue")
    svc.start("portfolio")
    stream = None
    if stream_process:
        svc.start("stream")
    else:
        stream = InProcessStream(spark, settings)
    failed = (lambda: svc.dead() or (stream.failed() if stream else None))
    restarts, feeding = [], []
    feed = None
    try:
        if feed_pause is None:
            publish(settings, ticks, progress=False)
        else:
            feed = PacedFeed(settings, ticks, cfg.bar_minutes, feed_pause)
            feed.start()
        bar_times = sorted(ticks["ts"].dt.floor(f"{cfg.bar_minutes}min").dt.tz_localize(None).unique())
        first = live.micros(bar_times[0])
        assert live.wait_for(lambda: _as_of(settings) >= first or failed(), 240, 0.05), read_status(settings)
        assert not failed(), failed()
        raw = KafkaProducer(**client_options(settings, ADMIN))
        for value, _ in _bad_orders(settings):
            raw.send(settings.kafka.topics.orders, value=value, partition=0)
        raw.flush()
        raw.close()
        for i, fault in enumerate(faults):
            step = (i + 1) * len(bar_times) // (len(faults) + 1)
            if feed is None:  # spread over the live clock
                at = live.micros(bar_times[step])
                assert live.wait_for(lambda: _as_of(settings) >= at or failed(), 300, 0.02), read_status(settings)
            else:  # spread over the feed, so that it still sends through every fault
                assert live.wait_for(lambda: feed.sent_bars >= step or failed(), 300, 0.02), read_status(settings)
            assert not failed(), failed()
            restarts.append((fault, str(pd.Timestamp(_as_of(settings), unit="us"))))
            feeding.append(feed is not None and feed.is_alive())
            _faults(svc, fault, settings, on_fault)
        if feed is not None:
            feed.join(600)
            assert not feed.is_alive() and feed.error is None, feed.error
        last = live.micros(bar_times[-2])  # each symbol's last bar stays open under the watermark
        assert live.wait_for(lambda: _settled(settings, last) or failed(), 300, 0.1), \
            (read_status(settings), svc.log("venue"), svc.log("portfolio"))
        assert not failed(), failed()
    finally:
        if stream is not None:
            stream.stop()
    svc.stop()  # SIGTERM: the stream stops between batches, the portfolio writes its last journal rows
    status = read_status(settings)

    # the backtest engine on the bars and predictions the stream produced
    bars = lake.read(spark, LIVE_BARS.path(settings)).toPandas()
    predictions = lake.read(spark, LIVE_PREDICTIONS.path(settings)).toPandas()
    market = Market.from_frames(bars[["symbol", "ts", "open", "close", "volume"]], predictions)
    result = run_backtest(market, load_strategy(settings.trading), settings.trading)
    expected = result.fills.sort_values(["ts", "symbol"]).reset_index(drop=True)

    fills = lake.read(spark, LIVE_FILLS.path(settings)).toPandas().sort_values(["ts", "symbol"]).reset_index(drop=True)
    orders = lake.read(spark, LIVE_ORDERS.path(settings)).toPandas()
    equity = lake.read(spark, LIVE_EQUITY.path(settings)).toPandas().sort_values("ts").reset_index(drop=True)
    positions = lake.read(spark, LIVE_POSITIONS.path(settings)).toPandas()
    consumer = KafkaConsumer(settings.kafka.topics.fills, **client_options(settings, ADMIN),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    on_topic = Counter(json.loads(m.value).get("fill_id") for m in consumer)
    consumer.close()
    on_topic.pop(None, None)
    consumer = KafkaConsumer(settings.kafka.topics.orders, **client_options(settings, ADMIN),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    sent_orders = Counter()
    for message in consumer:
        try:
            record = json.loads(message.value)
        except ValueError:
            continue  # the hand-typed malformed record
        if "qty" in record and not str(record.get("order_id", "")).startswith("hand-"):
            sent_orders[record["order_id"]] += 1
    consumer.close()
    report = {"bars": len(bars), "predictions": len(predictions), "decisions": status["decisions"],
              "orders": len(orders), "orders_sent": status["orders_sent"], "fills": len(fills),
              "fill_records_on_topic": sum(on_topic.values()), "fill_ids_on_topic": len(on_topic),
              "faults_at": restarts, "order_records_on_topic": sum(sent_orders.values()),
              "order_ids_on_topic": len(sent_orders), "ticks": len(ticks), "ticks_in": status["ticks_in"],
              "bars_short_of_their_ticks": _volume_gap(bars, ticks, cfg.bar_minutes),
              "feed_running_at_faults": feeding,
              "stream_starts": (logs / "stream.log").read_text().count("stream started") if stream_process else 1}
    print(f"\nlive: {len(bars)} bars, {len(predictions)} predictions, {status['decisions']} decisions, "
          f"{len(orders)} orders ({status['orders_sent']} sent), {len(fills)} fills; venue/portfolio killed at "
          f"{restarts}; fill records on the topic {sum(on_topic.values())} for {len(on_topic)} fill ids")

    assert len(expected) >= 20, "too few trades to compare"
    assert not fills["fill_id"].duplicated().any() and not orders["order_id"].duplicated().any()
    assert set(on_topic) == set(fills["fill_id"])
    # the same fills: time, symbol, quantity, price and cost
    assert len(fills) == len(expected)
    assert (fills["ts"].to_numpy() == expected["ts"].to_numpy()).all()
    assert fills["symbol"].tolist() == expected["symbol"].tolist()
    signed = np.where(fills["side"] == "buy", fills["qty"], -fills["qty"])
    np.testing.assert_allclose(signed, expected["quantity"], rtol=1e-9)
    np.testing.assert_array_equal(fills["price"], expected["price"])
    np.testing.assert_allclose(fills["fee"], expected["cost"], rtol=1e-9)
    # the same equity at every close, and at the end
    curve = result.equity_frame()
    assert equity["ts"].tolist() == curve["ts"].tolist()
    np.testing.assert_allclose(equity["equity"], curve["equity"], rtol=1e-10)
    client = live.redis_client(settings)
    final = RedisPortfolio(client, live.account(settings)).snapshot()
    client.close()
    assert final.equity == pytest.approx(result.equity[-1], rel=1e-10)
    held = {s: q for s, q in zip(market.symbols, result.positions[-1]) if abs(q) > 1e-12}
    assert {s: p.qty for s, p in final.positions.items() if p.qty} == pytest.approx(held, rel=1e-9)
    assert len(positions) > 0 and not positions.duplicated(["ts", "symbol"]).any()

    # every sent order ended at the venue (the last decision's may still wait for a bar)
    states = {s.order.order_id: s for s in order_states(settings)}
    sent = orders[orders["status"] == "SUBMITTED"]
    assert set(sent["order_id"]) == set(states)  # the table lost none the venue got, crash or not
    assert status["orders_sent"] == len(sent)
    final_states = Counter(states[o].status.value for o in sent["order_id"])
    assert final_states["FILLED"] + final_states["PARTIALLY_FILLED"] + final_states["CANCELLED"] \
        + final_states["ACCEPTED"] == len(sent)

    # the bar records carry the first tick's quote (where a next-tick venue fills)
    consumer = KafkaConsumer(settings.kafka.topics.bars, **client_options(settings, ADMIN),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    quoted = [b for m in consumer for b in json.loads(m.value)["bars"]]
    consumer.close()
    assert len(quoted) >= len(bars)
    assert all(0 < b["open_bid"] <= b["open_ask"] for b in quoted)

    # the hand-typed orders: each rejected with its reason, the venue kept running
    consumer = KafkaConsumer(settings.kafka.topics.orders_rejected, **client_options(settings, ADMIN),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    rejected = [json.loads(m.value) for m in consumer]
    consumer.close()
    by_venue = [r for r in rejected if r.get("rejected_by") == "venue"]
    reasons = [r["reason"] for r in by_venue]
    assert len(by_venue) == len(_bad_orders(settings)), reasons
    for _, reason in _bad_orders(settings):
        assert any(r.startswith(reason) for r in reasons), (reason, reasons)
    assert not any(math.isnan(x) for x in equity["equity"])
    return report


def test_live_path_equals_the_backtest_through_venue_and_portfolio_crashes(spark, services, tmp_path,
                                                                          sqlite_registry) -> None:
    """Live-backtest parity with the venue killed (SIGKILL) at a named crash point, between its
    fills acknowledged by Kafka and its orders marked filled in Redis, and the portfolio killed
    between fills applied in Redis and its read position stored; hand-typed bad orders rejected
    with reasons. The other crash points, the stream job's own SIGKILL, each fault twice, and
    Kafka and Redis restarts and kills are ``make chaos`` (a stream in its own process costs
    this suite minutes)."""
    report = run_live(spark, tmp_path, ("venue.after_fills", "portfolio.after_apply"))
    assert [f for f, _ in report["faults_at"]] == ["venue.after_fills", "portfolio.after_apply"]


@pytest.mark.chaos
@pytest.mark.parametrize("service", ["trader", "venue", "portfolio"])
def test_exactly_once_through_every_crash_point(spark, services, tmp_path, sqlite_registry, service) -> None:
    """``make chaos``: the service killed at each of its named crash points in turn (the stream
    in its own process for the trader's); orders, fills, positions, equity and the Delta tables
    still equal the backtest's, each record once."""
    points = tuple(p for p in POINTS if p.startswith(f"{service}."))
    report = run_live(spark, tmp_path, points, stream_process=service == "trader")
    assert [f for f, _ in report["faults_at"]] == list(points)


@pytest.mark.chaos
@pytest.mark.parametrize("fault", ["stream", "kafka", "redis", "redis-kill", "venue", "portfolio"])
def test_exactly_once_under_each_fault(spark, services, tmp_path, sqlite_registry, fault) -> None:
    """``make chaos``: each fault twice in one run, the stream in its own process; the final
    orders, fills, positions and equity still equal the backtest's (an uninterrupted run's)."""
    report = run_live(spark, tmp_path, (fault, fault), stream_process=True)
    assert len(report["faults_at"]) == 2


def test_trading_benchmark_short_version(services, tmp_path) -> None:
    """The trading benchmark's short run: the gate and the kernel timed, every order through the
    venue service filled once, every fill and close through the portfolio service into Delta."""
    from benchmarks import trading_latency

    assert trading_latency.main(["--short", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "trading_latency_short.json").read_text())["figures"]
    assert figures["gate"]["gate_us_per_order"] > 0 and figures["gate"]["kernel_us_per_decision"] > 0
    services_ = figures["services"]
    assert services_["fills"] == services_["orders"] == 1_000
    # the fills, then the second bar's 50 positions, and one equity row per bar
    assert services_["delta_rows"] == services_["fills"] + 50 + 2
