"""The platform smoke run's Kafka round trip: produce, then read back with kafka-python and Spark."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from streaming.kafka_io import ADMIN, JsonCodec, client_options, ensure_topics, make_producer, spark_options

SMOKE_TOPIC = "platform-smoke"


@dataclass(frozen=True)
class KafkaRoundTrip:
    topic: str
    produced: int
    consumed: int
    spark_read: int
    seconds: float


def kafka_roundtrip(settings: Settings, spark: SparkSession, n: int = 1000, timeout_s: float = 60.0) -> KafkaRoundTrip:
    """Produce ``n`` JSON messages, read them back with kafka-python and with Spark's Kafka source."""
    started = time.monotonic()
    ensure_topics(settings, [SMOKE_TOPIC], ADMIN)
    run_id = uuid.uuid4().hex
    probe = KafkaConsumer(**client_options(settings, ADMIN))
    try:
        parts = [TopicPartition(SMOKE_TOPIC, p) for p in sorted(probe.partitions_for_topic(SMOKE_TOPIC) or [])]
        start = probe.end_offsets(parts)
    finally:
        probe.close()

    producer = make_producer(settings, ADMIN)
    for i in range(n):
        producer.send(SMOKE_TOPIC, key=f"k{i % 16}", value={"run_id": run_id, "i": i})
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(**client_options(settings, ADMIN), enable_auto_commit=False,
                             value_deserializer=JsonCodec())
    seen: set[int] = set()
    try:
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, start[tp])
        deadline = time.monotonic() + timeout_s
        while len(seen) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                seen.update(r.value["i"] for r in records if r.value.get("run_id") == run_id)
    finally:
        consumer.close()

    offsets = json.dumps({SMOKE_TOPIC: {str(tp.partition): start[tp] for tp in parts}})
    spark_read = (
        spark.read.format("kafka")
        .options(**spark_options(settings, ADMIN))
        .option("subscribe", SMOKE_TOPIC)
        .option("startingOffsets", offsets)
        .option("endingOffsets", "latest")
        .load()
        .where(F.get_json_object(F.col("value").cast("string"), "$.run_id") == run_id)
        .count()
    )
    return KafkaRoundTrip(SMOKE_TOPIC, n, len(seen), spark_read, time.monotonic() - started)
