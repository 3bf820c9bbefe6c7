"""Performance and risk figures of a backtest, trade statistics, the deflated Sharpe ratio and
the probability of backtest overfitting.

All ratios use per-bar simple returns annualized with ``periods_per_year`` and a zero
risk-free rate. Formulas follow Bailey & López de Prado (2014, deflated Sharpe; 2016, PBO
by combinatorially symmetric cross-validation).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

EULER_GAMMA = 0.5772156649015329
Z95 = 1.959964  # the two-sided 95% normal quantile


def sharpe_per_bar(returns: np.ndarray) -> np.ndarray:
    """Mean over standard deviation of each column (one series: a scalar); 0 where flat."""
    r = np.asarray(returns, dtype=float)
    sd = r.std(axis=0, ddof=1)
    return np.where(sd > 0, r.mean(axis=0) / np.where(sd > 0, sd, 1), 0.0)


def ratio_se(ratio: float, periods: int) -> float:
    """Standard error of a Sharpe (or information) ratio per period over ``periods`` independent
    periods (Lo 2002): ``sqrt((1 + ratio^2 / 2) / periods)``; NaN with fewer than two."""
    return float(np.sqrt((1 + ratio**2 / 2) / periods)) if periods > 1 and np.isfinite(ratio) else float("nan")


def drawdown(equity: np.ndarray) -> tuple[float, int]:
    """Maximum drawdown (a positive fraction) and the longest time under water, in bars."""
    equity = np.asarray(equity, dtype=float)
    peak = np.maximum.accumulate(equity)
    dd = 1.0 - equity / peak
    longest = current = 0
    for under in dd > 1e-12:
        current = current + 1 if under else 0
        longest = max(longest, current)
    return float(dd.max(initial=0.0)), int(longest)


def value_at_risk(returns: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """One-bar VaR and CVaR (expected shortfall) as positive losses: historical and Gaussian."""
    r = np.asarray(returns, dtype=float)
    q = np.quantile(r, 1 - level)
    mu, sd = r.mean(), r.std(ddof=1)
    z = stats.norm.ppf(1 - level)
    return {"var_historical": float(-q), "cvar_historical": float(-r[r <= q].mean()),
            "var_parametric": float(-(mu + z * sd)),
            "cvar_parametric": float(-(mu - sd * stats.norm.pdf(z) / (1 - level)))}


def round_trips(fills: pd.DataFrame, last_marks: dict[str, float] | None = None) -> pd.DataFrame:
    """Closed positions per symbol from the fills: P&L after costs and return on the entry notional.

    A fill that flips the position closes one trip and opens the next (its cost is split
    by quantity). Trips still open at the end are closed at ``last_marks`` if given.
    """
    trips = []
    for symbol, f in fills.sort_values(["t"], kind="stable").groupby("symbol", sort=False):
        pos, cash, notional = 0.0, 0.0, 0.0
        for q, p, c in f[["quantity", "price", "cost"]].itertuples(index=False):
            if pos != 0 and np.sign(pos + q) != np.sign(pos):  # closes (and maybe reverses)
                closing = -pos
                share = abs(closing / q)
                cash -= closing * p + c * share
                trips.append((symbol, cash, cash / notional if notional else np.nan))
                q, c, pos, cash, notional = q - closing, c * (1 - share), 0.0, 0.0, 0.0
                if abs(q) < 1e-12:
                    continue
            if pos == 0:
                notional = abs(q * p)
            elif abs(pos + q) > abs(pos):
                notional += abs(q * p)
            cash -= q * p + c
            pos += q
        if pos != 0 and last_marks and symbol in last_marks:
            cash += pos * last_marks[symbol]
            trips.append((symbol, cash, cash / notional if notional else np.nan))
    return pd.DataFrame(trips, columns=["symbol", "pnl", "return"])


def performance(equity: np.ndarray, initial_capital: float, periods_per_year: float,
                fills: pd.DataFrame | None = None, gross_exposure: np.ndarray | None = None,
                last_marks: dict[str, float] | None = None) -> dict[str, float]:
    """The headline figures of one equity curve (and its fills)."""
    equity = np.asarray(equity, dtype=float)
    r = equity / np.r_[initial_capital, equity[:-1]] - 1.0
    n = len(r)
    years = n / periods_per_year
    total = equity[-1] / initial_capital - 1.0
    annual = (1 + total) ** (1 / years) - 1 if years > 0 and total > -1 else -1.0
    sd = r.std(ddof=1)
    downside = math.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    mdd, duration = drawdown(np.r_[initial_capital, equity])
    out = {
        "total_return": float(total), "annual_return": float(annual),
        "volatility": float(sd * math.sqrt(periods_per_year)),
        "sharpe": float(r.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else 0.0,
        "sortino": float(r.mean() / downside * math.sqrt(periods_per_year)) if downside > 0 else 0.0,
        "max_drawdown": mdd, "max_drawdown_bars": duration,
        "calmar": float(annual / mdd) if mdd > 0 else 0.0,
        **value_at_risk(r),
        "skew": float(stats.skew(r)), "kurtosis": float(stats.kurtosis(r, fisher=False)), "bars": n,
    }
    if gross_exposure is not None:
        out["exposure"] = float(np.mean(np.asarray(gross_exposure) > 1e-12))
    if fills is not None:
        traded = float((fills["quantity"].abs() * fills["price"]).sum())
        out["turnover"] = float(traded / np.mean(equity) / years) if years > 0 else 0.0
        out["costs"] = float(fills["cost"].sum())
        trips = round_trips(fills, last_marks)
        wins, losses = trips.loc[trips["pnl"] > 0, "pnl"], trips.loc[trips["pnl"] < 0, "pnl"]
        out.update({"trades": int(len(trips)), "win_rate": float((trips["pnl"] > 0).mean()) if len(trips) else 0.0,
                    "avg_trade_return": float(trips["return"].mean()) if len(trips) else 0.0,
                    "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else float("inf")})
    return out


def deflated_sharpe(sharpe: float, n_obs: int, skew: float, kurtosis: float, trial_sharpes: np.ndarray) -> float:
    """Probability that the true Sharpe exceeds what the best of ``len(trial_sharpes)`` tries of
    zero skill would show (per-bar Sharpe ratios; kurtosis not in excess)."""
    trials = np.asarray(trial_sharpes, dtype=float)
    n = len(trials)
    if n < 2 or n_obs < 2:
        return float("nan")
    var = trials.var(ddof=1)
    expected_max = math.sqrt(var) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n)
                                     + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e)))
    denom = math.sqrt(max(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2, 1e-12))
    return float(stats.norm.cdf((sharpe - expected_max) * math.sqrt(n_obs - 1) / denom))


def distinct_trials(returns: np.ndarray, threshold: float = 0.99) -> np.ndarray:
    """Columns of ``returns`` (time, configuration) that are not near-copies of an earlier one.

    A sweep's configurations can give the same return series (Kelly sizing capped at the same
    2% as fixed fraction) or almost the same (correlation 1.0 between sizings that scale one
    series); counting them as separate trials inflates the deflated Sharpe's expected maximum
    and PBO's choice. Two columns are one trial when their correlation is at least
    ``threshold``, or both are flat and equal (e.g. neither trades).
    """
    r = np.asarray(returns, dtype=float)
    keep: list[int] = []
    for j in range(r.shape[1]):
        col = r[:, j]
        duplicate = False
        for k in keep:
            other = r[:, k]
            if col.std() == 0 or other.std() == 0:
                duplicate = bool(np.allclose(col, other))
            else:
                duplicate = bool(np.corrcoef(col, other)[0, 1] >= threshold)
            if duplicate:
                break
        if not duplicate:
            keep.append(j)
    return np.array(keep, dtype=int)


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = 10) -> float:
    """CSCV: split time into ``n_blocks``; for every half of the blocks as in-sample, take the
    configuration with the best in-sample Sharpe and find its out-of-sample rank; PBO is the
    share of splits where that rank is below the median. ``returns`` is (time, configuration)."""
    r = np.asarray(returns, dtype=float)
    T, M = r.shape
    if M < 2 or np.ptp(r.std(axis=0)) == 0 and np.ptp(r.mean(axis=0)) == 0:
        return float("nan")  # one configuration, or all alike (e.g. none trades): nothing to choose
    blocks = np.array_split(np.arange(T), n_blocks)
    below = total = 0
    for chosen in combinations(range(n_blocks), n_blocks // 2):
        ins = np.concatenate([blocks[b] for b in chosen])
        outs = np.concatenate([blocks[b] for b in range(n_blocks) if b not in chosen])

        best = int(np.argmax(sharpe_per_bar(r[ins])))
        oos = sharpe_per_bar(r[outs])
        rank = (stats.rankdata(oos)[best]) / (M + 1)  # relative rank in (0, 1)
        below += np.log(rank / (1 - rank)) <= 0
        total += 1
    return float(below / total)
