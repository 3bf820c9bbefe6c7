"""Strategies on the live path: days of the real S&P 500 panel replayed through the feed, Kafka, the
Structured Streaming job, the trader running top-k dropout (a rebalance every second day, a rate
limit that binds), the risk gate, the venue and the Redis portfolio; the fills, the rejections and
the equity equal the backtest engine's on the same bars and predictions.

:func:`replay_sp500` is shared with the README's "Write a strategy" test, which runs a user's
strategy from a package outside the repo the same way."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from config import load_settings
from config.settings import PROJECT_ROOT
from pipelines import lake
from pipelines.backtest.engine import Market, run_backtest
from pipelines.ingest.sources import source_for
from pipelines.lake.tables import LIVE_BARS, LIVE_EQUITY, LIVE_FILLS, LIVE_ORDERS, LIVE_PREDICTIONS
from pipelines.trading.strategies import load_strategy
from pipelines.trading.strategy import Strategy
from streaming import live
from streaming.feed import bar_ticks, publish
from streaming.portfolio import RedisPortfolio
from streaming.status import read_status
from tests.livekit import Services, live_env, research_with_champion
from tests.test_live_trading import InProcessStream, _as_of, _settled

pytestmark = pytest.mark.services

SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"
SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "JNJ", "PG", "KO", "WMT"]
RESEARCH = (date(2017, 4, 3), date(2019, 6, 28))  # the stream warm-starts on 485 bars (max_lookback)
LIVE = (date(2019, 7, 1), date(2019, 7, 12))


def sp500_env(tmp_path, **extra: str) -> dict[str, str]:
    """The S&P panel's 8 names as a ``files`` source of its own (dataset, topics, account)."""
    base = live_env(tmp_path)
    tag = base["QL_DATA__SYNTHETIC__NAME"].removeprefix("stream-")
    return {**base, "QL_DATA__SOURCE": "files", "QL_DATA__FILES__NAME": f"sp500-{tag}",
            "QL_DATA__FILES__PATH": str(SP500), "QL_DATA__FILES__SYMBOLS": json.dumps(SYMBOLS),
            "QL_DATA__FILES__COLUMNS": json.dumps({"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"}),
            "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": f"live-sp500-{tag}",
            # a replay faster than the market: the wall-clock submit rate must not bind (the
            # backtest counts it in bar time)
            "QL_TRADING__LIMITS__MAX_ORDERS_PER_SECOND": "100000", **extra}


def replay_sp500(spark, tmp_path, env: dict[str, str]) -> dict:
    """Research on 2017 to mid-2019 with a linear champion, then July 2019's days through the
    whole live path under ``env``'s strategy; then the live tables next to the backtest engine on
    the same bars and predictions. Returns what the assertions need."""
    settings = load_settings(env=env)
    days = pd.bdate_range(*RESEARCH)
    research_with_champion(spark, settings, days)
    bars = source_for(settings.data).read(spark, *LIVE).toPandas()
    ticks = bar_ticks(bars, 1440, settings.data.dataset)

    live.fresh_run(settings)
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = Services(env, settings, logs)
    svc.start("venue")
    svc.start("portfolio")
    stream = InProcessStream(spark, settings)
    failed = (lambda: svc.dead() or stream.failed())
    try:
        publish(settings, ticks, progress=False)
        bar_times = sorted(pd.to_datetime(bars["ts"]).unique())
        first, last = live.micros(bar_times[0]), live.micros(bar_times[-2])  # the last day stays open
        assert live.wait_for(lambda: _as_of(settings) >= first or failed(), 240, 0.05), read_status(settings)
        assert live.wait_for(lambda: _settled(settings, last) or failed(), 300, 0.1), \
            (read_status(settings), svc.log("venue"), svc.log("portfolio"))
        assert not failed(), failed()
    finally:
        stream.stop()
    svc.stop()
    status = read_status(settings)
    assert lake.exists(spark, LIVE_PREDICTIONS.path(settings)), status

    live_bars = lake.read(spark, LIVE_BARS.path(settings)).toPandas()
    predictions = lake.read(spark, LIVE_PREDICTIONS.path(settings)).toPandas()
    market = Market.from_frames(live_bars[["symbol", "ts", "open", "close", "volume"]], predictions)
    result = run_backtest(market, load_strategy(settings.trading), settings.trading)
    fills = lake.read(spark, LIVE_FILLS.path(settings)).toPandas().sort_values(["ts", "symbol"]).reset_index(drop=True)
    orders = lake.read(spark, LIVE_ORDERS.path(settings)).toPandas()
    equity = lake.read(spark, LIVE_EQUITY.path(settings)).toPandas().sort_values("ts").reset_index(drop=True)
    client = live.redis_client(settings)
    final = RedisPortfolio(client, live.account(settings)).snapshot()
    client.close()
    return {"settings": settings, "result": result, "fills": fills, "orders": orders, "equity": equity,
            "final": final, "status": status, "bars": live_bars, "predictions": predictions}


