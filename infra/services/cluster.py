"""The cluster services of ``python -m infra up --cluster``, on loopback beside the single-node ones:
a Spark standalone master and workers (``spark-class`` from the pyspark distribution) and a
three-node Kafka KRaft cluster (each node broker and controller, replication 3,
``min.insync.replicas`` 2). The platform uses them when pointed at them by configuration
(``QL_PLATFORM__SPARK__MASTER``, ``QL_KAFKA__BOOTSTRAP_SERVERS``); no code changes."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import sys
import urllib.request
from pathlib import Path

from infra.services.base import Service, ServiceError
from infra.services.kafka import Kafka


def _spark_class() -> str:
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not path.exists():
        raise ServiceError(f"spark: {path} is missing (reinstall pyspark)")
    return str(path)


def _spark_env() -> dict[str, str]:
    import pyspark

    return {"SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
            "SPARK_NO_DAEMONIZE": "1"}


def master_state(settings) -> dict:
    """The standalone master's state (its web UI's JSON: status, workers, applications)."""
    c = settings.platform.cluster.spark
    with urllib.request.urlopen(f"http://{c.host}:{c.master_webui_port}/json/", timeout=2) as resp:
        return json.loads(resp.read())


class SparkMaster(Service):
    name = "spark-master"
    protocol = "a Spark master"

    @property
    def host(self) -> str:
        return self.settings.platform.cluster.spark.host

    @property
    def port(self) -> int:
        return self.settings.platform.cluster.spark.master_port

    def start(self) -> None:
        c = self.settings.platform.cluster.spark
        self.spawn([_spark_class(), "org.apache.spark.deploy.master.Master", "--host", c.host, "--port",
                    str(c.master_port), "--webui-port", str(c.master_webui_port)], env=_spark_env(), cwd=self.home)

    def handshake(self) -> None:
        state = master_state(self.settings)
        if state.get("status") != "ALIVE":
            raise ConnectionError(f"the master's status is {state.get('status')!r}, not ALIVE")


class SparkWorker(Service):
    """Worker ``index`` (1-based): ``worker_cores`` cores and ``worker_memory`` for executors."""

    protocol = "a Spark worker"

    def __init__(self, settings, index: int) -> None:
        self.index = index
        self.name = f"spark-worker-{index}"
        super().__init__(settings)

    @property
    def host(self) -> str:
        return self.settings.platform.cluster.spark.host

    @property
    def port(self) -> int:
        return self.settings.platform.cluster.spark.worker_webui_port + self.index

    def start(self) -> None:
        c = self.settings.platform.cluster.spark
        self.spawn([_spark_class(), "org.apache.spark.deploy.worker.Worker", c.master_url, "--host", c.host,
                    "--cores", str(c.worker_cores), "--memory", c.worker_memory, "--webui-port", str(self.port),
                    "--work-dir", str(self.home / "work")], env=_spark_env(), cwd=self.home)

    def handshake(self) -> None:
        """Registered with the master, ALIVE."""
        workers = master_state(self.settings).get("workers", [])
        mine = [w for w in workers if str(w.get("webuiaddress", "")).endswith(f":{self.port}") and w.get("state") == "ALIVE"]
        if not mine:
            raise ConnectionError(f"no ALIVE worker with web UI port {self.port} at the master")


class KafkaNode(Kafka):
    """Node ``index`` (1-based) of the KRaft cluster: broker and controller."""

    def __init__(self, settings, index: int) -> None:
        self.index = index
        self.name = f"kafka-{index}"
        super().__init__(settings)

    @property
    def host(self) -> str:
        return self.settings.platform.cluster.kafka.host

    @property
    def port(self) -> int:
        return self.settings.platform.cluster.kafka.port + self.index - 1

    def _properties(self) -> str:
        k = self.settings.platform.cluster.kafka
        voters = ",".join(f"{i}@{k.host}:{k.controller_port + i - 1}" for i in range(1, k.brokers + 1))
        controller = k.controller_port + self.index - 1
        rf = min(k.replication_factor, k.brokers)
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={self.index}",
            f"controller.quorum.voters={voters}",
            *self._listeners(k.host, self.port, controller),
            f"log.dirs={self.home / 'data'}",
            f"num.partitions={self.settings.kafka.partitions}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min(k.min_insync_replicas, rf)}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min(k.min_insync_replicas, rf)}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={min(k.min_insync_replicas, rf)}",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ])

    def _add_admin_login(self) -> None:
        # one node cannot start without its quorum, so it cannot be upgraded alone
        raise ServiceError(f"{self.name}: the storage in {self.home / 'data'} was formatted without SASL/SCRAM users; "
                           f"remove the cluster nodes' data folders (their topics go with them) and start again, "
                           f"or set kafka.security.protocol to PLAINTEXT")

    def cluster_id(self) -> str:
        """Every node formats its storage with the same id (derived from the state folder)."""
        return cluster_id(self.settings)

    def start(self) -> None:
        heap = self.settings.platform.cluster.kafka.heap
        self.spawn([self._java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC",
                    f"-Dkafka.logs.dir={self.home / 'logs'}",
                    f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
                    "-cp", self._classpath(), "kafka.Kafka", str(self.home / "server.properties")])

    def after_start(self) -> None:
        """Nothing per node: the users and ACLs are written once the quorum is up (``cluster_up``);
        topics are created by the platform (``ensure_topics``) with the cluster's defaults."""


