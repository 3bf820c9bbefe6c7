"""The backtest and Monte Carlo command lines on a small lake: gold tables, tear sheet, errors."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from config import load_settings
from pipelines import lake
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.lake.tables import (
    BACKTEST_EQUITY,
    BACKTEST_METRICS,
    BACKTEST_POSITIONS,
    BACKTEST_TRADES,
    MONTECARLO_SUMMARY,
    PREDICTIONS,
    SILVER_BARS,
)
from pipelines.backtest.cli import backtest_main
from pipelines.backtest.cli import montecarlo_main
from pipelines.trading.strategy import Strategy

ENV = {"QL_DATA__SYNTHETIC__N_SYMBOLS": "4", "QL_DATA__SYNTHETIC__N_DAYS": "5",
       "QL_DATA__SYNTHETIC__START_DATE": "2024-06-03",
       "QL_TRADING__STRATEGIES__THRESHOLD__MAX_POSITION_SIZE": "0.2",
       "QL_TRADING__LIMITS__MAX_POSITION_NOTIONAL": "0.25", "QL_TRADING__LIMITS__MAX_ORDER_NOTIONAL": "1e9",
       "QL_TRADING__STRATEGIES__TOPK_DROPOUT__K": "2", "QL_TRADING__STRATEGIES__TOPK_DROPOUT__N_DROP": "1",
       "QL_TRADING__STRATEGIES__TOPK_DROPOUT__GROSS": "0.4"}


_BUILT: dict[str, str] = {}  # pytest-xdist may tear a module fixture down between tests: build the lake once


@pytest.fixture(scope="module")
def lake_with_predictions(spark, tmp_path_factory) -> dict[str, str]:
    """Silver bars of 4 synthetic symbols x 5 days and a clairvoyant 'lstm' prediction table
    (p_up from the next bar's actual move): the engine must turn it into profit after costs."""
    if _BUILT:
        return _BUILT
    env = {**ENV, "QL_PLATFORM__LAKE__ROOT": str(tmp_path_factory.mktemp("bt_lake")),
           "QL_PLATFORM__REPORTS_DIR": str(tmp_path_factory.mktemp("bt_reports"))}
    settings = load_settings(env={**os.environ, **env})
    for write in (write_bronze, write_silver):
        write(spark, settings, date(2024, 6, 1), date(2024, 6, 30))
    bars = lake.read(spark, SILVER_BARS.path(settings)).select("symbol", "ts", "open", "close").toPandas()
    bars = bars.sort_values(["symbol", "ts"])
    nxt = bars.groupby("symbol")["open"].shift(-2) / bars.groupby("symbol")["open"].shift(-1) - 1
    preds = bars[["symbol", "ts"]].assign(
        p_up=np.where(nxt > 0, 0.8, 0.2), expected_return=nxt.fillna(0.0), direction=(nxt > 0).astype(float),
        fwd_return=nxt, fold=np.where(bars["ts"] < bars["ts"].quantile(0.5), 0, 1), model="lstm", run_id="test")
    preds = preds.dropna(subset=["fwd_return"])
    df = spark.createDataFrame(preds).withColumn("date", F.date_format("ts", "yyyy-MM-dd"))
    lake.overwrite(df, PREDICTIONS.path(settings), partition_by=["model"])
    _BUILT.update(env)
    return env


def test_backtest_cli_writes_gold_tables_and_a_tear_sheet(spark, lake_with_predictions, monkeypatch, capsys) -> None:
    for key, value in lake_with_predictions.items():
        monkeypatch.setenv(key, value)
    assert backtest_main(["--strategy", "threshold", "--model", "lstm", "--initial-capital", "100000"]) == 0
    out = capsys.readouterr().out
    assert "backtest threshold_lstm (threshold on lstm predictions): 4 symbols" in out
    assert "sweep: 12 runs on Spark" in out
    settings = load_settings()
    metrics = lake.read(spark, BACKTEST_METRICS.path(settings)).toPandas()
    overall = metrics[(metrics["scope"] == "all")].set_index("metric")["value"]
    assert overall["total_return"] > 0.01 and overall["trades"] > 10  # clairvoyance pays, even after costs
    # a clairvoyant signal: no trial of zero skill explains it, and the in-sample best stays good
    assert overall["deflated_sharpe"] > 0.95 and overall["pbo"] < 0.5, overall
    assert 1 < overall["effective_trials"] <= overall["sweep_runs"] == 12
    assert {"fold 0", "fold 1"} <= set(metrics["scope"])
    equity = lake.read(spark, BACKTEST_EQUITY.path(settings)).toPandas()
    trades = lake.read(spark, BACKTEST_TRADES.path(settings)).toPandas()
    assert len(equity) == len(set(equity["ts"])) > 300  # one row per bar of the predictions' span
    assert (trades["strategy"] == "threshold_lstm").all() and trades["cost"].gt(0).all()
    sheet = Path(lake_with_predictions["QL_PLATFORM__REPORTS_DIR"]) / "synthetic" / "threshold_lstm.html"
    text = sheet.read_text()
    assert text.count("data:image/png;base64,") == 6 and "Per fold" in text

    # running again replaces this strategy's rows, it does not append
    assert backtest_main(["--strategy", "threshold", "--model", "lstm", "--no-sweep"]) == 0
    again = lake.read(spark, BACKTEST_TRADES.path(settings)).toPandas()
    assert len(again) == len(trades)

    # top-k dropout on the same predictions: its own rows, its own sweep (k x n_drop), the gate applied
    assert backtest_main(["--strategy", "topk_dropout", "--model", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "topk_dropout_lstm" in out and "sweep: 5 runs on Spark" in out  # k 1, 2, 4 x n_drop 1 and k
    held = lake.read(spark, BACKTEST_POSITIONS.path(settings)).where("strategy = 'topk_dropout_lstm'").toPandas()
    names = held.groupby("ts")["symbol"].nunique()
    # k names; a third now and then: a sale the volume cap (5% of the bar) filled only in part
    assert names.median() == 2 and names.max() <= 3
    assert len(lake.read(spark, BACKTEST_TRADES.path(settings)).toPandas()) > len(trades)

    assert montecarlo_main(["--simulations", "2000", "--confidence-interval", "0.9", "--strategy",
                            "threshold", "--model", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "Monte Carlo: 2,000 stationary paths" in out and "risk of ruin" in out
    assert "drawdown breaker is not re-applied" in out  # what the paths do not model is said
    summary = lake.read(spark, MONTECARLO_SUMMARY.path(settings)).toPandas()
    assert set(summary["statistic"]) == {"final_equity", "total_return", "max_drawdown", "sharpe"}
    assert (summary["simulations"] == 2000).all()


def test_cli_errors_name_what_is_missing(lake_with_predictions, monkeypatch, capsys) -> None:
    for key, value in lake_with_predictions.items():
        monkeypatch.setenv(key, value)
    assert backtest_main(["--strategy", "astrology"]) == 2
    assert "unknown strategy 'astrology'" in capsys.readouterr().err
    assert backtest_main(["--model", "transformer"]) == 2
    err = capsys.readouterr().err
    assert "no predictions for 'transformer'" in err and "['lstm']" in err


def test_a_strategy_that_never_trades_still_writes_its_tables(spark, lake_with_predictions, monkeypatch) -> None:
    for key, value in lake_with_predictions.items():
        monkeypatch.setenv(key, value)
    # a user's strategy by import path: it never trades
    assert backtest_main(["--strategy", "tests.test_backtest_cli:Quiet", "--model", "lstm", "--no-sweep"]) == 0
    settings = load_settings()
    trades = lake.read(spark, BACKTEST_TRADES.path(settings)).where("strategy = 'quiet_lstm'")
    assert trades.count() == 0
    metrics = lake.read(spark, BACKTEST_METRICS.path(settings)).where(
        "strategy = 'quiet_lstm' AND scope = 'all'").toPandas().set_index("metric")["value"]
    assert metrics["total_return"] == 0 and metrics["trades"] == 0
    assert montecarlo_main(["--simulations", "200", "--strategy", "tests.test_backtest_cli:Quiet", "--model", "lstm",
                            "--local"]) == 0


class Quiet(Strategy):
    """A strategy that holds nothing."""

    name = "quiet"

    def targets(self, ctx):
        return np.zeros(len(ctx.symbols))
