"""Backtest -> gold tables -> tear sheet, and Monte Carlo -> gold summary, for one run (a strategy
on a model's predictions) at a time, and every model's decile long-short book: what the command
lines and the Dagster assets both run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from config import Settings
from pipelines import lake
from pipelines.backtest import run as bt_run
from pipelines.backtest.engine import Market, run_backtest
from pipelines.backtest.longshort import book_periods
from pipelines.backtest.longshort import summarize as book_summary
from pipelines.backtest.store import (
    load_equity,
    load_inputs,
    write_backtest,
    write_long_short,
    write_montecarlo,
)
from pipelines.backtest.montecarlo import Summary, fan, simulate_local, simulate_spark, summarize
from pipelines.backtest.tearsheet import write_tearsheet
from pipelines.lake.tables import PREDICTIONS
from pipelines.progress import progress_bar
from pipelines.trading.strategies import load_strategy


@dataclass
class BacktestOutcome:
    backtest: bt_run.Backtest
    tables: dict[str, str]
    tear_sheet: Path
    seconds: float


def report_path(settings: Settings, run: str) -> Path:
    return settings.platform.reports_root / settings.data.dataset / f"{run}.html"


@dataclass(frozen=True)
class Run:
    """One backtest: a strategy (as configured: a name, an import path or an entry point) on one
    model family's predictions."""

    strategy: str
    model: str

    def name(self, settings: Settings) -> str:
        return bt_run.run_name(load_strategy(settings.trading, self.strategy), self.model)


def backtest_strategy(spark: SparkSession, settings: Settings, strategy: str, model: str, start: date | None = None,
                      end: date | None = None, sweep: bool | None = None, tear_sheet: Path | None = None,
                      progress: bool = False, log=print) -> BacktestOutcome:
    """Backtest ``strategy`` (``trading.strategies`` holds its parameters) on ``model``'s
    out-of-sample predictions, sweep its grid on Spark, write the gold tables and the tear sheet.
    Capital, costs, the breaker and the gate's limits come from ``settings.trading``."""
    started = time.monotonic()
    cfg = settings.trading.backtest
    chosen = load_strategy(settings.trading, strategy)
    name = bt_run.run_name(chosen, model)
    do_sweep = (cfg.sweep if sweep is None else sweep) and bool(chosen.sweep_grid())
    steps = ["load", "backtest"] + (["sweep"] if do_sweep else []) + ["gold tables", "tear sheet"]
    bar = progress_bar(total=len(steps), desc=f"backtest {name}", unit="step", enabled=progress)

    def step(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)  # shown with the next update (at most every 30 s in logs)

    step("load")
    preds, bars = load_inputs(spark, settings, model, start, end)
    capital = settings.trading.initial_capital
    market = Market.from_frames(bars, preds)
    bar.update()
    log(f"backtest {name} ({chosen.describe()['strategy']} on {model} predictions): {len(market.symbols)} symbols, "
        f"{len(market.ts):,} bars, {market.ts[0]} .. {market.ts[-1]}")
    step("backtest")
    bt = bt_run.run(market, preds[["ts", "fold"]], settings, chosen, name, capital)
    bar.update()
    rejected = bt.result.rejections
    if len(rejected):
        counts = rejected["limit"].value_counts().to_dict()
        log(f"backtest {name}: the risk gate rejected {len(rejected):,} orders ({counts})")
    if do_sweep:
        step("sweep")
        sweep_frame, returns = bt_run.sweep(spark, market, settings, chosen, capital, seeds=cfg.sweep_seeds)
        bt.metrics.update(bt_run.overfitting(sweep_frame, returns, bt))
        bt.sweep = sweep_frame
        bar.update()
        log(f"sweep: {len(sweep_frame)} runs on Spark ({bt.metrics['effective_trials']} distinct trials); "
            f"configured run: Sharpe {bt.metrics['sharpe']:.2f}, deflated Sharpe {bt.metrics['deflated_sharpe']:.3f} "
            f"against the distinct trials; best sweep Sharpe "
            f"{sweep_frame['sharpe'].max():.2f}; PBO {bt.metrics['pbo']:.2f}")
    step("gold tables")
    tables = write_backtest(spark, settings, name, bt.result, bt.metrics_frame())
    bar.update()
    step("tear sheet")
    sheet = write_tearsheet(bt, tear_sheet or report_path(settings, name))
    bar.update()
    bar.close()
    return BacktestOutcome(bt, tables, sheet, time.monotonic() - started)


