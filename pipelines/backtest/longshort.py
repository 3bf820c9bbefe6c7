"""The decile long-short book's figures: per bar legs and returns of a backtest run of the
``long_short`` strategy (:mod:`pipelines.trading.strategies.longshort`), and their summary.

The book itself is traded by the backtest engine, with its costs, participation cap, risk gate
and fills at the next open, so the research report and a live run of the strategy share one
code path. This module only reads the engine's result: for each bar, the names in each leg, each
leg's own return (the P&L of its positions from the previous close, or from the fill for a name
entered at this bar's open, over their value there; the short leg's return is its names' return,
so the book earns long minus short), the book's gross and net return on equity, turnover and costs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.backtest.engine import Result, marks
from pipelines.backtest.performance import Z95, drawdown, ratio_se

DAILY_COLUMNS = ["ts", "n", "n_long", "n_short", "long_return", "short_return", "gross", "turnover", "cost", "net"]


def book_periods(result: Result) -> pd.DataFrame:
    """One row per bar of ``result`` (``DAILY_COLUMNS``); see the module docstring."""
    m = result.market
    T, N = m.close.shape
    close = marks(m.close)
    prev_close = np.vstack([np.full((1, N), np.nan), close[:-1]])
    held = result.positions
    prev = np.vstack([np.zeros((1, N)), held[:-1]])
    fills = result.fills
    qty, price, cost = np.zeros((T, N)), np.zeros((T, N)), np.zeros(T)
    if len(fills):
        col = pd.Index(m.symbols).get_indexer(fills["symbol"])
        t = fills["t"].to_numpy()
        np.add.at(qty, (t, col), fills["quantity"].to_numpy())
        price[t, col] = fills["price"].to_numpy()
        np.add.at(cost, t, fills["cost"].to_numpy())
    pnl = np.nan_to_num(prev * (close - prev_close)) + qty * np.where(qty != 0, close - price, 0.0)
    base = np.where(prev != 0, np.abs(prev) * np.nan_to_num(prev_close), np.abs(qty) * price)
    side = np.where(prev != 0, np.sign(prev), np.sign(held))
    before = np.r_[result.initial_capital, result.equity[:-1]]

    def leg(sign: float) -> np.ndarray:
        on = side == sign
        value = (base * on).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(value > 0, sign * (pnl * on).sum(axis=1) / value, np.nan)

    net = result.equity / before - 1.0
    daily = pd.DataFrame({"ts": m.ts, "n": np.isfinite(m.expected_return).sum(axis=1),
                          "n_long": (held > 0).sum(axis=1), "n_short": (held < 0).sum(axis=1),
                          "long_return": leg(1.0), "short_return": leg(-1.0),
                          "gross": net + cost / before, "turnover": (np.abs(qty) * price).sum(axis=1) / before,
                          "cost": cost / before, "net": net})
    return daily[DAILY_COLUMNS]


def summarize(daily: pd.DataFrame, periods_per_year: float) -> dict[str, float]:
    """Annual gross and net return (compounded: the geometric mean period return over
    ``periods_per_year`` periods, the bar interval's; never below -100%), net Sharpe with its 95%
    interval (Lo 2002), the t statistic of the mean net period return, maximum drawdown, hit rate
    and turnover."""
    net, gross = daily["net"].to_numpy(), daily["gross"].to_numpy()
    periods = len(net)
    sd = net.std(ddof=1) if periods > 1 else float("nan")
    per_period = net.mean() / sd if sd > 0 else float("nan")
    sharpe = per_period * np.sqrt(periods_per_year)
    se = ratio_se(per_period, periods) * np.sqrt(periods_per_year)
    equity = np.cumprod(1.0 + net)
    return {"periods": float(periods), "annual_gross": annualized(gross, periods_per_year),
            "annual_net": annualized(net, periods_per_year), "sharpe_net": float(sharpe),
            "sharpe_net_ci_low": float(sharpe - Z95 * se), "sharpe_net_ci_high": float(sharpe + Z95 * se),
            "t_stat_net": float(per_period * np.sqrt(periods)), "total_return_net": float(equity[-1] - 1.0),
            "max_drawdown": drawdown(np.r_[1.0, equity])[0], "hit_rate": float((gross > 0).mean()),
            "turnover": float(daily["turnover"].mean()), "cost_per_year": float(daily["cost"].mean() * periods_per_year),
            "names_per_leg": float(daily["n_long"].mean())}


def annualized(returns: np.ndarray, periods_per_year: float) -> float:
    """The compounded annual return of simple period ``returns``: ``growth ** (ppy / n) - 1``
    (-1.0 once the book lost everything)."""
    if len(returns) == 0:
        return float("nan")
    growth = float(np.prod(1.0 + np.asarray(returns, dtype=float)))
    return -1.0 if growth <= 0 else growth ** (periods_per_year / len(returns)) - 1.0
