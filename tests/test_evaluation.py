"""Walk-forward splits, metrics, baselines and the leakage canary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.settings import SyntheticSettings
from models.baselines import AlwaysUp, LinearModel, MomentumSign
from models.evaluation import evaluate, feature_frame, gap_closed
from pipelines.features import feature_names
from pipelines.metrics import score
from pipelines.splits import walk_forward
from pipelines.sources.synthetic import generate_market

WINDOWS, RANKS = [5, 10, 20, 30, 60], ["roc_5", "roc_20", "volat_20", "vma_5"]


def test_folds_never_train_on_purged_or_embargoed_or_future_times() -> None:
    ts = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=200, freq="D"), 3))
    folds = list(walk_forward(ts, n_folds=4, horizon=5, purge=2, embargo=7))
    assert len(folds) == 4
    times = ts.to_numpy()
    for k, fold in enumerate(folds):
        train_t, test_t = times[fold.train], times[fold.test]
        assert train_t.max() < test_t.min()  # expanding window: only the past
        gap = (pd.Timestamp(test_t.min()) - pd.Timestamp(train_t.max())).days
        assert gap > 5  # purge raised to the label horizon
        for earlier in folds[:k]:  # embargo after earlier test blocks
            end = pd.Timestamp(times[earlier.test].max())
            banned = (times > end.to_datetime64()) & (times <= (end + pd.Timedelta(days=7)).to_datetime64())
            assert not np.isin(np.flatnonzero(banned), fold.train).any()
    assert sum(len(f.test) for f in folds) == len(ts) - 3 * int(200 * 0.3)
    with pytest.raises(ValueError, match="too few"):
        list(walk_forward(ts.iloc[:30], n_folds=10, horizon=5))


def test_metrics_on_hand_computed_values() -> None:
    ts = pd.Series(pd.to_datetime(["2024-01-01"] * 3 + ["2024-01-02"] * 3))
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.7, 0.3])
    y = np.array([1, 0, 0, 0, 1, 1])
    r = np.array([0.02, -0.01, -0.03, -0.01, 0.02, 0.01])
    s = score(ts, p, y, r)
    assert s.accuracy == pytest.approx(4 / 6)
    expected_ll = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert s.log_loss == pytest.approx(expected_ll)
    ic1 = np.corrcoef([0.4, -0.3, 0.1], [0.02, -0.01, -0.03])[0, 1]
    ic2 = np.corrcoef([-0.1, 0.2, -0.2], [-0.01, 0.02, 0.01])[0, 1]
    assert s.ic == pytest.approx((ic1 + ic2) / 2)
    assert s.accuracy_se >= np.sqrt(s.accuracy * (1 - s.accuracy) / 6)


def _frame(mode: str, seed: int = 5):
    market = generate_market(SyntheticSettings(n_symbols=10, n_days=30, mode=mode, seed=seed))
    return market, feature_frame(market.bars, WINDOWS, RANKS, horizon=1)


def test_leakage_canary_random_walk_gives_coin_flips() -> None:
    _, frame = _frame("random_walk")
    for model in (AlwaysUp, MomentumSign, LinearModel):
        pooled = evaluate(frame, feature_names(WINDOWS, RANKS), model, n_folds=4, horizon=1).pooled
        assert abs(pooled.accuracy - 0.5) < 3 * pooled.accuracy_se, (model.name, pooled)
        if model is AlwaysUp:
            assert np.isnan(pooled.ic)  # a constant score has no IC
        else:
            assert abs(pooled.ic) < 0.05


def test_planted_signal_is_found_out_of_sample_and_not_beyond_the_bound() -> None:
    market, frame = _frame("planted")
    names = feature_names(WINDOWS, RANKS)
    linear = evaluate(frame, names, LinearModel, n_folds=4, horizon=1).pooled
    always = evaluate(frame, names, AlwaysUp, n_folds=4, horizon=1).pooled
    assert linear.accuracy > always.accuracy + 5 * linear.accuracy_se
    assert linear.accuracy < market.bayes_accuracy + 3 * linear.accuracy_se
    assert linear.rank_ic > 0.1
    assert gap_closed(linear.accuracy, market.bayes_accuracy) > 0.7
