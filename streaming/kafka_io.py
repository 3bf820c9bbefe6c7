"""Kafka adapters: topics, producers and consumers configured from ``kafka_config.yaml``."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.serializer import DefaultSerializer, JsonSerializer

from config import Settings


def ordered_topics(settings: Settings) -> set[str]:
    """The trading topics, created with one partition: their readers need the writers' order
    (a bar after the orders decided before it; a fill before its bar's close)."""
    t = settings.kafka.topics
    return {t.orders, t.orders_rejected, t.bars, t.fills}


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the configured topics (or ``names``) that do not exist yet (the trading topics
    with one partition, the others with ``partitions``); return those created."""
    cfg = settings.kafka
    wanted = names or list(cfg.topics.model_dump().values())
    single = ordered_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="quantlake-admin")
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(n, 1 if n in single else cfg.partitions, cfg.replication_factor)
                                     for n in missing])
            except TopicAlreadyExistsError:  # created concurrently by another process
                pass
        return missing
    finally:
        admin.close()


class JsonCodec(JsonSerializer):
    """Compact JSON values; timestamps and decimals become strings."""

    def serialize(self, topic, headers, data):
        return None if data is None else json.dumps(data, separators=(",", ":"), default=str).encode()


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent, batching JSON producer (keys are strings)."""
    p = settings.kafka.producer
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "linger_ms": p.linger_ms,
        "batch_size": p.batch_size,
        "compression_type": p.compression_type,
        "acks": p.acks,
        "delivery_timeout_ms": p.delivery_timeout_ms,
        "request_timeout_ms": min(p.request_timeout_ms, max(1, p.delivery_timeout_ms - p.linger_ms)),
        "max_block_ms": p.max_block_ms,
        "key_serializer": DefaultSerializer(),
        "value_serializer": JsonCodec(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A JSON consumer in the configured group, reading ``topics``."""
    c = settings.kafka.consumer
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": c.group_id,
        "auto_offset_reset": c.auto_offset_reset,
        "value_deserializer": JsonCodec(),
        "key_deserializer": DefaultSerializer(),
    }
    options.update(overrides)
    return KafkaConsumer(*topics, **options)
