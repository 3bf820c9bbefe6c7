"""The market-data feed: ticks onto the ``market-data`` topic, paced like a market.

Sources:

* ``synthetic`` (the default dataset): the research market continued ``feed.days`` trading
  days past its last bar (:func:`~pipelines.ingest.sources.synthetic.continue_market`: same
  symbols, loadings, volatility state and planted signal, fresh draws), so the champion scores
  bars it never saw. The continuation's Bayes bound is written to ``feed.json`` beside the
  stream's status, for the live-accuracy report.
* ``files`` with ``kind: ticks``: the configured files (e.g. the Binance BTCUSDT trades in
  ``../shared/data``), in time order.
* ``files`` with ``kind: bars`` (e.g. the S&P 500 daily panel): each bar replayed as four ticks,
  open, high, low and close, whose sizes add up to its volume, so the stream rebuilds the bar
  (:func:`bar_ticks`).

Pace: ``speed`` 1 replays at real time (the gaps between event times), k at k x real time,
0 as fast as the producer goes. The producer is idempotent with ``acks=all`` and keys by
symbol, so a symbol's ticks keep their order within its partition.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from config import Settings
from pipelines.ingest.sources import source_for
from pipelines.ingest.sources.synthetic import SyntheticSource, continue_market, generate_ticks
from pipelines.progress import progress_bar
from streaming.kafka_io import ensure_topics, make_producer
from streaming.records import encode
from streaming.status import live_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedResult:
    ticks: int
    seconds: float
    first_ts: str
    last_ts: str

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds if self.seconds else float("inf")


def synthetic_continuation(settings: Settings, days: int) -> tuple[pd.DataFrame, dict]:
    """Ticks of the synthetic market's next ``days`` trading days, and that period's facts
    (Bayes bound, realized oracle accuracy, span)."""
    cfg = settings.data.synthetic
    source = SyntheticSource(cfg)
    research = source.market()
    live = continue_market(cfg, research, days)
    first_seq = int(generate_ticks(research, cfg.model_copy(update={"bad_tick_rate": 0.0}))["seq"].max()) + 1
    ticks = generate_ticks(live, cfg, seed=[cfg.seed, 2], first_seq=first_seq)
    facts = {"dataset": cfg.name, "kind": "synthetic continuation", "days": days,
             "bayes_accuracy": live.bayes_accuracy, "oracle_accuracy": live.oracle_accuracy,
             "first_bar": live.timestamps[0].isoformat(), "last_bar": live.timestamps[-1].isoformat(),
             "symbols": len(live.symbols), "ticks": len(ticks)}
    return ticks.sort_values(["ts", "symbol", "seq"], kind="stable").reset_index(drop=True), facts


def bar_ticks(bars: pd.DataFrame, bar_minutes: int, source: str, half_spread_bps: float = 1.0) -> pd.DataFrame:
    """Four ticks per bar (``symbol``, ``ts`` the bar's start, ``open``, ``high``, ``low``,
    ``close``, ``volume``): the open just after the bar starts, the high at a quarter of it, the
    low at half, the close just before it ends, each a quarter of the volume, quoted
    ``half_spread_bps`` around the price. The stream's bar of these ticks is the bar."""
    bars = bars.sort_values(["ts", "symbol"]).reset_index(drop=True)
    start = pd.to_datetime(bars["ts"])
    start = start.dt.tz_localize("UTC") if start.dt.tz is None else start.dt.tz_convert("UTC")
    span = pd.Timedelta(minutes=bar_minutes)
    parts = []
    for k, (column, at) in enumerate((("open", 1e-6), ("high", 0.25), ("low", 0.5), ("close", 1 - 1e-6))):
        price = bars[column].astype(float)
        parts.append(pd.DataFrame({
            "symbol": bars["symbol"], "ts": (start + span * at).dt.floor("us"), "order": k, "price": price,
            "size": bars["volume"].astype(float) / 4.0, "bid": price * (1 - half_spread_bps / 1e4),
            "ask": price * (1 + half_spread_bps / 1e4), "side": "buy" if k % 2 else "sell", "source": source}))
    ticks = pd.concat(parts).sort_values(["ts", "symbol", "order"], kind="stable").reset_index(drop=True)
    ticks["seq"] = ticks.groupby("symbol").cumcount().astype("int64")
    return ticks[["symbol", "ts", "seq", "price", "size", "bid", "ask", "side", "source"]]


