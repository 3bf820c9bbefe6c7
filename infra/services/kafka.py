"""A single-node Apache Kafka broker in KRaft mode, from Apache's jars on Maven Central."""

from __future__ import annotations

import shutil
import uuid

from infra.jars import ensure_jars
from infra.services.base import Service, ServiceError, run

LOG4J2 = """\
Configuration:
  name: kafka
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
"""


class Kafka(Service):
    name = "kafka"
    protocol = "Kafka"

    @property
    def host(self) -> str:
        return self.settings.platform.kafka.host

    @property
    def port(self) -> int:
        return self.settings.platform.kafka.port

    def _properties(self) -> str:
        k = self.settings.platform.kafka
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{k.host}:{k.controller_port}",
            f"listeners=PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            f"advertised.listeners=PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.home / 'data'}",
            f"num.partitions={self.settings.kafka.partitions}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ])

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("kafka: java not found (OpenJDK 17 runs the broker)")
        return java

    def _classpath(self) -> str:
        return str(ensure_jars(self.settings, "kafka-broker") / "*")

    def prepare(self) -> None:
        props = self.home / "server.properties"
        props.write_text(self._properties())
        (self.home / "log4j2.yaml").write_text(LOG4J2)
        if not (self.home / "data" / "meta.properties").exists():
            run([self._java(), "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
                 "-t", self.cluster_id(),
                 "-c", str(props), "--ignore-formatted"], "kafka storage format")

    def cluster_id(self) -> str:
        """The id the storage is formatted with (a new one for the single broker)."""
        return _cluster_id()

    def start(self) -> None:
        heap = self.settings.platform.kafka.heap
        self.spawn([self._java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC",
                    f"-Dkafka.logs.dir={self.home / 'logs'}",
                    f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
                    "-cp", self._classpath(), "kafka.Kafka", str(self.home / "server.properties")])

    def handshake(self) -> None:
        # a metadata request; fails while the broker waits for its controller, and against
        # anything that does not speak Kafka's protocol
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=3000, bootstrap_timeout_ms=5000)
        try:
            admin.list_topics()
        finally:
            admin.close()

    def after_start(self) -> None:
        from streaming.kafka_io import ensure_topics

        ensure_topics(self.settings)


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
