"""Schema of ``kafka_config.yaml``: topics and Kafka client settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.schemas.base import Frozen


class KafkaTopics(Frozen):
    market_data: str = "market-data"
    dead_letter: str = "market-data.dlq"
    predictions: str = "predictions"
    orders: str = "orders"
    orders_rejected: str = "orders.rejected"
    bars: str = "bars"
    fills: str = "fills"


class KafkaProducerSettings(Frozen):
    linger_ms: int = Field(5, ge=0)
    batch_size: int = Field(65536, ge=1)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"
    acks: Literal["all", 0, 1] = "all"
    delivery_timeout_ms: int = Field(120_000, ge=1)  # a record not acknowledged by then fails (and is re-sent by its step)
    request_timeout_ms: int = Field(30_000, ge=1)   # one produce request; at most delivery_timeout_ms - linger_ms
    max_block_ms: int = Field(60_000, ge=0)         # how long send() may wait for the topic's metadata


class KafkaConsumerSettings(Frozen):
    group_id: str = "quantlake-stream"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


class StreamSettings(Frozen):
    """The live job (``python -m streaming run``): triggers, lateness and model reloads."""

    trigger_seconds: float = Field(1.0, gt=0)        # micro-batch interval
    watermark: str = "10 seconds"                    # event-time lateness accepted before a tick counts as late
    max_offsets_per_trigger: int | None = Field(None, ge=1)  # cap on ticks per micro-batch (None: all available)
    starting_offsets: Literal["earliest", "latest"] = "earliest"  # for a new checkpoint only
    champion_poll_seconds: float = Field(30.0, gt=0)  # how often the registry is asked whether @champion moved
    stale_after_seconds: float = Field(300.0, gt=0)  # Dagster's freshness check fails when the newest batch is older


class FeedSettings(Frozen):
    """The market-data feed (``python -m streaming feed``)."""

    days: int = Field(3, ge=1)                       # synthetic: trading days continued past the research period
    speed: float = Field(0.0, ge=0)                  # 1 = real time, k = k x real time, 0 = as fast as possible
    batch_ticks: int = Field(5000, ge=1)             # ticks handed to the producer between pacing checks


class KafkaSecurity(Frozen):
    """How clients log in. SASL_PLAINTEXT: every process is its own SCRAM user and the broker's
    ACLs (``streaming.kafka_io.ACCESS``) give each only its topics; PLAINTEXT: no login, no ACLs
    (for a broker run elsewhere without them). Passwords: ``QL_KAFKA_PASSWORD_<USER>``, else
    generated once per machine in ``<state>/secrets/kafka.json``."""

    protocol: Literal["SASL_PLAINTEXT", "PLAINTEXT"] = "SASL_PLAINTEXT"
    mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"


class KafkaSettings(Frozen):
    bootstrap_servers: str | None = None
    security: KafkaSecurity = KafkaSecurity()
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    producer: KafkaProducerSettings = KafkaProducerSettings()
    consumer: KafkaConsumerSettings = KafkaConsumerSettings()
    stream: StreamSettings = StreamSettings()
    feed: FeedSettings = FeedSettings()
