"""The live path's throughput, latency and memory, next to what Kafka and Spark allow.

    python -m benchmarks.stream_throughput [--ticks 3000000] [--symbols 50] [--seconds 60]
                                           [--triggers 0.5,1,2] [--short]

On one pre-filled topic of synthetic ticks (the research market continued, JSON records):

1. physical limit: Kafka's own consumer performance tool (``ConsumerPerformance``) and a bare
   Spark Kafka read (batch count, and a streaming query that only counts);
2. the stream job stage by stage, each sustained for ``--seconds`` (the topic is replayed with a
   fresh checkpoint when a stage reaches its end): validate only, + bars (watermark, dedup,
   event-time windows), + features (per-symbol state, the feature library), + inference (the
   whole job: dead letters, live Delta tables, the champion); ticks/s and the ratio to the limit;
3. latency per prediction with a paced feed at several trigger intervals: from the Kafka append
   time of a bar's last tick, and from the moment the bar could close (the first tick past
   the bar's end plus the watermark), to the prediction written; p50/p95/p99;
4. peak RSS of the driver JVM and of the Python workers;
5. Spark 4.2's real-time mode (``trigger(realTime=...)``) for the stateless validate-and-route
   stage (Kafka -> Kafka), next to micro-batch on the same path.

Writes ``results/stream_throughput.json`` (``--short``: ``stream_throughput_short.json``,
tiny sizes, what the test suite runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQueryListener

from benchmarks.common import Timer, write_result
from config import load_settings
from infra.jars import ensure_jars
from pipelines import lake
from pipelines.ingest.sources.synthetic import continue_market, generate_market, generate_ticks
from pipelines.lake.spark import get_spark
from pipelines.lake.tables import LIVE_PREDICTIONS, SILVER_BARS
from streaming import job, records
from streaming.feed import publish
from streaming.kafka_io import ADMIN, client_options, ensure_access, java_client_properties, spark_options
from streaming.scoring import champion_version
from streaming.status import read_status

SEED_TARGETS = {"ticks_per_second": 1_000_000, "latency_ms": 50, "memory_gb": 2}


class QueryRows(StreamingQueryListener):
    """Input rows and batch count per query id, from Spark's progress events."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.batches: dict[str, int] = {}
        self.durations: dict[str, dict[str, int]] = {}

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        p = event.progress
        self.rows[str(p.id)] = self.rows.get(str(p.id), 0) + int(p.numInputRows)
        self.batches[str(p.id)] = self.batches.get(str(p.id), 0) + 1
        total = self.durations.setdefault(str(p.id), {})
        for key, ms in (p.durationMs or {}).items():
            total[key] = total.get(key, 0) + int(ms)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


def make_topic(settings, name: str, partitions: int) -> str:
    admin = KafkaAdminClient(**client_options(settings, ADMIN))
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()
    return name


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class MemorySampler(threading.Thread):
    """Samples the resident memory (VmRSS) of the JVM and of every Python worker once a second:
    workers come and go, and a finished one's peak is gone with it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"jvm": 0.0, "python_worker": 0.0, "python_workers_total": 0.0}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            total = 0.0
            for pid in _descendants(os.getpid()):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                    rss = next(int(l.split()[1]) / 1024 for l in Path(f"/proc/{pid}/status").read_text().splitlines()
                               if l.startswith("VmRSS"))
                except (OSError, StopIteration, ValueError):
                    continue
                if cmd.endswith("java"):
                    self.peak["jvm"] = max(self.peak["jvm"], rss)
                elif "python" in cmd:
                    self.peak["python_worker"] = max(self.peak["python_worker"], rss)
                    total += rss
            self.peak["python_workers_total"] = max(self.peak["python_workers_total"], total)


def peak_memory() -> dict:
    """Peak RSS (VmHWM) of this process's JVM and of the Python workers under it, in MB."""
    procs = {}
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            procs[pid] = (cmd, _rss_mb(pid))
        except OSError:
            continue
    jvm = [rss for cmd, rss in procs.values() if cmd.endswith("java")]
    workers = [rss for cmd, rss in procs.values() if "python" in cmd]
    return {"driver_jvm_peak_mb": round(max(jvm, default=0.0)),
            "python_workers_peak_mb_max": round(max(workers, default=0.0)),
            "python_workers": len(workers), "driver_python_peak_mb": round(_rss_mb(os.getpid()))}


