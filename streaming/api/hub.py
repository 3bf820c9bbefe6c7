"""The WebSocket fan-out: Kafka topics and the portfolio's Redis channel -> every connected client.

Three streams:

* ``market-data``: the bar records the trader publishes (every symbol's bar at one time) and
  the champion's predictions; a client may ask for some symbols only;
* ``trades``: orders (sent, cancel requests), orders rejected (by the risk gate or the venue,
  with the limit or reason) and fills;
* ``portfolio``: the portfolio's changes (fills applied, marks, equity at each close) and
  trading-state changes.

One Kafka consumer (a thread, reading from the topics' ends, no consumer group) and one Redis
subscription per API process feed all clients. Each client has a bounded queue
(``api.ws_queue`` messages) drained by its own sender task; a client that falls that far behind
is dropped with close code 4008, so one slow reader never holds up the others or grows memory.
Idle streams send a heartbeat every ``api.ws_heartbeat_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kafka import KafkaConsumer, TopicPartition
from kafka.serializer import DefaultSerializer
from prometheus_client import Counter, Gauge

from config import Settings
from config.secrets import redis_password
from streaming import live

log = logging.getLogger(__name__)

STREAMS = ("market-data", "trades", "portfolio")
TOO_SLOW = 4008

WS_CLIENTS = Gauge("quantlake_api_ws_clients", "Connected WebSocket clients", ["stream"])
WS_SENT = Counter("quantlake_api_ws_messages", "Messages sent to WebSocket clients", ["stream"])
WS_DROPPED = Counter("quantlake_api_ws_dropped", "WebSocket clients dropped for falling behind", ["stream"])


@dataclass(eq=False)
class Client:
    """One connection's queue and filter."""

    stream: str
    symbols: frozenset[str] | None
    queue: asyncio.Queue
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, symbol: str | None) -> bool:
        return self.symbols is None or symbol is None or symbol in self.symbols


class Hub:
    """Clients by stream; :meth:`publish` runs on the event loop."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.clients: dict[str, set[Client]] = {s: set() for s in STREAMS}

    def join(self, stream: str, symbols: frozenset[str] | None) -> Client:
        client = Client(stream, symbols, asyncio.Queue(self.queue_size))
        self.clients[stream].add(client)
        WS_CLIENTS.labels(stream).set(len(self.clients[stream]))
        return client

    def leave(self, client: Client) -> None:
        self.clients[client.stream].discard(client)
        WS_CLIENTS.labels(client.stream).set(len(self.clients[client.stream]))

    def publish(self, stream: str, message: dict) -> None:
        """Queue ``message`` for every client of ``stream`` that wants it; drop the ones whose
        queue is full. A bar record is cut down to the symbols a filtered client asked for."""
        text, per_filter = None, {}
        for client in list(self.clients[stream]):
            if client.dropped.is_set():
                continue
            if message.get("type") == "bars" and client.symbols is not None:
                body = per_filter.get(client.symbols)
                if body is None:
                    bars = [b for b in message["bars"] if b.get("symbol") in client.symbols]
                    body = per_filter[client.symbols] = json.dumps({**message, "bars": bars}) if bars else ""
                if not body:
                    continue
            elif not client.wants(message.get("symbol")):
                continue
            else:
                body = text = text or json.dumps(message)
            try:
                client.queue.put_nowait(body)
            except asyncio.QueueFull:
                client.dropped.set()
                WS_DROPPED.labels(stream).inc()
                log.warning("a %s WebSocket client fell %d messages behind: dropped", stream, self.queue_size)


IDENTITY = ("submitted_by", "by")  # who placed or cancelled an order: never sent to other keys' streams


def _anonymous(value: dict) -> dict:
    out = {k: v for k, v in value.items() if k not in IDENTITY}
    if isinstance(out.get("order"), dict):
        out["order"] = {k: v for k, v in out["order"].items() if k not in IDENTITY}
    return out


def kafka_message(topics, topic: str, value) -> tuple[str, dict] | None:
    """(stream, message) for a record of one of the live topics, or None (not for clients)."""
    if not isinstance(value, dict):
        return None
    value = {k: v for k, v in value.items() if k != "v"}
    if topic == topics.bars:
        return "market-data", {"type": "bars", "ts": value.get("ts"), "bars": value.get("bars") or []}
    if topic == topics.predictions:
        return "market-data", {"type": "prediction", **{k: value.get(k) for k in (
            "symbol", "ts", "p_up", "expected_return", "model", "model_version", "family", "scored_at")}}
    if topic == topics.orders:
        kind = "cancel_request" if value.get("kind") == "cancel" else "order"
        return "trades", {"type": kind, **_anonymous(value)}
    if topic == topics.orders_rejected:
        order = value.get("order") if isinstance(value.get("order"), dict) else value
        return "trades", {"type": "rejected", "symbol": order.get("symbol"), **_anonymous(value)}
    if topic == topics.fills and value.get("kind") == "fill":
        return "trades", {"type": "fill", **{k: v for k, v in value.items() if k != "kind"}}
    return None


class Feeds:
    """The Kafka thread and the Redis subscription that feed a :class:`Hub`."""

    def __init__(self, settings: Settings, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.settings, self.hub, self.loop = settings, hub, loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._redis_task: asyncio.Task | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._kafka, name="ws-kafka", daemon=True)
        self._thread.start()
        self._redis_task = self.loop.create_task(self._redis())

    async def stop(self) -> None:
        self._stop.set()
        if self._redis_task is not None:
            self._redis_task.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def _kafka(self) -> None:
        from streaming.kafka_io import client_options, ensure_topics
        from streaming.live import SafeJson

        t = self.settings.kafka.topics
        names = [t.bars, t.predictions, t.orders, t.orders_rejected, t.fills]
        while not self._stop.is_set():
            try:
                ensure_topics(self.settings, names, "api")
                consumer = KafkaConsumer(**client_options(self.settings, "api"), enable_auto_commit=False,
                                         value_deserializer=SafeJson(), key_deserializer=DefaultSerializer())
                partitions = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or {0})]
                consumer.assign(partitions)
                consumer.seek_to_end(*partitions)
                for tp in partitions:
                    consumer.position(tp)
                try:
                    while not self._stop.is_set():
                        for tp, records in consumer.poll(timeout_ms=200).items():
                            for record in records:
                                routed = kafka_message(t, tp.topic, record.value)
                                if routed is not None:
                                    self.loop.call_soon_threadsafe(self.hub.publish, *routed)
                finally:
                    consumer.close()
            except Exception as error:  # the broker went away: retry, the API keeps serving REST
                log.warning("WebSocket feed from Kafka interrupted (%s); retrying in 2 s", error)
                self._stop.wait(2.0)

    async def _redis(self) -> None:
        import redis.asyncio as aioredis

        cfg = self.settings.platform.redis
        channel = f"portfolio:{live.account(self.settings)}:changes"
        while True:
            client = aioredis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, username=cfg.user,
                                    password=redis_password(self.settings), decode_responses=True)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as sub:
                    await sub.subscribe(channel)
                    async for message in sub.listen():
                        try:
                            data = json.loads(message["data"])
                        except (TypeError, ValueError):
                            continue
                        self.hub.publish("portfolio", {"type": data.pop("kind", "change"), **data})
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("WebSocket feed from Redis interrupted (%s); retrying in 2 s", error)
                await asyncio.sleep(2.0)
            finally:
                await client.aclose()


def heartbeat() -> str:
    return json.dumps({"type": "heartbeat", "at": datetime.now(timezone.utc).isoformat()})
