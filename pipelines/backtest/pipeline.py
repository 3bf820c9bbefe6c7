"""Backtest -> gold tables -> tear sheet, and Monte Carlo -> gold summary, for one strategy at a
time, and every model's decile long-short book: what the command lines and the Dagster assets
both run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from config import Settings
from pipelines import lake
from pipelines.backtest import run as bt_run
from pipelines.backtest.engine import Market, infer_periods_per_year
from pipelines.backtest.longshort import long_short
from pipelines.backtest.store import (
    load_equity,
    load_inputs,
    load_scores,
    write_backtest,
    write_long_short,
    write_montecarlo,
)
from pipelines.backtest.montecarlo import Summary, fan, simulate_local, simulate_spark, summarize
from pipelines.backtest.tearsheet import write_tearsheet
from pipelines.lake.tables import PREDICTIONS
from pipelines.progress import progress_bar


@dataclass
class BacktestOutcome:
    backtest: bt_run.Backtest
    tables: dict[str, str]
    tear_sheet: Path
    seconds: float


def report_path(settings: Settings, strategy: str) -> Path:
    return settings.platform.reports_root / settings.data.dataset / f"{strategy}.html"


def backtest_strategy(spark: SparkSession, settings: Settings, strategy: str, start: date | None = None,
                      end: date | None = None, sweep: bool | None = None, tear_sheet: Path | None = None,
                      progress: bool = False, log=print) -> BacktestOutcome:
    """Backtest ``strategy`` on its model's out-of-sample predictions, sweep on Spark, write the
    gold tables and the tear sheet. Capital, rules and sweep come from ``settings.trading``."""
    started = time.monotonic()
    cfg = settings.trading.backtest
    family = bt_run.model_of(strategy)
    do_sweep = cfg.sweep if sweep is None else sweep
    steps = ["load", "backtest"] + (["sweep"] if do_sweep else []) + ["gold tables", "tear sheet"]
    bar = progress_bar(total=len(steps), desc=f"backtest {strategy}", unit="step", enabled=progress)

    def step(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)  # shown with the next update (at most every 30 s in logs)

    step("load")
    preds, bars = load_inputs(spark, settings, family, start, end)
    capital = settings.trading.initial_capital
    market = Market.from_frames(bars, preds)
    bar.update()
    log(f"backtest {strategy} ({family} predictions): {len(market.symbols)} symbols, {len(market.ts):,} bars, "
        f"{market.ts[0]} .. {market.ts[-1]}")
    step("backtest")
    bt = bt_run.run(market, preds[["ts", "fold"]], settings, strategy, capital)
    bar.update()
    if do_sweep:
        step("sweep")
        sweep_frame, returns = bt_run.sweep(spark, market, settings, capital, seeds=cfg.sweep_seeds)
        bt.metrics.update(bt_run.overfitting(sweep_frame, returns, bt))
        bt.sweep = sweep_frame
        bar.update()
        log(f"sweep: {len(sweep_frame)} runs on Spark ({bt.metrics['effective_trials']} distinct trials); "
            f"configured run: Sharpe {bt.metrics['sharpe']:.2f}, deflated Sharpe {bt.metrics['deflated_sharpe']:.3f} "
            f"against the distinct trials; best sweep Sharpe "
            f"{sweep_frame['sharpe'].max():.2f}; PBO {bt.metrics['pbo']:.2f}")
    step("gold tables")
    tables = write_backtest(spark, settings, strategy, bt.result, bt.metrics_frame())
    bar.update()
    step("tear sheet")
    sheet = write_tearsheet(bt, tear_sheet or report_path(settings, strategy))
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
    """Every model's decile long-short book on its out-of-sample predictions: the periods go to
    gold ``long_short``, one summary row per model is returned (``backtest.long_short``'s quantile
    and costs; a period is ``label_horizon`` bars)."""
    cfg, costs = settings.trading.backtest.long_short, settings.trading.costs
    cost_bps = cfg.cost_bps if cfg.cost_bps is not None else costs.commission_bps + costs.half_spread_bps
    scores = load_scores(spark, settings)
    rows = []
    models = sorted(scores["model"].unique())
    for model in progress_bar(models, desc="long-short", unit="model", enabled=progress):
        preds = scores[scores["model"] == model]
        ppy = infer_periods_per_year(pd.Index(np.sort(preds["ts"].unique())))
        book = long_short(preds, cfg.quantile, cost_bps, step=settings.model.label_horizon, periods_per_year=ppy,
                          seed=cfg.seed)
        write_long_short(spark, settings, model, book.daily)
        rows.append({"strategy": model, "quantile": cfg.quantile, "cost_bps": cost_bps, **book.metrics})
    return pd.DataFrame(rows)


def strategies(spark: SparkSession, settings: Settings) -> list[str]:
    """The configured strategies, or every model in the predictions table."""
    configured = settings.trading.backtest.strategies
    if configured:
        return list(configured)
    preds = lake.read(spark, PREDICTIONS.path(settings))
    return sorted(r["model"] for r in preds.select("model").distinct().collect())


def headline(metrics: dict) -> str:
    return (f"total return {metrics['total_return']:.2%}  annual {metrics['annual_return']:.2%}  "
            f"Sharpe {metrics['sharpe']:.2f}  Sortino {metrics['sortino']:.2f}  "
            f"max drawdown {metrics['max_drawdown']:.2%}  trades {metrics['trades']}  win rate {metrics['win_rate']:.1%}  "
            f"turnover {metrics['turnover']:.1f}x  costs {metrics['costs']:,.0f}")

