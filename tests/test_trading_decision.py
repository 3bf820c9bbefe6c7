"""The one trading decision (breaker -> exits -> signal x size) that backtest and live share."""

from __future__ import annotations

import dataclasses

import numpy as np

from config.schemas.trading import TradingSettings
from pipelines.trading.decision import decide_targets, target_position
from pipelines.trading.rules import SIZING, Rules

RULES = Rules.from_settings(TradingSettings())  # thresholds 0.55/0.45, 2% fixed fraction, stop 2%, take 4%, dd 5%


def test_target_follows_signal_and_size_until_an_exit_or_a_halt() -> None:
    p = RULES.params()
    assert target_position(False, 0.0, np.nan, 100.0, 0.60, 0.2, 1e5, p) == 0.02 * 1e5   # long, capped size
    assert target_position(False, 0.0, np.nan, 100.0, 0.40, 0.2, 1e5, p) == -0.02 * 1e5  # short
    assert target_position(False, 0.0, np.nan, 100.0, 0.50, 0.2, 1e5, p) == 0.0          # between thresholds
    assert target_position(False, 0.0, np.nan, 100.0, np.nan, 0.2, 1e5, p) == 0.0        # no prediction: flat
    # a long bought at 100: -2% hits the stop, +4% the take-profit, both flatten despite a long signal
    assert target_position(False, 10.0, 100.0, 98.0, 0.9, 0.2, 1e5, p) == 0.0
    assert target_position(False, 10.0, 100.0, 104.0, 0.9, 0.2, 1e5, p) == 0.0
    assert target_position(False, 10.0, 100.0, 101.0, 0.9, 0.2, 1e5, p) == 0.02 * 1e5
    assert target_position(True, 0.0, np.nan, 100.0, 0.9, 0.2, 1e5, p) == 0.0            # halted: flat
    kelly = dataclasses.replace(RULES, sizing=SIZING["kelly"], kelly_fraction=0.25)
    assert target_position(False, 0.0, np.nan, 100.0, 0.56, 0.2, 1e5, kelly.params()) == 0.02 * 1e5  # the cap wins
    looser = dataclasses.replace(kelly, max_position_size=0.1).params()
    assert np.isclose(target_position(False, 0.0, np.nan, 100.0, 0.56, 0.2, 1e5, looser), 0.25 * 0.12 * 1e5)


def test_portfolio_decision_trips_the_breaker_and_stays_halted() -> None:
    p = RULES.params()
    n = 3
    shares, entry = np.array([5.0, 0.0, -3.0]), np.array([100.0, np.nan, 50.0])
    price, p_up, vol = np.array([100.0, 20.0, 50.0]), np.array([0.6, 0.7, 0.3]), np.full(n, 0.2)
    target = np.empty(n)
    assert not decide_targets(99_000.0, 100_000.0, False, 1e5, shares, entry, price, p_up, vol, p, target)
    np.testing.assert_allclose(target, [0.02 * 99_000, 0.02 * 99_000, -0.02 * 99_000])  # fixed fraction of equity
    assert decide_targets(95_000.0, 100_000.0, False, 1e5, shares, entry, price, p_up, vol, p, target)  # -5%: trips
    assert (target == 0).all()
    assert decide_targets(120_000.0, 120_000.0, True, 1e5, shares, entry, price, p_up, vol, p, target)  # stays halted
    assert (target == 0).all()
    notional = dataclasses.replace(RULES, sizing=SIZING["fixed_notional"]).params()
    decide_targets(99_000.0, 100_000.0, False, 1e5, shares, entry, price, p_up, vol, notional, target)
    np.testing.assert_allclose(np.abs(target), 0.02 * 1e5)  # of the initial capital, not equity
