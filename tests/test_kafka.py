"""The Kafka broker: topics, produce/consume with kafka-python, and Spark's Kafka source."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka import KafkaAdminClient

from streaming.kafka_io import ADMIN, client_options, ensure_topics, make_consumer, make_producer, spark_options
from streaming.smoke import kafka_roundtrip

pytestmark = pytest.mark.services


def _topic() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def test_create_produce_consume(services) -> None:
    topic = _topic()
    assert ensure_topics(services, [topic], ADMIN) == [topic]
    assert ensure_topics(services, [topic], ADMIN) == []  # second call creates nothing
    admin = KafkaAdminClient(**client_options(services, ADMIN))
    try:
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = make_producer(services, ADMIN)
    sent = [{"symbol": f"S{i % 3}", "seq": i, "price": 100.0 + i} for i in range(200)]
    for msg in sent:
        producer.send(topic, key=msg["symbol"], value=msg)
    producer.flush()
    producer.close()

    consumer = make_consumer(services, ADMIN, topic, group_id=f"g-{topic}", consumer_timeout_ms=10_000)
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
    ensure_topics(services, [topic], ADMIN)
    producer = make_producer(services, ADMIN)
    for i in range(50):
        producer.send(topic, key=f"k{i}", value={"i": i})
    producer.flush()
    producer.close()

    df = (spark.read.format("kafka")
          .options(**spark_options(services, ADMIN))
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


def test_each_process_reads_and_writes_only_its_own_topics(tmp_path) -> None:
    """SASL/SCRAM with ACLs, on a broker of the test's own (probe records on the shared broker's
    trading topics would reach the running services): every user of ``kafka_io.access`` writes
    exactly the topics it lists and reads exactly those, no other user may write ``orders``
    than the stream (its trader) and the API (its desk), only the venue writes ``fills``, and
    a client with no login or a wrong password gets nothing."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError

    from config import load_settings
    from streaming.kafka_io import access
    from tests.livekit import free_port, private_server

    kafka, env = private_server("kafka", tmp_path, port=free_port(), controller_port=free_port())
    kafka.up()  # after_start writes the users and the ACLs
    try:
        settings = load_settings(env=env)
        topics = sorted(settings.kafka.topics.model_dump().values())
        admin_producer = make_producer(settings, ADMIN, linger_ms=0)
        for topic in topics:  # one record each, so an allowed read has something to get
            admin_producer.send(topic, key="seed", value={"seed": True}, partition=0).get(timeout=30)
        admin_producer.close()

        table = access(settings)
        t = settings.kafka.topics
        assert {u for u, r in table.items() if t.orders in r.writes} == {"stream", "api"}
        assert {u for u, r in table.items() if t.fills in r.writes} == {"venue"}
        assert {u for u, r in table.items() if t.market_data in r.writes} == {"feed"}
        for user, rights in table.items():
            consumer = KafkaConsumer(**client_options(settings, user), enable_auto_commit=False)
            try:
                visible = consumer.topics()  # a topic a user may neither read nor write it cannot even see
                assert visible == {*rights.reads, *rights.writes}, (user, visible)
                for topic in topics:
                    # a producer per topic: kafka-python's idempotent producer treats a refused
                    # write as fatal and fails every later send
                    producer = make_producer(settings, user, linger_ms=0, max_block_ms=10_000)
                    try:
                        producer.send(topic, key="probe", value={"user": user}, partition=0).get(timeout=30)
                        wrote = True
                    except KafkaError as error:  # the topic, or for a user who writes nothing the producer id
                        assert "AuthorizationFailed" in repr(error), error
                        wrote = False
                    finally:
                        producer.close()
                    assert wrote == (topic in rights.writes), (user, topic, "write")
                    if topic not in visible:
                        continue
                    tp = TopicPartition(topic, 0)
                    consumer.assign([tp])
                    consumer.seek(tp, 0)
                    read = None
                    deadline = time.monotonic() + 15
                    while read is None and time.monotonic() < deadline:
                        try:
                            read = True if consumer.poll(timeout_ms=100) else None
                        except TopicAuthorizationFailedError:
                            read = False
                    assert read == (topic in rights.reads), (user, topic, "read")
            finally:
                consumer.close()

        # kafka-python reports a refused login as no bootstrap (the broker's reason reaches its log
        # only sometimes: it may see the connection closed first). The same options with the right
        # password connect, so it is the password that is refused.
        right = client_options(settings, "venue")
        for options in ({"bootstrap_servers": settings.kafka_bootstrap}, {**right, "sasl_plain_password": "wrong"}):
            with pytest.raises(KafkaTimeoutError):
                KafkaAdminClient(**options, request_timeout_ms=2000, bootstrap_timeout_ms=5000)
        admin = KafkaAdminClient(**right, request_timeout_ms=2000, bootstrap_timeout_ms=5000)
        assert set(admin.list_topics()) == {*table["venue"].reads, *table["venue"].writes}
        admin.close()
        assert "during SASL handshake" in kafka.log_path.read_text()  # no login: the broker drops the client
    finally:
        kafka.down()


def test_a_storage_formatted_without_logins_gets_them_and_keeps_its_records(tmp_path, capsys) -> None:
    """A broker whose storage was formatted without SCRAM users (PLAINTEXT, as before logins
    existed) is upgraded by ``up``: started once without logins, the admin's credential stored,
    restarted secured. Its records are still there and every user logs in."""
    from kafka import KafkaConsumer, TopicPartition

    from config import load_settings
    from tests.livekit import free_port, private_server

    ports = {"port": free_port(), "controller_port": free_port()}
    kafka, env = private_server("kafka", tmp_path, **ports)
    plain = load_settings(env={**env, "QL_KAFKA__SECURITY__PROTOCOL": "PLAINTEXT"})
    kafka.settings = plain
    kafka.up()
    try:
        producer = make_producer(plain, ADMIN, linger_ms=0)
        producer.send(plain.kafka.topics.market_data, key="old", value={"kept": True}, partition=0).get(timeout=30)
        producer.close()
    finally:
        kafka.down()

    kafka, env = private_server("kafka", tmp_path, **ports)  # the same storage, now secured
    assert kafka.up() == "started"
    assert "adding the admin's SCRAM login" in capsys.readouterr().out
    try:
        settings = load_settings(env=env)
        consumer = KafkaConsumer(**client_options(settings, ADMIN), enable_auto_commit=False, consumer_timeout_ms=5000)
        tp = TopicPartition(settings.kafka.topics.market_data, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        assert [json.loads(m.value) for m in consumer] == [{"kept": True}]
        consumer.close()
        producer = make_producer(settings, "feed", linger_ms=0)  # after_start wrote the users and ACLs
        producer.send(settings.kafka.topics.market_data, key="new", value={"new": True}, partition=0).get(timeout=30)
        producer.close()
    finally:
        kafka.down()
