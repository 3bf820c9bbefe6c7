"""The decile long-short backtest: how much of a score's cross-sectional ranking is tradable.

At each rebalance time the cross-section is ranked by the model's score; the book is long
the top ``quantile`` of symbols and short the bottom one, equal weights, one unit of capital
per leg (dollar neutral). It earns each leg's mean forward return, the label the model was
scored on: with the tradable label (``label_price: open``) that is the open after the
decision to the open ``label_horizon`` bars later, so the book is rebalanced every
``label_horizon`` bars and the periods do not overlap. Costs are ``cost_bps`` per unit of
turnover, the sum of absolute weight changes between books (building the first book is two
units; the weights do not drift inside a period). A constant score (always-up) ranks nothing:
its ties are broken at random, so its book is a random one, and what it earns is what costs
and chance alone give.

This is the research view (Qlib's "top minus bottom" group return), not the trading rules:
no position limits, no breaker, no volume impact; :mod:`pipelines.backtest.run` runs those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.backtest.performance import Z95, drawdown, ratio_se

DAILY_COLUMNS = ["ts", "n", "n_long", "n_short", "long_return", "short_return", "gross", "turnover", "cost", "net"]


@dataclass(frozen=True)
class LongShort:
    """One score's book: ``daily`` has a row per rebalance (``DAILY_COLUMNS``), ``metrics`` the summary."""

    daily: pd.DataFrame
    metrics: dict[str, float]


def books(frame: pd.DataFrame, quantile: float, seed: int = 0) -> pd.DataFrame:
    """The long and short legs at each timestamp of ``frame`` (``ts``, ``symbol``, ``score``):
    rows with ``leg`` +1 (the top ``quantile`` by score) or -1 (the bottom one), the same number
    of symbols in each, at least one; timestamps with fewer than two symbols hold no book."""
    shuffled = frame.sample(frac=1.0, random_state=seed)        # ties fall in random order
    rank = shuffled.groupby("ts")["score"].rank(method="first")
    n = shuffled.groupby("ts")["score"].transform("size")
    k = np.floor(n * quantile).clip(lower=1)
    leg = np.where(rank > n - k, 1, np.where(rank <= k, -1, 0))
    leg = np.where(n >= 2, leg, 0)
    out = shuffled.assign(leg=leg, n=n, k=k)
    return out[out["leg"] != 0].sort_values(["ts", "symbol"]).reset_index(drop=True)


def long_short(preds: pd.DataFrame, quantile: float = 0.1, cost_bps: float = 3.0, step: int = 1,
               periods_per_year: float = 252.0, seed: int = 0, score: str = "expected_return") -> LongShort:
    """Backtest the decile long-short book of ``preds`` (``ts``, ``symbol``, ``score``, ``fwd_return``).

    Args:
        preds: out-of-sample predictions; rows without a score or a forward return are dropped.
        quantile: share of each cross-section in each leg (0.1: deciles).
        cost_bps: cost per unit of turnover, in basis points.
        step: rebalance every ``step``-th timestamp (the label horizon: periods do not overlap).
        periods_per_year: bars per year; a period is ``step`` bars.
        seed: breaks ties between equal scores.
        score: the column ranked.

    Raises:
        ValueError: no timestamp has two symbols with a score and a forward return.
    """
    frame = preds[["ts", "symbol", score, "fwd_return"]].rename(columns={score: "score"}).dropna()
    times = np.sort(frame["ts"].unique())[::step]
    frame = frame[frame["ts"].isin(times)]
    legs = books(frame, quantile, seed)
    if legs.empty:
        raise ValueError("no timestamp has two symbols with a score and a forward return: nothing to rank")
    weights = legs.assign(w=legs["leg"] / legs["k"]).pivot(index="ts", columns="symbol", values="w").fillna(0.0)
    turnover = weights.diff().abs().sum(axis=1)
    turnover.iloc[0] = weights.iloc[0].abs().sum()
    by_leg = legs.groupby(["ts", "leg"])["fwd_return"].mean().unstack("leg")
    counts = legs.groupby(["ts", "leg"]).size().unstack("leg")
    daily = pd.DataFrame({"n": legs.groupby("ts")["n"].first(), "n_long": counts[1], "n_short": counts[-1],
                          "long_return": by_leg[1], "short_return": by_leg[-1]})
    daily["gross"] = daily["long_return"] - daily["short_return"]
    daily["turnover"] = turnover
    daily["cost"] = daily["turnover"] * cost_bps / 1e4
    daily["net"] = daily["gross"] - daily["cost"]
    daily = daily.reset_index()[DAILY_COLUMNS]
    return LongShort(daily, summarize(daily, periods_per_year / step))


def summarize(daily: pd.DataFrame, periods_per_year: float) -> dict[str, float]:
    """Annualized gross and net return, net Sharpe with its 95% interval (Lo 2002), the t
    statistic of the mean net period return, maximum drawdown, hit rate and turnover."""
    net, gross = daily["net"].to_numpy(), daily["gross"].to_numpy()
    periods = len(net)
    sd = net.std(ddof=1) if periods > 1 else float("nan")
    per_period = net.mean() / sd if sd > 0 else float("nan")
    sharpe = per_period * np.sqrt(periods_per_year)
    se = ratio_se(per_period, periods) * np.sqrt(periods_per_year)
    equity = np.cumprod(1.0 + net)
    return {"periods": float(periods), "annual_gross": float(gross.mean() * periods_per_year),
            "annual_net": float(net.mean() * periods_per_year), "sharpe_net": float(sharpe),
            "sharpe_net_ci_low": float(sharpe - Z95 * se), "sharpe_net_ci_high": float(sharpe + Z95 * se),
            "t_stat_net": float(per_period * np.sqrt(periods)), "total_return_net": float(equity[-1] - 1.0),
            "max_drawdown": drawdown(np.r_[1.0, equity])[0], "hit_rate": float((gross > 0).mean()),
            "turnover": float(daily["turnover"].mean()), "cost_per_year": float(daily["cost"].mean() * periods_per_year),
            "names_per_leg": float(daily["n_long"].mean())}
