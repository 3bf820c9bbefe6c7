"""Scaling, measured on one host: the feature build and the stream's stateful stages on the Spark
standalone cluster of ``python -m infra up --cluster`` with one worker's core and with two, next to
local mode (the reference, in the same run), and a paper estimate for N hosts.

    python -m benchmarks.cluster_scaling [--rows 600000] [--symbols 40] [--ticks 150000]
                                         [--seconds 60] [--host-cores 8] [--network-gbps 10] [--short]

**A single-host test.** The two "workers" are two JVMs on this machine's 2 cores, which the
driver, three Kafka brokers and the operating system share with them: two workers cannot be
twice one here. What carries over to real hosts are the per-core rates and the shuffle volume,
which Spark's own stage metrics give (executor run and CPU time, shuffle bytes), and the part of
each run that does not scale (the driver's planning, scheduling and Delta commits: wall time
minus executor time per core).

Each configuration runs in a child process with its own SparkSession (``spark.cores.max`` 1 or 2
on the cluster): the feature build of ``--rows`` synthetic bars (read, the feature table, a Delta
write: what the gold asset does) and, on one pre-filled topic of the three-broker cluster, the
stream's ``bars`` and ``features`` stages sustained for ``--seconds`` each.

The paper estimate for N hosts of ``--host-cores`` cores and ``--network-gbps`` links is
T(N) = T_fixed + R / (rate_per_core x N x cores) + shuffle(R) x (N - 1) / N / (N x link),
with the rate per core from the two-worker run's executor time (oversubscribed cores: a lower
bound) and from its CPU time (an upper bound), for R = 100 x the measured rows or ticks. T_fixed
is paid once by the feature build; for the stream it is the driver's work per micro-batch, which
at a fixed batch size grows with the data and caps the throughput whatever N is.

Writes ``results/cluster_scaling.json`` (``--short``: ``cluster_scaling_short.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from benchmarks.common import Timer, free_port, write_result
from config import load_settings
from config.settings import PROJECT_ROOT

CONFIGS = [("local", None), ("cluster_1_worker", 1), ("cluster_2_workers", 2)]
STAGE_METRICS = ("executorRunTime", "executorCpuTime", "shuffleReadBytes", "shuffleWriteBytes", "inputBytes",
                 "outputBytes", "numTasks")


# -- the child: one SparkSession, both workloads, Spark's stage metrics -----------------------

def _stages(ui: str, app_id: str) -> dict[tuple[int, int], dict]:
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app_id}/stages?status=complete", timeout=10) as resp:
        return {(s["stageId"], s["attemptId"]): s for s in json.loads(resp.read())}


class StageMeter:
    """Sums Spark's metrics over the stages that completed between ``start()`` and ``stop()``."""

    def __init__(self, spark) -> None:
        self.ui, self.app = spark.sparkContext.uiWebUrl, spark.sparkContext.applicationId

    def start(self) -> None:
        self.before = set(_stages(self.ui, self.app))

    def stop(self) -> dict:
        time.sleep(1.0)  # the status store catches up with the last stage asynchronously
        new = [s for key, s in _stages(self.ui, self.app).items() if key not in self.before]
        out = {m: sum(int(s.get(m) or 0) for s in new) for m in STAGE_METRICS}
        return {"stages": len(new), "executor_run_s": round(out["executorRunTime"] / 1e3, 2),
                "executor_cpu_s": round(out["executorCpuTime"] / 1e9, 2),
                "shuffle_bytes": out["shuffleReadBytes"] + out["shuffleWriteBytes"],
                "input_bytes": out["inputBytes"], "output_bytes": out["outputBytes"], "tasks": out["numTasks"]}


def _wait_executors(spark, n: int, timeout: float = 120.0) -> int:
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus
    deadline = time.monotonic() + timeout
    while status().size() - 1 < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return status().size() - 1


