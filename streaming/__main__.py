"""``python -m streaming feed|run|venue|portfolio|api|live|status|report|stop``: the live path.

* ``feed``: publish the configured dataset's live ticks to ``market-data`` (synthetic: the
  market continued past the research period).
* ``run``: the Structured Streaming job (resumes from its checkpoint; ``--fresh`` starts a new
  one at the topic's end).
* ``venue`` / ``portfolio``: the paper venue and the Redis portfolio services
  (:mod:`streaming.venue_service`, :mod:`streaming.portfolio_service`); the stream's trader
  sends them orders and bars while a portfolio runs.
* ``api``: the REST/WebSocket API and the live page (:mod:`streaming.api`; keys with
  ``python -m streaming.api keys create --scope read``).
* ``live``: a fresh paper account, the venue and the portfolio as child processes, the feed
  and the stream in this process for a few minutes (``make live``); then ticks, predictions,
  orders (sent / rejected by limit), fills, positions, equity and P&L, and the live-accuracy
  report. Ctrl-C stops cleanly.
* ``status``: the running figures; ``report``: live accuracy against the bound and the
  walk-forward figure; ``stop``: stop a running feed and stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import shutil
import sys
import threading
import time
from pathlib import Path

from config.cli import guarded, settings_with_flags

FLAGS = {"days": "QL_KAFKA__FEED__DAYS", "speed": "QL_KAFKA__FEED__SPEED",
         "trigger": "QL_KAFKA__STREAM__TRIGGER_SECONDS"}


def _stop_flag() -> threading.Event:
    """An event set by SIGTERM or Ctrl-C (the second Ctrl-C interrupts for real)."""
    event = threading.Event()

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping cleanly (again to abort)", file=sys.stderr)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event


def _fresh(settings) -> None:
    """Forget the previous live run: its checkpoint, figures and live tables."""
    from pipelines.lake.tables import (LIVE_BARS, LIVE_DEAD_LETTERS, LIVE_EQUITY, LIVE_FEATURES, LIVE_FILLS,
                                       LIVE_ORDERS, LIVE_POSITIONS, LIVE_PREDICTIONS)
    from streaming.live import fresh_run
    from streaming.status import live_dir

    folder = live_dir(settings)
    for name in ("checkpoint", "status.json", "feed.json"):
        target = folder / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    for table in (LIVE_BARS, LIVE_FEATURES, LIVE_PREDICTIONS, LIVE_DEAD_LETTERS, LIVE_ORDERS, LIVE_FILLS,
                  LIVE_POSITIONS, LIVE_EQUITY):
        shutil.rmtree(table.path(settings), ignore_errors=True)
    fresh_run(settings)  # a new paper account; the venue and the portfolio read from the topics' ends


def _print_figures(settings) -> None:
    from streaming.status import read_status

    status = read_status(settings)
    if status is None:
        print("no live figures yet (the stream has not finished a micro-batch)")
        return
    dead = status["dead_letters"]
    print(f"ticks in {status['ticks_in']:,}  valid {status['ticks_valid']:,}  "
          f"dead-lettered {sum(dead.values()):,}  bars {status['bars']:,} "
          f"(warming up {status['warming_bars']:,})  feature rows {status['feature_rows']:,}  "
          f"predictions {status['predictions']:,}")
    for reason, n in sorted(dead.items(), key=lambda kv: -kv[1]):
        print(f"  dead letter: {reason}: {n:,}")
    print(f"last batch {status['last_batch_id']} at {status['last_batch_at']} ({status['last_batch_seconds']} s), "
          f"newest bar {status['last_bar_ts']}, watermark {status['watermark']}")
    print(f"model: {status['model'] or 'none'}" + (f"  note: {status['note']}" if status["note"] else ""))
    rejected = status.get("orders_rejected", {})
    print(f"decisions {status.get('decisions', 0):,}  orders sent {status.get('orders_sent', 0):,}  "
          f"rejected by the risk gate {sum(rejected.values()):,}"
          + "".join(f"\n  rejected: {limit}: {n:,}" for limit, n in sorted(rejected.items(), key=lambda kv: -kv[1])))


def _print_trading(settings) -> None:
    """The venue's orders by state, the fills, the positions, equity and P&L."""
    import re
    from collections import Counter

    from streaming.live import account, redis_client
    from streaming.portfolio import RedisPortfolio
    from streaming.venue_service import order_states

    states = order_states(settings)
    by_status = Counter(s.status.value for s in states)
    print("venue orders: " + (", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items())) or "none"))
    # reasons by kind: the numbers in them replaced by '#'
    reasons = Counter(re.sub(r"\d[\d.:eE+-]*", "#", s.reason) for s in states
                      if s.status.value in ("REJECTED", "CANCELLED") and s.reason)
    for reason, n in reasons.most_common(5):
        print(f"  {n:,} x {reason}")
    client = redis_client(settings)
    try:
        acct = RedisPortfolio(client, account(settings)).snapshot()
    except KeyError:
        print("portfolio: no account")
        return
    finally:
        client.close()
    fills = len([s for s in states if s.filled_qty > 0])
    initial = settings.trading.initial_capital
    print(f"fills {fills:,}  fees {acct.fees:,.2f}  as of {acct.ts or '-'}")
    held = {s: p for s, p in acct.positions.items() if p.qty}
    for p in sorted(held.values(), key=lambda p: p.symbol):
        print(f"  {p.symbol:10s} qty {p.qty:12,.2f}  avg_px_open {p.avg_px_open:10.4f}  last_px {p.last_px:10.4f}  "
              f"unrealized {p.unrealized_pnl:10,.2f}  realized {p.realized_pnl:10,.2f}")
    print(f"cash {acct.cash:,.2f}  equity {acct.equity:,.2f}  P&L {acct.equity - initial:+,.2f} "
          f"({acct.equity / initial - 1:+.3%})  realized {acct.realized_pnl:+,.2f}  peak {acct.peak_equity:,.2f}  "
          f"positions open {len(held)}")


def _cmd_feed(args, settings) -> int:
    from streaming.feed import feed_ticks, publish, write_facts
    from streaming.status import write_pid

    stop = _stop_flag()
    write_pid(settings, "feed")
    ticks, facts = feed_ticks(settings)
    write_facts(settings, facts)
    result = publish(settings, ticks, settings.kafka.feed.speed, should_stop=stop.is_set)
    print(f"published {result.ticks:,} ticks ({result.first_ts} .. {result.last_ts}) in {result.seconds:.1f} s "
          f"({result.rate:,.0f} ticks/s) to {settings.kafka.topics.market_data}")
    return 0


def _run_stream(settings, stop: threading.Event, starting_offsets: str | None = None,
                idle_seconds: float | None = None, feeder: threading.Thread | None = None):
    """Run the job until ``stop`` is set (or, with a ``feeder``, until it is done and no tick
    arrived for ``idle_seconds``); raise the query's error."""
    from pipelines.lake.spark import get_spark
    from streaming import job, metrics
    from streaming.status import read_status

    spark = get_spark(settings)
    spark.sparkContext.setLogLevel("ERROR")
    metrics.serve(settings, "stream")
    query, sink = job.start(spark, settings, starting_offsets=starting_offsets)
    print(f"stream started: {settings.kafka.topics.market_data} -> live tables of {settings.data.dataset} "
          f"(checkpoint {job.checkpoint_dir(settings)}); serving {sink.scorer.champion.name + ' v' + sink.scorer.champion.version if sink.scorer.champion else 'no model'}", flush=True)
    last_print, last_rows, idle_since = time.monotonic(), -1, time.monotonic()
    try:
        while query.isActive and not stop.is_set():
            time.sleep(0.5)
            metrics.observe_progress(query.lastProgress)
            status = read_status(settings) or {}
            if feeder is not None and not feeder.is_alive() and status.get("ticks_in", 0) != last_rows:
                last_rows, idle_since = status.get("ticks_in", 0), time.monotonic()
            if idle_seconds and feeder is not None and not feeder.is_alive() \
                    and time.monotonic() - idle_since > idle_seconds:
                break
            if time.monotonic() - last_print > 15 and status:
                last_print = time.monotonic()
                print(f"  batch {status['last_batch_id']}: ticks {status['ticks_in']:,}, bars {status['bars']:,}, "
                      f"predictions {status['predictions']:,}, newest bar {status['last_bar_ts']}", flush=True)
    finally:
        job.stop_between_batches(query)
    if query.exception() is not None:
        raise RuntimeError(f"the live query failed: {query.exception()}")
    return query


def _cmd_run(args, settings) -> int:
    from streaming.status import write_pid

    stop = _stop_flag()
    write_pid(settings, "stream")
    if args.fresh:
        _fresh(settings)
    _run_stream(settings, stop, "latest" if args.fresh else None)
    _print_figures(settings)
    return 0


def _cmd_live(args, settings) -> int:
    """Stream + feed for ``--minutes``, then figures and the report."""
    from streaming.feed import feed_ticks, publish, write_facts
    from streaming.report import live_report
    from streaming.status import read_status, write_pid

    _require_research(settings)
    stop = _stop_flag()
    write_pid(settings, "stream")
    ticks, facts = feed_ticks(settings)
    span = (ticks["ts"].iloc[-1] - ticks["ts"].iloc[0]).total_seconds()
    speed = span / (args.minutes * 60)
    print(f"feed: {len(ticks):,} ticks over {facts['first_bar']} .. {facts['last_bar']}, at {speed:,.0f}x real time "
          f"(~{args.minutes} min)")

    def feeder_body():
        while read_status(settings) is None and not stop.is_set():  # the stream's first batch fixed its offsets
            time.sleep(0.5)
        write_facts(settings, facts)
        publish(settings, ticks, speed, should_stop=stop.is_set, progress=False)

    _fresh(settings)  # before the feeder looks for the new stream's first batch
    services = _start_services(settings)
    feeder = threading.Thread(target=feeder_body, name="feed", daemon=True)
    feeder.start()
    try:
        _run_stream(settings, stop, "latest", idle_seconds=args.drain, feeder=feeder)
        _settle(settings)
    finally:
        _stop_services(services)
    print()
    _print_figures(settings)
    _print_trading(settings)
    print()
    print(live_report(settings).text())
    return 0


def _start_services(settings):
    """The venue and the portfolio as child processes (their logs under .state/logs)."""
    import os
    import subprocess

    from streaming.live import alive, redis_client, wait_for

    logs = settings.platform.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children = {}
    for role in ("venue", "portfolio"):
        with open(logs / f"live-{role}.log", "ab") as out:
            children[role] = subprocess.Popen([sys.executable, "-m", "streaming", role], stdout=out,
                                              stderr=subprocess.STDOUT, env=os.environ.copy())
    client = redis_client(settings)
    try:
        for role, child in children.items():
            if not wait_for(lambda: alive(client, settings, role) or child.poll() is not None, 120, 0.2) \
                    or child.poll() is not None:
                raise RuntimeError(f"the {role} service did not start: see {logs / f'live-{role}.log'}")
    finally:
        client.close()
    print(f"venue (pid {children['venue'].pid}) and portfolio (pid {children['portfolio'].pid}) running; "
          f"logs in {logs}")
    return children


def _settle(settings, timeout_s: float = 30.0) -> None:
    """Wait until the portfolio has closed the last bar the stream published."""
    from streaming.live import account, micros, redis_client, wait_for
    from streaming.portfolio import RedisPortfolio
    from streaming.status import read_status

    status = read_status(settings) or {}
    if not status.get("last_bar_ts"):
        return
    last = micros(status["last_bar_ts"])
    client = redis_client(settings)
    try:
        book = RedisPortfolio(client, account(settings))
        wait_for(lambda: book.as_of_us() >= last, timeout_s, 0.1)
    finally:
        client.close()


def _stop_services(children) -> None:
    import subprocess

    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for child in children.values():
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()


def _require_research(settings) -> None:
    """``live`` continues ``make demo``'s research period: its silver bars warm the stream's
    state and its champion scores; say so instead of streaming bars nobody can score."""
    from config.errors import UserError
    from pipelines.lake.tables import SILVER_BARS
    from streaming.scoring import champion_version

    if settings.data.source == "synthetic" and not (Path(SILVER_BARS.path(settings)) / "_delta_log").exists():
        raise UserError(f"no silver bars for dataset {settings.data.dataset!r} at {SILVER_BARS.path(settings)}: "
                        "`make live` continues the research period of `make demo`; run `make demo` first")
    if champion_version(settings) is None:
        raise UserError(f"no version of {settings.platform.mlflow.registered_model} holds @champion: "
                        "run `make demo` first (or `python -m streaming run` for bars and features only)")


def _service(args, settings, role: str) -> int:
    """Run the venue or the portfolio until SIGTERM / Ctrl-C."""
    from streaming.status import write_pid

    stop = _stop_flag()
    write_pid(settings, role)
    if role == "venue":
        from streaming.venue_service import VenueService as Service
    else:
        from streaming.portfolio_service import PortfolioService as Service
    from streaming import metrics

    port = metrics.serve(settings, role)
    service = Service(settings)
    print(f"{role} metrics on port {port}" if port else f"{role}: metrics not served (port taken)", flush=True)
    print(f"{role} running for account {settings.trading.live.account or settings.data.dataset}", flush=True)
    try:
        service.run(stop.is_set)
    finally:
        service.close()
    print(f"{role} stopped", flush=True)
    return 0


def _cmd_status(args, settings) -> int:
    from streaming.status import live_dir, running_pid

    for role in ("feed", "stream", "venue", "portfolio"):
        pid = running_pid(settings, role)
        print(f"{role:9s} {'running (pid %d)' % pid if pid else 'not running'}")
    _print_figures(settings)
    facts = live_dir(settings) / "feed.json"
    if facts.exists():
        print("feed facts:", json.dumps(json.loads(facts.read_text())))
    return 0


def _cmd_report(args, settings) -> int:
    from streaming.report import live_report

    print(live_report(settings).text())
    return 0


def _cmd_stop(args, settings) -> int:
    from streaming.status import stop

    for role in ("feed", "stream", "venue", "portfolio"):
        print(f"{role}: {'stopped' if stop(settings, role) else 'was not running'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    feed = sub.add_parser("feed", help="publish live ticks to market-data")
    feed.add_argument("--days", type=int, help="synthetic: trading days past the research period")
    feed.add_argument("--speed", type=float, help="1 = real time, k = k x real time, 0 = as fast as possible")
    run = sub.add_parser("run", help="the Structured Streaming job")
    run.add_argument("--fresh", action="store_true", help="new checkpoint and live tables, read from the topic's end")
    run.add_argument("--trigger", type=float, help="micro-batch interval in seconds")
    sub.add_parser("venue", help="the paper venue: orders + bars -> fills")
    sub.add_parser("portfolio", help="the Redis portfolio: fills + bar closes -> positions, equity, Delta tables")
    sub.add_parser("api", help="the REST/WebSocket API and the live page on api.host:api.port")
    live = sub.add_parser("live", help="feed + stream + venue + portfolio for a few minutes, then the figures")
    live.add_argument("--minutes", type=float, default=3.0)
    live.add_argument("--days", type=int, help="synthetic: trading days past the research period")
    live.add_argument("--drain", type=float, default=20.0, help="seconds without new ticks before stopping")
    live.add_argument("--trigger", type=float, help="micro-batch interval in seconds")
    sub.add_parser("status", help="running figures")
    sub.add_parser("report", help="live accuracy against the Bayes bound and the walk-forward figure")
    sub.add_parser("stop", help="stop a running feed, stream, venue and portfolio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "kafka", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def body() -> int:
        settings = settings_with_flags(vars(args), FLAGS)
        if args.command in ("venue", "portfolio"):
            return _service(args, settings, args.command)
        if args.command == "api":
            from streaming.api.__main__ import serve

            return serve(settings)
        return {"feed": _cmd_feed, "run": _cmd_run, "live": _cmd_live, "status": _cmd_status,
                "report": _cmd_report, "stop": _cmd_stop}[args.command](args, settings)

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
