"""Move ``@champion`` by hand, or see where the aliases point.

    python -m models.registry status
    python -m models.registry promote 7 --reason "reviewed"
    python -m models.registry rollback
"""

from __future__ import annotations

import argparse
import json
import sys

from mlflow.exceptions import MlflowException

from config import load_settings
from config.cli import guarded
from models.registry.aliases import promote, rollback, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.registry", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="show @champion and @challenger")
    p = sub.add_parser("promote", help="make a version @champion")
    p.add_argument("version")
    p.add_argument("--reason", default="manual promotion")
    r = sub.add_parser("rollback", help="give @champion back to the previous champion")
    r.add_argument("--reason", default="manual rollback")
    args = parser.parse_args(argv)

    def run() -> int:
        settings = load_settings()
        if args.command == "status":
            result = status(settings)
        elif args.command == "promote":
            result = promote(settings, args.version, args.reason)
        else:
            result = rollback(settings, args.reason)
        print(json.dumps(result, indent=2))
        return 0

    return guarded(run, fixable=(ValueError, MlflowException))


if __name__ == "__main__":
    sys.exit(main())