def montecarlo_strategy(spark: SparkSession, settings: Settings, strategy: str, seed: int = 0, local: bool = False,
                        progress: bool = False) -> Summary:
    """Bootstrap the returns of ``strategy``'s backtest and write the summary table (simulations,
    method, block, confidence and ruin level from ``settings.trading.backtest``) and the fan's
    equity quantiles (``warehouse.fan_paths`` of the same paths)."""
    cfg = settings.trading.backtest
    equity = load_equity(spark, settings, strategy)
    kwargs = dict(method=cfg.montecarlo_method, block=cfg.montecarlo_block,
                  initial_capital=settings.trading.initial_capital,
                  periods_per_year=float(equity["periods_per_year"].iloc[0]),
                  ruin_fraction=cfg.ruin_fraction, seed=seed)
    n = cfg.montecarlo_simulations
    started = time.monotonic()
    returns = equity["returns"].to_numpy()
    paths = (simulate_local(returns, n, progress=progress, **kwargs) if local
             else simulate_spark(spark, returns, n, progress=progress, **kwargs))
    summary = summarize(paths, cfg.confidence, kwargs["method"], time.monotonic() - started)
    quantiles = fan(returns, min(settings.platform.warehouse.fan_paths, n), method=kwargs["method"],
                    block=kwargs["block"], initial_capital=kwargs["initial_capital"], seed=seed)
    bar_ts = equity["ts"].to_numpy()
    quantiles["ts"] = bar_ts[(quantiles["step"] - 1).clip(lower=0)]  # step 0 (the capital) at the first bar
    write_montecarlo(spark, settings, strategy, summary, quantiles)
    return summary


def long_short_books(spark: SparkSession, settings: Settings, progress: bool = False) -> pd.DataFrame:
    """Every model's decile long-short book, run by the backtest engine as the ``long_short``
    strategy (``trading.strategies.long_short``; rebalanced every ``label_horizon`` bars unless it
    sets ``rebalance_every``) with the engine's costs, participation cap, gate and fills at the
    next open. Each bar's legs and returns go to gold ``long_short``; one summary row per model is
    returned."""
    trading = settings.trading
    params = dict(trading.strategies.get("long_short") or {})
    params.setdefault("rebalance_every", settings.model.label_horizon)
    trading = trading.model_copy(update={"strategies": {**trading.strategies, "long_short": params}})
    strategy = load_strategy(trading, "long_short")
    rows = []
    models = available_models(spark, settings)
    for model in progress_bar(models, desc="long-short", unit="model", enabled=progress):
        preds, bars = load_inputs(spark, settings, model)
        market = Market.from_frames(bars, preds)
        result = run_backtest(market, strategy, trading)
        daily = book_periods(result)
        write_long_short(spark, settings, model, daily)
        rows.append({"strategy": model, "quantile": strategy.params.quantile,
                     "rebalance_every": strategy.params.rebalance_every, "rejected_orders": len(result.rejections),
                     **book_summary(daily, market.periods_per_year), **_built(daily, strategy.params)})
    return pd.DataFrame(rows)


def _built(daily: pd.DataFrame, params) -> dict:
    """Whether the strategy's legs ever reached ``min_per_leg`` names (from the names scored at
    each bar; orders the gate refused do not make a book unbuilt), and if not, why."""
    most = int(daily["n"].max()) if len(daily) else 0  # legs grow with the names scored
    per_leg = max(1, int(most * params.quantile))
    if per_leg >= params.min_per_leg:
        return {"built": True, "note": ""}
    return {"built": False, "note": f"not built: at most {most} names scored at a bar, so a {params.quantile:.0%} leg "
                                    f"holds {per_leg}, fewer than min_per_leg {params.min_per_leg}"}


def available_models(spark: SparkSession, settings: Settings) -> list[str]:
    """``backtest.models``, or every model family in the predictions table."""
    configured = settings.trading.backtest.models
    if configured:
        return list(configured)
    preds = lake.read(spark, PREDICTIONS.path(settings))
    return sorted(r["model"] for r in preds.select("model").distinct().collect())


def runs(spark: SparkSession, settings: Settings) -> list[Run]:
    """The backtests to run: ``backtest.strategies`` (default: ``trading.strategy``) x the models."""
    chosen = settings.trading.backtest.strategies or [settings.trading.strategy]
    for name in chosen:
        load_strategy(settings.trading, name)  # an unknown strategy or a bad parameter fails here, naming its key
    return [Run(name, model) for name in chosen for model in available_models(spark, settings)]


def headline(metrics: dict) -> str:
    return (f"total return {metrics['total_return']:.2%}  annual {metrics['annual_return']:.2%}  "
            f"Sharpe {metrics['sharpe']:.2f}  Sortino {metrics['sortino']:.2f}  "
            f"max drawdown {metrics['max_drawdown']:.2%}  trades {metrics['trades']}  win rate {metrics['win_rate']:.1%}  "
            f"turnover {metrics['turnover']:.1f}x  costs {metrics['costs']:,.0f}")

