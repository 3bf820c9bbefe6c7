"""The synthetic market: deterministic, fat-tailed, correlated, with an honest Bayes bound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.schemas.data import SyntheticSettings
from pipelines.ingest.sources.synthetic import generate_market, generate_ticks

SMALL = SyntheticSettings(n_symbols=6, n_days=15, bars_per_day=78, seed=11)


def _returns(bars: pd.DataFrame) -> pd.DataFrame:
    return np.log(bars.pivot(index="ts", columns="symbol", values="close")).diff().dropna()


def test_deterministic_by_seed() -> None:
    a, b = generate_market(SMALL), generate_market(SMALL)
    pd.testing.assert_frame_equal(a.bars, b.bars)
    c = generate_market(SMALL.model_copy(update={"seed": 12}))
    assert not np.allclose(a.bars["close"], c.bars["close"])


def test_random_walk_has_no_edge() -> None:
    m = generate_market(SMALL.model_copy(update={"mode": "random_walk"}))
    assert m.bayes_accuracy == 0.5
    assert not m.mu.any()
    r = _returns(m.bars)
    # i.i.d. increments: no autocorrelation beyond noise
    lag1 = np.mean([r[c].autocorr(1) for c in r])
    assert abs(lag1) < 3 / np.sqrt(len(r))


def test_planted_signal_bound_matches_what_an_oracle_gets() -> None:
    cfg = SMALL.model_copy(update={"n_days": 40, "signal_strength": 0.3})
    m = generate_market(cfg)
    assert 0.55 < m.bayes_accuracy < 0.75
    n = m.mu.size
    assert abs(m.oracle_accuracy - m.bayes_accuracy) < 3 * np.sqrt(0.25 / n)
    weaker = generate_market(cfg.model_copy(update={"signal_strength": 0.1}))
    assert 0.5 < weaker.bayes_accuracy < m.bayes_accuracy


def test_stylized_facts() -> None:
    m = generate_market(SMALL.model_copy(update={"n_days": 40}))
    r = _returns(m.bars)
    assert r.kurt().mean() > 1.0  # fat tails
    corr = r.corr().to_numpy()[np.triu_indices(r.shape[1], 1)].mean()
    assert corr > 0.1  # factor structure
    abs_r = r.abs()
    assert np.mean([abs_r[c].autocorr(1) for c in abs_r]) > 0.05  # volatility clustering
    by_bar = abs_r.groupby(abs_r.index.time).mean().mean(axis=1).to_numpy()
    assert by_bar[:5].mean() > by_bar[30:45].mean() and by_bar[-5:].mean() > by_bar[30:45].mean()  # U shape


def test_ticks_rebuild_the_bars() -> None:
    m = generate_market(SMALL)
    ticks = generate_ticks(m, SMALL.model_copy(update={"bad_tick_rate": 0.0}))
    assert list(ticks.columns) == ["symbol", "ts", "seq", "price", "size", "bid", "ask", "side", "source"]
    assert (ticks.groupby("symbol")["seq"].diff().dropna() == 1).all()
    assert (ticks["bid"] < ticks["ask"]).all() and (ticks["size"] > 0).all()
    rebuilt = (ticks.assign(ts=ticks["ts"].dt.floor("5min")).groupby(["symbol", "ts"])["price"]
               .agg(["first", "last", "max", "min"]).reset_index().merge(m.bars, on=["symbol", "ts"]))
    assert len(rebuilt) == len(m.bars)
    np.testing.assert_allclose(rebuilt["last"], rebuilt["close"], rtol=1e-12)


@pytest.mark.parametrize("bad", [{"garch_alpha": 0.5, "garch_beta": 0.6}, {"df_tails": 2.0}])
def test_invalid_parameters_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticSettings(**bad)


def test_corrupted_ticks_are_copies_that_validation_removes() -> None:
    cfg = SMALL.model_copy(update={"bad_tick_rate": 0.01})
    market = generate_market(cfg)
    ticks = generate_ticks(market, cfg)
    clean = generate_ticks(market, cfg.model_copy(update={"bad_tick_rate": 0.0}))
    extra = len(ticks) - len(clean)
    assert extra == round(len(clean) * 0.01)
    assert (ticks["price"] <= 0).sum() == (extra + 3) // 4
    assert ticks.duplicated(["symbol", "seq"]).sum() == extra
