"""The API's history: backtest and live figures from the warehouse (as ``warehouse.api_role``)
and the registry's champion and challenger (MLflow). Nothing here touches Spark."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from config import Settings
from pipelines.backtest.engine import infer_periods_per_year

BACKTEST_METRICS = text("""
    SELECT s.name AS strategy, s.family, s.is_baseline, s.strategy AS strategy_name, s.params, m.metric, m.value
    FROM dw.fact_backtest_metric m
    JOIN dw.dim_strategy s USING (strategy_key)
    JOIN dw.dim_dataset d USING (dataset_key)
    WHERE d.name = :dataset AND m.scope = 'all'
    ORDER BY s.is_baseline, s.name, m.metric
""")

LIVE_EQUITY = text("""
    SELECT e.ts, e.equity, e.peak_equity
    FROM dw.fact_live_equity e JOIN dw.dim_dataset d USING (dataset_key)
    WHERE d.name = :dataset ORDER BY e.ts
""")


def backtest_performance(engine: Engine, dataset: str) -> list[dict]:
    """Every backtest run's figures over all folds (the deflated Sharpe among them), with the
    strategy's name and parameters as the run used them."""
    with engine.connect() as conn:
        rows = conn.execute(BACKTEST_METRICS, {"dataset": dataset}).all()
    out: dict[str, dict] = {}
    for strategy, family, baseline, strategy_name, params, metric, value in rows:
        entry = out.setdefault(strategy, {"strategy": strategy, "family": family, "is_baseline": bool(baseline),
                                          "strategy_name": strategy_name,
                                          "params": json.loads(params) if params else None, "metrics": {}})
        entry["metrics"][metric] = None if value is None or not math.isfinite(value) else float(value)
    return list(out.values())


def live_performance(engine: Engine, dataset: str, initial: float) -> dict:
    """Return, drawdown and annualized Sharpe of the equity at each close the warehouse holds
    (``warehouse_live`` loads it every minute when its schedule is on)."""
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(LIVE_EQUITY, {"dataset": dataset}).all(), columns=["ts", "equity", "peak"])
    if frame.empty:
        return {"equity": None, "pnl": None, "return": None, "max_drawdown": None, "sharpe": None, "snapshots": 0}
    equity = frame["equity"].to_numpy(float)
    returns = np.diff(np.concatenate([[initial], equity])) / np.concatenate([[initial], equity[:-1]])
    sharpe = None
    if len(returns) > 2 and returns.std(ddof=1) > 0:
        periods = infer_periods_per_year(pd.DatetimeIndex(frame["ts"]).tz_convert(None))
        sharpe = float(returns.mean() / returns.std(ddof=1) * math.sqrt(periods))
    peak = np.maximum.accumulate(np.concatenate([[initial], equity]))
    return {"equity": float(equity[-1]), "pnl": float(equity[-1] - initial), "return": float(equity[-1] / initial - 1),
            "max_drawdown": float(np.max(1 - np.concatenate([[initial], equity]) / peak)), "sharpe": sharpe,
            "snapshots": int(len(frame))}


class RegistryView:
    """The registry's champion and challenger with their figures and the gate's decision,
    asked at most every ``ttl`` seconds (MLflow is a network round trip)."""

    def __init__(self, settings: Settings, ttl: float = 15.0) -> None:
        self.settings, self.ttl = settings, ttl
        self._cached: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def get(self) -> dict:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
        from models.registry.aliases import status

        raw = status(self.settings)
        out = {"model": raw["model"]}
        for alias in ("champion", "challenger"):
            v = raw.get(alias)
            out[alias] = None if v is None else {
                "version": str(v["version"]), "family": v.get("family"),
                "figures": {k: (None if x is None else str(x)) for k, x in v.items() if k.startswith("oos_") or
                            k == "data_end"},
                "gate": {k: (None if x is None else str(x)) for k, x in (v.get("gate") or {}).items()} or None}
        with self._lock:
            self._cached = (time.monotonic(), out)
        return out
