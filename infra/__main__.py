"""Bring the local services up, report their status, or stop them.

    python -m infra up [SERVICE ...]     start what is not running (a second `up` is harmless)
    python -m infra status               one line per service; exit 1 if any is down
    python -m infra down [SERVICE ...]   stop what `up` started; external services are left alone
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "status", "down", "fetch-jars"])
    parser.add_argument("services", nargs="*", help="only these services (default: all)")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args.command, args.services))


def _run(command: str, names: list[str]) -> int:
    settings = load_settings()
    if command == "fetch-jars":
        for name in ("spark", "kafka-broker"):
            print(f"{name:<14} {ensure_jars(settings, name)}")
        return 0
    services = all_services(settings, names)
    if command == "status":
        statuses = [svc.status() for svc in services]
        for status in statuses:
            print(status.line())
        return 0 if all(s.reachable for s in statuses) else 1
    if command == "up":
        for svc in services:
            started = time.monotonic()
            outcome = svc.up()
            print(f"{svc.name:<18} {outcome:<22} {svc.address:<22} ({time.monotonic() - started:.1f}s)", flush=True)
        return 0
    for svc in reversed(services):
        print(f"{svc.name:<18} {svc.down()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
