"""Training from the Delta tables into MLflow, the promotion gate, roll-back, and the model assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timezone

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    build_schedule_context,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from mlflow import MlflowClient

from config import Settings, load_settings
from config.settings import PROJECT_ROOT
from models import registry, training
from models.registry import CHAMPION
from orchestration.assets import models as model_assets
from orchestration.assets import research as research_assets
from orchestration.jobs import promote_model_job, training_job
from orchestration.resources import default_resources
from orchestration.schedules import nightly_retrain
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.features.build import write_features, write_labels
from models.scoring import score

pytestmark = pytest.mark.services

TINY = {  # every family, at a size that trains in seconds
    "QL_MODEL__SEQUENCE_LENGTH": "8", "QL_MODEL__LSTM__HIDDEN_SIZE": "8", "QL_MODEL__LSTM__NUM_LAYERS": "1",
    "QL_MODEL__TRANSFORMER__D_MODEL": "8", "QL_MODEL__TRANSFORMER__N_HEADS": "2",
    "QL_MODEL__TRANSFORMER__N_LAYERS": "1", "QL_MODEL__TRANSFORMER__DIM_FEEDFORWARD": "16",
    "QL_MODEL__TRAINING__MAX_EPOCHS": "3", "QL_MODEL__WALK_FORWARD__N_FOLDS": "2",
}


@pytest.fixture(scope="module")
def lake_env(services, tmp_path_factory) -> dict[str, str]:
    """Features and labels of 4 synthetic symbols x 8 days in a fresh lake, and a fresh model name."""
    root = tmp_path_factory.mktemp("models_lake")
    env = {**TINY, "QL_PLATFORM__LAKE__ROOT": str(root), "QL_DATA__SYNTHETIC__N_SYMBOLS": "4",
           "QL_DATA__SYNTHETIC__N_DAYS": "8", "QL_DATA__SYNTHETIC__START_DATE": "2024-03-04",
           "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": f"test-direction-{uuid.uuid4().hex[:8]}"}
    return env


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(env={**os.environ, **env})


@pytest.fixture(scope="module")
def built(spark, lake_env) -> Settings:
    settings = _settings(lake_env)
    start, end = date(2024, 3, 1), date(2024, 3, 31)
    for write in (write_bronze, write_silver, write_features, write_labels):
        write(spark, settings, start, end)
    return settings


def test_training_logs_registers_and_gates_on_unseen_rows(spark, built: Settings) -> None:
    settings = built
    name = settings.platform.mlflow.registered_model
    first = training.train_and_register(spark, settings, date(2024, 3, 8), progress=False)  # 5 of the 8 days

    # every family registered, with its run's parameters, per-fold metrics, features and table versions
    assert set(first.versions) == {"always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer",
                                   "ensemble"}
    client = MlflowClient()
    parent = client.get_run(first.run_id)
    assert parent.data.params["features_table_version"] == str(first.data.table_versions["features"])
    assert parent.data.params["data_end"].startswith("2024-03-08")
    lstm = client.get_model_version(name, first.versions["lstm"])
    run = client.get_run(lstm.run_id)
    assert run.data.params["lstm.hidden_size"] == "8" and run.data.params["sequence_length"] == "8"
    assert len(client.get_metric_history(run.info.run_id, "fold_accuracy")) == 2
    assert float(lstm.tags["oos_accuracy"]) == pytest.approx(first.evaluations["lstm"].pooled.accuracy, abs=1e-6)
    features = json.loads(mlflow.artifacts.load_text(f"runs:/{first.run_id}/features.json"))["features"]
    assert features == first.data.panel.features and len(features) == 118

    # the challenger loads by alias through the one wrapper and predicts like the in-memory model
    assert client.get_model_version_by_alias(name, "challenger").version == first.candidate_version
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    assert loaded.metadata.get_input_schema().input_names()[:3] == ["symbol", "ts", features[0]]
    panel = first.data.panel
    out = loaded.predict(panel.frame[["symbol", "ts", *features]])
    rows = np.arange(len(panel))
    expected = loaded.unwrap_python_model().model.predict(panel, rows)[0]
    np.testing.assert_allclose(out["p_up"].to_numpy(), expected, rtol=1e-6)

    # no champion yet: every family of the run against the baselines on its walk-forward rows
    decision = registry.compare_with_champion(settings, first.candidate_version, _all_oos(first))
    assert decision.basis == "no champion" and decision.level == pytest.approx(0.025 / 7)
    family = next(f for f, v in first.versions.items() if v == decision.candidate_version)
    assert {t["opponent"] for t in decision.tests} == {"always_up", "momentum_sign"} - {family}
    assert decision.promote == all(t["p_value"] < decision.level for t in decision.tests)
    assert decision.p_value == pytest.approx(max(t["p_value"] for t in decision.tests), abs=1e-6)
    registry.promote(settings, first.candidate_version, "first champion, by hand")
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert champion.version == first.candidate_version

    # three more days: the new challenger is compared with the champion on bars it never saw
    second = training.train_and_register(spark, settings, date(2024, 3, 31), progress=False)
    oos = second.evaluations[second.candidate].predictions
    decision = registry.compare_with_champion(settings, second.candidate_version, _all_oos(second),
                                              second.data.panel.frame)
    assert decision.basis == "unseen rows" and decision.rows >= 200, decision
    unseen = oos[oos["ts"] > champion.tags["data_end"]]
    assert decision.rows == len(unseen)
    assert {t["opponent"] for t in decision.tests} >= {f"champion v{champion.version}"}
    champ_model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    scored = unseen.merge(champ_model.predict(second.data.panel.frame), on=["symbol", "ts"], suffixes=("_c", ""))
    own = score(scored["ts"], scored["p_up"].to_numpy(), scored["direction"].to_numpy(),
                scored["fwd_return"].to_numpy(), scored["expected_return"].to_numpy()).accuracy
    assert decision.champion_score == pytest.approx(own)
    tags = client.get_model_version(name, decision.candidate_version).tags
    assert "gate_p_value" not in tags  # recorded by evaluate_challenger, not by the comparison itself

    # manual promotion and roll-back
    registry.promote(settings, second.versions["linear"], "by hand")
    assert client.get_model_version_by_alias(name, CHAMPION).version == second.versions["linear"]
    registry.rollback(settings)
    assert client.get_model_version_by_alias(name, CHAMPION).version == first.candidate_version
    with pytest.raises(ValueError, match="no earlier champion"):
        registry.rollback(settings)

    proc = subprocess.run([sys.executable, "-m", "models.registry", "status"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env={**os.environ, **{k: v for k, v in os.environ.items()},
                                                 "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": name}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["champion"]["version"] == first.candidate_version


def _all_oos(outcome) -> pd.DataFrame:
    """Every family's walk-forward predictions of a training run, as the predictions table holds them."""
    return pd.concat([ev.predictions.assign(model=family) for family, ev in outcome.evaluations.items()],
                     ignore_index=True)


