"""The compiled engine against the event-by-event reference (gate included), and the rules on
hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, known_volume, run_backtest
from pipelines.backtest.reference import run_reference
from pipelines.trading.strategies.threshold import Threshold

LOOSE = {"max_order_notional": 1e12, "max_position_notional": 10.0, "max_gross_exposure": 100.0,
         "max_data_age_seconds": 1e9}


def random_market(seed: int, T: int = 120, N: int = 4) -> Market:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (T, N)))
    volume = rng.integers(50, 5_000, (T, N)).astype(float)
    p_up = rng.uniform(0.3, 0.7, (T, N))
    p_up[rng.random((T, N)) < 0.1] = np.nan  # no prediction: flat
    open_[rng.random((T, N)) < 0.03] = np.nan  # a missing bar: nothing fills there
    vol = np.abs(rng.normal(0.3, 0.1, (T, N)))
    ts = pd.date_range("2024-01-01", periods=T, freq="D")
    return Market(ts, [f"S{i}" for i in range(N)], open_, close, volume, p_up, vol, 252.0)


def random_settings(seed: int) -> TradingSettings:
    """Random rules, costs and gate limits; the limits bind in some runs."""
    rng = np.random.default_rng(seed + 1000)
    size = float(rng.uniform(0.05, 0.5))
    return TradingSettings(
        initial_capital=100_000,
        strategies={"threshold": {
            "long_threshold": float(rng.uniform(0.5, 0.6)), "short_threshold": float(rng.uniform(0.4, 0.5)),
            "sizing": ["fixed_fraction", "vol_target", "kelly", "fixed_notional"][seed % 4], "kelly_fraction": 0.5,
            "max_position_size": size, "stop_loss": float(rng.uniform(0.01, 0.05)),
            "take_profit": float(rng.uniform(0.02, 0.1))}},
        costs={"commission_bps": float(rng.uniform(0, 5)), "half_spread_bps": float(rng.uniform(0, 5)),
               "slippage_bps_per_pct_volume": float(rng.uniform(0, 20)), "max_participation": float(rng.uniform(0.01, 0.2))},
        risk={"max_drawdown": float(rng.uniform(0.02, 0.3))},
        limits={"max_order_notional": size * 100_000 * float(rng.uniform(0.9, 2.0)),
                "max_position_notional": size * float(rng.uniform(0.9, 1.6)),
                "max_gross_exposure": size * float(rng.uniform(1.5, 4.0)), "max_orders_per_second": int(rng.integers(2, 5)),
                "max_data_age_seconds": 3 * 86_400.0})


def threshold(trading: TradingSettings) -> Threshold:
    return Threshold(Threshold.Params(**trading.strategies.get("threshold", {})))


def run(market: Market, trading: TradingSettings, capital: float | None = None):
    return run_backtest(market, threshold(trading), trading, capital)


@pytest.mark.parametrize("seed", range(12))
def test_compiled_engine_matches_the_event_by_event_reference(seed: int) -> None:
    market, trading = random_market(seed), random_settings(seed)
    fast, slow = run(market, trading), run_reference(market, threshold(trading).params, trading)
    assert len(fast.fills) == len(slow.fills)
    pd.testing.assert_frame_equal(fast.fills, slow.fills, rtol=1e-9)
    pd.testing.assert_frame_equal(fast.rejections[["ts", "symbol", "quantity", "price", "limit"]],
                                  slow.rejections[["ts", "symbol", "quantity", "price", "limit"]], rtol=1e-9)
    np.testing.assert_allclose(fast.equity, slow.equity, rtol=1e-10)
    np.testing.assert_allclose(fast.positions, slow.positions, rtol=1e-10, atol=1e-12)
    assert fast.halted_at == slow.halted_at


def test_the_random_cases_exercise_the_breaker_volume_caps_and_every_kind_of_limit() -> None:
    halted = filled = capped = trading_runs = 0
    limits = set()
    for seed in range(12):
        market, trading = random_market(seed), random_settings(seed)
        result = run(market, trading)
        limits |= set(result.rejections["limit"])
        assert result.rejections["reason"].str.len().min() > 10 if len(result.rejections) else True
        halted += result.halted_at is not None
        f = result.fills
        idx = {s: i for i, s in enumerate(market.symbols)}
        # capped at the volume known when the order was decided: the bar before the fill's
        vol = known_volume(market.volume)[f["t"].to_numpy() - 1, f["symbol"].map(idx).to_numpy()]
        capped += int(np.isclose(np.abs(f["quantity"]), trading.costs.max_participation * vol).sum())
        filled += int((f["quantity"].abs() > 0).sum())
        trading_runs += len(f) > 0
    assert halted >= 2 and capped >= 10 and filled > 0 and trading_runs >= 8, (halted, capped, trading_runs)
    assert {"max_order_notional", "max_position_notional", "max_gross_exposure", "max_orders_per_second"} <= limits, \
        limits


def _one_symbol(open_, close, p_up, volume=1e9) -> Market:
    T = len(close)
    arr = lambda x: np.asarray(x, dtype=float).reshape(T, 1)  # noqa: E731
    return Market(pd.date_range("2024-01-01", periods=T, freq="D"), ["A"], arr(open_), arr(close),
                  np.full((T, 1), volume), arr(p_up), np.full((T, 1), 0.2), 252.0)


def _settings(max_drawdown: float = 0.5, costs: dict | None = None, **rule) -> TradingSettings:
    return TradingSettings(
        strategies={"threshold": {"max_position_size": 0.5, "stop_loss": 0.02, "take_profit": 0.04, **rule}},
        costs=costs or {"commission_bps": 0, "half_spread_bps": 0, "slippage_bps_per_pct_volume": 0,
                        "max_participation": 1},
        risk={"max_drawdown": max_drawdown}, limits=LOOSE)


def test_a_signal_fills_at_the_next_open_never_its_own_bar() -> None:
    m = _one_symbol(open_=[100, 102, 103], close=[101, 102.5, 103], p_up=[0.9, 0.5, 0.5])
    r = run(m, _settings(take_profit=0.5), 1000.0)
    fill, exit_ = r.fills.itertuples()
    assert exit_.t == 2 and exit_.quantity == -fill.quantity  # p_up 0.5 at bar 1: flat from bar 2's open
    assert fill.t == 1 and fill.price == 102  # decided at the close of bar 0, filled at bar 1's open
    # half the equity in shares at bar 0's close (101), the order a live strategy sends then
    assert fill.quantity == pytest.approx(0.5 * 1000 / 101)
    assert r.equity[0] == 1000 and r.equity[1] == pytest.approx(1000 + fill.quantity * 0.5)


def test_stop_loss_exits_at_the_next_open_and_costs_are_charged() -> None:
    m = _one_symbol(open_=[100, 100, 96, 97], close=[100, 97.9, 96, 97], p_up=[0.9, 0.9, 0.9, 0.9], volume=1000)
    trading = _settings(costs={"commission_bps": 1, "half_spread_bps": 2, "slippage_bps_per_pct_volume": 5,
                               "max_participation": 1})
    r = run(m, trading, 10_000.0)
    f = r.fills
    assert f["t"].tolist()[:2] == [1, 2]
    assert f["quantity"].iloc[1] == pytest.approx(-f["quantity"].iloc[0])  # -2.1% close: stopped out at bar 2's open
    q = f["quantity"].iloc[0]
    assert q == pytest.approx(50.0)
    # 1 + 2 bps + 5 bps per % of the bar's volume (50 of 1,000 shares = 5%)
    assert f["cost"].iloc[0] == pytest.approx(50 * 100 * (3 + 5 * 5) / 1e4)
    assert f["t"].iloc[2] == 3  # the signal is still long: it re-enters a bar later


def test_fills_are_capped_by_the_volume_known_when_the_order_was_decided() -> None:
    """Bar 1 prints only 10 shares, which nobody knows at its open: the cap is 5% of bar 0's 1,000."""
    m = _one_symbol(open_=[100, 100, 100], close=[100, 100, 100], p_up=[0.9, 0.9, 0.9])
    m.volume[:, 0] = [1000.0, 10.0, np.nan]
    trading = _settings(stop_loss=0.5, take_profit=0.5, costs={"commission_bps": 0, "half_spread_bps": 0,
                                                               "slippage_bps_per_pct_volume": 5, "max_participation": 0.05})
    r = run(m, trading, 100_000.0)
    first, second = r.fills.itertuples()
    assert first.t == 1 and first.quantity == pytest.approx(50.0)  # not 0.5 (5% of the fill bar's 10)
    assert first.cost == pytest.approx(50 * 100 * 5 * 5 / 1e4)  # slippage on 5% of the known 1,000
    assert second.t == 2 and second.quantity == pytest.approx(0.5)  # then 5% of bar 1's 10 shares
    reference = run_reference(m, threshold(trading).params, trading.model_copy(update={"initial_capital": 100_000.0}))
    np.testing.assert_allclose(reference.fills[["quantity", "price", "cost"]], r.fills[["quantity", "price", "cost"]])


def test_drawdown_breaker_flattens_and_halts_for_good() -> None:
    m = _one_symbol(open_=[100, 100, 60, 60, 70], close=[100, 60, 60, 65, 70], p_up=[0.9] * 5)
    r = run(m, _settings(max_drawdown=0.1, stop_loss=0.9), 1000.0)
    assert r.halted_at == 1  # -20% of equity at bar 1's close
    assert r.fills["t"].tolist() == [1, 2]  # in at bar 1's open, flattened at bar 2's open, then nothing
    assert r.positions[-1, 0] == 0