def _write_silver(spark, settings, bars: pd.DataFrame) -> None:
    """Research bars as the dataset's silver table: the history the stream's state warms up from."""
    silver = bars.assign(interval="5m", vwap=lambda b: (b.high + b.low + b.close) / 3, trades=8,
                         date=lambda b: b.ts.dt.strftime("%Y-%m-%d"))
    silver["ts"] = silver["ts"].dt.tz_localize(None)
    lake.overwrite(SILVER_BARS.conform(spark.createDataFrame(silver[SILVER_BARS.columns])), SILVER_BARS.path(settings))


def prepare(settings, n_ticks: int, n_symbols: int, topic: str, warm_up: bool = True, progress: bool = True) -> dict:
    """Warm-up silver bars (``warm_up``: a Spark write; the feature stage needs them, the bars
    stage does not) and the continuation's ticks on ``topic``; returns what was sent."""
    cfg = settings.data.synthetic
    days = max(1, int(np.ceil(n_ticks / (n_symbols * cfg.bars_per_day * cfg.ticks_per_bar))))
    research = generate_market(cfg)
    live = continue_market(cfg, research, days)
    ticks = generate_ticks(live, cfg, seed=[cfg.seed, 2]).sort_values("ts", kind="stable").reset_index(drop=True)
    if warm_up:
        _write_silver(get_spark(settings), settings, research.bars)
    with Timer() as t:
        sent = publish(settings, ticks, topic=topic, progress=progress, user=ADMIN)
    print(f"published {sent.ticks:,} ticks in {t.seconds:.1f} s ({sent.ticks / t.seconds:,.0f} ticks/s, kafka-python)")
    return {"ticks": len(ticks), "days": days, "symbols": n_symbols, "publish_ticks_per_second": round(sent.rate),
            "bytes_per_tick": round(float(np.mean([len(v) for _, v in records.encode(ticks.head(1000))])), 1)}


def kafka_tool_limit(settings, topic: str, n: int) -> dict:
    """Kafka's ConsumerPerformance over ``n`` messages of ``topic``."""
    jars = ensure_jars(settings, "kafka-tools")
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as config:  # the login, not on the command line
        config.write(java_client_properties(settings, ADMIN))
        config.flush()
        argv = ["java", "-Xmx512m", "-cp", f"{jars}/*", "org.apache.kafka.tools.ConsumerPerformance",
                "--bootstrap-server", settings.kafka_bootstrap, "--topic", topic, "--messages", str(n),
                "--timeout", "60000", "--command-config", config.name]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l and l[0].isdigit()]
    header = next((l for l in proc.stdout.splitlines() if l.startswith("start.time")), "")
    if not lines or not header:
        return {"error": (proc.stdout + proc.stderr)[-500:]}
    fields = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in lines[-1].split(",")]))
    return {"messages_per_second": round(float(fields["nMsg.sec"])), "mb_per_second": float(fields["MB.sec"]),
            "messages": int(fields["data.consumed.in.nMsg"])}


def spark_read_limit(spark, settings, topic: str, listener: QueryRows, seconds: float) -> dict:
    """A batch read that only counts, and a streaming query that only counts."""
    with Timer() as t:
        n = (spark.read.format("kafka").options(**spark_options(settings, ADMIN))
             .option("subscribe", topic).option("startingOffsets", "earliest").load().count())
    stream = sustained(spark, settings, topic, lambda raw: raw, listener, seconds)
    return {"batch_count_ticks_per_second": round(n / t.seconds), "batch_ticks": n, "stream_count": stream}


