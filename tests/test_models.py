"""The model pieces: windows, sequence networks, ensemble weights, the pyfunc wrapper, TorchDistributor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.schemas.data import SyntheticSettings
from config.schemas.model import ModelSettings
from models.ensemble import Ensemble, fit_weights
from models.evaluation import feature_frame, fit_models
from models.panel import Panel, time_split
from models.pyfunc import DirectionModel
from models.sequence import SequenceModel
from pipelines.features.library import feature_names
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.sources.synthetic import generate_market
from tests.test_evaluation import RANKS, WINDOWS, small_models


@pytest.fixture(scope="module")
def planted() -> Panel:
    market = generate_market(SyntheticSettings(n_symbols=6, n_days=12, mode="planted", seed=11))
    return Panel(feature_frame(market.bars, WINDOWS, RANKS, horizon=1), feature_names(WINDOWS, RANKS))


def _split(panel: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = panel.labelled()
    ts = panel.times[rows]
    cut = np.quantile(ts.astype("int64"), 0.75).astype("datetime64[ns]")
    train, test = rows[ts < cut], rows[ts > cut]
    fit, valid = time_split(panel, train, 0.2, gap=1)
    return fit, valid, test


def test_windows_look_back_within_their_symbol_only() -> None:
    frame = pd.DataFrame({"symbol": ["B", "A", "A", "B", "A"],
                          "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-02", "2024-01-03"]),
                          "x": [10.0, 2.0, 1.0, 20.0, 3.0]})
    panel = Panel(frame, ["x"])
    assert panel.frame["x"].tolist() == [1.0, 2.0, 3.0, 10.0, 20.0]  # sorted by symbol, then time
    assert panel.windows(np.arange(5), 3).tolist() == [[-1, -1, 0], [-1, 0, 1], [0, 1, 2], [-1, -1, 3], [-1, 3, 4]]


def test_time_split_holds_out_the_latest_block_with_a_gap(planted: Panel) -> None:
    rows = planted.labelled()
    fit, valid = time_split(planted, rows, 0.2, gap=3)
    ts = planted.times
    assert ts[fit].max() < ts[valid].min()
    gap = np.unique(ts[(ts > ts[fit].max()) & (ts < ts[valid].min())])
    assert len(gap) == 3
    with pytest.raises(ValueError, match="too few"):
        time_split(planted, rows[:3], 0.2, gap=3)


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_sequence_model_is_seeded_causal_and_stops_early(planted: Panel, family: str) -> None:
    cfg = small_models(max_epochs=8, early_stopping_patience=2)
    fit, valid, test = _split(planted)
    a = SequenceModel(family, cfg).fit(planted, fit, valid)
    b = SequenceModel(family, cfg).fit(planted, fit, valid)
    p_a, r_a = a.predict(planted, test)
    p_b, _ = b.predict(planted, test)
    np.testing.assert_array_equal(p_a, p_b)  # same seed, same data: the same model
    assert np.all((p_a > 0) & (p_a < 1)) and np.isfinite(r_a).all()
    other = SequenceModel(family, small_models(max_epochs=8, early_stopping_patience=2, seed=7)).fit(planted, fit, valid)
    assert not np.array_equal(other.predict(planted, test)[0], p_a)

    # early stopping: it stops `patience` epochs after the best validation loss (or at max_epochs)
    losses = [h["valid_loss"] for h in a.history]
    assert a.best_epoch == int(np.argmin(losses))
    assert a.epochs == 8 or a.epochs == a.best_epoch + 1 + 2

    # causal: scrambling every row after a test row leaves that row's prediction unchanged
    row = test[len(test) // 2]
    later = np.flatnonzero((planted.frame["symbol"] == planted.frame["symbol"][row]).to_numpy()
                           & (planted.times > planted.times[row]))
    assert len(later) > 0
    before = a.predict(planted, np.array([row]))[0]
    scrambled = Panel(planted.frame.copy(), planted.features)
    scrambled.X[later] = np.random.default_rng(0).normal(size=scrambled.X[later].shape) * 100
    np.testing.assert_allclose(a.predict(scrambled, np.array([row]))[0], before, rtol=1e-6)


def test_ensemble_weights_come_from_validation_rows_only(planted: Panel) -> None:
    y = np.random.default_rng(1).integers(0, 2, 4000).astype(float)
    informative = np.where(y > 0, 0.7, 0.3)
    noise = np.random.default_rng(2).uniform(0.2, 0.8, 4000)
    w = fit_weights(np.column_stack([noise, informative, np.full(4000, 0.5)]), y)
    assert w.sum() == pytest.approx(1.0) and w.argmax() == 1 and w[1] > 0.8

    class Fixed:
        """A member whose predictions are given per row; it records which rows it was asked for."""

        def __init__(self, name: str, p: np.ndarray) -> None:
            self.name, self.p, self.asked = name, p, []

        def predict(self, panel, rows):
            self.asked.append(np.asarray(rows))
            return self.p[rows], self.p[rows] - 0.5

    n = len(planted)
    truth = np.nan_to_num(planted.direction)
    good, bad = Fixed("good", np.where(truth > 0, 0.8, 0.2)), Fixed("bad", np.full(n, 0.5))
    fit, valid, test = _split(planted)
    ens = Ensemble([good, bad]).fit(planted, fit, valid)
    assert all(np.array_equal(r, valid) for r in good.asked + bad.asked)  # never the training rows
    assert ens.weight_table()["good"] > 0.9
    p, r = ens.predict(planted, test)
    np.testing.assert_allclose(p, ens.weights[0] * good.p[test] + ens.weights[1] * 0.5)


def test_pyfunc_wrapper_keeps_input_order_and_names_missing_columns(planted: Panel) -> None:
    cfg = small_models()
    cfg = ModelSettings(**{**cfg.model_dump(), "families": ["momentum_sign", "lstm", "ensemble"]})
    fitted, _, _ = fit_models(planted, planted.labelled(), cfg)
    spec = FeatureSpec(tuple(WINDOWS), tuple(RANKS), cfg.sequence_length)
    assert spec.names == planted.features
    wrapper = DirectionModel(fitted["ensemble"], spec, "ensemble")
    recent = planted.frame.groupby("symbol").tail(cfg.sequence_length)
    shuffled = recent.sample(frac=1.0, random_state=3)
    out = wrapper.predict(None, shuffled)
    assert out[["symbol", "ts"]].values.tolist() == shuffled[["symbol", "ts"]].values.tolist()
    direct = fitted["ensemble"].predict(planted, recent.index.to_numpy())[0]
    last = out.merge(recent[["symbol", "ts"]].assign(direct=direct), on=["symbol", "ts"])
    # the window of each symbol's last bar is complete in `recent`, so it matches the full panel
    tail = last.sort_values("ts").groupby("symbol").tail(1)
    np.testing.assert_allclose(tail["p_up"], tail["direct"], rtol=1e-5)
    with pytest.raises(ValueError, match="missing columns.*roc_5"):
        wrapper.predict(None, shuffled.drop(columns=["roc_5"]))


def test_torch_distributor_trains_the_same_network(spark, planted: Panel) -> None:
    """Two DDP workers under Spark's TorchDistributor (local mode, gloo on CPU)."""
    fit, valid, test = _split(planted)
    cfg = small_models(max_epochs=3, distributed=True, num_processes=2)
    model = SequenceModel("lstm", cfg).fit(planted, fit, valid)
    p, r = model.predict(planted, test)
    assert model.epochs >= 1 and len(model.history) == model.epochs
    assert np.isfinite(p).all() and p.std() > 0
    single = SequenceModel("lstm", small_models(max_epochs=3)).fit(planted, fit, valid)
    # same seed and data, the work split over two processes: a different but equally valid fit
    assert abs(model.history[0]["valid_loss"] - single.history[0]["valid_loss"]) < 0.05


