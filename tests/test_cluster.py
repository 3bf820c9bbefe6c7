"""Past one machine, on this one: the cluster services of ``python -m infra up --cluster`` (a
Spark standalone master with two workers, a three-node Kafka KRaft cluster), the main job's
research stage run unchanged against ``spark://`` with the same Delta rows as local mode, and a
broker killed (SIGKILL) under an idempotent producer without a record lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pandas as pd
import pytest
from deltalake import DeltaTable
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import PROJECT_ROOT
from infra.services.cluster import (KafkaNode, SparkWorker, cluster_down, cluster_services, cluster_up,
                                    master_state)
from streaming import live
from streaming.kafka_io import ADMIN, client_options

pytestmark = pytest.mark.services

TABLES = ("bronze/{d}/ticks", "silver/{d}/bars", "silver/{d}/quarantine", "gold/{d}/features", "gold/{d}/labels")


@pytest.fixture(scope="module")
def cluster(services):
    nodes = cluster_services(services)
    started = time.monotonic()
    cluster_up(nodes)
    up_seconds = time.monotonic() - started
    yield services, nodes, up_seconds
    cluster_down(nodes)


def test_cluster_comes_up_and_reports_itself(cluster) -> None:
    settings, nodes, up_seconds = cluster
    assert [n.name for n in nodes] == ["spark-master", "spark-worker-1", "spark-worker-2", "kafka-1", "kafka-2", "kafka-3"]
    assert all(n.status().reachable for n in nodes), [n.status().line() for n in nodes]
    admin = KafkaAdminClient(**client_options(settings, ADMIN, settings.platform.cluster.kafka.bootstrap))
    try:
        brokers = {b["broker_id"] for b in admin.describe_cluster()["brokers"]}
    finally:
        admin.close()
    assert brokers == {1, 2, 3}
    assert sum(isinstance(n, SparkWorker) for n in nodes) == 2


SPARK_JOB = """
import sys
from config import load_settings
from pipelines.lake.spark import get_spark
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.features.build import write_features
import datetime as dt
settings = load_settings()
spark = get_spark(settings)
days = (dt.date(2024, 1, 2), dt.date(2024, 1, 4))
write_bronze(spark, settings, *days)
write_silver(spark, settings, *days)
write_features(spark, settings, *days)
print("cores", spark.sparkContext.defaultParallelism, "master", spark.sparkContext.master)
"""


def _pipeline(tmp_path, name: str, master: str | None) -> dict:
    """Bronze, silver and features of three days, written by the pipeline functions on ``master``."""
    dataset = f"cluster-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / name), "QL_DATA__SYNTHETIC__N_SYMBOLS": "3",
           "QL_DATA__SYNTHETIC__N_DAYS": "3", "QL_DATA__SYNTHETIC__NAME": dataset,
           **({"QL_PLATFORM__SPARK__MASTER": master} if master else {})}
    done = subprocess.run([sys.executable, "-c", SPARK_JOB], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    written = ("bronze/{d}/ticks", "silver/{d}/bars", "gold/{d}/features")  # what the three functions write
    return {"tables": _tables(tmp_path / name, dataset, written), "log": done.stdout}


def _tables(root, dataset: str, tables=TABLES) -> dict[str, pd.DataFrame]:
    """Each Delta table under ``root``, write times dropped, rows in a canonical order."""
    out = {}
    for table in tables:
        frame = DeltaTable(str(root / table.format(d=dataset))).to_pandas()
        frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_at") or c == "run_id"])
        out[table.split("/")[-1]] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


@pytest.mark.cluster
def test_the_pipeline_on_the_standalone_cluster_writes_what_local_mode_writes(cluster, tmp_path) -> None:
    """The ingest and feature functions, unchanged, on ``spark://`` (executors on both workers,
    the jars shipped by ``spark.jars``, the lake on a path every worker sees) and in local mode;
    the same Delta rows (about 3 minutes)."""
    settings, nodes, _ = cluster
    on_cluster = _pipeline(tmp_path, "cluster", settings.platform.cluster.spark.master_url)
    local = _pipeline(tmp_path, "local", None)
    assert "master spark://" in on_cluster["log"] and "cores 2" in on_cluster["log"]
    for name, frame in local["tables"].items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(frame, on_cluster["tables"][name], check_exact=False, rtol=0, atol=1e-9)


QUICK_JOB = """
import pandas as pd
from config import load_settings
from pipelines.lake.spark import get_spark
from pipelines.features.library import add_cross_sectional_ranks
settings = load_settings()
spark = get_spark(settings)
rows = pd.DataFrame({"symbol": [f"S{i % 7}" for i in range(700)], "ts": pd.date_range("2024-01-02", periods=700, freq="h"),
                     "x": [float((i * 7919) % 101) for i in range(700)]})