def file_ticks(settings: Settings, spark) -> tuple[pd.DataFrame, dict]:
    """The configured ``files`` source's ticks in time order (a bars source: four ticks a bar)."""
    source = source_for(settings.data)
    start, end = source.date_range(spark)
    if source.kind == "bars":
        from pipelines.ingest.sources.base import interval_minutes

        bars = source.read(spark, start, end).toPandas()
        ticks = bar_ticks(bars, interval_minutes(settings.data.files.interval), settings.data.dataset)
        return ticks, {"dataset": settings.data.dataset, "kind": "files (bars as ticks)", "ticks": len(ticks),
                       "first_bar": ticks["ts"].min().isoformat(), "last_bar": ticks["ts"].max().isoformat()}
    ticks = source.read(spark, start, end).toPandas()
    if "source" not in ticks:
        ticks["source"] = settings.data.dataset
    ticks["ts"] = pd.to_datetime(ticks["ts"]).dt.tz_localize("UTC")
    ticks = ticks.sort_values(["ts", "symbol", "seq"], kind="stable").reset_index(drop=True)
    if ticks["seq"].isna().all():  # files without sequence numbers: number each symbol's ticks in time order
        ticks["seq"] = ticks.groupby("symbol").cumcount().astype("int64")
    return ticks, {"dataset": settings.data.dataset, "kind": "files", "ticks": len(ticks),
                   "first_bar": ticks["ts"].min().isoformat(), "last_bar": ticks["ts"].max().isoformat()}


def publish(settings: Settings, ticks: pd.DataFrame, speed: float = 0.0, topic: str | None = None,
            should_stop: Callable[[], bool] = lambda: False, progress: bool = True, user: str = "feed") -> FeedResult:
    """Send ``ticks`` (time-ordered) to Kafka at ``speed`` x real time (0: as fast as possible),
    as Kafka user ``user`` (the feed may write market-data only: another topic needs ``admin``)."""
    topic = topic or settings.kafka.topics.market_data
    ensure_topics(settings, [topic], user)
    producer = make_producer(settings, user, enable_idempotence=True, key_serializer=None, value_serializer=None)
    chunk = settings.kafka.feed.batch_ticks
    started = time.monotonic()
    # when each tick is due, in seconds after the start (all at once when speed is 0)
    event = pd.to_datetime(ticks["ts"])
    due = ((event - event.iloc[0]).dt.total_seconds().to_numpy() / speed) if speed > 0 and len(ticks) else None
    sent = 0
    bar = progress_bar(total=len(ticks), desc="feed", unit="tick", enabled=progress)
    try:
        while sent < len(ticks) and not should_stop():
            upto = min(len(ticks), sent + chunk)
            if due is not None:
                now = time.monotonic() - started
                upto = min(upto, int(np.searchsorted(due, now, side="right")))
                if upto <= sent:
                    time.sleep(min(due[sent] - now, 0.05))
                    continue
            for key, value in encode(ticks.iloc[sent:upto]):
                producer.send(topic, key=key, value=value)
            bar.update(upto - sent)
            sent = upto
        producer.flush()
    finally:
        producer.close()
        bar.close()
    return FeedResult(sent, time.monotonic() - started, str(ticks["ts"].iloc[0]) if sent else "",
                      str(ticks["ts"].iloc[sent - 1]) if sent else "")


def feed_ticks(settings: Settings, spark=None) -> tuple[pd.DataFrame, dict]:
    """The configured dataset's feed: the synthetic continuation (``feed.days``) or the files' ticks."""
    if settings.data.source == "synthetic":
        return synthetic_continuation(settings, settings.kafka.feed.days)
    if spark is None:
        from pipelines.lake.spark import get_spark

        spark = get_spark(settings)
    return file_ticks(settings, spark)


def write_facts(settings: Settings, facts: dict) -> None:
    path = live_dir(settings) / "feed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**facts, "written_at": date.today().isoformat()}, indent=2, default=str))
