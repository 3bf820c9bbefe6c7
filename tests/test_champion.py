"""The model zoo's one interface, and a registered model that carries its feature recipe."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from config import load_settings
from config.schemas.data import SyntheticSettings
from config.schemas.model import ModelFamily
from models.baselines import LinearModel, Tabular
from models.champion import load_champion
from models.panel import Panel
from models.pyfunc import DirectionModel
from models.registry import promote
from models.tracking import configure_mlflow
from models.training import register_model
from models.zoo import ENSEMBLE, ZOO, Forecaster, make_members, sequence_length_of
from pipelines.features.labels import compute_labels
from pipelines.features.library import EWM_WARMUP
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.sources.synthetic import generate_market
from tests.test_evaluation import small_models


def test_config_families_are_the_zoo_plus_the_ensemble() -> None:
    assert set(ModelFamily.__args__) == set(ZOO) | {ENSEMBLE}
    cfg = small_models()
    members = make_members(cfg)
    assert [m.name for m in members] == [f for f in cfg.families if f != ENSEMBLE]
    assert all(isinstance(m, Forecaster) for m in members)
    assert sequence_length_of("lstm", cfg) == cfg.sequence_length == sequence_length_of(ENSEMBLE, cfg)
    assert sequence_length_of("linear", cfg) == 1


def test_recipe_names_its_lookback_and_rejects_unknown_ranks() -> None:
    spec = FeatureSpec((3, 7), ("roc_3",), sequence_length=4)
    assert spec.names[-1] == "rank_roc_3" and "roc_7" in spec.names and "roc_5" not in spec.names
    assert spec.lookback_bars == EWM_WARMUP + 1 + 4 - 1  # the smoothed indicators' warm-up dominates
    assert 400 < EWM_WARMUP < 600
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="roc_5"):
        FeatureSpec((3, 7), ("roc_5",))


@pytest.fixture
def local_registry(sqlite_registry):
    """Settings on a file-backed MLflow registry in a temporary folder (no server needed)."""
    return load_settings(env={**os.environ, "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": "recipe-test"})


def test_the_champion_builds_features_from_its_own_recipe_not_the_config(local_registry) -> None:
    settings = local_registry
    bars = generate_market(SyntheticSettings(n_symbols=3, n_days=4, seed=5)).bars
    bars["ts"] = bars["ts"].dt.tz_localize(None)  # as Spark hands them over (UTC, naive)
    trained = FeatureSpec((3, 7), ("roc_3",))  # not the configured windows
    configured = FeatureSpec.from_settings(settings)
    assert trained != configured and set(trained.names) - set(configured.names)

    features = trained.compute(bars)
    labels = pd.concat([pd.concat([g[["symbol", "ts"]], compute_labels(g, 1)], axis=1)
                        for _, g in bars.sort_values("ts").groupby("symbol")])
    panel = Panel(features.merge(labels, on=["symbol", "ts"]), trained.names)
    model = Tabular(LinearModel()).fit(panel, panel.labelled(), None)
    configure_mlflow(settings)  # the temporary experiment, so artifacts stay in tmp_path
    with mlflow.start_run():
        version = register_model(DirectionModel(model, trained, "linear"), features.tail(3).reset_index(drop=True),
                                 settings)
    promote(settings, version, "recipe test")

    champion = load_champion(settings)
    assert champion.version == version and champion.family == "linear"
    # logged as models-from-code: a project code file and plain-data state, nothing pickled
    source = MlflowClient().get_model_version(settings.platform.mlflow.registered_model, version).source
    files = [p.relative_to(local) for local in [Path(mlflow.artifacts.download_artifacts(source))]
             for p in local.rglob("*") if p.is_file()]
    assert not [f for f in files if f.suffix in {".pkl", ".pickle", ".cloudpickle"}], files
    assert {"state.json", "arrays.npz", "serving.py"} <= {f.name for f in files}
    assert champion.spec == trained  # the recipe came back from the registry, not from the config
    live = champion.features(bars)
    assert list(live.columns) == ["symbol", "ts", *trained.names]
    scored = champion.predict(live)
    expected = model.predict(Panel(live, trained.names), np.arange(len(live)))[0]
    np.testing.assert_allclose(scored["p_up"].to_numpy(), expected, rtol=1e-12)
    with pytest.raises(Exception, match="roc_3"):  # today's config would not give the model its inputs
        champion.predict(configured.compute(bars))


def test_the_gate_compares_only_rows_whose_labels_the_champion_never_saw() -> None:
    from models.registry.gate import _unseen

    days = pd.date_range("2024-01-01", periods=10, freq="D")
    oos = pd.DataFrame({"ts": np.repeat(days, 2), "direction": [1.0, np.nan] * 10})
    assert _unseen(oos, days[4], horizon=1)["ts"].min() == days[5]
    # a 3-bar label of the champion's last row covered days 5-7: days 5 and 6 overlap it
    three = _unseen(oos, days[4], horizon=3)
    assert three["ts"].min() == days[7] and three["direction"].notna().all() and len(three) == 3
    assert _unseen(oos, days[9], horizon=1).empty
