"""The live market-data job: Kafka ticks -> validated, de-duplicated ticks -> bars -> features
-> champion predictions, as one Spark Structured Streaming query.

Plan (one query, one checkpoint under ``.state/live/<dataset>/checkpoint``)::

    Kafka market-data ──parse──┬── every tick (reason, Kafka coordinates) ─────────────┐
                               └── good ticks ─ watermark ─ drop duplicate (symbol, seq)  │
                                     ─ event-time bars ─ BarHistory (per-symbol state) ──┤
                                                                              union ─ foreachBatch

``foreachBatch`` (:class:`BatchSink`) then, per micro-batch:

1. dead-letters malformed ticks and ticks later than the watermark: the original key and
   bytes go to ``market-data.dlq`` with the reasons in headers, and to the ``dead_letters``
   live table;
2. appends the bars, the ranked features and the predictions to their live tables, each
   write tagged with the query's id and the batch id (Delta ``txnAppId``/``txnVersion``), so
   a batch replayed after a restart is not written twice;
3. scores the bars' cross-section with the champion and publishes the predictions to the
   ``predictions`` topic (at least once: a replayed batch may publish again; each message
   carries its (symbol, ts, model version) key for consumers to drop repeats);
4. writes the running figures to ``status.json`` (see :mod:`streaming.status`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from kafka.errors import KafkaError
from pyspark.sql.streaming import StreamingQuery

from config import Settings
from pipelines import lake
from pipelines.features.library import add_cross_sectional_ranks, max_lookback
from pipelines.ingest.bars import ticks_to_bars
from pipelines.ingest.sources import source_for
from pipelines.ingest.sources.base import interval_minutes
from pipelines.backtest.engine import infer_periods_per_year
from pipelines.lake.tables import (FEATURES, LIVE_BARS, LIVE_DEAD_LETTERS, LIVE_FEATURES, LIVE_ORDERS, LIVE_PREDICTIONS,
                                   SILVER_BARS)
from streaming import faults, live, metrics, records
from streaming.faults import crash_point
from streaming.history import STATE_COLUMNS, STATE_SCHEMA, BarHistory, output_schema
from streaming.kafka_io import ensure_topics, make_producer, spark_options
from streaming.scoring import LiveScorer
from streaming.status import LiveFigures, live_dir
from streaming.trader import Decision, Trader

log = logging.getLogger(__name__)

QUERY_NAME = "quantlake-live"
LATE = "late: event time before the watermark"
TICK_SIDE = ["reason", "key", "value", "partition", "offset", "kafka_ts", "symbol", "ts", "seq"]


def bar_minutes(settings: Settings) -> int:
    """The dataset's bar interval in minutes: the one its silver bars are built with."""
    return interval_minutes(source_for(settings.data).interval)


def checkpoint_dir(settings: Settings, dataset: str | None = None) -> Path:
    return live_dir(settings, dataset) / "checkpoint"


def _initial_state(spark: SparkSession, settings: Settings, keep: int) -> DataFrame:
    """Each symbol's last ``keep`` silver bars (the research history the stream continues)."""
    path = SILVER_BARS.path(settings)
    if not lake.exists(spark, path):
        return spark.createDataFrame([], f"symbol string, {STATE_SCHEMA}")
    return lake.newest_per_symbol(lake.read(spark, path), keep).select("symbol", *STATE_COLUMNS)


def stream_bars(parsed: DataFrame, settings: Settings) -> DataFrame:
    """Good ticks -> watermark -> one per (symbol, seq) -> event-time bars (with the Kafka append
    time of each bar's last tick and the bid / ask of its first)."""
    good = (parsed.where(F.col("reason").isNull())
            .select(*records.TICK_COLUMNS, "kafka_ts")
            .withWatermark("ts", settings.kafka.stream.watermark)
            .dropDuplicatesWithinWatermark(["symbol", "seq"]))
    first = F.struct("ts", "seq")
    return ticks_to_bars(good, bar_minutes(settings), extra={
        "last_append": F.max("kafka_ts"), "open_bid": F.min_by("bid", first), "open_ask": F.min_by("ask", first)})


def stream_features(spark: SparkSession, settings: Settings, bars: DataFrame, windows: tuple[int, ...]) -> DataFrame:
    """Bars with their unranked features, from per-symbol state warm-started from silver."""
    initial = _initial_state(spark, settings, max_lookback(windows))
    return bars.groupBy("symbol").transformWithStateInPandas(
        statefulProcessor=BarHistory(windows), outputStructType=output_schema(windows), outputMode="Append",
        timeMode="None", initialState=initial.groupBy("symbol"))


