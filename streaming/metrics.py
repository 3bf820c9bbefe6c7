"""Prometheus metrics of the live path: one ``/metrics`` endpoint per process.

The stream job, the venue and the portfolio each serve their own (``platform.metrics`` ports,
:func:`serve`); the API serves its own on its port. Prometheus scrapes them all
(``python -m infra up`` writes the scrape configuration) and the alert rules of
``docker/prometheus/alerts.yml`` read these names, so renaming one is a change to both.

Counters count since the process started (Prometheus' ``rate()`` and ``increase()`` ride out a
restart); gauges are the latest value. Every name starts with ``quantlake_``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Literal

import pandas as pd
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from config import Settings

log = logging.getLogger(__name__)

Role = Literal["stream", "venue", "portfolio"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STATES = ("ACTIVE", "REDUCING", "HALTED")

# the stream job ---------------------------------------------------------------------------------
TICKS_IN = Counter("quantlake_ticks_in", "Ticks read from market-data (valid and dead-lettered)")
DEAD_LETTERED = Counter("quantlake_ticks_dead_lettered", "Ticks sent to the dead-letter topic, by reason", ["reason"])
BATCH_SECONDS = Histogram("quantlake_microbatch_seconds", "Wall time of one micro-batch", buckets=LATENCY_BUCKETS)
LAST_BATCH = Gauge("quantlake_last_batch_timestamp_seconds", "Unix time the last micro-batch finished")
CONSUMER_LAG = Gauge("quantlake_kafka_consumer_lag", "Offsets of market-data not yet processed (Spark's latest - "
                     "processed end offset, summed over partitions)", ["topic"])
BARS = Counter("quantlake_bars", "Bars built by the stream")
PREDICTIONS = Counter("quantlake_predictions", "Predictions scored by the champion")
PREDICTION_LATENCY = Histogram("quantlake_prediction_latency_seconds", "From a bar's last tick arriving to its "
                               "prediction", buckets=LATENCY_BUCKETS)
ORDERS = Counter("quantlake_orders", "Orders decided by the trader: sent to the venue or rejected by the risk "
                 "gate (limit: the limit hit)", ["status", "limit"])
STRATEGY_ERRORS = Counter("quantlake_strategy_errors", "Decisions skipped because the strategy raised or returned "
                          "targets it cannot trade (NaN, inf, the wrong shape)", ["strategy"])
TRADING_STATE = Gauge("quantlake_trading_state", "1 for the current trading state", ["state"])

# the venue ----------------------------------------------------------------------------------------
VENUE_ORDERS = Counter("quantlake_venue_orders", "Orders at the venue by the status they reached", ["status"])
FILLS = Counter("quantlake_fills", "Fills published by the venue")
SEND_FAILURES = Counter("quantlake_kafka_send_failures", "Steps whose Kafka records were not acknowledged in time "
                        "(retried; nothing was recorded as done)", ["step"])

# the portfolio ------------------------------------------------------------------------------------
FILLS_APPLIED = Counter("quantlake_fills_applied", "Fills applied to the Redis portfolio (once per fill id)")
EQUITY = Gauge("quantlake_equity", "Account equity at the last close")
PEAK_EQUITY = Gauge("quantlake_peak_equity", "High-water mark of equity at closes")
DRAWDOWN = Gauge("quantlake_drawdown", "1 - equity / peak equity")
BREAKER = Gauge("quantlake_breaker_drawdown", "The drawdown at which the breaker halts (trading.risk.max_drawdown)")
GROSS_EXPOSURE = Gauge("quantlake_gross_exposure_ratio", "Sum of |position| x last price over equity")
PORTFOLIO_BAR = Gauge("quantlake_portfolio_last_bar_timestamp_seconds", "Event time of the last bar closed")


def _owned() -> dict[str, list]:
    return {"stream": [TICKS_IN, DEAD_LETTERED, BATCH_SECONDS, LAST_BATCH, CONSUMER_LAG, BARS, PREDICTIONS,
                       PREDICTION_LATENCY, ORDERS, STRATEGY_ERRORS, TRADING_STATE],
            "venue": [VENUE_ORDERS, FILLS],
            "portfolio": [FILLS_APPLIED, EQUITY, PEAK_EQUITY, DRAWDOWN, BREAKER, GROSS_EXPOSURE, PORTFOLIO_BAR,
                          TRADING_STATE],
            "api": [TRADING_STATE]}


def keep_only(role: Role | Literal["api"]) -> None:
    """Unregister the other processes' metrics from this one (every process imports them all;
    a venue exporting ``quantlake_equity 0`` would only mislead)."""
    owned = {id(m) for m in _owned()[role]}
    for metrics in _owned().values():
        for metric in metrics:
            if id(metric) not in owned:
                try:
                    REGISTRY.unregister(metric)
                except KeyError:  # unregistered before
                    pass


def serve(settings: Settings, role: Role) -> int:
    """Serve this process's metrics (its own only) on ``platform.metrics.<role>_port``; return the
    port (0 when it is taken: the process keeps running, without metrics, and says so)."""
    keep_only(role)
    cfg = settings.platform.metrics
    port = getattr(cfg, f"{role}_port")
    try:
        start_http_server(port, addr=cfg.host)
    except OSError as error:
        log.warning("metrics for %s not served on %s:%d: %s", role, cfg.host, port, error)
        return 0
    return port


def set_trading_state(state: str) -> None:
    for name in STATES:
        TRADING_STATE.labels(name).set(1.0 if name == state else 0.0)


def observe_batch(counts: dict[str, int], bars: pd.DataFrame, predictions: pd.DataFrame, decisions: list,
                  seconds: float, finished_at: float, state: str | None) -> None:
    """One micro-batch of the stream job (``counts``: ticks by dead-letter reason, "" = valid)."""
    TICKS_IN.inc(sum(counts.values()))
    for reason, n in counts.items():
        for part in reason.split("; ") if reason else []:
            DEAD_LETTERED.labels(part).inc(n)
    BATCH_SECONDS.observe(seconds)
    LAST_BATCH.set(finished_at)
    BARS.inc(len(bars))
    PREDICTIONS.inc(len(predictions))
    if not predictions.empty and {"scored_at", "last_append"} <= set(predictions.columns):
        waited = (pd.to_datetime(predictions["scored_at"]) - pd.to_datetime(predictions["last_append"])).dt.total_seconds()
        for value in waited.dropna():
            PREDICTION_LATENCY.observe(max(float(value), 0.0))
    for decision in decisions:
        for _order, _volume, limit, _reason in decision.orders:
            ORDERS.labels("rejected" if limit else "sent", limit or "").inc()
    if state:
        set_trading_state(state)


def observe_progress(progress: dict | None) -> None:
    """Consumer lag from a streaming query's last progress: latest offsets minus the offsets the
    last batch processed up to, per topic."""
    if not progress:
        return
    for source in progress.get("sources") or []:
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        for topic, partitions in latest.items():
            lag = sum(max(0, int(o) - int(end.get(topic, {}).get(p, o))) for p, o in partitions.items())
            CONSUMER_LAG.labels(topic).set(lag)


def _offsets(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def observe_account(equity: float, peak: float, gross: float, bar_ts: float | None, breaker: float) -> None:
    """The portfolio's figures after a close."""
    EQUITY.set(equity)
    PEAK_EQUITY.set(peak)
    DRAWDOWN.set(1.0 - equity / peak if peak > 0 else 0.0)
    GROSS_EXPOSURE.set(gross / equity if equity > 0 else math.nan)
    BREAKER.set(breaker)
    if bar_ts is not None:
        PORTFOLIO_BAR.set(bar_ts)
