"""A single-node Apache Kafka broker in KRaft mode, from Apache's jars on Maven Central.

With ``kafka.security.protocol`` SASL_PLAINTEXT (the default) clients log in with SASL/SCRAM,
the StandardAuthorizer enforces ACLs, and ``admin`` is the only super user: its SCRAM
credential is written when the storage is formatted, the others' and their ACLs once the
broker answers (``streaming.kafka_io.ensure_access``). The controller listener logs the nodes
in with SASL/PLAIN (SCRAM credentials live in the metadata the controllers serve, so they
cannot authenticate the controllers themselves).
"""

from __future__ import annotations

import shutil
import uuid

from config.secrets import kafka_password
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
            *self._listeners(k.host, k.port, k.controller_port),
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

    def _listeners(self, host: str, port: int, controller_port: int) -> list[str]:
        """The listeners and, when secured, SASL, the authorizer and the super user."""
        lines = [f"listeners=BROKER://{host}:{port},CONTROLLER://{host}:{controller_port}",
                 f"advertised.listeners=BROKER://{host}:{port}",
                 "controller.listener.names=CONTROLLER",
                 "inter.broker.listener.name=BROKER"]
        sec = self.settings.kafka.security
        if sec.protocol == "PLAINTEXT":
            return [*lines, "listener.security.protocol.map=CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT"]
        from streaming.kafka_io import ADMIN, jaas_config

        password = kafka_password(self.settings, ADMIN)
        plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
                 f'password="{password}" user_{ADMIN}="{password}";')
        return [*lines,
                "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,BROKER:SASL_PLAINTEXT",
                f"listener.name.broker.sasl.enabled.mechanisms={sec.mechanism}",
                f"sasl.mechanism.inter.broker.protocol={sec.mechanism}",
                f"listener.name.broker.{sec.mechanism.lower()}.sasl.jaas.config={jaas_config(ADMIN, password)}",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                "sasl.mechanism.controller.protocol=PLAIN",
                f"listener.name.controller.plain.sasl.jaas.config={plain}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{ADMIN}",
                "allow.everyone.if.no.acl.found=false"]

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("kafka: java not found (OpenJDK 17 runs the broker)")
        return java

    def _classpath(self) -> str:
        return str(ensure_jars(self.settings, "kafka-broker") / "*")

    def prepare(self) -> None:
        props = self.home / "server.properties"
        props.touch(mode=0o600)
        props.chmod(0o600)  # it holds the admin password
        props.write_text(self._properties())
        (self.home / "log4j2.yaml").write_text(LOG4J2)
        sec = self.settings.kafka.security
        marker = self.home / "data" / "security"  # how the storage was formatted
        if not (self.home / "data" / "meta.properties").exists():
            scram = []
            if sec.protocol == "SASL_PLAINTEXT":
                from streaming.kafka_io import ADMIN

                scram = ["--add-scram", f"{sec.mechanism}=[name={ADMIN},password={kafka_password(self.settings, ADMIN)}]"]
            run([self._java(), "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
                 "-t", self.cluster_id(), "-c", str(props), "--ignore-formatted", *scram], "kafka storage format")
            marker.write_text(sec.protocol)
        elif sec.protocol == "SASL_PLAINTEXT" and (not marker.exists() or marker.read_text() != sec.protocol):
            self._add_admin_login()
            marker.write_text(sec.protocol)
            props.write_text(self._properties())

    def _add_admin_login(self) -> None:
        """A storage formatted before logins existed has no SCRAM credential for the admin, so a
        secured broker could not log in to itself: start it once without logins, store the
        admin's credential, stop it. Its topics and offsets are kept."""
        from kafka import KafkaAdminClient
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        from config.schemas.kafka import KafkaSecurity
        from streaming.kafka_io import ADMIN

        secured = self.settings
        self.settings = secured.model_copy(update={"kafka": secured.kafka.model_copy(
            update={"security": KafkaSecurity(protocol="PLAINTEXT")})})
        try:
            print(f"{self.name}: adding the admin's SCRAM login to the storage in {self.home / 'data'} ...", flush=True)
            (self.home / "server.properties").write_text(self._properties())
            self.start()
            self.wait_ready(120)
            admin = KafkaAdminClient(bootstrap_servers=self.address)
            try:
                mechanism = ScramMechanism[secured.kafka.security.mechanism.replace("-", "_")]
                errors = admin.alter_user_scram_credentials(
                    [UserScramCredentialUpsertion(ADMIN, mechanism, kafka_password(secured, ADMIN))])
            finally:
                admin.close()
            if errors.get(ADMIN):
                raise ServiceError(f"{self.name}: the admin's SCRAM credential was not stored: {errors[ADMIN]}")
        finally:
            self.down()
            self.settings = secured

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

        from streaming.kafka_io import ADMIN, client_options

        options = {**client_options(self.settings, ADMIN), "bootstrap_servers": self.address}
        admin = KafkaAdminClient(**options, request_timeout_ms=3000, bootstrap_timeout_ms=5000)
        try:
            admin.list_topics()
        finally:
            admin.close()

    def after_start(self) -> None:
        from streaming.kafka_io import ADMIN, ensure_access, ensure_topics

        ensure_access(self.settings)
        ensure_topics(self.settings, None, ADMIN)


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