def child(args) -> dict:
    from benchmarks.stream_throughput import QueryRows, stage_plans, sustained
    from pipelines import lake
    from pipelines.features.driver import feature_table
    from pipelines.lake.spark import get_spark
    from pipelines.lake.tables import FEATURES

    settings = load_settings()
    spark = get_spark(settings)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    executors = _wait_executors(spark, args.cores) if args.cores else 0
    meter = StageMeter(spark)
    out: dict = {"master": spark.sparkContext.master, "executors": executors, "cores": cores}

    windows, ranks = settings.data.features.windows, settings.data.features.rank_features
    bars = spark.read.parquet(args.input)
    rows = bars.count()
    scratch = Path(args.scratch) / f"features-{uuid.uuid4().hex[:6]}"
    meter.start()
    with Timer() as t:
        lake.replace_range(FEATURES.conform(feature_table(bars, windows, ranks)), scratch, "date", "0000-01-01",
                           "9999-12-31")
    out["feature_build"] = {"rows": rows, "seconds": round(t.seconds, 2), "rows_per_second": round(rows / t.seconds),
                            **meter.stop()}
    written = lake.read(spark, scratch).count()
    if written != rows:
        raise RuntimeError(f"the feature build wrote {written:,} rows of {rows:,}")
    print(f"  feature build: {out['feature_build']}", flush=True)

    listener = QueryRows()
    spark.streams.addListener(listener)
    plans = stage_plans(spark, settings)  # the stream job's own stages
    for name in [w for w in ("stream_bars", "stream_features") if w in args.workloads.split(",")]:
        plan, batch = plans[name.removeprefix("stream_")]
        meter.start()
        figures = sustained(spark, settings, args.topic, plan, listener, args.seconds, max_offsets=batch)
        out[name] = {**figures, **meter.stop()}
        print(f"  {name}: {out[name]}", flush=True)
    spark.stop()
    return out


# -- the parent: data once, a child per configuration, the estimate --------------------------