def _defs(env: dict[str, str]) -> Definitions:
    modules = [research_assets, model_assets]
    return Definitions(assets=load_assets_from_modules(modules), asset_checks=load_asset_checks_from_modules(modules),
                       resources=default_resources(overrides=env), jobs=[training_job, promote_model_job])


def test_training_job_promotes_once_then_the_gate_holds(spark, lake_env, built: Settings) -> None:
    env = {**lake_env, "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": f"test-job-{uuid.uuid4().hex[:8]}"}
    defs, instance = _defs(env), DagsterInstance.ephemeral()
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2024-03-01", ASSET_PARTITION_RANGE_END_TAG: "2024-03-01"}
    job = defs.resolve_job_def("training_job")

    first = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert first.success
    meta = {k: v.value for k, v in first.asset_materializations_for_node("trained_models")[0].metadata.items()}
    assert "| ensemble" in meta["comparison"] and meta["bayes_accuracy"] > 0.5
    champion_meta = first.asset_materializations_for_node("champion_model")[0].metadata
    assert champion_meta["previous"].value == "none"

    # the same data again: no rows the champion never saw, so nothing is judged, the blocking
    # check fails, champion_model does not run and the new version stays @challenger
    second = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks == {"beats_champion": False}
    assert not second.asset_materializations_for_node("champion_model")
    client = MlflowClient()
    name = env["QL_PLATFORM__MLFLOW__REGISTERED_MODEL"]
    champion = client.get_model_version_by_alias(name, CHAMPION).version
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert champion == champion_meta["champion_version"].value and challenger.version != champion
    assert challenger.tags["gate_basis"] == "too few rows" and challenger.tags["gate_promote"] == "False"
    assert "nothing new to judge on" in challenger.tags["gate_reason"]

    # the manual job: promote the challenger, then roll back
    run_config = {"ops": {"set_champion": {"config": {"reason": "reviewed"}}}}
    assert defs.resolve_job_def("promote_model_job").execute_in_process(run_config=run_config, instance=instance).success
    assert client.get_model_version_by_alias(name, CHAMPION).version == challenger.version
    run_config = {"ops": {"set_champion": {"config": {"rollback": True}}}}
    assert defs.resolve_job_def("promote_model_job").execute_in_process(run_config=run_config, instance=instance).success
    assert client.get_model_version_by_alias(name, CHAMPION).version == champion