def sustained(spark, settings, topic: str, plan, listener: QueryRows, seconds: float, max_offsets: int = 500_000) -> dict:
    """Run ``plan(kafka rows)`` into a counting sink for ``seconds``, replaying the topic with a
    fresh checkpoint whenever it reaches the end; ticks/s from Spark's progress events."""
    rows, started, runs, errors = 0, time.monotonic(), 0, []
    while time.monotonic() - started < seconds:
        raw = (spark.readStream.format("kafka").options(**spark_options(settings, ADMIN))
               .option("subscribe", topic).option("startingOffsets", "earliest")
               .option("maxOffsetsPerTrigger", str(max_offsets)).load())
        checkpoint = tempfile.mkdtemp(prefix="bench-ck-")
        query = (plan(raw).writeStream.foreachBatch(lambda df, _: df.write.format("noop").mode("overwrite").save())
                 .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())
        key = str(query.id)
        # the window lasts `seconds`, and on a loaded machine until the first micro-batch has
        # reported (at most 4x as long): a stage is never measured from its start-up alone
        while query.isActive and (time.monotonic() - started < seconds
                                  or (key not in listener.rows and time.monotonic() - started < 4 * seconds)):
            time.sleep(0.2)
        job.stop_between_batches(query)
        for _ in range(20):   # progress events reach the listener asynchronously
            if key in listener.rows:
                break
            time.sleep(0.1)
        rows += listener.rows.get(key, 0)
        runs += 1
        shutil.rmtree(checkpoint, ignore_errors=True)
        if query.exception() is not None:
            # e.g. a Python worker that did not start on a loaded machine: count it, try a new pass
            errors.append(" ".join(str(query.exception()).split())[:300])
            if len(errors) > 2:
                return {"error": errors[-1], "errors": len(errors)}
    elapsed = time.monotonic() - started
    return {"ticks": rows, "seconds": round(elapsed, 1), "ticks_per_second": round(rows / elapsed),
            "topic_passes": runs, **({"failed_passes": len(errors), "last_error": errors[-1]} if errors else {})}


