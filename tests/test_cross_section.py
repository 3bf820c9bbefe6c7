"""Research on a cross-section: ranked labels, a dated first test block, sampled network epochs,
intervals of the information ratio, and the decile long-short book traded by the engine."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from models import sequence
from models.evaluation import walk_forward_models
from models.panel import RANK_SCALE, Panel
from models.scoring import score
from models.splits import walk_forward
from models.training import training_start
from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, run_backtest
from pipelines.backtest.longshort import book_periods, summarize
from pipelines.backtest.performance import ratio_se
from pipelines.trading.strategies import load_strategy
from tests.test_evaluation import small_models


def market_panel(n_symbols: int = 12, n_days: int = 160, seed: int = 3) -> Panel:
    """Daily rows whose forward return is a large common move plus a small part that the
    feature ``x`` predicts across symbols."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2015-06-01", periods=n_days, freq="B", tz="UTC")
    market = rng.normal(0.0, 0.02, n_days)
    rows = []
    for s in range(n_symbols):
        x = rng.normal(size=n_days)
        fwd = market + 0.004 * x + rng.normal(0.0, 0.01, n_days)
        rows.append(pd.DataFrame({"symbol": f"S{s:02d}", "ts": days, "x": x, "z": rng.normal(size=n_days),
                                  "fwd_return": fwd, "direction": (fwd > 0).astype(float)}))
    frame = pd.concat(rows, ignore_index=True)
    frame.loc[frame["ts"] == days[-1], ["fwd_return", "direction"]] = np.nan  # the last day has no label yet
    return Panel(frame, ["x", "z"])


def test_rank_targets_are_each_day_s_ranks_and_scores_stay_raw() -> None:
    panel = market_panel()
    raw_direction, raw_return = panel.direction.copy(), panel.fwd_return.copy()
    assert panel.target == "none"
    assert np.array_equal(panel.target_return, raw_return, equal_nan=True)
    panel.rank_targets()
    frame = panel.frame.assign(t_dir=panel.target_direction, t_ret=panel.target_return)
    day = frame[frame["ts"] == frame["ts"].iloc[5]]
    order = day["fwd_return"].rank().to_numpy()               # 1..12 on one day
    assert day["t_ret"].to_numpy() == pytest.approx(((order - 0.5) / 12 - 0.5) * RANK_SCALE)
    assert day["t_dir"].to_numpy().tolist() == (order > 6).astype(float).tolist()  # above the day's median
    by_day = frame.dropna(subset=["t_ret"]).groupby("ts")
    assert by_day["t_dir"].mean().eq(0.5).all()                # the common move is gone: half up every day
    assert frame["direction"].groupby(frame["ts"]).mean().isin([0.0, 1.0]).mean() > 0.2  # the raw one has it
    assert frame.loc[frame["fwd_return"].isna(), ["t_dir", "t_ret"]].isna().all().all()  # unlabelled stays so
    assert np.array_equal(panel.direction, raw_direction, equal_nan=True)  # the labels themselves are kept
    assert np.array_equal(panel.tail(np.arange(len(panel)))["fwd_return"].to_numpy(), raw_return, equal_nan=True)


def test_models_fit_the_ranks_and_are_scored_on_raw_returns() -> None:
    cfg = small_models().model_copy(update={"families": ["always_up", "linear", "lightgbm"]})
    raw = walk_forward_models(market_panel(), cfg)
    ranked = walk_forward_models(market_panel().rank_targets(), cfg)
    for name in ("linear", "lightgbm"):
        pred = ranked[name].predictions
        panel = market_panel()
        merged = pred.merge(panel.frame[["symbol", "ts", "fwd_return"]], on=["symbol", "ts"], suffixes=("", "_raw"))
        assert np.allclose(merged["fwd_return"], merged["fwd_return_raw"])  # scored against the raw label
        assert ranked[name].pooled.ic > 0.1                                  # x ranks the cross-section
    # the ranked linear model predicts rank scores, centred on zero; the raw one predicts returns
    assert abs(ranked["linear"].predictions["expected_return"].mean()) < 0.05
    assert raw["linear"].predictions["expected_return"].abs().max() < 0.1
    # always-up on ranks: "above the day's median" is a coin flip, so its p_up sits near one half
    assert ranked["always_up"].predictions["p_up"].iloc[0] == pytest.approx(0.501, abs=0.01)


