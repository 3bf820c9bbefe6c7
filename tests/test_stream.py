"""The live market-data job against the real Kafka broker and Spark: parity with the batch
tables, dead letters for every bad tick, late ticks, and restarts from the checkpoint."""

from __future__ import annotations

import json
import os
import time
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from kafka import KafkaConsumer, TopicPartition

from config import load_settings
from config.schemas.data import SyntheticSettings
from models.pyfunc import DirectionModel
from models.registry import promote
from models.training import register_model
from pipelines import lake
from pipelines.features.build import write_features
from pipelines.features.library import max_lookback
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.ingest.sources.synthetic import generate_market, generate_ticks
from pipelines.lake.tables import FEATURES, LIVE_BARS, LIVE_DEAD_LETTERS, LIVE_FEATURES, LIVE_PREDICTIONS, SILVER_BARS
from streaming import job
from streaming.feed import publish
from streaming.job import LATE
from streaming.kafka_io import ADMIN, client_options
from streaming.records import encode
from streaming.status import read_status
from tests.livekit import live_env, research_with_champion

BAR_COLUMNS = ["open", "high", "low", "close", "volume", "vwap", "trades"]


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return live_env(tmp_path, **extra)


def _settings(tmp_path, **extra: str):
    return load_settings(env=_env(tmp_path, **extra))


