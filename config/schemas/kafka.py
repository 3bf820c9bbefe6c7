"""Schema of ``kafka_config.yaml``: topics and Kafka client settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.schemas.base import Frozen


class KafkaTopics(Frozen):
    market_data: str = "market-data"
    dead_letter: str = "market-data-dlq"
    orders: str = "orders"
    fills: str = "fills"


class KafkaProducerSettings(Frozen):
    linger_ms: int = Field(5, ge=0)
    batch_size: int = Field(65536, ge=1)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"
    acks: Literal["all", 0, 1] = "all"


class KafkaConsumerSettings(Frozen):
    group_id: str = "quantlake-stream"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


class KafkaSettings(Frozen):
    bootstrap_servers: str | None = None
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    producer: KafkaProducerSettings = KafkaProducerSettings()
    consumer: KafkaConsumerSettings = KafkaConsumerSettings()