def _run_child(base_env: dict, args, master: str | None, cores: int | None) -> dict:
    conf = {"spark.ui.port": str(free_port())}
    env = {**base_env, "QL_PLATFORM__SPARK__UI_ENABLED": "true"}
    if master:
        conf["spark.cores.max"] = str(cores)
        conf["spark.executor.cores"] = "1"
        env["QL_PLATFORM__SPARK__MASTER"] = master
    env["QL_PLATFORM__SPARK__CONF"] = json.dumps(conf)
    argv = [sys.executable, "-m", "benchmarks.cluster_scaling", "--child", "--input", args.input, "--topic", args.topic,
            "--scratch", args.scratch, "--seconds", str(args.seconds), "--cores", str(cores or 0),
            "--workloads", args.workloads]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    for line in done.stdout.splitlines():
        if line.startswith("  "):
            print(line, flush=True)
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not result:
        raise RuntimeError(f"the {master or 'local'} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(result[-1].removeprefix("RESULT "))


def estimate(run: dict, rows_key: str, rows: int, host_cores: int, network_gbps: float, scale: int,
             per_batch: bool = False) -> dict:
    """T(N) for N hosts from one measured run (see the module's docstring). ``per_batch``: the
    part that does not scale is the driver's work per micro-batch, and the batch size is held,
    so it grows with the data (a stream); otherwise it is paid once (a batch job)."""
    seconds, used = run["seconds"], run["cores_used"]
    fixed = max(0.0, seconds - run["executor_run_s"] / used) * (scale if per_batch else 1)
    link = network_gbps * 1e9 / 8
    total = rows * scale
    out = {"rows": total, "fixed_seconds": round(fixed, 2),
           "shuffle_bytes_per_row": round(run["shuffle_bytes"] / rows, 1), "hosts": {}}
    for label, busy in (("executor_time", run["executor_run_s"]), ("cpu_time", run["executor_cpu_s"])):
        rate = rows / busy if busy else float("inf")
        out[f"rate_per_core_{label}"] = round(rate)
        for n in (1, 2, 4, 8, 16, 32):
            compute = total / (rate * n * host_cores)
            shuffle = run["shuffle_bytes"] * scale * (n - 1) / n / (n * link)
            t = fixed + compute + shuffle
            out["hosts"].setdefault(str(n), {})[f"{rows_key}_per_second_{label}"] = round(total / t)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600_000, help="synthetic bars for the feature build")
    parser.add_argument("--symbols", type=int, default=40)
    parser.add_argument("--ticks", type=int, default=150_000, help="ticks on the stream's topic")
    parser.add_argument("--seconds", type=float, default=60.0, help="each stream stage runs this long")
    parser.add_argument("--host-cores", type=int, default=8, help="cores per host in the paper estimate")
    parser.add_argument("--network-gbps", type=float, default=10.0, help="each host's link in the paper estimate")
    parser.add_argument("--configs", default=",".join(name for name, _ in CONFIGS),
                        help="which runs (default all; local mode is the reference)")
    parser.add_argument("--workloads", default="feature_build,stream_bars,stream_features",
                        help="stream stages to run (the feature build always runs)")
    parser.add_argument("--short", action="store_true",
                        help="the test suite's version: tiny sizes, one worker vs two, the feature build and bars")
    parser.add_argument("--out", type=Path, help="folder for the JSON (default benchmarks/results)")
    # the child's arguments
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    if args.short:
        args.rows, args.symbols, args.ticks, args.seconds = 10_000, 4, 6_000, 3.0
        args.configs, args.workloads = "cluster_1_worker,cluster_2_workers", "feature_build,stream_bars"

    from benchmarks.stream_throughput import make_topic, prepare
    from infra.services.cluster import cluster_services, cluster_up
    from pipelines.ingest.sources.synthetic import generate_market

    base = load_settings()
    c = base.platform.cluster
    print("starting the cluster (python -m infra up --cluster) where it does not run ...", flush=True)
    cluster_up(cluster_services(base))
    scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=base.platform.state_dir))  # every worker sees it
    tag = uuid.uuid4().hex[:6]
    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(scratch / "lake"), "QL_KAFKA__BOOTSTRAP_SERVERS": c.kafka.bootstrap,
           "QL_KAFKA__REPLICATION_FACTOR": str(c.kafka.replication_factor),
           "QL_DATA__SYNTHETIC__N_SYMBOLS": str(args.symbols), "QL_DATA__SYNTHETIC__N_DAYS": "7",
           "QL_DATA__SYNTHETIC__NAME": f"bench-cluster-{tag}"}
    settings = load_settings(env=env)
    try:
        n_days = max(1, args.rows // (args.symbols * settings.data.synthetic.bars_per_day))
        syn = settings.data.synthetic.model_copy(update={"n_days": n_days, "seed": 1})
        market = generate_market(syn, progress=not args.short)
        args.input = str(scratch / "bars.parquet")
        bars = market.bars.assign(vwap=market.bars["close"])
        bars["ts"] = bars["ts"].astype("datetime64[us, UTC]")  # Spark reads ns as longs, naive ones as NTZ
        bars.to_parquet(args.input, index=False)
        print(f"{len(bars):,} bars of {args.symbols} symbols for the feature build", flush=True)
        args.topic = make_topic(settings, f"bench-cluster-{tag}", settings.kafka.partitions)
        warm_up = "stream_features" in args.workloads  # silver bars for the feature stage's state (a Spark write)
        data = prepare(settings, args.ticks, args.symbols, args.topic, warm_up=warm_up, progress=not args.short)
        if warm_up:
            from pyspark.sql import SparkSession

            SparkSession.getActiveSession().stop()  # the children have the cores to themselves
        args.scratch = str(scratch)
        runs = {}
        for name, cores in [config for config in CONFIGS if config[0] in args.configs.split(",")]:
            print(f"{name} ...", flush=True)
            runs[name] = _run_child(env, args, c.spark.master_url if cores else None, cores)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    figures: dict = {"single_host_test": "two Spark workers on the same 2 cores as the driver and three Kafka "
                                         "brokers: these are not two machines",
                     "feature_rows": len(bars), "stream_data": data, "stream_seconds": args.seconds, "runs": runs}
    scaling = {}
    for workload, unit in (("feature_build", "rows"), ("stream_bars", "ticks"), ("stream_features", "ticks")):
        if any(workload not in run for run in runs.values()) or "cluster_2_workers" not in runs:
            continue
        rate = lambda k: (runs[k][workload].get("rows_per_second") or runs[k][workload].get("ticks_per_second")  # noqa: E731
                          if k in runs else None)
        one, two, local = (rate(k) for k in ("cluster_1_worker", "cluster_2_workers", "local"))
        scaling[workload] = {f"local_{unit}_per_second": local, f"one_worker_{unit}_per_second": one,
                             f"two_workers_{unit}_per_second": two,
                             "two_over_one": round(two / one, 2) if one and two else None,
                             "cluster_two_over_local": round(two / local, 2) if local and two else None}
        measured = runs["cluster_2_workers"][workload]
        amount = measured.get("rows") or measured.get("ticks") or 0
        if amount and measured.get("executor_run_s"):
            run = {**measured, "cores_used": 2}
            scaling[workload]["paper_estimate"] = estimate(run, unit, amount, args.host_cores, args.network_gbps, 100,
                                                           per_batch=workload.startswith("stream"))
    figures["scaling"] = scaling
    figures["estimate_assumptions"] = {"host_cores": args.host_cores, "network_gbps": args.network_gbps,
                                       "scale": "100 x the measured rows or ticks",
                                       "model": "T(N) = fixed + R/(rate x N x cores) + shuffle x (N-1)/N/(N x link)",
                                       "fixed": "the feature build: the driver's planning, scheduling and Delta commit, "
                                                "paid once; the stream: the driver's work per micro-batch at the "
                                                "measured batch size (maxOffsetsPerTrigger), which grows with the "
                                                "data and bounds the throughput; raising the batch size with the "
                                                "cluster raises that bound in proportion"}
    for workload, s in scaling.items():
        print(f"{workload}: {s}")
    write_result("cluster_scaling_short" if args.short else "cluster_scaling", figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