def test_the_first_test_block_starts_at_test_start() -> None:
    ts = pd.Series(np.repeat(pd.date_range("2015-06-01", periods=300, freq="D", tz="UTC"), 2))
    folds = list(walk_forward(ts, n_folds=3, horizon=1, test_start=pd.Timestamp("2016-01-01")))
    assert folds[0].test_start == pd.Timestamp("2016-01-01", tz="UTC")
    assert pd.Timestamp(ts.iloc[folds[0].train].max()) < pd.Timestamp("2016-01-01", tz="UTC") - pd.Timedelta(days=1)
    tested = np.concatenate([f.test for f in folds])
    assert ts.iloc[tested].min() == pd.Timestamp("2016-01-01", tz="UTC") and ts.iloc[tested].max() == ts.max()
    assert len(tested) == (ts >= pd.Timestamp("2016-01-01", tz="UTC")).sum()  # every later row is tested once
    with pytest.raises(ValueError, match="no timestamp on or after the test start"):
        list(walk_forward(ts, n_folds=3, horizon=1, test_start=pd.Timestamp("2020-01-01")))


def test_training_starts_at_the_later_of_start_date_and_history_days() -> None:
    end = date(2021, 4, 30)
    assert training_start(end, None, None) is None
    assert training_start(end, None, date(2000, 1, 1)) == date(2000, 1, 1)
    assert training_start(end, 30, None) == date(2021, 4, 1)
    assert training_start(end, 30, date(2000, 1, 1)) == date(2021, 4, 1)
    assert training_start(end, 10_000, date(2000, 1, 1)) == date(2000, 1, 1)


def test_an_epoch_draws_samples_per_epoch_windows(monkeypatch) -> None:
    panel = market_panel(n_days=80)
    rows = panel.labelled()
    fit, valid = rows[:600], rows[700:]
    drawn: list[int] = []
    real = sequence.batch_windows

    def counting(Xpad, first, batch, length):
        if len(batch) <= 32:                # training batches (validation batches are 4096 rows)
            drawn.append(len(batch))
        return real(Xpad, first, batch, length)

    monkeypatch.setattr(sequence, "batch_windows", counting)
    cfg = small_models(max_epochs=3, early_stopping_patience=5, batch_size=32, samples_per_epoch=100)
    model = sequence.SequenceModel("lstm", cfg).fit(panel, fit, valid)
    assert model.epochs == 3 and sum(drawn) == 3 * 100
    drawn.clear()
    whole = small_models(max_epochs=1, early_stopping_patience=5, batch_size=32)
    sequence.SequenceModel("lstm", whole).fit(panel, fit, valid)
    assert sum(drawn) == len(fit)           # null: every training row


def test_information_ratio_interval_is_lo_s() -> None:
    assert ratio_se(0.2, 100) == pytest.approx(math.sqrt((1 + 0.02) / 100))
    assert math.isnan(ratio_se(0.2, 1)) and math.isnan(ratio_se(float("nan"), 50))
    rng = np.random.default_rng(0)
    ts = np.repeat(np.arange(60), 20)
    signal = rng.normal(size=len(ts))
    fwd = 0.3 * signal + rng.normal(size=len(ts))
    s = score(pd.Series(ts), 0.5 + 0.1 * np.tanh(signal), (fwd > 0).astype(float), fwd, signal)
    per_day = pd.DataFrame({"ts": ts, "a": signal, "b": fwd}).groupby("ts").apply(
        lambda g: g["a"].corr(g["b"]), include_groups=False)
    ir = per_day.mean() / per_day.std(ddof=1)
    assert s.ic_ir == pytest.approx(ir)
    low, high = s.ci("ic_ir")
    assert (low, high) == pytest.approx((ir - 1.959964 * ratio_se(ir, 60), ir + 1.959964 * ratio_se(ir, 60)))


def test_long_short_book_by_hand_through_the_engine() -> None:
    """Ten symbols, deciles of one each: long the best score, short the worst, decided at a close,
    filled at the next open, costs of 10 bps of the traded notional; the book's periods by hand."""
    T, N = 4, 10
    opens = np.full((T, N), 100.0)
    closes = np.full((T, N), 100.0)
    closes[1, 9], opens[2, 9], closes[2, 9] = 110.0, 110.0, 110.0    # the long name gains 10% in bar 1
    closes[1, 0] = opens[2, 0] = closes[2, 0] = 95.0                 # the short name loses 5%
    scores = np.tile(np.arange(N, dtype=float), (T, 1))
    market = Market(pd.date_range("2024-01-01", periods=T, freq="D"), [f"S{i}" for i in range(N)], opens, closes,
                    np.full((T, N), 1e9), np.full((T, N), 0.5), np.full((T, N), 0.2), 252.0, expected_return=scores)
    trading = TradingSettings(
        initial_capital=100_000, strategy="long_short",
        strategies={"long_short": {"quantile": 0.1, "rebalance_every": 5, "gross": 1.0, "min_per_leg": 1}},
        costs={"commission_bps": 10, "half_spread_bps": 0, "slippage_bps_per_pct_volume": 0, "max_participation": 1},
        limits={"max_position_notional": 1.0, "max_order_notional": 1e9})
    result = run_backtest(market, load_strategy(trading), trading)
    d = book_periods(result)
    assert d["n_long"].tolist() == [0, 1, 1, 1] and d["n_short"].tolist() == [0, 1, 1, 1] and d["n"].eq(10).all()
    # bar 1: 500 shares bought at 100 and 500 sold short at 100, each 50,000: fees 2 x 50 = 100
    assert d["turnover"].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])
    assert d["cost"].iloc[1] == pytest.approx(100 / 100_000)
    assert d["long_return"].iloc[1] == pytest.approx(0.10) and d["short_return"].iloc[1] == pytest.approx(-0.05)
    assert d["net"].iloc[1] == pytest.approx((50_000 * 0.10 + 50_000 * 0.05 - 100) / 100_000)
    assert d["gross"].iloc[1] == pytest.approx(d["net"].iloc[1] + d["cost"].iloc[1])
    assert d["net"].iloc[2] == 0 and np.isnan(d["long_return"].iloc[0])  # held flat prices; nothing held at bar 0
    summary = summarize(d, 252.0)
    assert summary["total_return_net"] == pytest.approx(result.equity[-1] / 100_000 - 1)