def cluster_id(settings) -> str:
    """The KRaft cluster id shared by the nodes: 16 bytes from the state folder's path."""
    digest = hashlib.sha256(str(settings.platform.state_dir / "kafka-cluster").encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cluster_services(settings) -> list[Service]:
    """The cluster's services in start order: master, workers, Kafka nodes."""
    c = settings.platform.cluster
    return [SparkMaster(settings), *(SparkWorker(settings, i) for i in range(1, c.spark.workers + 1)),
            *(KafkaNode(settings, i) for i in range(1, c.kafka.brokers + 1))]


def cluster_up(services: list[Service], timeout: float = 180.0) -> list[str]:
    """Start every service that does not answer, then wait for all of them: a Kafka node answers
    only once the controller quorum (a majority of the nodes) is up, so the nodes cannot be
    started one after the other as ``Service.up`` does."""
    outcomes = []
    for svc in services:
        problem = svc.check()
        if not problem:
            outcomes.append("running" if svc.pid() else "external, used as is")
            continue
        if problem != "nothing listens" and not svc.pid():
            raise ServiceError(f"{svc.name}: {svc._not_the_service(problem)}")
        if not svc.pid():
            svc.home.mkdir(parents=True, exist_ok=True)
            svc.log_path.parent.mkdir(parents=True, exist_ok=True)
            svc.prepare()
            svc.start()
        outcomes.append("started")
        if isinstance(svc, SparkMaster):  # the workers register with it
            svc.wait_ready(timeout)
    for svc in services:
        svc.wait_ready(timeout)
    nodes = [svc for svc in services if isinstance(svc, KafkaNode)]
    if nodes:  # every process's SCRAM user and ACLs, as on the single broker
        from streaming.kafka_io import ensure_access

        s = nodes[0].settings
        ensure_access(s.model_copy(update={"kafka": s.kafka.model_copy(
            update={"bootstrap_servers": ",".join(n.address for n in nodes)})}))
    return outcomes


def cluster_down(services: list[Service], timeout: float = 20.0) -> list[str]:
    """Stop every service we started, all at once (a Kafka node stopping alone waits for the
    quorum it is leaving; stopped together, they are killed after ``timeout``)."""
    import time

    from infra.services.base import pid_alive

    pids = {svc.name: svc.pid() for svc in services}
    for svc in services:
        if pids[svc.name] is not None:
            svc.stop(pids[svc.name])
    deadline = time.monotonic() + timeout
    outcomes = []
    for svc in services:
        pid = pids[svc.name]
        if pid is None:
            outcomes.append("external, left running" if svc.listening() else "not running")
            continue
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            svc._signal_group(pid, signal.SIGKILL)
        svc.pid_path.unlink(missing_ok=True)
        outcomes.append("stopped")
    return outcomes
