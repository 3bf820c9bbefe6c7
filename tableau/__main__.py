"""``python -m tableau build``: the .tds data sources, the workbooks and the .hyper extract.

    python -m tableau build            into <state_dir>/tableau (platform.yaml warehouse.tableau.output_dir)
    python -m tableau build --no-extract   only the XML documents (no database needed)
    python -m tableau publish          to the Tableau Server / Cloud configured in warehouse.tableau
"""

from __future__ import annotations

import argparse
import sys

from config import load_settings
from config.cli import guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tableau", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "publish"])
    parser.add_argument("--no-extract", action="store_true", help="skip the .hyper extract")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from tableau.build import build_all, publish

    settings = load_settings()
    if args.command == "publish":
        for line in publish(settings):
            print(line)
        return 0
    outcome = build_all(settings, extract=not args.no_extract)
    for path in outcome.documents:
        print(f"wrote {path}")
    if outcome.extract:
        print(f"wrote {outcome.extract} ({sum(outcome.rows.values()):,} rows in {len(outcome.rows)} tables, "
              f"{outcome.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
