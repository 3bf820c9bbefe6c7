"""``python -m tableau``: build, check and publish the Tableau files.

    python -m tableau build            into <state_dir>/tableau (platform.yaml warehouse.tableau.output_dir):
                                       the .tds data sources, the workbooks, the .hyper extract, each
                                       sheet's marks on both and a preview of each sheet in previews/
    python -m tableau build --no-extract   only the XML documents (no database needed)
    python -m tableau check --schema ../shared/tableau-schema/twb_2026.1.0.xsd [--live]
                                       the built documents against Tableau's workbook schema, and every
                                       sheet drawing marks (live sheets too with --live)
    python -m tableau publish          to the Tableau Server / Cloud configured in warehouse.tableau
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config import load_settings
from config.cli import guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tableau", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "check", "publish"])
    parser.add_argument("--no-extract", action="store_true", help="build: skip the .hyper extract")
    parser.add_argument("--schema", type=Path, help="check: Tableau's workbook schema (.xsd)")
    parser.add_argument("--live", action="store_true", help="check: the live sheets must draw marks too")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from tableau.build import build_all, publish, sheet_problems

    settings = load_settings()
    if args.command == "publish":
        for line in publish(settings):
            print(line)
        return 0
    if args.command == "check":
        return _check(settings, args.schema, args.live, sheet_problems)
    outcome = build_all(settings, extract=not args.no_extract)
    for path in outcome.documents:
        print(f"wrote {path}")
    if outcome.extract:
        print(f"wrote {outcome.extract} ({sum(outcome.rows.values()):,} rows in {len(outcome.rows)} tables, "
              f"{outcome.seconds:.1f}s)")
        for check in outcome.sheets:
            print(f"  sheet {check.line()}")
        if outcome.previews:
            print(f"wrote {len(outcome.previews)} previews into {outcome.previews[0].parent}")
    return 0


def _check(settings, schema: Path | None, live: bool, sheet_problems) -> int:
    from tableau.validate import defects

    found = []
    if schema is not None:
        for path in sorted(settings.platform.tableau_dir.glob("*.t[dw][sb]")):
            found += [f"{path.name} {e}" for e in defects(path, schema)]
    found += sheet_problems(settings, live)
    for line in found:
        print(line)
    print("ok" if not found else f"{len(found)} problems")
    return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())
