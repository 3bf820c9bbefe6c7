"""Backtest figures against values computed by hand on fixed series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.backtest.performance import (
    deflated_sharpe,
    distinct_trials,
    drawdown,
    performance,
    probability_of_backtest_overfitting,
    round_trips,
    value_at_risk,
)


def test_returns_ratios_and_drawdown_by_hand() -> None:
    # equity 100 -> 110 -> 99 -> 108.9: returns +10%, -10%, +10%
    m = performance(np.array([110.0, 99.0, 108.9]), 100.0, periods_per_year=252)
    assert m["total_return"] == pytest.approx(0.089)
    mean, sd = 0.1 / 3, math.sqrt((2 * (0.2 / 3) ** 2 + (0.4 / 3) ** 2) / 2)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(252))
    assert m["sortino"] == pytest.approx(mean / math.sqrt(0.01 / 3) * math.sqrt(252))
    assert m["annual_return"] == pytest.approx(1.089 ** (252 / 3) - 1)
    assert m["max_drawdown"] == pytest.approx(0.1) and m["max_drawdown_bars"] == 2
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.1)
    assert drawdown(np.array([1.0, 2.0, 1.0, 0.5, 2.0, 2.5])) == (pytest.approx(0.75), 2)


def test_value_at_risk_by_hand() -> None:
    r = np.arange(-10, 10) / 100  # -10% .. +9%
    v = value_at_risk(r, 0.95)
    assert v["var_historical"] == pytest.approx(0.0905)  # 5% quantile, linear between -10% and -9%
    assert v["cvar_historical"] == pytest.approx(0.10)
    mu, sd = r.mean(), r.std(ddof=1)
    assert v["var_parametric"] == pytest.approx(-(mu - 1.6448536 * sd), rel=1e-6)
    assert v["cvar_parametric"] == pytest.approx(-(mu - sd * 0.1031356 / 0.05), rel=1e-5)


def test_round_trips_with_a_reversal_by_hand() -> None:
    fills = pd.DataFrame({"t": [0, 1, 2, 3, 4], "symbol": ["A", "A", "A", "A", "B"],
                          "quantity": [10.0, -10.0, 10.0, -20.0, 5.0], "price": [100.0, 110.0, 100.0, 90.0, 50.0],
                          "cost": [1.0, 1.0, 1.0, 2.0, 0.5]})
    fills = pd.concat([fills, pd.DataFrame({"t": [5], "symbol": ["A"], "quantity": [10.0], "price": [80.0],
                                            "cost": [1.0]})], ignore_index=True)
    trips = round_trips(fills, last_marks={"B": 40.0})
    a = trips[trips["symbol"] == "A"]
    # long 10 @100 -> sold @110: +100 - 2 costs; long 10 @100 -> closed @90 by a reversal: -100 - 1 - 1;
    # short 10 @90 -> covered @80: +100 - 1 - 1
    assert a["pnl"].tolist() == pytest.approx([98.0, -102.0, 98.0])
    assert a["return"].tolist() == pytest.approx([98 / 1000, -102 / 1000, 98 / 900])
    assert trips[trips["symbol"] == "B"]["pnl"].tolist() == pytest.approx([-50.5])  # open, marked at 40
    m = performance(np.array([100.0, 101.0]), 100.0, 252, fills=fills, last_marks={"B": 40.0},
                    gross_exposure=np.array([0.0, 0.3]))
    assert m["trades"] == 4 and m["win_rate"] == 0.5
    assert m["exposure"] == 0.5  # one bar of two holds a position
    traded = 1000 + 1100 + 1000 + 1800 + 250 + 800
    assert m["turnover"] == pytest.approx(traded / 100.5 / (2 / 252))  # traded notional / mean equity, per year
    assert m["profit_factor"] == pytest.approx(196 / 152.5)
    assert m["costs"] == pytest.approx(6.5)


def test_deflated_sharpe_by_hand() -> None:
    # SR 0.1 per bar over 252 bars, normal returns, three trials with SRs 0, 0.05, 0.1:
    # E[max] = 0.05 * ((1 - g) * 0.43073 + g * 1.16130) = 0.042620; z = 0.057380 * sqrt(251) / sqrt(1.005)
    assert deflated_sharpe(0.1, 252, 0.0, 3.0, np.array([0.0, 0.05, 0.1])) == pytest.approx(0.8176, abs=1e-3)
    # more trials of the same spread raise the bar
    assert deflated_sharpe(0.1, 252, 0.0, 3.0, np.linspace(0, 0.1, 50)) < 0.8


def test_pbo_is_low_for_a_real_edge_and_middling_for_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (1000, 20))
    edge = noise.copy()
    edge[:, 3] += 0.003  # one configuration really is better
    assert probability_of_backtest_overfitting(edge) < 0.05
    assert 0.2 < probability_of_backtest_overfitting(noise) < 0.8
    assert np.isnan(probability_of_backtest_overfitting(np.zeros((100, 5))))  # nothing traded: nothing chosen


def test_pbo_by_hand_on_two_blocks() -> None:
    # two configurations, two halves of time. A wins the first half, B the second: whichever
    # half is in-sample, its winner is the loser out-of-sample -> PBO 1. If A wins both -> 0.
    up, down = np.array([0.02, 0.01, 0.03, 0.02]), np.array([-0.01, -0.02, 0.0, -0.01])
    swap = np.column_stack([np.r_[up, down], np.r_[down, up]])
    assert probability_of_backtest_overfitting(swap, n_blocks=2) == 1.0
    steady = np.column_stack([np.r_[up, up], np.r_[down, down]])
    assert probability_of_backtest_overfitting(steady, n_blocks=2) == 0.0


def test_near_identical_configurations_count_as_one_trial() -> None:
    """Twelve sweep columns holding ten distinct series (one copy, one scaled copy, as Kelly
    under the cap and vol-target give) are ten trials; two never-trading columns are one."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, (500, 10))
    sweep = np.column_stack([base, base[:, 3], 0.5 * base[:, 7]])
    assert distinct_trials(sweep).tolist() == list(range(10))
    flat = np.column_stack([np.zeros(500), np.zeros(500), base[:, 0]])
    assert distinct_trials(flat).tolist() == [0, 2]