def _drain(settings, query, ticks_expected: int, bars_at_least: int = 0, timeout_s: float = 240.0) -> dict:
    """Wait until the stream has counted ``ticks_expected`` ticks and landed enough bars."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise AssertionError(f"query died: {query.exception()}")
        status = read_status(settings) or {}
        if status.get("ticks_in", 0) >= ticks_expected and status.get("bars", 0) >= bars_at_least:
            query.processAllAvailable()
            return read_status(settings)
        time.sleep(0.5)
    raise AssertionError(f"stream did not catch up: {read_status(settings)}")


def test_stream_gives_the_batch_tables_bars_features_and_predictions(spark, services, tmp_path,
                                                                    sqlite_registry) -> None:
    settings = _settings(tmp_path, QL_DATA__SYNTHETIC__N_SYMBOLS="3", QL_DATA__SYNTHETIC__N_DAYS="10",
                         QL_DATA__SYNTHETIC__START_DATE="2024-03-04",
                         QL_PLATFORM__MLFLOW__REGISTERED_MODEL=f"stream-{uuid.uuid4().hex[:6]}")
    cfg = settings.data.synthetic
    days = pd.bdate_range(cfg.start_date, periods=cfg.n_days)
    live_start = days[7].date()

    # research: silver and features of the first seven days, and a champion trained on them
    version, model, spec, gold = research_with_champion(spark, settings, days[:7])

    # live: the ticks of the last three days through Kafka and the stream
    ticks = generate_ticks(generate_market(cfg), cfg)
    live_ticks = ticks[ticks["ts"].dt.date >= live_start].reset_index(drop=True)
    query, sink = job.start(spark, settings, starting_offsets="earliest")
    try:
        assert sink.scorer.champion.version == version
        publish(settings, live_ticks, progress=False)
        n_bars = 3 * 3 * cfg.bars_per_day
        status = _drain(settings, query, len(live_ticks), bars_at_least=n_bars - 3)
    finally:
        query.stop()

    # batch: the same ticks through bronze, silver and features
    write_bronze(spark, settings, live_start, days[-1].date())
    write_silver(spark, settings, live_start, days[-1].date())
    write_features(spark, settings, live_start, days[-1].date())
    key = ["symbol", "ts"]
    live_bars = lake.read(spark, LIVE_BARS.path(settings)).toPandas().sort_values(key).reset_index(drop=True)
    silver = lake.read(spark, SILVER_BARS.path(settings)).toPandas()
    merged = live_bars.merge(silver, on=key, suffixes=("", "_batch"))
    # every bar but each symbol's last (its window is still open under the watermark) is out
    assert len(live_bars) == len(merged) == n_bars - 3 == status["bars"]
    assert status["warming_bars"] == 0  # the silver tail warmed the state: no bar lacked history
    for col in BAR_COLUMNS:
        np.testing.assert_allclose(merged[col], merged[f"{col}_batch"], rtol=0, atol=1e-9, err_msg=col)

    live_features = lake.read(spark, LIVE_FEATURES.path(settings)).toPandas()
    gold = lake.read(spark, FEATURES.path(settings)).toPandas()
    both = live_features.merge(gold, on=key, suffixes=("", "_batch"))
    assert len(both) == len(live_features) == len(live_bars)
    for name in spec.names:
        a, b = both[name].to_numpy(), both[f"{name}_batch"].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)

    # predictions: the champion on the batch features (with their history) gives the same numbers
    live_pred = lake.read(spark, LIVE_PREDICTIONS.path(settings)).toPandas()
    assert len(live_pred) == len(live_bars) and set(live_pred["model_version"]) == {version}
    champion = sink.scorer.champion
    batch_pred = champion.predict(gold.sort_values(key).reset_index(drop=True)[["symbol", "ts", *spec.names]])
    check = live_pred.merge(batch_pred, on=key, suffixes=("", "_batch"))
    assert len(check) == len(live_pred)
    np.testing.assert_allclose(check["p_up"], check["p_up_batch"], rtol=0, atol=1e-9)
    assert (check["scored_at"] >= check["last_append"]).all()

    consumer = KafkaConsumer(settings.kafka.topics.predictions, **client_options(settings, ADMIN),
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    published = {json.loads(m.value)["id"] for m in consumer}
    consumer.close()
    assert len(published) == len(live_pred)

    # the alias moves: the running scorer serves the new version at its next poll, no restart
    with mlflow.start_run():
        newer = register_model(DirectionModel(model, spec, "linear"), gold[["symbol", "ts", *spec.names]].tail(3)
                               .reset_index(drop=True), settings)
    promote(settings, newer, "stream reload test")
    sink.scorer._checked = time.monotonic()
    sink.scorer.poll()  # within champion_poll_seconds of the last look: no registry call yet
    assert sink.scorer.champion.version == version
    sink.scorer._checked = float("-inf")
    sink.scorer.poll()
    assert sink.scorer.champion.version == newer and sink.scorer.note == ""


def test_state_holds_exactly_the_history_the_recipe_needs() -> None:
    """The kernel state warmed on the recipe's lookback reproduces full-history features for the
    next bar; one warmed on a short tail does not (the stream then marks its bars incomplete
    instead of emitting them, see the fuzz test's warming bars)."""
    from pipelines.features import kernel

    bars = generate_market(SyntheticSettings(n_symbols=1, n_days=10, seed=3)).bars
    bars["vwap"] = (bars["high"] + bars["low"] + bars["close"]) / 3
    matrix = bars[list(kernel.INPUTS)].to_numpy(float)
    windows = (5, 10, 20, 30, 60)
    full = kernel.compute(matrix, windows)[-1]
    keep = max_lookback(windows)

    def next_row(history: int) -> np.ndarray:
        state = kernel.warm_state(matrix[-1 - history:-1], windows)
        return state.advance(0, matrix[-1:])[0]

    np.testing.assert_allclose(next_row(keep - 1), full, rtol=1e-9, atol=1e-12)
    assert not np.allclose(next_row(100), full, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# bad input

def _fuzz(valid: pd.DataFrame, n: int, seed: int) -> list[tuple[bytes, bytes, str]]:
    """``n`` broken records (key, value, a reason the stream must give) built from valid ticks."""
    rng = np.random.default_rng(seed)
    base = [json.loads(v) for _, v in encode(valid.sample(n, replace=True, random_state=seed))]
    out = []
    for i, rec in enumerate(base):
        kind = i % 11
        rec = dict(rec)
        if kind == 0:
            value, reason = json.dumps(rec)[: int(rng.integers(1, 40))].encode(), "malformed JSON"
        elif kind == 1:
            field = ["symbol", "ts", "seq", "price", "v"][int(rng.integers(5))]
            rec.pop(field)
            value, reason = json.dumps(rec).encode(), f"missing {field}"
        elif kind == 2:
            field = ["ts", "seq", "price", "size", "bid"][int(rng.integers(5))]
            rec[field] = "not-a-" + field
            value, reason = json.dumps(rec).encode(), f"wrong type {field}"
        elif kind == 3:
            rec["price"] = -abs(rec["price"]) * float(rng.random())
            value, reason = json.dumps(rec).encode(), "missing or non-positive price"
        elif kind == 4:
            rec["size"] = 0
            value, reason = json.dumps(rec).encode(), "non-positive size"
        elif kind == 5:
            rec["bid"], rec["ask"] = rec["ask"] + 1, rec["bid"]
            value, reason = json.dumps(rec).encode(), "crossed quote"
        elif kind == 6:
            rec["v"] = int(rng.integers(2, 99))
            value, reason = json.dumps(rec).encode(), "unknown schema version"
        elif kind == 7:
            rec["ts"] = "2999-01-01T00:00:00Z"
            value, reason = json.dumps(rec).encode(), "timestamp in the future"
        elif kind == 8:
            value, reason = bytes(rng.integers(0, 256, int(rng.integers(1, 60)), dtype=np.uint8)), "malformed JSON"
        elif kind == 9:
            value, reason = json.dumps([rec]).encode(), "malformed JSON"
        else:
            rec["symbol"] = ""
            value, reason = json.dumps(rec).encode(), "missing symbol"
        out.append((str(rec.get("symbol", "x")).encode(), value, reason))
    return out


def _send(settings, records: list[tuple[bytes, bytes]]) -> None:
    from streaming.kafka_io import ensure_topics, make_producer

    ensure_topics(settings, [settings.kafka.topics.market_data], "feed")
    producer = make_producer(settings, "feed", key_serializer=None, value_serializer=None)
    for key, value in records:
        producer.send(settings.kafka.topics.market_data, key=key, value=value)
    producer.flush()
    producer.close()


def _dlq(settings) -> list:
    topic = settings.kafka.topics.dead_letter
    consumer = KafkaConsumer(**client_options(settings, ADMIN), enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    rows = []
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for batch in consumer.poll(timeout_ms=1000).values():
            rows += batch
    consumer.close()
    return rows


def test_fuzzed_ticks_are_dead_lettered_with_reasons_and_nothing_counts_twice_after_restart(
        spark, services, tmp_path, sqlite_registry) -> None:
    settings = _settings(tmp_path, QL_DATA__SYNTHETIC__N_SYMBOLS="3", QL_DATA__SYNTHETIC__N_DAYS="1",
                         QL_PLATFORM__MLFLOW__REGISTERED_MODEL="no-such-model")
    cfg = settings.data.synthetic
    ticks = generate_ticks(generate_market(cfg), cfg.model_copy(update={"bad_tick_rate": 0.0}))
    ticks = ticks.sort_values("ts", kind="stable").reset_index(drop=True)
    first, second = ticks.iloc[: len(ticks) // 2], ticks.iloc[len(ticks) // 2:]
    bad = _fuzz(ticks, 10_000, seed=1)
    resends = list(encode(first.sample(200, random_state=2)))  # exact duplicates: dropped, counted once

    query, _ = job.start(spark, settings, starting_offsets="earliest")
    try:
        assert query.isActive
        _send(settings, list(encode(first)) + [(k, v) for k, v, _ in bad[:5000]] + resends)
        _drain(settings, query, len(first) + 5000 + len(resends))
        query.stop()  # a restart: the same checkpoint, new data since
        # late ticks: valid records older than the watermark the first half set
        late = first.iloc[:300].assign(seq=first["seq"].iloc[:300] + 10_000_000)
        _send(settings, list(encode(second)) + [(k, v) for k, v, _ in bad[5000:]] + list(encode(late)))
        query, _ = job.start(spark, settings)
        _drain(settings, query, len(ticks) + 10_000 + len(resends) + len(late))
    finally:
        query.stop()

    # the Delta dead-letter table: each bad record once, with the reason it was built to have
    dead = lake.read(spark, LIVE_DEAD_LETTERS.path(settings)).drop("ts").toPandas()  # ts 2999 overflows pandas
    assert not dead.duplicated(["partition", "offset"]).any()
    expected = {v: r for _, v, r in bad}
    late_values = {v for _, v in encode(late)}
    by_value = dead.groupby(dead["value"].map(bytes))["reason"].first()
    assert len(dead) == len(bad) + len(late)
    for value, reason in expected.items():
        assert reason in by_value[value], (value, by_value.get(value), reason)
    assert all(by_value[v] == LATE for v in late_values)
    # the dead-letter topic has the same records, original bytes and reasons in headers
    dlq = _dlq(settings)
    assert {(int(dict(m.headers)["dlq.partition"]), int(dict(m.headers)["dlq.offset"])) for m in dlq} == \
        set(zip(dead["partition"], dead["offset"]))
    assert {m.value for m in dlq} == set(by_value.index)

    # every valid tick is in exactly one bar (all but each symbol's last bar are closed)
    bars = lake.read(spark, LIVE_BARS.path(settings)).toPandas()
    assert not bars.duplicated(["symbol", "ts"]).any()
    bar_start = ticks["ts"].dt.floor(f"{cfg.bar_minutes}min").dt.tz_localize(None)
    last = bar_start.groupby(ticks["symbol"]).transform("max")
    closed = ticks[bar_start < last]
    assert int(bars["trades"].sum()) == len(closed)
    status = read_status(settings)
    assert status["ticks_in"] == len(ticks) + 10_000 + len(resends) + len(late)
    assert sum(n for r, n in status["dead_letters"].items() if r == LATE) == len(late)
    assert status["bars"] == len(bars)
    # no silver history to start from: every bar lacked the recipe's history, none got features
    assert status["warming_bars"] == len(bars) and status["feature_rows"] == 0
    assert not lake.exists(spark, LIVE_FEATURES.path(settings))


def test_dagster_sees_live_figures_and_fails_freshness_when_the_stream_stalls(tmp_path, monkeypatch) -> None:
    from datetime import datetime, timedelta, timezone

    from dagster import AssetCheckEvaluation, AssetObservation, SensorResult, SkipReason, build_sensor_context

    from orchestration.assets.live import freshness, live_figures_sensor
    from orchestration.definitions import defs
    from streaming.status import LiveFigures

    monkeypatch.setenv("QL_PLATFORM__STATE_DIR", str(tmp_path / "state"))
    settings = load_settings()
    graph = defs.get_repository_def().asset_graph
    assert {"live_bars", "live_features", "live_predictions", "live_dead_letters"} <= \
        {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert isinstance(live_figures_sensor(build_sensor_context()), SkipReason)  # never ran

    figures = LiveFigures.resume(settings)
    figures.last_batch_id, figures.ticks_in, figures.bars, figures.predictions = 7, 1000, 24, 24
    figures.dead_letters = {"malformed JSON": 3, LATE: 2}
    figures.last_batch_at = datetime.now(timezone.utc).isoformat()
    figures.save()
    context = build_sensor_context()
    result = live_figures_sensor(context)
    assert isinstance(result, SensorResult)
    observations = [e for e in result.asset_events if isinstance(e, AssetObservation)]
    checks = [e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)]
    assert {o.asset_key.to_user_string() for o in observations} == {"live_bars", "live_features",
                                                                    "live_predictions", "live_dead_letters"}
    dead = next(o for o in observations if o.asset_key.to_user_string() == "live_dead_letters")
    assert dead.metadata["dead letters: malformed JSON"].value == 3
    assert checks and all(c.passed for c in checks)
    assert isinstance(live_figures_sensor(build_sensor_context(cursor=context.cursor)), SkipReason)  # nothing new

    stalled = datetime.now(timezone.utc) + timedelta(seconds=settings.kafka.stream.stale_after_seconds + 5)
    passed, text, _ = freshness(settings, now=stalled)
    assert not passed and text.startswith("stalled")


@pytest.mark.slow_bench  # 1.5-4 min (a query start per stage and mode): make bench-short
def test_stream_benchmark_short_version(spark, services, tmp_path) -> None:
    """The benchmark's short run: every section measured (or its failure reported), JSON written."""
    from benchmarks import stream_throughput

    assert stream_throughput.main(["--short", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "stream_throughput_short.json").read_text())["figures"]
    assert figures["physical_limit"]["kafka_consumer_perf"]["messages"] == figures["data"]["ticks"]
    assert figures["physical_limit"]["spark"]["batch_ticks"] == figures["data"]["ticks"]
    for stage in ("validate", "bars", "features"):
        assert figures["stages"][stage]["ticks"] > 0, stage
    assert figures["memory_peak"]["driver_jvm_peak_mb"] > 0
    assert set(figures["real_time_mode"]) == {"micro-batch 0 s", "real-time 5 s"}


def test_binance_trades_feed_as_valid_tick_records(spark, shared_data, tmp_path) -> None:
    """The files source of ticks (Binance BTCUSDT trades) gives the feed time-ordered ticks that
    the stream's validation accepts, every one."""
    from pyspark.sql import Row

    from streaming.feed import feed_ticks
    from streaming.records import parse

    settings = load_settings(env={
        **os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
        "QL_DATA__FILES__NAME": "btcusdt", "QL_DATA__FILES__KIND": "ticks", "QL_DATA__FILES__INTERVAL": "1m",
        "QL_DATA__FILES__PATH": str(shared_data / "binance_usdm_btcusdt_20240808" / "trades.parquet"),
        "QL_DATA__FILES__COLUMNS": json.dumps({"symbol": "'BTCUSDT'", "ts": "timestamp_millis(trade_ms)",
                                               "seq": "trade_id", "size": "qty",
                                               "side": "CASE WHEN buyer_is_maker THEN 'sell' ELSE 'buy' END"})})
    ticks, facts = feed_ticks(settings, spark)
    assert len(ticks) == facts["ticks"] == 21_313
    assert ticks["ts"].is_monotonic_increasing and ticks["seq"].is_unique
    assert job.bar_minutes(settings) == 1
    raw = spark.createDataFrame([Row(key=k, value=v, partition=0, offset=i, timestamp=None)
                                 for i, (k, v) in enumerate(encode(ticks))],
                                "key binary, value binary, partition int, offset long, timestamp timestamp")
    checked = parse(raw, settings.data.quality)
    assert checked.where("reason IS NOT NULL").count() == 0
    back = checked.select("seq", "price", "size").toPandas().sort_values("seq")
    np.testing.assert_array_equal(back["price"].to_numpy(), ticks.sort_values("seq")["price"].to_numpy())


@pytest.mark.chaos  # the suite kills the stream in tests/test_live_trading.py; this one runs in `make chaos`
def test_the_job_survives_a_crash_and_stops_cleanly_on_sigterm(spark, services, tmp_path) -> None:
    """``python -m streaming run`` killed with SIGKILL inside a micro-batch (crash point
    ``stream.after_bars``), restarted from its checkpoint, then stopped by ``python -m streaming
    stop``: the batch in flight is replayed under its own id, and every tick and dead letter
    lands exactly once."""
    import shutil
    import signal
    import subprocess
    import sys

    from config.settings import PROJECT_ROOT
    from streaming.status import live_dir

    env = _env(tmp_path, QL_DATA__SYNTHETIC__N_SYMBOLS="3", QL_DATA__SYNTHETIC__N_DAYS="1",
               QL_PLATFORM__MLFLOW__REGISTERED_MODEL="no-such-model")  # the subprocesses get the same
    settings = load_settings(env=env)
    cfg = settings.data.synthetic
    ticks = generate_ticks(generate_market(cfg), cfg.model_copy(update={"bad_tick_rate": 0.0}))
    ticks = ticks.sort_values("ts", kind="stable").reset_index(drop=True)
    first, second = ticks.iloc[: len(ticks) // 2], ticks.iloc[len(ticks) // 2:]
    bad = _fuzz(ticks, 400, seed=5)
    run = [sys.executable, "-m", "streaming", "run"]
    try:
        _send(settings, list(encode(first)) + [(k, v) for k, v, _ in bad[:200]])
        # killed (SIGKILL, no clean-up at all) at a named crash point inside the first micro-batch
        # that lands bars: after its bars are appended, before the batch is committed
        crashed = subprocess.Popen(run, cwd=PROJECT_ROOT, env={**env, "QL_CRASH_AT": "stream.after_bars"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert crashed.wait(180) == -signal.SIGKILL, "the stream never reached its crash point"
        checkpoint = job.checkpoint_dir(settings)

        def batches(log: str) -> set[int]:
            folder = checkpoint / log
            return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.exists() else set()

        in_flight = max(batches("offsets"))
        assert in_flight not in batches("commits")  # the crash was inside this batch
        _send(settings, list(encode(second)) + [(k, v) for k, v, _ in bad[200:]])

        restarted = subprocess.Popen(run, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.monotonic() + 240
        while (read_status(settings) or {}).get("ticks_in", 0) < len(ticks) + len(bad):
            assert restarted.poll() is None and time.monotonic() < deadline, read_status(settings)
            time.sleep(0.5)
        stop = subprocess.run([sys.executable, "-m", "streaming", "stop"], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0 and "stream: stopped" in stop.stdout, stop.stdout + stop.stderr
        output, _ = restarted.communicate(timeout=60)
        assert restarted.returncode == 0, output[-2000:]
        assert "stopping cleanly" in output

        assert in_flight in batches("commits")  # the restart ran the same batch again: a replay
        bars = lake.read(spark, LIVE_BARS.path(settings)).toPandas()
        assert (bars["batch_id"] == in_flight).any()  # its bars, landed once though appended twice
        assert not bars.duplicated(["symbol", "ts"]).any()
        bar_start = ticks["ts"].dt.floor(f"{cfg.bar_minutes}min").dt.tz_localize(None)
        closed = ticks[bar_start < bar_start.groupby(ticks["symbol"]).transform("max")]
        assert int(bars["trades"].sum()) == len(closed)
        dead = lake.read(spark, LIVE_DEAD_LETTERS.path(settings)).drop("ts").toPandas()
        assert len(dead) == len(bad) and not dead.duplicated(["partition", "offset"]).any()
        status = read_status(settings)
        assert status["ticks_in"] == len(ticks) + len(bad) and status["bars"] == len(bars)
    finally:
        shutil.rmtree(live_dir(settings), ignore_errors=True)  # the pid and status files under .state/live

