"""Kafka adapters: topics, producers and consumers configured from ``kafka_config.yaml``, and
who may do what.

Every process logs in as its own user (``kafka.security``: SASL/SCRAM). :data:`ACCESS` is the
one table of what each user may read and write; :func:`ensure_access` writes it to the broker
as SCRAM credentials and ACLs, so the broker itself refuses an order written by anything but
the stream's trader or the API's desk, a fill written by anything but the venue, and so on.
``admin`` is the broker's super user (topics, users, ACLs, the tests).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, NewTopic, ResourcePattern,
                         ResourceType, ScramMechanism, UserScramCredentialUpsertion)
from kafka.errors import TopicAlreadyExistsError
from kafka.serializer import DefaultSerializer, JsonSerializer

from config import Settings
from config.secrets import kafka_password

ADMIN = "admin"  # the broker's super user


@dataclass(frozen=True)
class Access:
    """What one Kafka user may do: read (and describe) ``reads``, write ``writes``, create
    either (a process makes sure its topics exist), and join consumer groups named with one of
    ``group_prefixes``."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    group_prefixes: tuple[str, ...] = ()


def access(settings: Settings) -> dict[str, Access]:
    """Each process's user and its rights: the table :func:`ensure_access` writes as ACLs."""
    t = settings.kafka.topics
    return {
        "feed": Access(writes=(t.market_data,)),
        # the Structured Streaming job, with the trader in its micro-batches (Spark's source
        # names its consumer groups spark-kafka-source-...)
        "stream": Access(reads=(t.market_data,), writes=(t.dead_letter, t.predictions, t.bars, t.orders,
                                                          t.orders_rejected), group_prefixes=("spark-kafka-",)),
        "venue": Access(reads=(t.orders, t.bars), writes=(t.fills, t.orders_rejected)),
        "portfolio": Access(reads=(t.fills,)),
        # the desk writes manual orders; the WebSockets relay every trading topic
        "api": Access(reads=(t.predictions, t.bars, t.orders, t.orders_rejected, t.fills),
                      writes=(t.orders, t.orders_rejected)),
    }


def secured(settings: Settings) -> bool:
    """Whether clients log in (``kafka.security.protocol`` SASL_PLAINTEXT)."""
    return settings.kafka.security.protocol == "SASL_PLAINTEXT"


def client_options(settings: Settings, user: str, bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python options that reach the brokers (``bootstrap``, else the configured ones) as ``user``."""
    options: dict[str, Any] = {"bootstrap_servers": bootstrap or settings.kafka_bootstrap}
    if secured(settings):
        options.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism=settings.kafka.security.mechanism,
                       sasl_plain_username=user, sasl_plain_password=kafka_password(settings, user))
    return options


def spark_options(settings: Settings, user: str) -> dict[str, str]:
    """Spark's Kafka source and sink options (``kafka.*``) that reach the brokers as ``user``."""
    options = {"kafka.bootstrap.servers": settings.kafka_bootstrap}
    if secured(settings):
        options.update({
            "kafka.security.protocol": "SASL_PLAINTEXT",
            "kafka.sasl.mechanism": settings.kafka.security.mechanism,
            "kafka.sasl.jaas.config": jaas_config(user, kafka_password(settings, user)),
        })
    return options


def java_client_properties(settings: Settings, user: str) -> str:
    """A Java client's properties file (Kafka's command-line tools) for ``user``."""
    lines = [f"bootstrap.servers={settings.kafka_bootstrap}"]
    if secured(settings):
        lines += ["security.protocol=SASL_PLAINTEXT", f"sasl.mechanism={settings.kafka.security.mechanism}",
                  f"sasl.jaas.config={jaas_config(user, kafka_password(settings, user))}"]
    return "\n".join(lines) + "\n"


def jaas_config(user: str, password: str) -> str:
    """The JAAS line a Java Kafka client logs in with (SCRAM)."""
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'


def ensure_access(settings: Settings) -> dict[str, int]:
    """Write :func:`access` to the brokers: each user's SCRAM credential (its current password)
    and its ACLs. Idempotent; run by ``python -m infra up`` once the broker answers. Returns
    the number of ACLs per user."""
    if not secured(settings):
        return {}
    mechanism = ScramMechanism[settings.kafka.security.mechanism.replace("-", "_")]
    table = access(settings)
    admin = KafkaAdminClient(**client_options(settings, ADMIN), client_id="quantlake-admin")
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, mechanism, kafka_password(settings, user)) for user in table])
        failed = {user: e for user, e in errors.items() if e}
        if failed:
            raise RuntimeError(f"kafka: SCRAM credentials not stored: {failed}")
        acls = []
        for user, rights in table.items():
            principal = f"User:{user}"

            def allow(kind: ResourceType, name: str, op: ACLOperation, pattern=ACLResourcePatternType.LITERAL):
                acls.append(ACL(principal, "*", op, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern)))

            for topic in rights.reads:
                allow(ResourceType.TOPIC, topic, ACLOperation.READ)
            for topic in rights.writes:
                allow(ResourceType.TOPIC, topic, ACLOperation.WRITE)
            for topic in {*rights.reads, *rights.writes}:
                allow(ResourceType.TOPIC, topic, ACLOperation.CREATE)
            for prefix in rights.group_prefixes:
                allow(ResourceType.GROUP, prefix, ACLOperation.READ, ACLResourcePatternType.PREFIXED)
        result = admin.create_acls(acls)
        if result.get("failed"):
            raise RuntimeError(f"kafka: ACLs not created: {result['failed']}")
        return dict(Counter(acl.principal.removeprefix("User:") for acl in acls))
    finally:
        admin.close()


def ordered_topics(settings: Settings) -> set[str]:
    """The trading topics, created with one partition: their readers need the writers' order
    (a bar after the orders decided before it; a fill before its bar's close)."""
    t = settings.kafka.topics
    return {t.orders, t.orders_rejected, t.bars, t.fills}


def ensure_topics(settings: Settings, names: list[str] | None, user: str) -> list[str]:
    """Create the configured topics (or ``names``) that do not exist yet (the trading topics
    with one partition, the others with ``partitions``), as ``user``; return those created."""
    cfg = settings.kafka
    wanted = names or list(cfg.topics.model_dump().values())
    single = ordered_topics(settings)
    admin = KafkaAdminClient(**client_options(settings, user), client_id=f"quantlake-{user}")
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


def make_producer(settings: Settings, user: str, **overrides: Any) -> KafkaProducer:
    """An idempotent, batching JSON producer (keys are strings), logged in as ``user``."""
    p = settings.kafka.producer
    options: dict[str, Any] = {
        **client_options(settings, user),
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


def make_consumer(settings: Settings, user: str, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A JSON consumer in the configured group, reading ``topics``, logged in as ``user``."""
    c = settings.kafka.consumer
    options: dict[str, Any] = {
        **client_options(settings, user),
        "group_id": c.group_id,
        "auto_offset_reset": c.auto_offset_reset,
        "value_deserializer": JsonCodec(),
        "key_deserializer": DefaultSerializer(),
    }
    options.update(overrides)
    return KafkaConsumer(*topics, **options)
