"""The Kafka broker: topics, produce/consume with kafka-python, and Spark's Kafka source."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaAdminClient

from streaming.smoke import kafka_roundtrip
from streaming.kafka_io import ensure_topics, make_consumer, make_producer

pytestmark = pytest.mark.services


def _topic() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def test_create_produce_consume(services) -> None:
    topic = _topic()
    assert ensure_topics(services, [topic]) == [topic]
    assert ensure_topics(services, [topic]) == []  # second call creates nothing
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = make_producer(services)
    sent = [{"symbol": f"S{i % 3}", "seq": i, "price": 100.0 + i} for i in range(200)]
    for msg in sent:
        producer.send(topic, key=msg["symbol"], value=msg)
    producer.flush()
    producer.close()

    consumer = make_consumer(services, topic, group_id=f"g-{topic}", consumer_timeout_ms=10_000)
    got = []
    try:
        for record in consumer:
            got.append(record.value)
            if len(got) == len(sent):
                break
    finally:
        consumer.close()
    assert sorted(got, key=lambda m: m["seq"]) == sent


def test_spark_batch_read_of_topic(services, spark) -> None:
    topic = _topic()
    ensure_topics(services, [topic])
    producer = make_producer(services)
    for i in range(50):
        producer.send(topic, key=f"k{i}", value={"i": i})
    producer.flush()
    producer.close()

    df = (spark.read.format("kafka")
          .option("kafka.bootstrap.servers", services.kafka_bootstrap)
          .option("subscribe", topic)
          .option("startingOffsets", "earliest")
          .option("endingOffsets", "latest")
          .load())
    rows = df.selectExpr("CAST(key AS STRING) AS k", "CAST(value AS STRING) AS v", "partition").collect()
    assert sorted(json.loads(r["v"])["i"] for r in rows) == list(range(50))
    assert {r["k"] for r in rows} == {f"k{i}" for i in range(50)}
    assert len({r["partition"] for r in rows}) > 1  # keys spread over the topic's partitions


def test_smoke_roundtrip_loses_nothing(services, spark) -> None:
    trip = kafka_roundtrip(services, spark, n=300)
    assert (trip.produced, trip.consumed, trip.spark_read) == (300, 300, 300)