def stage_plans(spark, settings) -> dict:
    """The job's own plan cut after each stage: name -> (plan over the Kafka rows, ticks per
    micro-batch). Sets the RocksDB state store the job uses."""
    windows = tuple(settings.data.features.windows)

    def validate(raw):
        return records.parse(raw, settings.data.quality).select("reason", "symbol", "ts")

    def bars(raw):
        return job.stream_bars(records.parse(raw, settings.data.quality), settings)

    def features(raw):
        return job.stream_features(spark, settings, bars(raw), windows)

    spark.conf.set("spark.sql.streaming.stateStore.providerClass",
                   "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
    # the feature stage pays Spark's per-symbol Python call on every bar: smaller batches, so some finish
    return {"validate": (validate, 500_000), "bars": (bars, 500_000), "features": (features, 20_000)}


def stages(spark, settings, topic: str, listener: QueryRows, seconds: float) -> dict:
    out = {}
    for name, (plan, batch) in stage_plans(spark, settings).items():
        print(f"stage {name}: {seconds:.0f} s ...", flush=True)
        out[name] = sustained(spark, settings, topic, plan, listener, seconds, max_offsets=batch)
        print(f"  {out[name]}")
    out["inference"] = _inference(spark, settings, topic, seconds)
    print(f"  inference: {out['inference']}")
    return out


def _job_settings(settings, topic: str, trigger: float, **overrides: str):
    """The benchmark's settings with the job reading ``topic`` at ``trigger`` seconds (``overrides``:
    further ``QL_*`` values)."""
    env = {**os.environ, "QL_KAFKA__TOPICS__MARKET_DATA": topic, "QL_KAFKA__TOPICS__DEAD_LETTER": f"{topic}.dlq",
           "QL_KAFKA__TOPICS__PREDICTIONS": f"{topic}.pred", "QL_KAFKA__STREAM__TRIGGER_SECONDS": str(trigger),
           "QL_PLATFORM__LAKE__ROOT": str(settings.platform.lake_root),
           "QL_DATA__SYNTHETIC__N_SYMBOLS": str(settings.data.synthetic.n_symbols),
           "QL_DATA__SYNTHETIC__N_DAYS": str(settings.data.synthetic.n_days),
           "QL_DATA__SYNTHETIC__NAME": settings.data.synthetic.name, **overrides}
    run = load_settings(env=env)
    ensure_access(run)  # the stream's Kafka user may read these topics as it does the configured ones
    return run


def _inference(spark, settings, topic: str, seconds: float) -> dict:
    """The whole job (dead letters, live tables, champion) on the pre-filled topic."""
    if champion_version(settings) is None:
        return {"skipped": "no version holds @champion (run `make demo` first)"}
    run = _job_settings(settings, topic, 0.5, QL_KAFKA__STREAM__MAX_OFFSETS_PER_TRIGGER="20000")
    shutil.rmtree(job.checkpoint_dir(run), ignore_errors=True)
    (job.checkpoint_dir(run).parent / "status.json").unlink(missing_ok=True)
    query, sink = job.start(spark, run, starting_offsets="earliest")
    started = time.monotonic()
    while time.monotonic() - started < seconds and query.isActive:
        time.sleep(0.5)
    job.stop_between_batches(query)
    status = read_status(run) or {}
    elapsed = time.monotonic() - started
    ticks = status.get("ticks_in", 0)
    return {"ticks": ticks, "seconds": round(elapsed, 1), "ticks_per_second": round(ticks / elapsed),
            "bars": status.get("bars", 0), "predictions": status.get("predictions", 0),
            "model": status.get("model"), "error": str(query.exception())[:300] if query.exception() else None}


def latency(spark, settings, n_symbols: int, triggers: list[float], seconds: float, listener: QueryRows) -> dict:
    """The whole job fed at a pace, per trigger interval: p50/p95/p99 of two latencies."""
    if champion_version(settings) is None:
        return {"skipped": "no version holds @champion (run `make demo` first)"}
    cfg = settings.data.synthetic.model_copy(update={"n_symbols": n_symbols})
    research = generate_market(cfg)
    live = continue_market(cfg, research, 2)
    ticks = generate_ticks(live, cfg, seed=[cfg.seed, 3]).sort_values("ts", kind="stable").reset_index(drop=True)
    bar_seconds = 2.0  # one bar of event time per 2 s of wall time
    speed = cfg.bar_minutes * 60 / bar_seconds
    ticks = ticks[ticks["ts"] < ticks["ts"].iloc[0] + pd.Timedelta(seconds=seconds * speed)]
    out = {"symbols": n_symbols, "wall_seconds_per_bar": bar_seconds, "speed": speed}
    watermark = pd.Timedelta(settings.kafka.stream.watermark)
    for trigger in triggers:
        tag = uuid.uuid4().hex[:6]
        topic = make_topic(settings, f"bench-lat-{tag}", settings.kafka.partitions)
        run = _job_settings(settings, topic, trigger, QL_DATA__SYNTHETIC__N_SYMBOLS=str(n_symbols),
                            QL_DATA__SYNTHETIC__NAME=f"{settings.data.synthetic.name}-lat{trigger}")
        _write_silver(spark, run, research.bars)
        query, _ = job.start(spark, run, starting_offsets="earliest")
        query_id = str(query.id)
        feeder = threading.Thread(target=publish, args=(run, ticks, speed), kwargs={"progress": False})
        time.sleep(3)
        feeder.start()
        feeder.join()
        time.sleep(max(5.0, 3 * trigger))
        job.stop_between_batches(query)
        pred = lake.read(spark, LIVE_PREDICTIONS.path(run)).select("ts", "last_append", "scored_at").toPandas()
        sent = (spark.read.format("kafka").options(**spark_options(run, ADMIN))
                .option("subscribe", topic).option("startingOffsets", "earliest").load()
                .select(F.col("timestamp").alias("appended"),
                        F.get_json_object(F.col("value").cast("string"), "$.ts").cast("timestamp").alias("ts"))
                .toPandas().sort_values("ts"))
        # a bar can close once a tick at or after its end + the watermark is in Kafka
        closable_ts = pred["ts"] + pd.Timedelta(minutes=cfg.bar_minutes) + watermark
        first = np.searchsorted(sent["ts"].to_numpy(), closable_ts.to_numpy())
        valid = first < len(sent)
        closable = pd.Series(pd.NaT, index=pred.index, dtype="datetime64[ns]")
        closable[valid] = sent["appended"].to_numpy()[first[valid]]
        from_last = (pred["scored_at"] - pred["last_append"]).dt.total_seconds() * 1000
        from_close = (pred["scored_at"] - closable).dt.total_seconds().dropna() * 1000
        q = lambda s: {f"p{p}": round(float(np.percentile(s, p)), 1) for p in (50, 95, 99)} if len(s) else {}  # noqa: E731
        status = read_status(run) or {}
        batches = max(status.get("batches", 0), 1)
        spark_batches = max(listener.batches.get(query_id, 0), 1)
        out[f"trigger_{trigger}s"] = {
            "predictions": len(pred), "from_last_tick_ms": q(from_last), "from_bar_closable_ms": q(from_close),
            "micro_batches": status.get("batches", 0),
            "sink_seconds_per_batch": {k: round(v / batches, 3) for k, v in status.get("phase_seconds", {}).items()},
            "spark_ms_per_batch": {k: round(v / spark_batches) for k, v in listener.durations.get(query_id, {}).items()}}
        print(f"latency at trigger {trigger} s: {out[f'trigger_{trigger}s']}", flush=True)
    return out


MODES = [("micro-batch 0 s", {"processingTime": "0 seconds"}),
         ("micro-batch 100 ms", {"processingTime": "100 milliseconds"}),
         ("real-time 5 s", {"realTime": "5 seconds"})]


def real_time_mode(spark, settings, seconds: float, rate: int = 5000, modes=MODES, partitions: int = 2) -> dict:
    """Validate-and-route (Kafka -> Kafka, stateless) in real-time mode and in micro-batch:
    latency from the input record's append time to the routed record's append time."""
    out = {}
    cfg = settings.data.synthetic.model_copy(update={"n_symbols": 10})
    ticks = generate_ticks(continue_market(cfg, generate_market(cfg), 1), cfg, seed=[cfg.seed, 4])
    ticks = ticks.sort_values("ts", kind="stable").head(int(rate * seconds)).reset_index(drop=True)
    span = (ticks["ts"].iloc[-1] - ticks["ts"].iloc[0]).total_seconds()
    for mode, trigger in modes:
        tag = uuid.uuid4().hex[:6]
        src = make_topic(settings, f"bench-rt-in-{tag}", partitions)
        dst = make_topic(settings, f"bench-rt-out-{tag}", partitions)
        raw = (spark.readStream.format("kafka").options(**spark_options(settings, ADMIN))
               .option("subscribe", src).option("startingOffsets", "earliest").load())
        routed = records.parse(raw, settings.data.quality).select(
            F.col("key"), F.concat_ws(":", F.col("partition"), F.col("offset")).cast("binary").alias("value"))
        checkpoint = tempfile.mkdtemp(prefix="bench-rt-")
        try:
            query = (routed.writeStream.format("kafka").options(**spark_options(settings, ADMIN))
                     .option("topic", dst).option("checkpointLocation", checkpoint).trigger(**trigger)
                     .outputMode("update").start())
            time.sleep(5)
            publish(settings, ticks, speed=span / seconds, topic=src, progress=False, user=ADMIN)
            time.sleep(8)
            error = query.exception()
            query.stop()
        except Exception as exc:  # noqa: BLE001 - report why the mode could not run
            out[mode] = {"error": " ".join(str(exc).split())[:400]}
            continue
        finally:
            shutil.rmtree(checkpoint, ignore_errors=True)
        if error is not None:
            out[mode] = {"error": " ".join(str(error).split())[:400]}
            continue
        read = lambda t: (spark.read.format("kafka").options(**spark_options(settings, ADMIN))  # noqa: E731
                          .option("subscribe", t).option("startingOffsets", "earliest").load())
        inputs = read(src).select(F.concat_ws(":", "partition", "offset").alias("id"), F.col("timestamp").alias("t_in"))
        outputs = read(dst).select(F.col("value").cast("string").alias("id"), F.col("timestamp").alias("t_out"))
        lat = inputs.join(outputs, "id").select(
            ((F.col("t_out").cast("double") - F.col("t_in").cast("double")) * 1000).alias("ms")).toPandas()["ms"]
        out[mode] = {"records": int(len(lat)), "sent": len(ticks), "partitions": partitions, **({f"p{p}_ms": round(float(np.percentile(lat, p)), 1)
                                                    for p in (50, 95, 99)} if len(lat) else {})}
        print(f"{mode}: {out[mode]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=3_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--triggers", default="0.5,1,2")
    parser.add_argument("--latency-symbols", type=int, default=10)
    parser.add_argument("--short", action="store_true", help="tiny sizes: the test suite's version")
    parser.add_argument("--out", type=Path, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.short:
        # 5 s stages: a stage's window is stretched until its first micro-batch has reported
        args.ticks, args.symbols, args.seconds, args.triggers, args.latency_symbols = 30_000, 5, 5.0, "1", 3
    lake_root = Path(tempfile.mkdtemp(prefix="bench-stream-lake-"))
    tag = uuid.uuid4().hex[:6]
    settings = load_settings(env={**os.environ, "QL_PLATFORM__LAKE__ROOT": str(lake_root),
                                  "QL_DATA__SYNTHETIC__N_SYMBOLS": str(args.symbols),
                                  "QL_DATA__SYNTHETIC__N_DAYS": "7",
                                  "QL_DATA__SYNTHETIC__NAME": f"bench-stream-{tag}"})
    spark = get_spark(settings)
    spark.sparkContext.setLogLevel("ERROR")
    listener = QueryRows()
    spark.streams.addListener(listener)
    sampler = MemorySampler()
    sampler.start()
    figures: dict = {"seed_targets": SEED_TARGETS, "partitions": settings.kafka.partitions,
                     "spark_master": settings.platform.spark.master}
    try:
        topic = make_topic(settings, f"bench-md-{tag}", settings.kafka.partitions)
        figures["data"] = prepare(settings, args.ticks, args.symbols, topic)
        figures["physical_limit"] = {"kafka_consumer_perf": kafka_tool_limit(settings, topic, figures["data"]["ticks"]),
                                     "spark": spark_read_limit(spark, settings, topic, listener, args.seconds)}
        print(f"physical limit: {figures['physical_limit']}", flush=True)
        figures["stages"] = stages(spark, settings, topic, listener, args.seconds)
        limit = figures["physical_limit"]["spark"]["stream_count"].get("ticks_per_second") or 0
        for name, stage in figures["stages"].items():
            if stage.get("ticks_per_second") and limit:
                stage["ratio_to_spark_read"] = round(stage["ticks_per_second"] / limit, 4)
        figures["memory_after_throughput"] = peak_memory()
        figures["latency"] = latency(spark, settings, args.latency_symbols,
                                     [float(t) for t in args.triggers.split(",")], args.seconds, listener)
        # real-time mode runs every partition's task at once: topics of as many partitions as cores,
        # and once with the configured partitions (more than the cores) to show what happens then
        cores = spark.sparkContext.defaultParallelism
        figures["real_time_mode"] = real_time_mode(spark, settings, min(args.seconds, 20.0),
                                                   modes=[MODES[0], MODES[2]] if args.short else MODES,
                                                   partitions=cores)
        if not args.short and settings.kafka.partitions > cores:
            figures["real_time_mode_more_partitions_than_cores"] = real_time_mode(
                spark, settings, min(args.seconds, 20.0), modes=[MODES[2]], partitions=settings.kafka.partitions)
        figures["memory_peak"] = {**peak_memory(), **{f"sampled_{k}_peak_mb": round(v) for k, v in sampler.peak.items()}}
    finally:
        sampler.stopped.set()
        shutil.rmtree(lake_root, ignore_errors=True)
    write_result("stream_throughput_short" if args.short else "stream_throughput", figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
