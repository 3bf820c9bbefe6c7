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
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pandas as pd
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.serializer import DefaultSerializer
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from config import Settings
from config.errors import UserError
from config.secrets import redis_password
from streaming.kafka_io import (ADMIN, JsonCodec, client_options, ensure_access, ensure_topics, make_producer,
                                ordered_topics)

log = logging.getLogger(__name__)
T = TypeVar("T")

ROLES = ("venue", "portfolio", "trader")
RECORD_VERSION = 1


def account(settings: Settings) -> str:
    """The paper account's name: ``trading.live.account``, else the dataset's."""
    return settings.trading.live.account or settings.data.dataset


def redis_client(settings: Settings, retries: int = 60) -> redis.Redis:
    """A client that rides out a Redis restart: commands are retried ``retries`` times with
    backoff up to 2 s (the default: about a minute; the API's requests use a few)."""
    cfg = settings.platform.redis
    return redis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, username=cfg.user, password=redis_password(settings),
                       decode_responses=True, socket_timeout=10 if retries > 5 else 2,
                       socket_connect_timeout=5 if retries > 5 else 1, health_check_interval=5,
                       retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
                       retry_on_error=[RedisConnectionError, RedisTimeoutError])


def async_redis_client(settings: Settings):
    """An asyncio client (the API's waits on the event loop), with a few quick retries."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry

    cfg = settings.platform.redis
    return aioredis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, username=cfg.user,
                          password=redis_password(settings), decode_responses=True, socket_timeout=2,
                          socket_connect_timeout=1, retry=AsyncRetry(ExponentialBackoff(cap=2.0, base=0.05), 3),
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


def _end_offset(settings: Settings, topic: str, user: str) -> int:
    consumer = KafkaConsumer(**client_options(settings, user), enable_auto_commit=False)
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
    ensure_access(settings)  # the run's topic names may be new to the broker's ACLs
    ensure_topics(settings, sorted(ordered_topics(settings)), ADMIN)
    for role in ROLES:
        keys = list(client.scan_iter(match=key(settings, role, "*")))
        if keys:
            client.delete(*keys)
    t = settings.kafka.topics
    reads = {"venue": [t.orders, t.bars], "portfolio": [t.fills]}
    for role, topics in reads.items():
        client.hset(key(settings, role, "offsets"), mapping={topic: _end_offset(settings, topic, ADMIN) for topic in topics})
    RedisPortfolio(client, account(settings)).open(settings.trading.initial_capital)
    client.close()


SUBMITS = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - 1000000)
local have = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
local take = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    take = take + 1  -- admitted before (a step done again): not counted twice
  elseif have < limit then
    redis.call('ZADD', KEYS[1], now_us, ARGV[i])
    have = have + 1
    take = take + 1
  else
    break
  end
end
redis.call('PEXPIRE', KEYS[1], 2000)
return {take, have}
"""