def test_nightly_schedule_targets_the_newest_month_at_two_utc() -> None:
    assert nightly_retrain.cron_schedule == "0 2 * * *" and nightly_retrain.execution_timezone == "UTC"
    assert nightly_retrain.job_name == "nightly_retrain_job"
    from orchestration.definitions import defs

    context = build_schedule_context(scheduled_execution_time=datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc),
                                     repository_def=defs.get_repository_def())
    request = nightly_retrain.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-11-01"  # 02:00 on the 1st retrains on the month that just ended
    assert request.run_key == "nightly-2026-11-30"
    # on by default: the schedule runs once the daemon does; the config switch turns it off
    from dagster import DefaultScheduleStatus

    assert nightly_retrain.default_status == DefaultScheduleStatus.RUNNING
    os.environ["QL_MODEL__TRAINING__NIGHTLY_RETRAIN"] = "false"
    try:
        off = nightly_retrain.evaluate_tick(context)
    finally:
        del os.environ["QL_MODEL__TRAINING__NIGHTLY_RETRAIN"]
    assert not off.run_requests and "nightly_retrain: false" in off.skip_message
    job = defs.resolve_job_def("nightly_retrain_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "bronze_market_data", "silver_bars", "features", "labels", "trained_models", "model_evaluation",
        "champion_model"}


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input.assign(p_up=0.5, expected_return=0.0)[["symbol", "ts", "p_up", "expected_return"]]


def test_gate_compares_like_with_like_only(services) -> None:
    """Stored figures never decide; across datasets the gate refuses."""
    name = f"test-gate-{uuid.uuid4().hex[:8]}"
    settings = load_settings(env={**os.environ, "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": name})
    from models.tracking import configure_mlflow

    configure_mlflow(settings, experiment="tests")
    client = MlflowClient()

    def register(dataset: str, accuracy: float) -> str:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(), registered_model_name=name,
                                           pip_requirements=["mlflow"])
        version = str(info.registered_model_version)
        for key, value in {"dataset": dataset, "oos_accuracy": str(accuracy), "data_end": "2024-01-31"}.items():
            client.set_model_version_tag(name, version, key, value)
        return version

    champion = register("synthetic", 0.55)
    registry.promote(settings, champion, "first")
    # stored walk-forward figures decide nothing: without rows to judge on, the champion stays
    unjudged = registry.compare_with_champion(settings, register("synthetic", 0.99))
    assert not unjudged.promote and "nothing new to judge on" in unjudged.reason
    other = registry.compare_with_champion(settings, register("sp500", 0.60))
    assert not other.promote and other.basis == "different dataset" and "promote by hand" in other.reason
    client.delete_registered_model(name)
