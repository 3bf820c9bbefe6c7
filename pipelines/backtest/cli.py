"""The backtest and Monte Carlo command lines, with one error boundary for both.

    python -m pipelines.backtest --start-date 2020-01-01 --end-date 2023-12-31 \\
        --strategy topk_dropout --model lstm --initial-capital 100000
    python -m pipelines.montecarlo --simulations 10000 --confidence-interval 0.95 [--method stationary]

``--strategy`` names the strategy (a built-in, ``my_pkg.strategies:MeanReversion`` or an entry
point; default ``trading.strategy``) and ``--model`` the model family whose out-of-sample
predictions it trades (``lstm``, ``ensemble``, ...). Parameters, costs and limits come from
``config/trading_config.yaml``; unset options take their values from its ``backtest`` section.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from config.cli import UserError, guarded, settings_with_flags
from pipelines.trading.strategy import StrategyError

BACKTEST_FLAGS = {"initial_capital": "QL_TRADING__INITIAL_CAPITAL", "seeds": "QL_TRADING__BACKTEST__SWEEP_SEEDS"}
MONTECARLO_FLAGS = {"simulations": "QL_TRADING__BACKTEST__MONTECARLO_SIMULATIONS",
                    "confidence_interval": "QL_TRADING__BACKTEST__CONFIDENCE",
                    "method": "QL_TRADING__BACKTEST__MONTECARLO_METHOD",
                    "block": "QL_TRADING__BACKTEST__MONTECARLO_BLOCK",
                    "ruin": "QL_TRADING__BACKTEST__RUIN_FRACTION"}


def backtest_main(argv: list[str] | None = None) -> int:
    """Backtest a model's out-of-sample predictions; write the gold tables and a tear sheet."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.backtest",
                                     description="Backtest a model's out-of-sample predictions.")
    parser.add_argument("--start-date", type=date.fromisoformat, default=None)
    parser.add_argument("--end-date", type=date.fromisoformat, default=None)
    parser.add_argument("--strategy", default=None, help="default: trading_config.yaml's strategy")
    parser.add_argument("--model", default="ensemble", help="the model family whose predictions it trades")
    parser.add_argument("--initial-capital", type=float, default=None, help="default: trading_config.yaml")
    parser.add_argument("--no-sweep", action="store_true", help="skip the parameter sweep (no deflated Sharpe / PBO)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="sweep each configuration on this many perturbed copies (default: trading_config.yaml)")
    parser.add_argument("--tear-sheet", default=None, help="HTML path (default <reports_dir>/<dataset>/<strategy>.html)")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.start_date and args.end_date and args.end_date < args.start_date:
            raise UserError(f"--end-date {args.end_date} is before --start-date {args.start_date}")
        settings = settings_with_flags(vars(args), BACKTEST_FLAGS)  # the same rules as the config files
        from pipelines.backtest.pipeline import backtest_strategy, headline
        from pipelines.backtest.run import FAMILIES, run_name
        from pipelines.lake.spark import get_spark
        from pipelines.trading.strategies import load_strategy

        strategy = args.strategy or settings.trading.strategy
        if strategy in FAMILIES:
            raise UserError(f"--strategy {strategy!r} is a model family; --strategy names a strategy now "
                            f"(e.g. {settings.trading.strategy}) and --model the family: --model {strategy}")
        run_name(load_strategy(settings.trading, strategy, "--strategy"), args.model)  # fails before Spark starts
        outcome = backtest_strategy(get_spark(settings), settings, strategy, args.model, args.start_date,
                                    args.end_date, sweep=not args.no_sweep,
                                    tear_sheet=Path(args.tear_sheet) if args.tear_sheet else None, progress=True)
        result = outcome.backtest.result
        print(f"{outcome.backtest.strategy}: {headline(outcome.backtest.metrics)}")
        if len(result.rejections):
            counts = ", ".join(f"{k} {v}" for k, v in result.rejections["limit"].value_counts().items())
            print(f"risk gate: {len(result.rejections):,} orders rejected ({counts}); gold backtest_rejections")
        if result.halted_at is not None:
            print(f"circuit breaker: drawdown limit hit at {result.market.ts[result.halted_at]}; flat and halted after it")
        print(f"gold tables: {', '.join(outcome.tables.values())}\ntear sheet: {outcome.tear_sheet}")
        return 0

    return guarded(run, fixable=(ValueError, StrategyError))


def montecarlo_main(argv: list[str] | None = None) -> int:
    """Bootstrap a backtest's returns; print and write the summary."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.montecarlo",
                                     description="Monte Carlo of a strategy's returns.")
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--confidence-interval", type=float, default=None)
    parser.add_argument("--method", default=None, help="iid or stationary (default: trading_config.yaml)")
    parser.add_argument("--block", type=float, default=None, help="mean block length in bars (stationary)")
    parser.add_argument("--ruin", type=float, default=None, help="ruin: equity at or below this share of the start")
    parser.add_argument("--strategy", default=None, help="the backtest whose returns to resample: its strategy "
                                                         "(default: trading_config.yaml's strategy) ...")
    parser.add_argument("--model", default="ensemble", help="... and its model family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--local", action="store_true", help="simulate in this process instead of on Spark")
    args = parser.parse_args(argv)

    def run() -> int:
        settings = settings_with_flags(vars(args), MONTECARLO_FLAGS)  # the same rules as the config files
        from pipelines.backtest.montecarlo import BREAKER_NOTE
        from pipelines.backtest.pipeline import Run, montecarlo_strategy
        from pipelines.lake.spark import get_spark

        name = Run(args.strategy or settings.trading.strategy, args.model).name(settings)
        summary = montecarlo_strategy(get_spark(settings), settings, name, seed=args.seed,
                                      local=args.local, progress=True)
        ruin = settings.trading.backtest.ruin_fraction
        print(f"Monte Carlo: {summary.simulations:,} {summary.method} paths of the {name} backtest's "
              f"returns, {summary.confidence:.0%} intervals")
        print(summary.table.to_string(float_format=lambda v: f"{v:,.4f}"))
        print(f"risk of ruin (equity <= {ruin:.0%} of start): {summary.risk_of_ruin:.4%}   ({summary.seconds:.1f}s)")
        print(f"note: {BREAKER_NOTE}")
        return 0

    return guarded(run, fixable=(ValueError,))