class SubmitRate:
    """``limits.max_orders_per_second`` live: accepted orders in the last second of wall time (the
    Redis server's clock), counted across every process that submits for the account (the
    trader and each API process), and surviving their restarts. The backtest, which has no wall
    clock, counts the same limit in event time inside :func:`pipelines.trading.risk.check_order`."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.limit = int(settings.trading.limits.max_orders_per_second)
        self.key = key(settings, "gate", "submits")
        self._script = client.register_script(SUBMITS)

    def take(self, order_ids: list[str]) -> tuple[int, int]:
        """Admit the first orders of ``order_ids`` that fit this second; returns (how many were
        admitted, orders now counted in the window)."""
        if not order_ids:
            return 0, 0
        taken, count = self._script(keys=[self.key], args=[self.limit, *order_ids])
        return int(taken), int(count)


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


class LostOffset(UserError):
    """A service's stored read position is gone or outside its topic's records: reading from
    anywhere else would skip or repeat records, so the service stops and says why."""


class TopicReader:
    """Partition 0 of some topics, read from the positions a service stored in Redis.

    A position that is missing (no run started for the account, or Redis lost its data) or
    outside the records the topic still holds (retention removed them, or the topic was made
    anew) is :class:`LostOffset`, never a silent jump to either end.
    """

    def __init__(self, settings: Settings, client: redis.Redis, role: str, topics: list[str]) -> None:
        self.client, self.offsets_key = client, key(settings, role, "offsets")
        ensure_topics(settings, topics, role)  # the service's Kafka user is its role
        self.consumer = KafkaConsumer(**client_options(settings, role), enable_auto_commit=False,
                                      value_deserializer=SafeJson(), key_deserializer=DefaultSerializer(),
                                      max_poll_records=500, auto_offset_reset="none")
        self.partitions = [TopicPartition(topic, 0) for topic in topics]
        self.consumer.assign(self.partitions)
        stored = client.hgetall(self.offsets_key)
        first = self.consumer.beginning_offsets(self.partitions)
        end = self.consumer.end_offsets(self.partitions)
        for tp in self.partitions:
            if tp.topic not in stored:
                raise LostOffset(f"the {role} has no stored position on {tp.topic!r} (account "
                                 f"{account(settings)!r}): no run was started for it, or Redis lost its state. "
                                 "Start a run (`python -m streaming run --fresh`, or `make live`) instead of "
                                 "guessing where to read")
            at = int(stored[tp.topic])
            if not first[tp] <= at <= end[tp]:
                raise LostOffset(f"the {role}'s stored position {at} on {tp.topic!r} is outside the records the "
                                 f"topic holds ({first[tp]}..{end[tp]}): reading from elsewhere would skip or "
                                 "repeat records")
            self.consumer.seek(tp, at)
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


class SendFailed(RuntimeError):
    """Kafka did not acknowledge a record within the producer's delivery timeout (or had no
    metadata for its topic within ``max_block_ms``). The step that sent it has not happened: its
    caller records nothing and does the step again later (same record ids, so the readers
    apply it once)."""


class Outbox:
    """Records for the single-partition trading topics, confirmed before their effect is recorded.

    ``send`` queues a record (partition 0, the record version added, signed when it goes to
    ``orders`` and the outbox has a signer: :mod:`streaming.signing`); ``confirm`` flushes and
    checks every record queued since the last ``confirm``, raising :class:`SendFailed` for the
    first one the broker did not acknowledge. kafka-python's ``flush()`` alone does not raise for
    a failed record, so nothing may be marked done on the strength of a flush. After a failure the
    producer is replaced (an idempotent producer's sequence is broken by an expired batch).
    """

    def __init__(self, settings: Settings, user: str, signer: str | None = None) -> None:
        from streaming.signing import Signer

        self.settings, self.user = settings, user  # the Kafka user it writes as
        self._signer = Signer(settings, signer) if signer else None  # signs what goes to ``orders``
        self._producer = None
        self._pending: list[tuple[str, str, Any]] = []  # (topic, key, future)

    @property
    def producer(self):
        if self._producer is None:
            self._producer = make_producer(self.settings, self.user, linger_ms=0)
        return self._producer

    def send(self, topic: str, key: str, value: dict) -> None:
        value = {"v": RECORD_VERSION, **value}
        if self._signer is not None and topic == self.settings.kafka.topics.orders:
            value = self._signer.sign(value)
        try:
            future = self.producer.send(topic, key=key, value=value, partition=0)
        except KafkaError as error:  # no metadata within max_block_ms: the broker is away
            self._fail(f"{topic} record {key!r} not sent: {error}")
        self._pending.append((topic, key, future))

    def confirm(self) -> None:
        """Block until every queued record is acknowledged; :class:`SendFailed` names the first that was not."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            self.producer.flush()
        except KafkaError as error:
            self._fail(f"{len(pending)} record(s) not flushed: {error}")
        for topic, key, future in pending:
            try:
                future.get(timeout=0)
            except KafkaError as error:
                self._fail(f"{topic} record {key!r} not acknowledged: {error!r}")

    def send_confirmed(self, topic: str, key: str, value: dict) -> None:
        self.send(topic, key, value)
        self.confirm()

    def _fail(self, message: str) -> NoReturn:
        self._pending = []
        self.close()
        raise SendFailed(message)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except KafkaError:
                pass
            self._producer = None


def until_sent(step: Callable[[], T], what: str, give_up_seconds: float, pause_s: float = 1.0) -> T:
    """``step()``, done again after each :class:`SendFailed` (the step recorded nothing, so doing
    it again sends the same records) until it succeeds or ``give_up_seconds`` have passed (the
    last failure is raised)."""
    deadline = time.monotonic() + give_up_seconds
    while True:
        try:
            return step()
        except SendFailed as error:
            from streaming import metrics

            metrics.SEND_FAILURES.labels(what).inc()
            if time.monotonic() + pause_s > deadline:
                raise
            log.error("%s: %s; trying again in %.0f s", what, error, pause_s)
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 15.0)


def wait_for(condition, timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``condition()`` until it is true or ``timeout_s`` passed; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