def _random_market(T: int, N: int, seed: int) -> Market:
    """Daily random-walk closes (opens equal closes) with random scores, ample volume."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    return Market(pd.date_range("2024-01-01", periods=T, freq="D"), [f"S{i}" for i in range(N)], closes, closes,
                  np.full((T, N), 1e9), np.full((T, N), 0.5), np.full((T, N), 0.2), 252.0,
                  expected_return=rng.normal(size=(T, N)))


def test_the_long_short_asset_s_book_rebalances_every_label_horizon() -> None:
    market = _random_market(30, 20, seed=0)
    trading = TradingSettings(strategy="long_short", strategies={"long_short": {"rebalance_every": 5}},
                              limits={"max_position_notional": 1.0, "max_order_notional": 1e9},
                              risk={"max_drawdown": 0.9})
    result = run_backtest(market, load_strategy(trading), trading)
    traded_at = sorted(set(result.fills["t"]))
    assert traded_at == [1, 6, 11, 16, 21, 26]  # decided at steps 0, 5, 10, ...: filled at the next open
    assert (book_periods(result)["n_long"].iloc[1:] == 2).all()


def test_annual_figures_compound_and_cannot_fall_below_minus_100_percent() -> None:
    """The summary's annual return compounds the book's simple returns over the bar interval's
    periods per year: a book that loses 1% a day for a year reports -91.9%, not -252%, and the
    same per-period figures on 5-minute bars annualise over their own periods."""
    from pipelines.backtest.longshort import annualized

    daily = pd.DataFrame({"net": np.full(252, -0.01), "gross": np.full(252, -0.005), "turnover": 1.0, "cost": 0.005,
                          "n_long": 10})
    s = summarize(daily, 252.0)
    assert s["annual_net"] == pytest.approx(0.99 ** 252 - 1) and s["annual_net"] > -1
    assert s["annual_gross"] == pytest.approx(0.995 ** 252 - 1)
    assert annualized(np.array([0.5, -1.0, 0.2]), 252.0) == -1.0  # wiped out stays wiped out
    assert annualized(np.full(78, 0.0001), 252 * 78) == pytest.approx(1.0001 ** (252 * 78) - 1)
    assert summarize(daily.head(126), 252.0)["annual_net"] == pytest.approx(0.99 ** 252 - 1)  # half a year, same rate


def test_a_leg_of_fewer_than_min_per_leg_names_builds_no_book() -> None:
    """Eight names and decile legs: one name a leg, under min_per_leg 2, so the book stays flat;
    quartiles give two a leg and the book trades (held names vary a little: a name that leaves a
    leg is sold at the next open, as its replacement is bought, within the gate's limits)."""
    from pipelines.backtest.pipeline import _built

    market = _random_market(12, 8, seed=1)

    def book(quantile: float):
        trading = TradingSettings(strategy="long_short", strategies={"long_short": {"quantile": quantile}},
                                  limits={"max_position_notional": 1.0, "max_order_notional": 1e9})
        strategy = load_strategy(trading)
        daily = book_periods(run_backtest(market, strategy, trading))
        return daily, _built(daily, strategy.params)

    daily, built = book(0.1)
    assert (daily["n_long"] == 0).all() and (daily["turnover"] == 0).all()
    assert built == {"built": False, "note": "not built: at most 8 names scored at a bar, so a 10% leg holds 1, "
                                             "fewer than min_per_leg 2"}
    daily, built = book(0.25)
    assert built == {"built": True, "note": ""} and daily["n_long"].median() == 2 and daily["turnover"].sum() > 0