df = spark.createDataFrame(rows).repartition(4)
# a pandas UDF: the project's Python code on the executors' Python workers
ranked = df.groupBy("ts").applyInPandas(lambda g: add_cross_sectional_ranks(g, ("x",)), "symbol string, ts timestamp, x double, rank_x double")
path = str(settings.platform.lake_root / "quick")
ranked.write.format("delta").mode("overwrite").save(path)   # Delta: the jars on the executors
back = spark.read.format("delta").load(path).toPandas().sort_values(["ts", "symbol"])
print("master", spark.sparkContext.master, "executors", spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1)
print("checksum", round(float(back["rank_x"].sum()), 9), len(back))
"""


def _quick(tmp_path, name: str, master: str | None) -> str:
    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / name), **({"QL_PLATFORM__SPARK__MASTER": master}
                                                                             if master else {})}
    done = subprocess.run([sys.executable, "-c", QUICK_JOB], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.cluster
def test_a_spark_job_with_project_code_and_delta_runs_on_both_workers(cluster, tmp_path) -> None:
    """A pandas UDF calling the feature library and a Delta write, on ``spark://`` with an
    executor on each worker, give what local mode gives (about 2 minutes)."""
    settings, _, _ = cluster
    on_cluster = _quick(tmp_path, "cluster", settings.platform.cluster.spark.master_url)
    local = _quick(tmp_path, "local", None)
    assert "master spark://" in on_cluster and "executors 2" in on_cluster, on_cluster
    checksum = [line for line in local.splitlines() if line.startswith("checksum")]
    assert checksum and checksum[0] in on_cluster.splitlines(), (local, on_cluster)


STAGE_TABLES = ("gold/{d}/predictions", "gold/{d}/backtest_metrics", "gold/{d}/backtest_equity",
                "gold/{d}/backtest_trades", "gold/{d}/backtest_positions", "gold/{d}/montecarlo_summary",
                "gold/{d}/montecarlo_fan")


def _main_job(tmp_path, name: str, master: str | None, stages: str) -> dict:
    """The main job's ``stages`` with the networks trained under TorchDistributor (two processes),
    into a lake and a registered model of their own."""
    tag = uuid.uuid4().hex[:6]
    env = {**os.environ, "QL_PROFILE": "demo", "QL_PLATFORM__LAKE__ROOT": str(tmp_path / name),
           "QL_DATA__SYNTHETIC__N_SYMBOLS": "4", "QL_DATA__SYNTHETIC__N_DAYS": "6",
           "QL_DATA__SYNTHETIC__NAME": f"cluster-{tag}", "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": f"cluster-{tag}",
           "QL_MODEL__TRAINING__DISTRIBUTED": "true", "QL_MODEL__TRAINING__NUM_PROCESSES": "2"}
    if master:
        env["QL_PLATFORM__SPARK__MASTER"] = master
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "orchestration.main", "--stages", stages], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tables = TABLES + (STAGE_TABLES if "backtest" in stages else ())
    return {"tables": _tables(tmp_path / name, env["QL_DATA__SYNTHETIC__NAME"], tables),
            "seconds": time.monotonic() - started}


@pytest.mark.cluster
@pytest.mark.timeout(3600)
def test_the_main_job_on_the_standalone_cluster_equals_local_mode(cluster, tmp_path) -> None:
    """``make cluster`` (about 13 minutes): the main job's research, training and backtest stages
    through Dagster, once on the cluster (the networks trained by TorchDistributor as barrier tasks
    on both workers) and once in local mode: every Delta row equal, predictions, backtest metrics
    and Monte Carlo included, to 1e-9."""
    settings, _, _ = cluster
    master = settings.platform.cluster.spark.master_url
    stages = "research,training,backtest"
    on_cluster = _main_job(tmp_path, "cluster", master, stages)
    local = _main_job(tmp_path, "local", None, stages)
    for name, frame in local["tables"].items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(frame, on_cluster["tables"][name], check_exact=False, rtol=0, atol=1e-9,
                                      obj=name)
    apps = master_state(settings)
    assert any(a["cores"] == 2 for a in apps["completedapps"])  # the job used both workers' cores
    print(f"research, training and backtest: cluster {on_cluster['seconds']:.0f} s, local {local['seconds']:.0f} s")


def test_a_broker_killed_under_an_idempotent_producer_loses_nothing(cluster) -> None:
    settings, nodes, _ = cluster
    bootstrap = settings.platform.cluster.kafka.bootstrap
    topic, n = f"cluster-{uuid.uuid4().hex[:8]}", 6000
    admin = KafkaAdminClient(**client_options(settings, ADMIN, bootstrap))
    admin.create_topics([NewTopic(topic, 3, 3, topic_configs={"min.insync.replicas": "2"})])
    assert live.wait_for(lambda: _isr(admin, topic) == 3, 30, 0.2)
    leader = _leaders(admin, topic)[0]
    producer = KafkaProducer(**client_options(settings, ADMIN, bootstrap), acks="all", enable_idempotence=True, retries=2**31 - 1,
                             linger_ms=5, request_timeout_ms=10_000, delivery_timeout_ms=120_000)
    failures: list[Exception] = []

    def produce() -> None:
        futures = []
        for i in range(n):
            futures.append(producer.send(topic, key=str(i).encode(), value=str(i).encode()))
            time.sleep(0.001)
        for future in futures:
            try:
                future.get(timeout=120)
            except Exception as error:  # a lost write would show here
                failures.append(error)

    writer = threading.Thread(target=produce)
    writer.start()
    time.sleep(1.5)
    node = next(x for x in nodes if isinstance(x, KafkaNode) and x.index == leader)
    os.kill(node.pid(), signal.SIGKILL)  # the leader of partition 0
    killed_at = time.monotonic()
    time.sleep(3)
    cluster_up([node])  # restart; it rejoins and catches up
    writer.join(180)
    producer.close()
    assert live.wait_for(lambda: _isr(admin, topic) == 3, 120, 0.2)  # every replica in sync again
    recovered = time.monotonic() - killed_at
    admin.close()
    assert not failures, failures[:3]
    consumer = KafkaConsumer(**client_options(settings, ADMIN, bootstrap), enable_auto_commit=False, consumer_timeout_ms=10_000)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen = [int(m.value) for m in consumer]
    consumer.close()
    assert len(seen) == n and set(seen) == set(range(n)), (len(seen), len(set(seen)))
    print(f"broker {leader} killed (down 3 s), every partition fully replicated again {recovered:.1f} s after the "
          f"kill; {n} records, none lost, none doubled")


def _isr(admin, topic: str) -> int:
    """The smallest in-sync replica count over the topic's partitions."""
    # a topic just created may not list its partitions yet: none in sync
    return min((len(p["isr_nodes"]) for p in admin.describe_topics([topic])[0]["partitions"]), default=0)


