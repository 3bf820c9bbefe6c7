"""A small lake for the warehouse and Tableau tests: every source table of the loads, written
with delta-rs in the catalog's schema and partitioning, under a dataset of its own."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from config import Settings, load_settings
from pipelines.lake import tables as T
from pipelines.lake.rows import write_frame


def small_settings(lake: Path) -> Settings:
    """Settings whose dataset (``wh-<tag>``) exists only in this lake."""
    return load_settings(env={**os.environ, "QL_PLATFORM__LAKE__ROOT": str(lake),
                              "QL_DATA__SYNTHETIC__NAME": f"wh-{uuid.uuid4().hex[:8]}"})


def bars(symbols=("AAA", "BBB"), days=("2024-01-30", "2024-01-31", "2024-02-01"), per_day: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for s in symbols:
        for d in days:
            for i in range(per_day):
                ts = pd.Timestamp(d, tz="UTC") + pd.Timedelta(hours=14, minutes=30 + 5 * i)
                o = 100 + rng.normal()
                c = o + rng.normal()
                rows.append({"symbol": s, "ts": ts, "interval": "5m", "open": o, "high": max(o, c) + 0.5,
                             "low": min(o, c) - 0.5, "close": c, "volume": float(rng.integers(100, 1000)),
                             "vwap": (o + c) / 2, "trades": 10, "date": d})
    return pd.DataFrame(rows)


def fill_lake(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every source table the loads read, a few rows each; returns the frames written."""
    b = bars()
    ts = sorted(b["ts"].unique())
    frames = {"bars": b}
    write_frame(T.SILVER_BARS, settings, b)
    frames["quarantine"] = pd.DataFrame({
        "table": "bars", "symbol": ["AAA", "BBB", "AAA"], "ts": [ts[0], ts[1], ts[-1]],
        "date": ["2024-01-30", "2024-01-30", "2024-02-01"], "reason": ["price_spike", "negative_volume", "price_spike"],
        "record": "{}", "quarantined_at": pd.Timestamp("2024-02-02", tz="UTC")})
    write_frame(T.QUARANTINE, settings, frames["quarantine"])
    preds = []
    for family, shift in (("always_up", 0.0), ("lstm", 0.1)):
        for s in ("AAA", "BBB"):
            for i, t in enumerate(ts):
                preds.append({"symbol": s, "ts": t, "direction": float(i % 2), "fwd_return": 0.001 * (i - 4),
                              "fold": i // 5, "p_up": 0.55 if family == "always_up" else 0.4 + shift * (i % 3),
                              "expected_return": 0.0005 * (i % 3 - 1), "model": family, "run_id": f"run-{family}",
                              "date": str(pd.Timestamp(t).date())})
    frames["predictions"] = pd.DataFrame(preds).astype({"direction": float})
    frames["predictions"].loc[0, "direction"] = np.nan  # the last bars have no label yet
    write_frame(T.PREDICTIONS, settings, frames["predictions"])
    for strategy in ("always_up", "lstm"):
        equity = 100_000 * np.cumprod(1 + np.linspace(-0.002, 0.003, len(ts)))
        eq = pd.DataFrame({"ts": ts, "equity": equity, "returns": np.r_[equity[0] / 100_000, equity[1:] / equity[:-1]] - 1,
                           "gross_exposure": 50_000.0, "periods_per_year": 252 * 78.0, "strategy": strategy})
        trades = pd.DataFrame({"t": [1, 1, 4, 6], "ts": [ts[1], ts[1], ts[4], ts[6]], "symbol": ["AAA", "BBB", "AAA", "BBB"],
                               "quantity": [10.0, 5.0, -10.0, -5.0], "price": [100.0, 50.0, 101.0, 49.0],
                               "cost": [0.5, 0.25, 0.5, 0.25], "decision_close": [99.5, 50.5, 101.5, 48.5],
                               "strategy": strategy})
        metrics = pd.DataFrame({"scope": "all", "metric": ["sharpe", "var_historical", "profit_factor"],
                                "value": [1.2, 0.01, np.inf], "strategy_name": "threshold",
                                "params": '{"long_threshold": 0.55}', "model": strategy, "strategy": strategy})
        rejected = pd.DataFrame({"ts": [ts[2]], "symbol": ["AAA"], "quantity": [25.0], "price": [100.5],
                                 "limit_hit": ["max_position_notional"],
                                 "reason": ["AAA position 2,512.50 after the order > 2.50% of equity 100,000.00"],
                                 "strategy": strategy})
        summary = pd.DataFrame({"statistic": ["final_equity", "sharpe"], "mean": [101_000.0, 1.0],
                                "low": [95_000.0, -0.5], "median": [101_000.0, 1.0], "high": [107_000.0, 2.5],
                                "simulations": 1000, "method": "stationary", "confidence": 0.95, "risk_of_ruin": 0.0,
                                "strategy": strategy})
        fan = pd.DataFrame({"step": range(len(ts)), "ts": ts, "paths": 1000, "q05": 99_000.0, "q25": 99_500.0,
                            "q50": 100_000.0, "q75": 100_500.0, "q95": 101_000.0, "strategy": strategy})
        for table, frame in ((T.BACKTEST_EQUITY, eq), (T.BACKTEST_TRADES, trades), (T.BACKTEST_METRICS, metrics),
                             (T.BACKTEST_REJECTIONS, rejected), (T.MONTECARLO_SUMMARY, summary),
                             (T.MONTECARLO_FAN, fan)):
            write_frame(table, settings, frame, mode="append" if strategy != "always_up" else "overwrite")
            frames.setdefault(table.name, []).append(frame)
    day = "2024-02-01"
    tag = settings.data.dataset  # order and fill ids are unique across datasets, as live UUIDs are
    frames["orders"] = pd.DataFrame({
        "order_id": [f"{tag}-o1", f"{tag}-o2", f"{tag}-o3"], "ts": ts[-3:], "symbol": ["AAA", "BBB", "AAA"], "side": ["BUY", "BUY", "SELL"],
        "qty": [10.0, 2000.0, 10.0], "order_type": "MARKET", "price": [100.0, 50.0, 101.0],
        "decision_volume": 1000.0, "strategy": "champion", "model_version": "3",
        "status": ["SUBMITTED", "REJECTED", "SUBMITTED"], "limit_hit": [None, "max_position", None],
        "reason": [None, "position 2000 > 1000", None], "batch_id": 1, "date": day})
    write_frame(T.LIVE_ORDERS, settings, frames["orders"])
    frames["fills"] = pd.DataFrame({"fill_id": [f"{tag}-f1", f"{tag}-f3"], "order_id": [f"{tag}-o1", f"{tag}-o3"], "ts": ts[-2:],
                                    "symbol": ["AAA", "AAA"], "side": ["BUY", "SELL"], "qty": [10.0, 10.0],
                                    "price": [100.2, 100.9], "fee": [0.5, 0.5],
                                    "applied_at": pd.Timestamp("2024-02-01 16:00", tz="UTC"), "date": day})
    write_frame(T.LIVE_FILLS, settings, frames["fills"])
    write_frame(T.LIVE_POSITIONS, settings, pd.DataFrame({
        "ts": ts[-2:], "symbol": "AAA", "qty": [10.0, 0.0], "avg_px_open": [100.2, None], "realized_pnl": [0.0, 6.0],
        "unrealized_pnl": [1.0, 0.0], "last_px": [100.3, 100.9], "date": day}))
    write_frame(T.LIVE_EQUITY, settings, pd.DataFrame({
        "ts": ts[-2:], "cash": [98_997.5, 100_005.0], "equity": [100_000.5, 100_005.0],
        "peak_equity": [100_000.5, 100_005.0], "gross_exposure": [1003.0, 0.0], "realized_pnl": [0.0, 6.0],
        "fees": [0.5, 1.0], "date": day}))
    write_frame(T.LIVE_DEAD_LETTERS, settings, pd.DataFrame({
        "topic": "md", "partition": 0, "offset": [5, 9], "kafka_ts": ts[-1], "key": b"k", "value": b"{",
        "reason": ["malformed_json", "negative_price"], "symbol": None, "ts": None, "batch_id": 2,
        "dead_lettered_at": ts[-1], "date": day}))
    return frames