def assert_live_equals_backtest(run: dict) -> None:
    """The same fills (time, symbol, signed quantity, price, fee), the same rejections (time,
    symbol, limit) and the same equity at every close and at the end, to 1e-9."""
    result, fills = run["result"], run["fills"]
    expected = result.fills.sort_values(["ts", "symbol"]).reset_index(drop=True)
    assert len(fills) == len(expected) > 0
    assert (fills["ts"].dt.tz_localize(None).to_numpy() == expected["ts"].to_numpy()).all() if \
        fills["ts"].dt.tz is not None else (fills["ts"].to_numpy() == expected["ts"].to_numpy()).all()
    assert fills["symbol"].tolist() == expected["symbol"].tolist()
    signed = np.where(fills["side"] == "buy", fills["qty"], -fills["qty"])
    np.testing.assert_allclose(signed, expected["quantity"], rtol=1e-9)
    np.testing.assert_array_equal(fills["price"], expected["price"])
    np.testing.assert_allclose(fills["fee"], expected["cost"], rtol=1e-9)
    rejected = run["orders"][run["orders"]["status"] == "REJECTED"]
    live_rejections = sorted(zip(pd.to_datetime(rejected["ts"]).dt.tz_localize(None), rejected["symbol"],
                                 rejected["limit_hit"]))
    backtest_rejections = sorted(zip(pd.to_datetime(result.rejections["ts"]), result.rejections["symbol"],
                                     result.rejections["limit"]))
    assert live_rejections == backtest_rejections
    curve = result.equity_frame()
    equity = run["equity"]
    assert pd.to_datetime(equity["ts"]).dt.tz_localize(None).tolist() == curve["ts"].tolist()
    np.testing.assert_allclose(equity["equity"], curve["equity"], rtol=1e-9)
    assert run["final"].equity == pytest.approx(result.equity[-1], rel=1e-9)


def test_topk_dropout_on_sp500_days_live_equals_the_backtest(spark, services, tmp_path, sqlite_registry) -> None:
    """Top-3 of 8 names with dropout 1, rebalanced every second day, 30% of equity a name; the
    gross limit (65% of equity) refuses the first book's third name, so the gate's rejections are
    part of what live and backtest must agree on. (The submit-rate limit counts wall time live
    and bar time in a backtest, so a replay faster than real time cannot be compared on it: it is
    tested on its own, tests/test_live_safety.py.)"""
    env = sp500_env(tmp_path, QL_TRADING__STRATEGY="topk_dropout",
                    QL_TRADING__STRATEGIES__TOPK_DROPOUT__K="3", QL_TRADING__STRATEGIES__TOPK_DROPOUT__N_DROP="1",
                    QL_TRADING__STRATEGIES__TOPK_DROPOUT__REBALANCE_EVERY="2",
                    QL_TRADING__STRATEGIES__TOPK_DROPOUT__GROSS="0.9",
                    QL_TRADING__LIMITS__MAX_POSITION_NOTIONAL="0.35", QL_TRADING__LIMITS__MAX_ORDER_NOTIONAL="1e9",
                    QL_TRADING__LIMITS__MAX_GROSS_EXPOSURE="0.65", QL_TRADING__RISK__MAX_DRAWDOWN="0.5")
    run = replay_sp500(spark, tmp_path, env)
    result = run["result"]
    print(f"\nS&P live top-k: {len(run['bars'])} bars, {len(run['predictions'])} predictions, "
          f"{len(run['fills'])} fills, {len(result.rejections)} rejections, final equity {result.equity[-1]:,.2f}")
    assert_live_equals_backtest(run)
    assert (result.rejections["limit"] == "max_gross_exposure").any()  # the limit bound
    held = (result.positions > 0).sum(axis=1)
    assert held.max() == 2 and len(set(result.fills["t"])) >= 3  # two names fit the gross limit; rebalanced
    assert set(result.fills["t"]) <= set(range(1, len(result.equity), 2))  # decided at steps 0, 2, 4...


class FailsOnSecondBar(Strategy):
    """Long 1% of equity in each name, except at its second decision, where it raises."""

    name = "fails_on_second_bar"

    def targets(self, ctx):
        if ctx.step == 1:
            raise ValueError("the second bar breaks me")
        return np.full(len(ctx.symbols), 0.01 * ctx.equity)


def test_a_failing_strategy_skips_its_bar_live_and_the_trader_goes_on(services, tmp_path) -> None:
    """The trader on the real Redis and Kafka: the bar whose decision raises is skipped with the
    reason in the status note and the metric; the bars around it decide and send as usual."""
    from streaming import metrics
    from streaming.trader import Trader

    env = live_env(tmp_path, QL_TRADING__STRATEGY="tests.test_live_strategies:FailsOnSecondBar")
    settings = load_settings(env=env)
    live.fresh_run(settings)
    trader = Trader(settings, 252.0)
    client = live.redis_client(settings)
    book = RedisPortfolio(client, live.account(settings))
    times = pd.date_range("2024-03-13 15:00", periods=3, freq="5min")
    bars = pd.DataFrame([{"symbol": s, "ts": t, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0,
                          "volume": 1e6} for t in times for s in ("AAA", "BBB")])
    preds = bars[["symbol", "ts"]].assign(p_up=0.6, expected_return=0.001, model_version="1")
    before = metrics.STRATEGY_ERRORS.labels("fails_on_second_bar")._value.get()
    decided = []
    try:
        for ts in times:
            book.mark_bar(live.utc(ts), {"AAA": 100.0, "BBB": 100.0})  # the portfolio has closed the bar
            decided += trader.on_batch(bars[bars["ts"] == ts], preds[preds["ts"] == ts])
            if ts == times[1]:
                note = trader.note
    finally:
        trader.close()
        client.close()
    first, second, third = decided
    assert [o.symbol for o, *_ in first.orders] == ["AAA", "BBB"] and first.skipped is None
    assert second.skipped and not second.orders
    assert "strategy 'fails_on_second_bar' at 2024-03-13 15:05:00+00:00: raised ValueError: the second bar breaks me" \
        in note
    assert metrics.STRATEGY_ERRORS.labels("fails_on_second_bar")._value.get() == before + 1
    assert third.skipped is None and trader.note == "" and len(third.orders) == 2  # the next bar decides again