def _leaders(admin, topic: str) -> dict[int, int]:
    """Partition -> leader broker id."""
    return {p["partition_index"]: p["leader_id"] for p in admin.describe_topics([topic])[0]["partitions"]}


def _next_batch_after(settings, wall: float, started_after: bool = False, timeout: float = 300.0) -> float:
    """Seconds from ``wall`` (time.time()) until the stream finished a micro-batch with new bars
    (``started_after``: one that also started after ``wall``)."""
    from streaming.status import read_status

    bars = (read_status(settings) or {}).get("bars", 0)

    def moved() -> bool:
        status = read_status(settings) or {}
        end = pd.Timestamp(status["last_batch_at"]).timestamp() if status.get("last_batch_at") else 0
        start = end - float(status.get("last_batch_seconds") or 0)
        return status.get("bars", 0) > bars and end > wall and (start > wall or not started_after)

    assert live.wait_for(moved, timeout, 0.1), read_status(settings)
    return pd.Timestamp(read_status(settings)["last_batch_at"]).timestamp() - wall


@pytest.mark.cluster
@pytest.mark.timeout(1800)
def test_the_live_path_on_the_cluster_survives_a_broker_and_a_worker_killed(cluster, spark, tmp_path,
                                                                             sqlite_registry) -> None:
    """``make cluster``: the whole live path (stream on ``spark://`` with an executor on each
    worker, venue, portfolio) on the three-broker cluster while the feed keeps sending. The broker
    leading ``orders`` and a ``market-data`` partition is SIGKILLed and restarted later; then a
    Spark worker is SIGKILLed with its executor (a host lost). No tick lost, no order sent twice,
    the stream never restarted, and the fills and equity still equal the backtest engine's."""
    from tests.test_live_trading import run_live

    settings, nodes, _ = cluster
    c = settings.platform.cluster
    admin = KafkaAdminClient(**client_options(settings, ADMIN, c.kafka.bootstrap))
    measured: dict[str, float] = {}
    killed: dict[str, object] = {}
    worker = next(n for n in nodes if isinstance(n, SparkWorker) and n.index == 1)

    def on_fault(fault: str, svc, live_settings) -> bool:
        topics = live_settings.kafka.topics
        if fault == "kill-broker":
            leader = _leaders(admin, topics.orders)[0]
            assert leader in _leaders(admin, topics.market_data).values()  # it leads market data too
            node = next(n for n in nodes if isinstance(n, KafkaNode) and n.index == leader)
            killed["broker"], killed["broker_at"] = node, time.monotonic()
            wall = time.time()
            node._signal_group(node.pid(), signal.SIGKILL)
            measured["broker_kill_to_next_batch_s"] = round(_next_batch_after(live_settings, wall), 2)
            measured["broker_kill_to_next_whole_batch_s"] = round(_next_batch_after(live_settings, wall, True), 2)
            new = _leaders(admin, topics.orders)[0]
            assert new != leader, "the orders partition has no new leader"
            return True
        if fault == "restart-broker":
            node = killed["broker"]
            cluster_up([node])
            both = lambda: all(_isr(admin, t) == 3 for t in (topics.orders, topics.market_data))  # noqa: E731
            assert live.wait_for(both, 120, 0.2)
            measured["broker_kill_to_full_isr_s"] = round(time.monotonic() - killed["broker_at"], 2)
            return True
        if fault == "kill-worker":
            executors = [a for a in master_state(settings)["activeapps"] if a["cores"] == 2]
            assert executors, "the stream does not hold both workers' cores"
            wall = time.time()
            worker._signal_group(worker.pid(), signal.SIGKILL)  # the worker and its executor: a host lost
            measured["worker_kill_to_next_batch_s"] = round(_next_batch_after(live_settings, wall), 2)
            measured["worker_kill_to_next_whole_batch_s"] = round(_next_batch_after(live_settings, wall, True), 2)
            cores = lambda: [a["cores"] for a in master_state(settings)["activeapps"]]  # noqa: E731
            assert live.wait_for(lambda: cores() == [1], 90, 0.5), cores()  # on the other worker's executor
            return True
        return False

    env = {"QL_PLATFORM__SPARK__MASTER": c.spark.master_url, "QL_KAFKA__BOOTSTRAP_SERVERS": c.kafka.bootstrap,
           "QL_KAFKA__REPLICATION_FACTOR": str(c.kafka.replication_factor)}
    try:
        report = run_live(spark, tmp_path, ("kill-broker", "restart-broker", "kill-worker"), stream_process=True,
                          env=env, on_fault=on_fault, feed_pause=1.0)
    finally:
        admin.close()
        cluster_up([worker])  # the next tests want both workers
    print(f"cluster live: {report}; recovery {measured}")
    assert [f for f, _ in report["faults_at"]] == ["kill-broker", "restart-broker", "kill-worker"]
    assert report["stream_starts"] == 1  # nobody restarted the stream
    assert report["ticks_in"] == report["ticks"]  # every tick read once
    assert report["bars_short_of_their_ticks"] == 0
    assert report["order_records_on_topic"] == report["order_ids_on_topic"] == report["orders_sent"]
    assert all(report["feed_running_at_faults"]), report["feed_running_at_faults"]