def test_saved_state_reloads_every_family_to_identical_predictions(planted: Panel, tmp_path) -> None:
    """What the registry stores is plain data (JSON + arrays, no pickle) that rebuilds each model exactly."""
    from models import persist

    cfg = small_models(max_epochs=2)
    fit, valid, test = _split(planted)
    fitted, _, _ = fit_models(planted, np.concatenate([fit, valid]), cfg)
    assert set(fitted) == {"always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer", "ensemble"}
    for name, model in fitted.items():
        folder = persist.save(model, tmp_path / name, {"family": name})
        assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "state.json"]
        again, extra = persist.load(folder)
        assert extra == {"family": name}
        p0, r0 = model.predict(planted, test)
        p1, r1 = again.predict(planted, test)
        np.testing.assert_array_equal(p0, p1)
        np.testing.assert_array_equal(r0, r1)


def test_networks_stop_early_on_one_block_and_the_ensemble_weighs_on_the_next(planted: Panel, monkeypatch) -> None:
    """Early stopping picks the epoch that scores best on its block, so that block flatters the
    members; the ensemble's weights come from the later, purged block no member has seen."""
    import models.evaluation as evaluation

    seen: dict[str, list[np.ndarray]] = {}

    class Recording:
        def __init__(self, name: str) -> None:
            self.name = name

        def fit(self, panel, fit, valid):
            seen[self.name] = [np.asarray(fit), np.asarray(valid)]
            return self

        def predict(self, panel, rows):
            seen[self.name].append(np.asarray(rows))
            return np.full(len(rows), 0.5), np.zeros(len(rows))

    monkeypatch.setattr(evaluation, "make_members", lambda cfg, progress: [Recording("lstm"), Recording("linear")])
    cfg = ModelSettings(families=["linear", "lstm", "ensemble"])
    rows = planted.labelled()
    fitted, _, _ = fit_models(planted, rows, cfg)
    (fit, stop, weigh), times, label_end = seen["lstm"], planted.times, planted.label_end(cfg.label_span)
    assert len(fit) and len(stop) > 100 and len(weigh) > 100
    assert label_end[fit].max() < times[stop].min()  # fit rows' labels end before the stopping block
    assert label_end[stop].max() < times[weigh].min()  # and stopping rows' before the weighing block
    assert seen["linear"][1].tolist() == stop.tolist() and seen["linear"][2].tolist() == weigh.tolist()
    assert set(fitted) == {"lstm", "linear", "ensemble"}
    # without an ensemble the whole validation block stops the networks
    seen.clear()
    fit_models(planted, rows, ModelSettings(families=["linear", "lstm"]))
    whole = seen["lstm"][1]
    assert len(seen["lstm"]) == 2 and times[whole].min() == times[stop].min() and times[whole].max() == times[weigh].max()
