"""What the trading services share: the account, Redis, heartbeats, topic positions and records.

The live trading path is three processes around three single-partition topics::

    stream job (trader) ──bars, orders──► venue ──fills, bar closes──► portfolio (Redis)
          ▲                                                               │
          └──────────── waits until the portfolio has closed the bar ─────┘

Each service keeps its state in Redis and its read position in Redis too (``<prefix>:offsets``),
written after the effects of what it read: a service killed at any point re-reads a few
records, and every effect is idempotent by id (order ids claimed once, fill ids applied once,
bar times closed once), so nothing counts twice and nothing is lost.

``fresh_run`` starts a paper account: it deletes the account's keys and sets every service's
read position to the topics' current ends, so a run sees only its own records.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.serializer import DefaultSerializer
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from config import Settings
from streaming.kafka_io import JsonCodec, ensure_topics, make_producer, ordered_topics

ROLES = ("venue", "portfolio", "trader")
RECORD_VERSION = 1


def account(settings: Settings) -> str:
    """The paper account's name: ``trading.live.account``, else the dataset's."""
    return settings.trading.live.account or settings.data.dataset


def redis_client(settings: Settings) -> redis.Redis:
    """A client that rides out a Redis restart: commands are retried for about a minute."""
    cfg = settings.platform.redis
    return redis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, decode_responses=True, socket_timeout=10,
                       socket_connect_timeout=5, health_check_interval=5,
                       retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 60),
                       retry_on_error=[RedisConnectionError, RedisTimeoutError])


def key(settings: Settings, role: str, *parts: str) -> str:
    """``<role>:<account>:<parts...>`` (the portfolio's keys are ``portfolio:<account>:...``)."""
    return ":".join((role, account(settings), *parts))


def beat(client: redis.Redis, settings: Settings, role: str) -> None:
    """Say ``role`` is alive for ``trading.live.heartbeat_seconds``."""
    client.set(key(settings, role, "heartbeat"), datetime.now(timezone.utc).isoformat(),
               ex=max(1, math.ceil(settings.trading.live.heartbeat_seconds)))


def alive(client: redis.Redis, settings: Settings, role: str) -> bool:
    return bool(client.exists(key(settings, role, "heartbeat")))


def micros(ts: datetime | pd.Timestamp) -> int:
    """Epoch microseconds of a UTC bar time (naive times are taken as UTC)."""
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1000)


def utc(ts: datetime | pd.Timestamp | str) -> datetime:
    """An aware UTC datetime (naive input is UTC)."""
    stamp = pd.Timestamp(ts)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def iso(ts: datetime | pd.Timestamp) -> str:
    return utc(ts).isoformat().replace("+00:00", "Z")


def _end_offset(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def fresh_run(settings: Settings) -> None:
    """A new paper account at ``trading.initial_capital``: the account's keys go, every service
    reads its topics from their current ends."""
    from streaming.portfolio import RedisPortfolio

    client = redis_client(settings)
    ensure_topics(settings, sorted(ordered_topics(settings)))
    for role in ROLES:
        keys = list(client.scan_iter(match=key(settings, role, "*")))
        if keys:
            client.delete(*keys)
    t = settings.kafka.topics
    reads = {"venue": [t.orders, t.bars], "portfolio": [t.fills]}
    for role, topics in reads.items():
        client.hset(key(settings, role, "offsets"), mapping={topic: _end_offset(settings, topic) for topic in topics})
    RedisPortfolio(client, account(settings)).open(settings.trading.initial_capital)
    client.close()


class SafeJson(JsonCodec):
    """JSON values; bytes that are not JSON become ``{"_malformed": <text>}`` instead of an error."""

    def deserialize(self, topic, headers, data):
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:
            return {"_malformed": data.decode("utf-8", "replace")[:200]}
        return value if isinstance(value, dict) else {"_malformed": str(value)[:200]}


class TopicReader:
    """Partition 0 of some topics, read from the positions a service stored in Redis.

    A topic without a stored position is read from its end (a service started before any
    ``fresh_run`` sees what comes next, not the topic's history).
    """

    def __init__(self, settings: Settings, client: redis.Redis, role: str, topics: list[str]) -> None:
        self.client, self.offsets_key = client, key(settings, role, "offsets")
        ensure_topics(settings, topics)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                      value_deserializer=SafeJson(), key_deserializer=DefaultSerializer(),
                                      max_poll_records=500)
        self.partitions = [TopicPartition(topic, 0) for topic in topics]
        self.consumer.assign(self.partitions)
        stored = client.hgetall(self.offsets_key)
        for tp in self.partitions:
            if tp.topic in stored:
                self.consumer.seek(tp, int(stored[tp.topic]))
            else:
                self.consumer.seek_to_end(tp)
        self.position = {tp.topic: self.consumer.position(tp) for tp in self.partitions}

    def poll(self, timeout_ms: int = 100) -> list[tuple[str, int, Any]]:
        """(topic, offset, value) in offset order per topic (see :class:`SafeJson`)."""
        out = []
        for tp, messages in self.consumer.poll(timeout_ms=timeout_ms).items():
            out += [(tp.topic, m.offset, m.value) for m in messages]
        return out

    def commit(self, positions: dict[str, int]) -> None:
        """Store the next offsets to read (after the effects of everything before them)."""
        if positions:
            self.client.hset(self.offsets_key, mapping=positions)

    def close(self) -> None:
        self.consumer.close()


def ordered_producer(settings: Settings):
    """An idempotent producer for the single-partition trading topics (partition 0)."""
    return make_producer(settings, linger_ms=0)


def send(producer, topic: str, key: str, value: dict) -> None:
    producer.send(topic, key=key, value={"v": RECORD_VERSION, **value}, partition=0)


def wait_for(condition, timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``condition()`` until it is true or ``timeout_s`` passed; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