def build_stream(spark: SparkSession, settings: Settings, windows: tuple[int, ...],
                 starting_offsets: str | None = None) -> DataFrame:
    """The streaming DataFrame before the sink: tick rows (``kind = 'tick'``) and bar rows with
    their unranked features (``kind = 'bar'``)."""
    cfg = settings.kafka.stream
    reader = (spark.readStream.format("kafka")
              .options(**spark_options(settings, "stream"))
              .option("subscribe", settings.kafka.topics.market_data)
              .option("startingOffsets", starting_offsets or cfg.starting_offsets)
              .option("failOnDataLoss", "false")
              # a broker restart: keep asking for offsets for a minute instead of failing the query
              .option("fetchOffset.numRetries", "60").option("fetchOffset.retryIntervalMs", "1000"))
    if cfg.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    parsed = records.parse(reader.load(), settings.data.quality)

    ticks = parsed.select(F.lit("tick").alias("kind"), *TICK_SIDE)
    featured = stream_features(spark, settings, stream_bars(parsed, settings), windows)
    return ticks.unionByName(featured.withColumn("kind", F.lit("bar")), allowMissingColumns=True)


def _watermark_ms(checkpoint: Path, batch_id: int) -> int:
    """The event-time watermark Spark recorded for ``batch_id`` in the offset log (0 if none)."""
    path = checkpoint / "offsets" / str(batch_id)
    if batch_id < 0 or not path.exists():
        return 0
    for line in path.read_text().splitlines()[1:]:
        if line.startswith("{") and "batchWatermarkMs" in line:
            return int(json.loads(line)["batchWatermarkMs"])
    return 0


def _query_id(checkpoint: Path) -> str:
    return json.loads((checkpoint / "metadata").read_text())["id"]


def _append(df: DataFrame, table, settings: Settings, app_id: str, batch_id: int) -> None:
    """Append ``df`` to a live table once per (query, batch): a replay is skipped by Delta."""
    (table.conform(df).write.format("delta").mode("append")
     .option("txnAppId", f"{app_id}-{table.name}").option("txnVersion", batch_id)
     .partitionBy(*table.partition_by).save(table.path(settings)))


