"""Backtest a model's out-of-sample predictions from the command line.

    python -m pipelines.backtest --start-date 2020-01-01 --end-date 2023-12-31 \\
        --strategy momentum_lstm --initial-capital 100000

``--strategy`` names the model family whose predictions to trade (``lstm``, ``ensemble``,
...; ``<name>_<family>`` works too). Rules come from ``config/trading_config.yaml``. Writes
the gold tables and an HTML tear sheet, prints the headline figures.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.backtest", description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=date.fromisoformat, default=None)
    parser.add_argument("--end-date", type=date.fromisoformat, default=None)
    parser.add_argument("--strategy", default="ensemble")
    parser.add_argument("--initial-capital", type=float, default=None, help="default: trading_config.yaml")
    parser.add_argument("--no-sweep", action="store_true", help="skip the parameter sweep (no deflated Sharpe / PBO)")
    parser.add_argument("--seeds", type=int, default=1, help="sweep each configuration on this many perturbed copies")
    parser.add_argument("--tear-sheet", default=None, help="HTML path (default <reports_dir>/<dataset>/<strategy>.html)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.backtest.pipeline import backtest_strategy, headline
    from pipelines.spark import get_spark

    try:
        outcome = backtest_strategy(get_spark(settings), settings, args.strategy, args.start_date, args.end_date,
                                    args.initial_capital, sweep=not args.no_sweep, seeds=args.seeds,
                                    tear_sheet=Path(args.tear_sheet) if args.tear_sheet else None, progress=True)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = outcome.backtest.result
    print(headline(outcome.backtest.metrics))
    if result.halted_at is not None:
        print(f"circuit breaker: drawdown limit hit at {result.market.ts[result.halted_at]}; flat and halted after it")
    print(f"gold tables: {', '.join(outcome.tables.values())}\ntear sheet: {outcome.tear_sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
