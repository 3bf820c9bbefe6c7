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
    parser.add_argument("--tear-sheet", default=None, help="HTML path (default .state/reports/<dataset>/<strategy>.html)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.backtest import run as bt_run
    from pipelines.backtest.engine import Market
    from pipelines.backtest.store import load_inputs, write_backtest
    from pipelines.backtest.tearsheet import write_tearsheet
    from pipelines.spark import get_spark

    try:
        family = bt_run.model_of(args.strategy)
        spark = get_spark(settings)
        preds, bars = load_inputs(spark, settings, family, args.start_date, args.end_date)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    capital = args.initial_capital or settings.trading.initial_capital
    market = Market.from_frames(bars, preds)
    print(f"backtest {args.strategy} ({family} predictions): {len(market.symbols)} symbols, {len(market.ts):,} bars, "
          f"{market.ts[0]} .. {market.ts[-1]}")
    bt = bt_run.run(market, preds[["ts", "fold"]], settings, args.strategy, capital, progress=True)
    extra = {}
    if not args.no_sweep:
        sweep_frame, returns = bt_run.sweep(spark, market, settings, capital, seeds=args.seeds)
        extra = bt_run.overfitting(sweep_frame, returns, bt)
        bt.metrics.update(extra)
        print(f"sweep: {len(sweep_frame)} runs on Spark; best Sharpe {sweep_frame['sharpe'].max():.2f}, "
              f"deflated Sharpe {extra['deflated_sharpe']:.3f}, PBO {extra['pbo']:.2f}")
    tables = write_backtest(spark, settings, args.strategy, bt.result, bt.metrics_frame())
    out = settings.platform.state_dir / "reports" / settings.data.dataset / f"{args.strategy}.html"
    sheet = write_tearsheet(bt, Path(args.tear_sheet) if args.tear_sheet else out)
    m = bt.metrics
    print(f"total return {m['total_return']:.2%}  annual {m['annual_return']:.2%}  Sharpe {m['sharpe']:.2f}  "
          f"Sortino {m['sortino']:.2f}  max drawdown {m['max_drawdown']:.2%}  trades {m['trades']}  "
          f"win rate {m['win_rate']:.1%}  turnover {m['turnover']:.1f}x  costs {m['costs']:,.0f}")
    if bt.result.halted_at is not None:
        print(f"circuit breaker: drawdown limit hit at {market.ts[bt.result.halted_at]}; flat and halted after it")
    print(f"gold tables: {', '.join(tables.values())}\ntear sheet: {sheet}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
