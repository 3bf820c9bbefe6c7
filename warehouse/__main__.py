"""The warehouse from the command line.

    python -m warehouse setup                         migrations to head, the loader, reporting and API roles
    python -m warehouse migrate upgrade head          any Alembic command: downgrade base, current
    python -m warehouse load [GROUP ...]              bars, predictions, backtests, live (default: all)
        [--dataset NAME] [--values 2024-01,2024-02]   only these partitions (months, families, ...)
    python -m warehouse reconcile [GROUP ...]         compare every loaded slice with its Delta source
    python -m warehouse status                        rows per table
    python -m warehouse password reporting            print a role's password (loader, reporting or api)
"""

from __future__ import annotations

import argparse
import sys

from config import load_settings
from config.cli import guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "migrate", "load", "reconcile", "status", "password"])
    parser.add_argument("args", nargs="*", help="migrate: the Alembic command and revision; load/reconcile: groups")
    parser.add_argument("--dataset", help="default: the configured dataset")
    parser.add_argument("--values", help="comma-separated partition values (default: every one the source holds)")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from warehouse import db, load

    settings = load_settings()
    if args.command == "setup":
        db.setup(settings)
        print(f"warehouse ready: schema dw in {settings.platform.postgres.database}, roles "
              f"{db.role_name(settings, 'loader')} (writes), {db.role_name(settings, 'reporting')} (reads) and "
              f"{db.role_name(settings, 'api')} (the API: reads dw and its keys)")
        return 0
    if args.command == "migrate":
        command, *revision = args.args or ["upgrade", "head"]
        db.migrate(settings, command, *(revision or (["head"] if command == "upgrade" else ["base"])))
        return 0
    if args.command == "password":
        role = (args.args or ["reporting"])[0]
        if role not in db.LOGIN_ROLES:
            raise SystemExit(f"python -m warehouse password {'|'.join(db.LOGIN_ROLES)}")
        print(db.password(settings, role))
        return 0
    if args.command == "status":
        from warehouse.report import table_counts

        for table, rows in table_counts(db.engine(settings, "reporting")).items():
            print(f"{table:<28} {rows:>12,}")
        return 0
    groups = args.args or list(load.GROUPS)
    unknown = sorted(set(groups) - set(load.GROUPS))
    if unknown:
        raise SystemExit(f"unknown groups {unknown}; expected some of {list(load.GROUPS)}")
    values = args.values.split(",") if args.values else None
    engine = db.engine(settings, "loader")
    failed = 0
    for group in groups:
        specs = load.GROUPS[group]
        pieces = (load.live_slices(settings, engine, args.dataset) if group == "live" and args.command == "load"
                  and values is None else load.slices(settings, specs, args.dataset, values))
        if args.command == "load":
            registry = load.registry_info(settings) if group == "predictions" else None
            done = load.load(settings, engine, specs, pieces, registry, progress=print)
            print(f"{group}: {sum(d.rows for d in done):,} rows in {len(pieces)} slices")
        else:
            problems = load.reconcile(settings, engine, specs, pieces)
            print(f"{group}: {len(pieces)} slices, {'all figures agree' if not problems else 'DIFFERENCES:'}")
            for line in problems:
                print(f"  {line}")
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
