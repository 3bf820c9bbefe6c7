"""One backtest of a strategy on a model's out-of-sample predictions, a parameter sweep on Spark, and
the figures.

The predictions come from the walk-forward folds (every bar was predicted by a model
trained before it), so the backtest covers the folds' test blocks; figures are reported for
the whole span and per fold.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from config import Settings
from config.schemas.model import ModelFamily
from pipelines.backtest.engine import Market, Result, run_backtest
from pipelines.backtest.performance import (
    deflated_sharpe,
    distinct_trials,
    performance,
    probability_of_backtest_overfitting,
    sharpe_per_bar,
)
from pipelines.trading.strategy import Strategy, strategy_name

FAMILIES = set(ModelFamily.__args__)
SUMMARY = ("total_return", "sharpe", "max_drawdown", "volatility")  # per fold and per sweep run


def run_name(strategy: Strategy | str, model: str) -> str:
    """A backtest's name, ``<strategy>_<model>`` (``threshold_ensemble``, ``topk_dropout_lightgbm``):
    the ``strategy`` partition of the gold tables, the tear sheet's file, the warehouse's strategy."""
    name = strategy if isinstance(strategy, str) else strategy_name(strategy)
    if model not in FAMILIES:
        raise ValueError(f"model {model!r} is no model family; expected one of {sorted(FAMILIES)}")
    return f"{name}_{model}"


def model_of(run: str) -> str:
    """The model family a backtest run trades: the family its name ends with."""
    for family in sorted(FAMILIES, key=len, reverse=True):
        if run == family or run.endswith(f"_{family}"):
            return family
    raise ValueError(f"backtest {run!r} names no model family; expected '<strategy>_<family>' with a family of "
                     f"{sorted(FAMILIES)}")


@dataclass
class Backtest:
    strategy: str
    result: Result
    metrics: dict
    per_fold: pd.DataFrame
    sweep: pd.DataFrame | None = None

    def metrics_frame(self) -> pd.DataFrame:
        """Figures per scope (all, each fold), each row with the strategy's name and parameters
        (JSON) and the model family, as the run used them."""
        rows = [{"scope": "all", "metric": k, "value": float(v)} for k, v in self.metrics.items()]
        for rec in self.per_fold.to_dict(orient="records"):
            fold = rec.pop("fold")
            rows += [{"scope": f"fold {fold}", "metric": k, "value": float(v)} for k, v in rec.items()]
        described = self.result.strategy
        return pd.DataFrame(rows).assign(strategy_name=described.get("strategy"),
                                         params=json.dumps(described.get("params", {}), sort_keys=True),
                                         model=model_of(self.strategy))


def figures(result: Result) -> dict:
    m = result.market
    frame = result.equity_frame()
    out = performance(result.equity, result.initial_capital, m.periods_per_year, result.fills,
                      frame["gross_exposure"].to_numpy(), result.last_marks())
    out["breaker_tripped"] = float(result.halted_at is not None)
    return out


def per_fold(result: Result, folds: pd.DataFrame) -> pd.DataFrame:
    """Figures of each fold's test block (the equity curve cut at the fold's first and last bar)."""
    rows = []
    ts = result.market.ts
    for fold, g in folds.groupby("fold"):
        mask = (ts >= g["ts"].min()) & (ts <= g["ts"].max())
        idx = np.flatnonzero(mask)
        if len(idx) < 3:
            continue
        start_equity = result.equity[idx[0] - 1] if idx[0] > 0 else result.initial_capital
        perf = performance(result.equity[idx], start_equity, result.market.periods_per_year)
        rows.append({"fold": int(fold), **{k: perf[k] for k in SUMMARY}})
    return pd.DataFrame(rows)


def run(market: Market, folds: pd.DataFrame, settings: Settings, strategy: Strategy, name: str,
        initial_capital: float) -> Backtest:
    """Backtest ``strategy`` over ``market`` as the run ``name``, with figures per fold."""
    result = run_backtest(market, strategy, settings.trading, initial_capital)
    return Backtest(name, result, figures(result), per_fold(result, folds))


def sweep(spark, market: Market, settings: Settings, strategy: Strategy, initial_capital: float,
          grid: list[dict] | None = None, seeds: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Backtest every parameter set of ``grid`` (default: the strategy's :meth:`sweep_grid`) on Spark,
    one task each; with ``seeds > 1``, each also on that many copies of the predictions perturbed
    by small noise (robustness). Returns the figures per run and the per-bar returns matrix
    (time x run) for PBO."""
    grid = grid if grid is not None else strategy.sweep_grid()
    if not grid:
        raise ValueError(f"strategy {strategy_name(strategy)!r} has no sweep grid")
    jobs = [(i, g, s) for i, g in enumerate(grid) for s in range(seeds)]
    bc = spark.sparkContext.broadcast(market)
    cls, base, trading = type(strategy), strategy.params.model_dump(), settings.trading

    def one(job):
        i, g, seed = job
        m = bc.value
        if seed:
            rng = np.random.default_rng(seed)
            scale = np.nanstd(m.expected_return) if np.isfinite(m.expected_return).any() else 0.0
            m = dataclasses.replace(m, p_up=np.clip(m.p_up + rng.normal(0, 0.01, m.p_up.shape), 0, 1),
                                    expected_return=m.expected_return + rng.normal(0, 0.01 * scale, m.p_up.shape))
        res = run_backtest(m, cls(cls.Params.model_validate({**base, **g})), trading, initial_capital)
        perf = performance(res.equity, initial_capital, m.periods_per_year)
        return i, seed, g, {k: perf[k] for k in SUMMARY}, res.returns

    results = spark.sparkContext.parallelize(jobs, numSlices=min(len(jobs), 64)).map(one).collect()
    bc.unpersist()
    rows = [{"config": i, "seed": seed, **g, **perf} for i, seed, g, perf, _ in results]
    returns = np.column_stack([r for *_, r in results])
    return pd.DataFrame(rows), returns


def overfitting(sweep_frame: pd.DataFrame, returns: np.ndarray, chosen: Backtest) -> dict:
    """Deflated Sharpe of the chosen run against the sweep's trials, and PBO over the sweep; both
    count distinct trials only (configurations with near-identical returns are one trial)."""
    r = chosen.result.returns
    distinct = returns[:, distinct_trials(returns)]
    return {"deflated_sharpe": deflated_sharpe(float(sharpe_per_bar(r)), len(r), chosen.metrics["skew"],
                                               chosen.metrics["kurtosis"], sharpe_per_bar(distinct)),
            "pbo": probability_of_backtest_overfitting(distinct, n_blocks=min(10, max(2, len(r) // 20))),
            "sweep_runs": int(returns.shape[1]), "effective_trials": int(distinct.shape[1])}
