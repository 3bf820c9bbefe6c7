"""Bring the local services up, report their status, or stop them.

    python -m infra up [SERVICE ...]     start what is not running (a second `up` is harmless)
    python -m infra up --cluster         also a Spark standalone master + workers and a 3-node Kafka cluster
    python -m infra status [--cluster]   one line per service; exit 1 if any is down
    python -m infra down [SERVICE ...]   stop what `up` started (the cluster's too); external services are left alone
    python -m infra fetch-jars           fetch the Spark and Kafka jars from Maven Central
"""

from __future__ import annotations

import argparse
import sys
import time

from config import load_settings
from config.cli import guarded
from infra.jars import ensure_jars
from infra.services import all_services
from infra.services.cluster import cluster_down, cluster_services, cluster_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "status", "down", "fetch-jars"])
    parser.add_argument("services", nargs="*", help="only these services (default: all)")
    parser.add_argument("--cluster", action="store_true", help="the cluster services too (Spark standalone, "
                        "three Kafka nodes)")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args.command, args.services, args.cluster))


def _run(command: str, names: list[str], cluster: bool = False) -> int:
    settings = load_settings()
    if command == "fetch-jars":
        for name in ("spark", "kafka-broker"):
            print(f"{name:<14} {ensure_jars(settings, name)}")
        return 0
    services = all_services(settings, names)
    nodes = cluster_services(settings) if not names else []
    if command == "status":
        # the cluster's lines when asked for, or when any of its services runs
        shown = nodes if cluster or any(n.pid() for n in nodes) else []
        statuses = [svc.status() for svc in [*services, *shown]]
        for status in statuses:
            print(status.line())
        return 0 if all(s.reachable for s in statuses) else 1
    if command == "up":
        for svc in services:
            started = time.monotonic()
            outcome = svc.up()
            print(f"{svc.name:<18} {outcome:<22} {svc.address:<22} ({time.monotonic() - started:.1f}s)", flush=True)
        if cluster:
            started = time.monotonic()
            for svc, outcome in zip(nodes, cluster_up(nodes)):
                print(f"{svc.name:<18} {outcome:<22} {svc.address:<22}", flush=True)
            c = settings.platform.cluster
            print(f"cluster up in {time.monotonic() - started:.1f}s; point the platform at it with\n"
                  f"  QL_PLATFORM__SPARK__MASTER={c.spark.master_url} QL_KAFKA__BOOTSTRAP_SERVERS={c.kafka.bootstrap} "
                  f"QL_KAFKA__REPLICATION_FACTOR={c.kafka.replication_factor}")
        return 0
    for svc, outcome in zip(nodes, cluster_down(nodes)):
        print(f"{svc.name:<18} {outcome}", flush=True)
    for svc in reversed(services):
        print(f"{svc.name:<18} {svc.down()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
