"""The live trading path's speed: the risk gate, the venue, the portfolio, and end-to-end latency.

    python -m benchmarks.trading_latency [--orders 200000] [--days 1] [--bar-seconds 2] [--short] [--out DIR]

1. the risk gate's cost per order (:class:`pipelines.trading.risk.RiskGate`), next to the
   backtest kernel's cost per decision (one symbol at one close, :func:`run_backtest`) measured
   in the same process: the reference the gate is compared with;
2. the venue's matching alone (in memory) and the venue service through Kafka and Redis
   (orders on the ``orders`` topic, one bar record, until every order has filled): orders/s;
3. the portfolio service through Kafka and Redis (fills and a bar's closes on ``fills``): fills/s;
4. latency on the whole path (``python -m streaming live`` on the research market of
   ``make demo``, paced at one bar every ``--bar-seconds``): from the Kafka append time of a bar's last tick to the order on
   ``orders`` (the decision at that bar), and from the last tick of the bar an order fills at
   (the fill cannot happen before that bar has closed) to the fill on ``fills`` and to the
   position update in Redis; p50/p99; and the trader's seconds per bar time (publish the bar,
   wait for the portfolio to close it, decide, send). Skipped without a champion (run ``make demo`` first).

Writes ``results/trading_latency.json`` (``--short``: ``trading_latency_short.json``, small
sizes and no end-to-end run: what the test suite runs).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Timer, write_result
from config import load_settings
from config.settings import PROJECT_ROOT
from pipelines.backtest.engine import Market, run_backtest
from pipelines.trading.orders import Order, order_id
from pipelines.trading.risk import Book, RiskGate
from pipelines.trading.rules import Costs
from pipelines.trading.strategies import load_strategy

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)


def _orders(n: int, symbols: list[str], seed: int = 3) -> list[Order]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = symbols[i % len(symbols)]
        ts = T0 + timedelta(seconds=int(i // len(symbols)) * 300)
        out.append(Order(order_id("bench", s, ts, "1"), ts, s, "buy" if rng.random() < 0.5 else "sell",
                         float(rng.integers(1, 20)), 100.0 * float(np.exp(rng.normal(0, 0.01))), "market", "bench", "1"))
    return out


def _orders_at(n: int, symbols: list[str], ts: datetime = T0) -> list[Order]:
    """``n`` orders all decided at ``ts`` (distinct ids: one strategy per order)."""
    rng = np.random.default_rng(4)
    return [Order(order_id(f"bench{i}", symbols[i % len(symbols)], ts, "1"), ts, symbols[i % len(symbols)],
                  "buy" if rng.random() < 0.5 else "sell", float(rng.integers(1, 20)), 100.0, "market", f"bench{i}", "1")
            for i in range(n)]


def bench_gate(settings, n: int) -> dict:
    """Risk-gate checks per second, and the backtest kernel's decisions per second."""
    symbols = [f"S{i:03d}" for i in range(50)]
    orders = _orders(n, symbols)
    book = Book(1_000_000.0, {s: 0.0 for s in symbols}, {s: (100.0, T0) for s in symbols})
    gate = RiskGate(settings.trading.limits)
    with Timer() as t:
        for o in orders:
            book.last_price[o.symbol] = (o.price, o.ts)
            gate.check(o, book)
    per_order_us = t.seconds / n * 1e6

    rng = np.random.default_rng(5)
    T, N = max(200, n // 50), 50
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    market = Market(pd.DatetimeIndex(pd.date_range("2024-01-02", periods=T, freq="5min")), symbols,
                    close * np.exp(rng.normal(0, 0.001, (T, N))), close, rng.uniform(1e4, 1e5, (T, N)),
                    rng.uniform(0.4, 0.6, (T, N)), np.full((T, N), 0.2), 252 * 78)
    strategy = load_strategy(settings.trading)
    run_backtest(market, strategy, settings.trading, 1e6)  # compile
    with Timer() as k:
        run_backtest(market, strategy, settings.trading, 1e6)
    per_decision_us = k.seconds / (T * N) * 1e6
    print(f"risk gate: {per_order_us:.2f} us/order ({1e6 / per_order_us:,.0f} orders/s); backtest kernel: "
          f"{per_decision_us:.3f} us per decision ({T}x{N}); the gate costs {per_order_us / per_decision_us:,.0f}x "
          "a kernel decision")
    return {"orders": n, "gate_us_per_order": round(per_order_us, 3), "gate_orders_per_s": round(1e6 / per_order_us),
            "kernel_decisions": T * N, "kernel_us_per_decision": round(per_decision_us, 4),
            "gate_vs_kernel": round(per_order_us / per_decision_us, 1)}


def bench_matching(settings, n: int) -> dict:
    """The venue's matching in memory: submit n orders, fill them at one bar."""
    from streaming.venue import PaperVenue

    symbols = [f"S{i:03d}" for i in range(50)]
    orders = _orders_at(n, symbols)
    venue = PaperVenue(Costs.from_settings(settings.trading), lambda _id: True)
    with Timer() as t:
        for o in orders:
            venue.submit(o, 1e9)
        for s in symbols:
            venue.on_bar(s, T0 + timedelta(days=1), 100.0)
    rate = len(orders) / t.seconds
    print(f"venue matching (memory): {rate:,.0f} orders/s")
    return {"orders": len(orders), "orders_per_s": round(rate)}


def _isolated(tag: str):
    return load_settings(env={**os.environ, "QL_DATA__SYNTHETIC__NAME": f"bench-{tag}",
                              "QL_KAFKA__TOPICS__BARS": f"bars-{tag}", "QL_KAFKA__TOPICS__ORDERS": f"orders-{tag}",
                              "QL_KAFKA__TOPICS__ORDERS_REJECTED": f"orders-{tag}.rejected",
                              "QL_KAFKA__TOPICS__FILLS": f"fills-{tag}"})


def bench_services(n: int) -> dict:
    """The venue and the portfolio services through the real Kafka and Redis: n orders, one bar."""
    from streaming import live
    from streaming.portfolio_service import PortfolioService
    from streaming.venue_service import VenueService, order_record

    tag = uuid.uuid4().hex[:8]
    settings = _isolated(tag)
    live.fresh_run(settings)
    symbols = [f"S{i:03d}" for i in range(50)]
    outbox = live.Outbox(settings, "stream", signer="trader")
    topics = settings.kafka.topics
    bar = lambda ts, ids=(): {"ts": live.iso(ts), "after_decision": {"order_ids": list(ids)},  # noqa: E731
                              "bars": [{"symbol": s, "open": 100.0, "close": 100.0, "volume": 1e9} for s in symbols]}
    outbox.send_confirmed(topics.bars, "b0", bar(T0))
    venue = VenueService(settings)
    while not venue.client.scard(venue.k("symbols")):
        venue.step()
    orders = _orders_at(n, symbols)
    for o in orders:
        outbox.send(topics.orders, o.order_id, order_record(o, 1e9))
    outbox.confirm()
    later = T0 + timedelta(minutes=5)
    outbox.send_confirmed(topics.bars, "b1", bar(later, [o.order_id for o in orders]))  # as the trader sends it
    with Timer() as tv:
        while int(venue.client.get(venue.k("last_bar_us")) or -1) < live.micros(later):
            venue.step()
    filled = venue.client.hlen(venue.k("orders"))
    venue.close()
    portfolio = PortfolioService(settings)
    with Timer() as tp:
        while portfolio.book.as_of_us() < live.micros(later):
            portfolio.step()
    applied = int(portfolio.client.scard(f"{portfolio.book.prefix}:fills"))
    with Timer() as tf:
        rows = portfolio.flush()
    portfolio.close()
    outbox.close()
    figures = {"orders": len(orders), "venue_orders_per_s": round(filled / tv.seconds),
               "fills": applied, "portfolio_fills_per_s": round(applied / tp.seconds),
               "delta_rows": rows, "delta_write_s": round(tf.seconds, 3)}
    print(f"venue service: {figures['venue_orders_per_s']:,} orders/s (claim, state, fill, publish); portfolio "
          f"service: {figures['portfolio_fills_per_s']:,} fills/s; Delta: {rows} rows in {tf.seconds:.2f} s")
    return figures


def _pct(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0}
    return {"n": int(len(values)), "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1), "max_ms": round(float(values.max()), 1)}


def bench_latency(days: int, bar_seconds: float) -> dict:
    """``python -m streaming live`` on the demo market for ``days`` days paced at one bar every
    ``bar_seconds`` of wall time, then latencies from its tables and topics."""
    from kafka import KafkaConsumer

    from pipelines import lake
    from pipelines.lake.spark import get_spark
    from pipelines.lake.tables import LIVE_BARS, LIVE_FILLS, LIVE_ORDERS
    from streaming.kafka_io import ADMIN, client_options
    from streaming.scoring import champion_version

    settings = load_settings()
    if champion_version(settings) is None:
        return {"skipped": "no version holds @champion (run `make demo` first)"}
    cfg = settings.data.synthetic
    minutes = days * cfg.bars_per_day * bar_seconds / 60
    run = subprocess.run([sys.executable, "-m", "streaming", "live", "--days", str(days), "--minutes", f"{minutes:.3f}",
                          "--drain", "10"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        return {"failed": run.stdout[-2000:] + run.stderr[-2000:]}
    print(run.stdout[-1500:])
    spark = get_spark(settings)
    bars = lake.read(spark, LIVE_BARS.path(settings)).select("symbol", "ts", "last_append").toPandas()
    orders = lake.read(spark, LIVE_ORDERS.path(settings)).where("status = 'SUBMITTED'") \
        .select("order_id", "symbol", "ts").toPandas()
    fills = lake.read(spark, LIVE_FILLS.path(settings)).select("fill_id", "order_id", "symbol", "ts",
                                                                "applied_at").toPandas()

    def appended(topic: str) -> pd.Series:
        consumer = KafkaConsumer(topic, **client_options(settings, ADMIN), auto_offset_reset="earliest",
                                 consumer_timeout_ms=3000)
        stamps = {m.key.decode(): m.timestamp for m in consumer if m.key}
        consumer.close()
        return pd.Series(stamps, dtype="float64")

    on_orders, on_fills = appended(settings.kafka.topics.orders), appended(settings.kafka.topics.fills)
    last_tick = bars.set_index(["symbol", "ts"])["last_append"]
    tick_ms = lambda frame: pd.to_datetime(  # noqa: E731
        last_tick.reindex(pd.MultiIndex.from_frame(frame[["symbol", "ts"]])).to_numpy()).astype("int64") / 1e6
    to_order = on_orders.reindex(orders["order_id"]).to_numpy() - tick_ms(orders)
    to_fill = on_fills.reindex(fills["fill_id"]).to_numpy() - tick_ms(fills)
    to_position = pd.to_datetime(fills["applied_at"]).astype("int64").to_numpy() / 1e6 - tick_ms(fills)
    from streaming.status import read_status

    status = read_status(settings) or {}
    phases = status.get("phase_seconds", {})
    trading_s = phases.get("trading", math.nan)
    figures = {"days": days, "bar_every_s": bar_seconds, "minutes": round(minutes, 2), "bars": len(bars),
               "orders": len(orders), "fills": len(fills), "micro_batches": status.get("batches"),
               "trading_seconds_per_bar_time": round(trading_s / max(1, status.get("decisions", 0)), 4),
               "orders_write_seconds_per_batch": round(phases.get("orders_write", math.nan)
                                                       / max(1, status.get("batches", 0)), 3),
               "last_tick_to_order": _pct(to_order), "fill_bar_last_tick_to_fill": _pct(to_fill),
               "fill_bar_last_tick_to_redis_position": _pct(to_position)}
    for name in ("last_tick_to_order", "fill_bar_last_tick_to_fill", "fill_bar_last_tick_to_redis_position"):
        print(f"{name}: {figures[name]}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trading_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--service-orders", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=1, help="trading days of the paced live run")
    parser.add_argument("--bar-seconds", type=float, default=2.0, help="wall seconds per bar in the paced run")
    parser.add_argument("--short", action="store_true", help="small sizes, no end-to-end run: the suite's version")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    n = 5_000 if args.short else args.orders
    figures = {"gate": bench_gate(settings, n), "venue_matching": bench_matching(settings, n),
               "services": bench_services(1_000 if args.short else args.service_orders)}
    figures["latency"] = {"skipped": "--short"} if args.short else bench_latency(args.days, args.bar_seconds)
    write_result("trading_latency_short" if args.short else "trading_latency", figures, args.out)
    return 0 if all(not (isinstance(v, dict) and "failed" in v) for v in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