def test_scaling_benchmark_short_version(cluster, tmp_path) -> None:
    """``make bench-cluster``'s short run (about 2 minutes): one worker and two, each with its
    executors, the same rows built, Spark's stage metrics read, and an estimate that grows with
    the hosts. (Local mode and the stateful feature stage are the full run's.)"""
    import json

    done = subprocess.run([sys.executable, "-m", "benchmarks.cluster_scaling", "--short", "--out", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "cluster_scaling_short.json").read_text())["figures"]
    runs = figures["runs"]
    assert [runs[k]["executors"] for k in ("cluster_1_worker", "cluster_2_workers")] == [1, 2]
    assert set(runs) == {"cluster_1_worker", "cluster_2_workers"}
    assert all(run["master"].startswith("spark://") for run in runs.values())
    for run in runs.values():
        assert run["feature_build"]["rows"] == figures["feature_rows"]
        assert run["feature_build"]["executor_run_s"] > 0 and run["feature_build"]["shuffle_bytes"] > 0
        assert run["stream_bars"]["ticks"] > 0 and "error" not in run["stream_bars"]
    for workload in ("feature_build", "stream_bars"):
        hosts = figures["scaling"][workload]["paper_estimate"]["hosts"]
        rates = [hosts[n][next(k for k in hosts[n] if k.endswith("executor_time"))] for n in ("1", "2", "4")]
        assert rates == sorted(rates) and rates[0] > 0, (workload, rates)
