"""Walk-forward splits, metrics, baselines and the leakage canary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.schemas.data import SyntheticSettings
from config.schemas.model import ModelSettings
from models.evaluation import comparison_table, feature_frame, walk_forward_models
from models.panel import Panel
from pipelines.features.library import feature_names
from models.scoring import score
from models.splits import walk_forward
from pipelines.ingest.sources.synthetic import generate_market

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
    assert s.ic_se == pytest.approx(np.std([ic1, ic2], ddof=1) / np.sqrt(2))
    assert s.ci("ic") == pytest.approx((s.ic - 1.959964 * s.ic_se, s.ic + 1.959964 * s.ic_se))
    assert s.accuracy_se >= np.sqrt(s.accuracy * (1 - s.accuracy) / 6)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert s.log_loss_se >= losses.std(ddof=1) / np.sqrt(6)


def _panel(mode: str, seed: int = 5, n_symbols: int = 10, n_days: int = 30):
    market = generate_market(SyntheticSettings(n_symbols=n_symbols, n_days=n_days, mode=mode, seed=seed))
    return market, Panel(feature_frame(market.bars, WINDOWS, RANKS, horizon=1), feature_names(WINDOWS, RANKS))


def small_models(**training) -> ModelSettings:
    """Every family at a size two CPU cores train in seconds."""
    return ModelSettings(
        sequence_length=10, lstm={"hidden_size": 16, "num_layers": 1},
        transformer={"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32},
        training={"max_epochs": 6, "early_stopping_patience": 2, "batch_size": 256, **training},
        walk_forward={"n_folds": 3})


def test_leakage_canary_random_walk_gives_coin_flips() -> None:
    """The whole modelling path on an i.i.d. random walk: every model, networks and ensemble
    included, lands within three standard errors of 50% out-of-sample."""
    _, panel = _panel("random_walk")
    evaluations = walk_forward_models(panel, small_models())
    assert set(evaluations) == {"always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer",
                                "ensemble"}
    for name, ev in evaluations.items():
        pooled = ev.pooled
        assert abs(pooled.accuracy - 0.5) < 3 * pooled.accuracy_se, (name, pooled)
        assert len(ev.folds) == 3 and pooled.n == sum(f.n for f in ev.folds)
        if name == "always_up":
            assert np.isnan(pooled.ic)  # a constant score has no IC
        else:
            assert abs(pooled.ic) < 0.05, (name, pooled)


def test_a_signal_no_baseline_owns_is_learned_by_the_sequence_model_and_the_ensemble() -> None:
    """The interaction market: the next move's sign is the XOR of the last two return signs, so
    the trend's sign (momentum_sign) and a linear model over the features fall well short while
    a sequence model over the last bars can learn it. The LSTM and the ensemble close at least
    80% of the gap from the best baseline to the generator's Bayes bound out-of-sample (the
    Transformer at least 70%); linear and momentum stay well short, nothing beats the bound,
    and the ensemble's weight sits on the learned models, not on a one-line rule. (A recipe of
    the 5- and 10-bar features keeps it under a minute; ``benchmarks/model_quality.py`` runs
    every family on the full recipe.)"""
    windows = [5, 10]
    market = generate_market(SyntheticSettings(n_symbols=10, n_days=30, mode="interaction", seed=5))
    panel = Panel(feature_frame(market.bars, windows, [], horizon=1), feature_names(windows, []))
    cfg = ModelSettings(sequence_length=5, lstm={"hidden_size": 16, "num_layers": 1},
                        transformer={"d_model": 32, "n_heads": 2, "n_layers": 2, "dim_feedforward": 64},
                        training={"max_epochs": 12, "early_stopping_patience": 3, "batch_size": 256},
                        walk_forward={"n_folds": 3})
    evaluations = walk_forward_models(panel, cfg)
    table = comparison_table(evaluations, market.bayes_accuracy)
    closed = dict(zip(table["model"], table["gap_closed"]))
    floor = max(evaluations[b].pooled.accuracy for b in ("always_up", "momentum_sign"))
    assert market.bayes_accuracy - floor > 0.07, table.to_string()  # a real gap: no baseline owns the signal
    assert min(closed["lstm"], closed["ensemble"]) >= 0.8, table.to_string()
    # the Transformer closes 82% here and 79% with 12 symbols instead of 10: it sits at the
    # 80% line at this size, so the test holds it to 70% rather than to one lucky seed
    assert closed["transformer"] >= 0.7, table.to_string()
    assert closed["linear"] < 0.5 and closed["momentum_sign"] <= 0.0, table.to_string()
    for name, ev in evaluations.items():
        assert ev.pooled.accuracy < market.bayes_accuracy + 3 * ev.pooled.accuracy_se, (name, table.to_string())
    weights = evaluations["ensemble"].details["weights_per_fold"]
    assert len(weights) == 3 and all(w["always_up"] + w["momentum_sign"] < 0.25 for w in weights), weights


def test_purge_follows_each_symbol_s_label_end_across_missing_bars() -> None:
    """Symbol B misses bars just before a test block: its last training label ends inside the
    block. Counting shared timestamps keeps that row; purging by label end drops it."""
    times = pd.date_range("2024-01-01", periods=100, freq="D")
    gap = set(range(56, 64))  # B has no bars on days 56..63
    frame = pd.concat([pd.DataFrame({"symbol": "A", "ts": times}),
                       pd.DataFrame({"symbol": "B", "ts": [t for i, t in enumerate(times) if i not in gap]})])
    frame["x"] = 0.0
    panel = Panel(frame, ["x"])
    ends = panel.label_end(horizon=1)
    b55 = np.flatnonzero((panel.frame["symbol"] == "B") & (panel.frame["ts"] == times[55]))[0]
    assert ends[b55] == times[64].to_datetime64()  # B's next bar after day 55 is day 64
    assert np.isnat(ends[np.flatnonzero(panel.frame["symbol"] == "A")[-1]])  # no next bar: unknown

    def folds(label_end):
        return list(walk_forward(panel.ts, n_folds=5, horizon=1, label_end=label_end))

    block = next(f for f in folds(None) if f.test_start == times[58])  # a test block starting inside B's gap
    assert b55 in block.train  # the timestamp count alone leaks B's label into the test block
    for fold in folds(ends):
        assert (ends[fold.train] < fold.test_start.to_datetime64()).all()
        assert len(fold.train) > 0
    assert b55 not in next(f for f in folds(ends) if f.test_start == times[58]).train
    # the same rule inside a training window: the validation block starts on day 58
    from models.panel import time_split

    labelled = np.flatnonzero(~np.isnat(ends))
    fit, valid = time_split(panel, labelled, 0.41, gap=1)
    assert panel.times[valid].min() == times[58].to_datetime64() and b55 in fit
    fit, _ = time_split(panel, labelled, 0.41, gap=1, label_end=ends)
    assert b55 not in fit and (ends[fit] < times[58].to_datetime64()).all()