@dataclass
class BatchSink:
    """The ``foreachBatch`` function: routes, writes and scores one micro-batch."""

    settings: Settings
    checkpoint: Path
    scorer: LiveScorer
    figures: LiveFigures
    producer: object = None
    trader: Trader | None = None
    _app_id: str = ""

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        started = datetime.now(timezone.utc)
        spark = df.sparkSession
        self._app_id = self._app_id or _query_id(self.checkpoint)
        df = df.persist()
        phases: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            phases[name] = now - clock
            clock = now

        try:
            counts = self._dead_letters(df, batch_id, started)
            lap("compute_and_dead_letters")  # the first action runs the whole plan: parse, bars, state, features
            bars = self._bars(df, batch_id)
            lap("bars_write")
            crash_point("stream.after_bars")
            predictions = self._features_and_predictions(spark, bars, batch_id, started, lap)
            decisions = self._trade(spark, bars, predictions, batch_id, lap)
            self.figures.add_batch(batch_id, started, counts, bars, predictions, self.scorer,
                                   _watermark_ms(self.checkpoint, batch_id), phases, decisions,
                                   self.trader.note if self.trader else "")
            finished = datetime.now(timezone.utc)
            metrics.observe_batch(counts, bars, predictions, decisions, (finished - started).total_seconds(),
                                  finished.timestamp(), decisions[-1].state.value if decisions else None)
        finally:
            df.unpersist()

    # 1. dead letters -------------------------------------------------------------------------
    def _dead_letters(self, df: DataFrame, batch_id: int, now: datetime) -> dict[str, int]:
        late_before = _watermark_ms(self.checkpoint, batch_id - 1)
        ticks = df.where(F.col("kind") == "tick")
        late = F.col("reason").isNull() & (F.col("ts") < F.lit(late_before / 1000.0).cast("timestamp"))
        routed = ticks.select(
            "key", "value", "partition", "offset", "kafka_ts", "symbol", "ts",
            F.when(late, F.lit(LATE)).otherwise(F.col("reason")).alias("reason"))
        counts = {r["reason"] or "": int(r["n"]) for r in
                  routed.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()}
        if not set(counts) - {""}:  # every tick was good
            return counts
        dead = routed.where(F.col("reason").isNotNull())
        topic = self.settings.kafka.topics.market_data
        table = dead.select(
            F.lit(topic).alias("topic"), "partition", "offset", "kafka_ts", "key", "value", "reason", "symbol", "ts",
            F.lit(batch_id).alias("batch_id"), F.lit(now.replace(tzinfo=None)).alias("dead_lettered_at"),
            F.date_format("kafka_ts", "yyyy-MM-dd").alias("date"))
        _append(table, LIVE_DEAD_LETTERS, self.settings, self._app_id, batch_id)
        header = lambda k, v: F.struct(F.lit(k).alias("key"), v.cast("string").cast("binary").alias("value"))  # noqa: E731
        (dead.select("key", "value", F.array(
            header("dlq.reason", F.col("reason")), header("dlq.topic", F.lit(topic)),
            header("dlq.partition", F.col("partition")), header("dlq.offset", F.col("offset")),
            header("dlq.batch_id", F.lit(batch_id))).alias("headers"))
         .write.format("kafka").options(**spark_options(self.settings, "stream"))
         .option("topic", self.settings.kafka.topics.dead_letter).save())
        return counts

    # 2. bars ---------------------------------------------------------------------------------
    def _bars(self, df: DataFrame, batch_id: int) -> pd.DataFrame:
        bars = df.where(F.col("kind") == "bar").drop("kind", *(c for c in TICK_SIDE if c not in ("symbol", "ts")))
        rows = bars.toPandas()
        if not rows.empty:
            _append(bars.withColumn("batch_id", F.lit(batch_id)).withColumn("date", F.date_format("ts", "yyyy-MM-dd"))
                    .select(*LIVE_BARS.columns), LIVE_BARS, self.settings, self._app_id, batch_id)
        return rows

    # 3. features and predictions -------------------------------------------------------------
    def _features_and_predictions(self, spark: SparkSession, bars: pd.DataFrame, batch_id: int,
                                  now: datetime, lap=lambda name: None) -> pd.DataFrame:
        self.scorer.poll()
        spec = self.scorer.spec
        complete = bars[bars["complete"]] if not bars.empty else bars
        if complete.empty:
            return pd.DataFrame()
        ranked = pd.concat(add_cross_sectional_ranks(g, spec.rank_features) for _, g in complete.groupby("ts"))
        ranked = ranked.sort_values(["symbol", "ts"]).reset_index(drop=True)
        features = ranked[["symbol", "ts", *spec.names]].assign(
            date=ranked["ts"].dt.strftime("%Y-%m-%d"), batch_id=batch_id)
        _append(spark.createDataFrame(features), LIVE_FEATURES, self.settings, self._app_id, batch_id)
        lap("features_write")
        scored = self.scorer.score(ranked)
        lap("scoring")
        if scored.empty:
            return scored
        champion = self.scorer.champion
        scored = scored.merge(ranked[["symbol", "ts", "last_append"]], on=["symbol", "ts"], how="left").assign(
            model=champion.name, model_version=champion.version, family=champion.family,
            bar_ready=pd.Timestamp(now).tz_convert(None), batch_id=batch_id,
            date=lambda d: d["ts"].dt.strftime("%Y-%m-%d"))
        scored["scored_at"] = pd.Timestamp.now(tz="UTC").tz_convert(None)
        _append(spark.createDataFrame(scored), LIVE_PREDICTIONS, self.settings, self._app_id, batch_id)
        lap("predictions_write")
        self._publish(scored)
        lap("predictions_publish")
        return scored

    # 4. orders ---------------------------------------------------------------------------------
    def _trade(self, spark: SparkSession, bars: pd.DataFrame, predictions: pd.DataFrame,
               batch_id: int, lap=lambda name: None) -> list[Decision]:
        """The trader's decisions on the batch's bars, and every order (sent or rejected) in
        the ``live_orders`` table."""
        if self.trader is None or bars.empty:
            return []
        decisions = self.trader.on_batch(bars, predictions)
        lap("trading")
        rows = [{"order_id": o.order_id, "ts": pd.Timestamp(o.ts).tz_convert(None), "symbol": o.symbol, "side": o.side,
                 "qty": o.quantity, "order_type": o.order_type, "price": o.price, "decision_volume": volume,
                 "strategy": o.strategy, "model_version": o.model_version,
                 "status": "SUBMITTED" if limit is None else "REJECTED", "limit_hit": limit, "reason": reason,
                 "batch_id": batch_id, "date": pd.Timestamp(o.ts).strftime("%Y-%m-%d")}
                for d in decisions for o, volume, limit, reason in d.orders]
        if rows:
            _append(spark.createDataFrame(pd.DataFrame(rows), LIVE_ORDERS.schema), LIVE_ORDERS, self.settings,
                    self._app_id, batch_id)
        lap("orders_write")
        return decisions

    def _publish(self, scored: pd.DataFrame) -> None:
        """The batch's predictions on ``predictions``, each acknowledged by the broker (a record
        that was not fails the batch after ``trading.live.send_retry_seconds``; the batch is then
        replayed, with the same record ids)."""
        topic = self.settings.kafka.topics.predictions
        records = [(f"{row.symbol}|{pd.Timestamp(row.ts).isoformat()}|{row.model_version}", row)
                   for row in scored.itertuples(index=False)]

        def publish() -> None:
            if self.producer is None:
                self.producer = make_producer(self.settings, "stream")
            futures = [self.producer.send(topic, key=key, value={
                "v": 1, "id": key, "symbol": row.symbol, "ts": pd.Timestamp(row.ts).isoformat() + "Z",
                "model": row.model, "model_version": row.model_version, "family": row.family,
                "p_up": float(row.p_up), "expected_return": float(row.expected_return),
                "last_append": pd.Timestamp(row.last_append).isoformat() + "Z",
                "scored_at": pd.Timestamp(row.scored_at).isoformat() + "Z"}) for key, row in records]
            try:
                self.producer.flush()
                for future in futures:
                    future.get(timeout=0)
            except KafkaError as error:
                self.producer.close(timeout=1)
                self.producer = None
                raise live.SendFailed(f"predictions not acknowledged: {error!r}") from error

        live.until_sent(publish, "stream: predictions", self.settings.trading.live.send_retry_seconds)


