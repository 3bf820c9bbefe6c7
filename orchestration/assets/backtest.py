"""Backtest assets downstream of the models' out-of-sample predictions: gold tables, tear sheets,
decile long-short books, Monte Carlo summaries. Figures appear as metadata in the Dagster UI."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from orchestration.assets.models import trained_models
from orchestration.partitions import monthly, single_run
from orchestration.resources import SettingsResource, SparkResource
from pipelines.backtest.montecarlo import BREAKER_NOTE
from pipelines.backtest.pipeline import backtest_strategy, long_short_books, montecarlo_strategy, runs

GROUP = "backtest"
SHOWN = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "trades", "win_rate", "turnover",
         "deflated_sharpe", "pbo", "breaker_tripped")


@asset(group_name=GROUP, kinds={"spark", "delta"}, partitions_def=monthly, backfill_policy=single_run,
       deps=[trained_models],
       description="Every configured strategy (trading.backtest.strategies, default trading.strategy) on every model "
                   "family's out-of-sample predictions, through the risk gate, filled at the next open after costs; "
                   "a sweep of the strategy's grid on Spark for the deflated Sharpe and PBO. Writes gold "
                   "backtest_trades / _equity / _positions / _metrics / _rejections and an HTML tear sheet per run "
                   "(<strategy>_<model>).")
def backtests(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    cfg = settings.get()
    rows, sheets = [], {}
    for run in runs(spark.session(), cfg):
        outcome = backtest_strategy(spark.session(), cfg, run.strategy, run.model, log=context.log.info)
        bt = outcome.backtest
        m = bt.metrics
        rows.append({"strategy": bt.strategy, **{k: round(float(m[k]), 4) for k in SHOWN if k in m},
                     "rejected_orders": len(bt.result.rejections)})
        sheets[bt.strategy] = str(outcome.tear_sheet)
    table = pd.DataFrame(rows)
    best = table.sort_values("sharpe", ascending=False).iloc[0] if len(table) else None
    return MaterializeResult(metadata={
        "strategies": MetadataValue.md(table.to_markdown(index=False)),
        "tear_sheets": MetadataValue.json(sheets),
        "best_strategy": str(best["strategy"]) if best is not None else "none",
        "best_sharpe": float(best["sharpe"]) if best is not None else 0.0})


LONG_SHORT_SHOWN = {"annual_gross": 4, "annual_net": 4, "sharpe_net": 2, "sharpe_net_ci_low": 2,
                    "sharpe_net_ci_high": 2, "t_stat_net": 2, "max_drawdown": 4, "hit_rate": 3, "turnover": 2,
                    "names_per_leg": 1}


@asset(group_name=GROUP, kinds={"delta"}, partitions_def=monthly, backfill_policy=single_run,
       deps=[trained_models],
       description="Every model's decile long-short book, traded by the backtest engine as the long_short strategy "
                   "(trading.strategies.long_short): long the top quantile of each day's cross-section by expected "
                   "return, short the bottom, equal weights, rebalanced every label horizon, with the engine's costs, "
                   "participation cap, risk gate and fills at the next open; gold long_short, one row per bar.")
def long_short_backtests(context: AssetExecutionContext, spark: SparkResource,
                         settings: SettingsResource) -> MaterializeResult:
    table = long_short_books(spark.session(), settings.get(), progress=True)
    built = table[table["built"]]
    if built.empty:  # e.g. 8 symbols: a decile leg of one name is a bet, not a ranking
        context.log.warning("long-short: %s", table["note"].iloc[0])
        return MaterializeResult(metadata={"books": table["note"].iloc[0], "quantile": float(table["quantile"].iloc[0]),
                                           "rebalance_every": int(table["rebalance_every"].iloc[0])})
    shown = built[["strategy", *LONG_SHORT_SHOWN]].round(LONG_SHORT_SHOWN)
    best = built.sort_values("sharpe_net", ascending=False).iloc[0]
    return MaterializeResult(metadata={
        "books": MetadataValue.md(shown.to_markdown(index=False)),
        "quantile": float(best["quantile"]), "rebalance_every": int(best["rebalance_every"]),
        "best_long_short": str(best["strategy"]), "best_sharpe_net": round(float(best["sharpe_net"]), 3)})


@asset(group_name=GROUP, kinds={"spark", "delta"}, partitions_def=monthly, backfill_policy=single_run,
       deps=[backtests],
       description="Stationary block (or i.i.d.) bootstrap of each strategy's returns on Spark: distributions of "
                   "final equity, maximum drawdown and Sharpe, and the risk of ruin; gold montecarlo_summary.")
def montecarlo(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    cfg = settings.get()
    rows = []
    for run in runs(spark.session(), cfg):
        strategy = run.name(cfg)
        s = montecarlo_strategy(spark.session(), cfg, strategy)
        t = s.table
        rows.append({"strategy": strategy, "final_equity_median": round(t.loc["final_equity", "median"], 2),
                     "final_equity_low": round(t.loc["final_equity", "low"], 2),
                     "final_equity_high": round(t.loc["final_equity", "high"], 2),
                     "max_drawdown_high": round(t.loc["max_drawdown", "high"], 4),
                     "sharpe_median": round(t.loc["sharpe", "median"], 3), "risk_of_ruin": s.risk_of_ruin,
                     "seconds": round(s.seconds, 1)})
        context.log.info("%s: %d paths in %.1fs", strategy, s.simulations, s.seconds)
    b = cfg.trading.backtest
    return MaterializeResult(metadata={
        "summary": MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False)),
        "simulations": b.montecarlo_simulations, "method": b.montecarlo_method, "confidence": b.confidence,
        "note": BREAKER_NOTE})