def start(spark: SparkSession, settings: Settings, trigger_seconds: float | None = None,
          starting_offsets: str | None = None) -> tuple[StreamingQuery, BatchSink]:
    """Start the live query (resuming from its checkpoint when there is one)."""
    faults.arm_from_env()
    topics = settings.kafka.topics
    ensure_topics(settings, [topics.market_data, topics.dead_letter, topics.predictions, topics.bars, topics.orders,
                             topics.orders_rejected], "stream")
    spark.conf.set("spark.sql.streaming.stateStore.providerClass",
                   "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
    scorer = LiveScorer.start(settings)
    checkpoint = checkpoint_dir(settings)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    scorer.recent = _recent_features(spark, settings, scorer)
    sink = BatchSink(settings, checkpoint, scorer, LiveFigures.resume(settings),
                     trader=_trader(spark, settings) if settings.trading.live.enabled else None)
    stream = build_stream(spark, settings, scorer.spec.windows, starting_offsets)
    trigger = trigger_seconds or settings.kafka.stream.trigger_seconds
    query = (stream.writeStream.queryName(QUERY_NAME).foreachBatch(sink)
             .option("checkpointLocation", str(checkpoint))
             .trigger(processingTime=f"{trigger} seconds").start())
    return query, sink


def _trader(spark: SparkSession, settings: Settings) -> Trader:
    """The trader, with each symbol's last closes (live bars after silver) for the trailing
    volatility and the bars' periods per year."""
    frames = [lake.read(spark, t.path(settings)).select("symbol", "ts", "close")
              for t in (SILVER_BARS, LIVE_BARS) if lake.exists(spark, t.path(settings))]
    if not frames:
        return Trader(settings, 252.0)
    union = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    # enough bars for the periods per year (whole sessions), of which the trader keeps the last few
    history = lake.newest_per_symbol(union.dropDuplicates(["symbol", "ts"]), 400).toPandas()
    return Trader(settings, infer_periods_per_year(pd.DatetimeIndex(history["ts"].unique()).sort_values()), history)


def _recent_features(spark: SparkSession, settings: Settings, scorer: LiveScorer) -> pd.DataFrame:
    """Each symbol's last ``sequence_length - 1`` ranked feature rows: from the live table when
    the stream ran before, else from the research feature table it continues."""
    if scorer.champion is None or scorer.spec.sequence_length <= 1:
        return pd.DataFrame()

    for table in (LIVE_FEATURES, FEATURES):
        path = table.path(settings)
        if not lake.exists(spark, path):
            continue
        frame = lake.read(spark, path)
        if not set(scorer.spec.names) <= set(frame.columns):
            continue
        rows = (lake.newest_per_symbol(frame, scorer.spec.sequence_length - 1)
                .select("symbol", "ts", *scorer.spec.names).toPandas())
        if not rows.empty:
            return rows.sort_values(["symbol", "ts"]).reset_index(drop=True)
    return pd.DataFrame()


def stop_between_batches(query: StreamingQuery, timeout_s: float = 120.0) -> None:
    """Stop the query when no micro-batch is running (waiting at most ``timeout_s``).

    Stopping in the middle of a ``foreachBatch`` call cancels its Spark jobs; the checkpoint
    stays consistent (the batch is replayed on restart), but Spark 4.2 then matches the long
    Python error against a backtracking regex and its stream thread dies of a
    StackOverflowError, which reads like a failure. Between batches nothing is cancelled.
    """
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()
