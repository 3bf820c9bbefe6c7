"""Train, evaluate and register every configured model family from the Delta feature tables.

One call (:func:`train_and_register`) does what the ``trained_models`` asset shows:

1. read features and labels up to the run's end date (pinned Delta versions, logged);
2. walk-forward evaluation of every family, all figures out-of-sample, next to the
   baselines; the out-of-sample predictions go to the gold ``predictions`` table;
3. fit each family once more on all labelled rows (the last ``validation_fraction`` of time
   stops the networks early and weighs the ensemble);
4. one MLflow parent run with a nested run per family: parameters, per-fold and pooled
   metrics, feature list, table versions, the model (pyfunc with signature and input
   example) registered as a new version of ``platform.mlflow.registered_model``;
5. the best version by the promotion metric gets the ``@challenger`` alias; promotion to
   ``@champion`` is :mod:`models.registry`'s decision.
"""

from __future__ import annotations

import json

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from config import Settings
from models.champion import CHALLENGER
from models.evaluation import Evaluation, comparison_table, fit_models, walk_forward_models
from models.panel import Panel
from models.pyfunc import STATE_ARTIFACT, DirectionModel
from models.scoring import HIGHER_IS_BETTER
from models.tracking import configure_mlflow
from models.zoo import ENSEMBLE, ZOO, sequence_length_of
from pipelines import lake
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.layers import read_source_facts
from pipelines.lake.tables import FEATURES, LABELS, PREDICTIONS

log = logging.getLogger(__name__)
SERVING_CODE = Path(__file__).with_name("serving.py")  # the code file of every registered model


@dataclass
class TrainingData:
    panel: Panel
    table_versions: dict[str, int]
    start: date | None
    end: date
    bayes_accuracy: float | None  # the synthetic generator's bound; None for real data


@dataclass
class TrainingOutcome:
    run_id: str
    evaluations: dict[str, Evaluation]
    table: pd.DataFrame
    versions: dict[str, str]  # family -> registered version
    candidate: str
    candidate_version: str
    predictions_table: str
    data: TrainingData
    seconds: float


def pip_requirements() -> list[str]:
    """What a registered model needs at load time (the project's own versions)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "numpy", "pandas", "scikit-learn", "scipy")]


def training_start(end: date, history_days: int | None, start_date: date | None) -> date | None:
    """The first day of training data: ``start_date`` or the first of the last ``history_days``
    days up to ``end``, whichever is later (None: from the first bar)."""
    starts = [d for d in (end - timedelta(days=history_days - 1) if history_days else None, start_date) if d]
    return max(starts) if starts else None


def load_training_data(spark: SparkSession, settings: Settings, end: date) -> TrainingData:
    """Features joined with labels for every day up to ``end`` (from ``training.start_date``, or
    the last ``training.history_days`` days, whichever starts later); with
    ``label_normalization: rank`` the panel's targets are cross-sectional ranks."""
    feats_path, labels_path = FEATURES.path(settings), LABELS.path(settings)
    versions = {"features": lake.table_version(spark, feats_path), "labels": lake.table_version(spark, labels_path)}
    t = settings.model.training
    start = training_start(end, t.history_days, t.start_date)

    def window(df):
        df = df.where(F.col("date") <= end.isoformat())
        return df.where(F.col("date") >= start.isoformat()) if start else df

    names = FeatureSpec.from_settings(settings).names
    feats = window(lake.read(spark, feats_path, versions["features"])).select("symbol", "ts", *names)
    labels = window(lake.read(spark, labels_path, versions["labels"])).select("symbol", "ts", "direction", "fwd_return")
    frame = feats.join(labels, ["symbol", "ts"], "left").toPandas()
    if frame.empty:
        raise ValueError(f"no feature rows up to {end} in {feats_path}: materialize features and labels first")
    bayes = read_source_facts(spark, settings).get("bayes_accuracy")  # written at ingest
    panel = Panel(frame, names)
    if settings.model.label_normalization == "rank":
        panel.rank_targets()
    return TrainingData(panel, versions, start, end, bayes)


def write_predictions(spark: SparkSession, settings: Settings, evaluations: dict[str, Evaluation],
                      run_id: str) -> str:
    """Out-of-sample walk-forward predictions of every model to ``gold/<dataset>/predictions``."""
    frames = [ev.predictions.assign(model=name) for name, ev in evaluations.items()]
    pdf = pd.concat(frames, ignore_index=True).assign(run_id=run_id)
    pdf["direction"] = pdf["direction"].astype(float)
    df = spark.createDataFrame(pdf).withColumn("date", F.date_format("ts", "yyyy-MM-dd"))
    target = PREDICTIONS.path(settings)
    lake.overwrite(PREDICTIONS.conform(df), target, partition_by=list(PREDICTIONS.partition_by))
    return target


def _metric(scores, metric: str) -> float:
    return float(getattr(scores, metric))


def best_model(evaluations: dict[str, Evaluation], metric: str) -> str:
    """The family with the best pooled out-of-sample ``metric``."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    scored = {n: sign * _metric(e.pooled, metric) for n, e in evaluations.items()
              if np.isfinite(_metric(e.pooled, metric))}
    return max(scored, key=scored.get)


def _model_params(settings: Settings, family: str) -> dict:
    m = settings.model
    params = {"family": family, "label_horizon": m.label_horizon, "label_price": m.label_price,
              "label_normalization": m.label_normalization, "n_folds": m.walk_forward.n_folds,
              "test_start": str(m.walk_forward.test_start), "start_date": str(m.training.start_date),
              "purge_bars": m.walk_forward.purge_bars, "embargo_bars": m.walk_forward.embargo_bars,
              "validation_fraction": m.training.validation_fraction, "seed": m.training.seed}
    if family != ENSEMBLE and ZOO[family].sequence:
        params.update({"sequence_length": m.sequence_length, **m.training.model_dump(),
                       **{f"{family}.{k}": v for k, v in getattr(m, family).model_dump().items()}})
    return params


def _log_family(name: str, model, ev: Evaluation, data: TrainingData, settings: Settings,
                fit_seconds: float) -> str:
    """One nested run: parameters, metrics, the model; returns the registered version."""
    mlflow.log_params(_model_params(settings, name))
    for fold, s in enumerate(ev.folds):
        mlflow.log_metrics({f"fold_{k}": v for k, v in s.as_dict().items() if np.isfinite(v)}, step=fold)
    mlflow.log_metrics({f"oos_{k}": v for k, v in ev.pooled.as_dict().items() if np.isfinite(v)})
    mlflow.log_metric("final_fit_seconds", fit_seconds)
    if data.bayes_accuracy is not None:
        mlflow.log_metric("bayes_accuracy", data.bayes_accuracy)
    if hasattr(model, "history"):
        for row in model.history:
            mlflow.log_metrics({"train_loss": row["train_loss"], "valid_loss": row["valid_loss"]}, step=row["epoch"])
        mlflow.log_metrics({"epochs": model.epochs, "best_epoch": model.best_epoch,
                            "train_samples_per_second": model.train_samples_per_second})
    if name == ENSEMBLE:
        mlflow.log_dict({"final": model.weight_table(), **ev.details}, "ensemble_weights.json")
    panel = data.panel
    spec = FeatureSpec.from_settings(settings, sequence_length_of(name, settings.model))
    if spec.names != panel.features:
        raise ValueError(f"{name}: the panel's features are not the recipe's ({len(panel.features)} vs "
                         f"{len(spec.names)} columns)")
    wrapper = DirectionModel(model, spec, name)
    symbol = panel.frame["symbol"].iloc[-1]
    example = panel.frame.loc[panel.frame["symbol"] == symbol, ["symbol", "ts", *panel.features]].tail(
        min(spec.sequence_length, 10)).reset_index(drop=True)
    return register_model(wrapper, example, settings)


def register_model(wrapper: DirectionModel, example: pd.DataFrame, settings: Settings) -> str:
    """Log ``wrapper`` (model + feature recipe) in the active run with its signature and input
    example, register it as a new version of the configured model; return the version."""
    mlflow.log_dict(wrapper.spec.to_dict(), "feature_spec.json")
    signature = infer_signature(example, wrapper.predict(None, example))
    with tempfile.TemporaryDirectory() as tmp:
        state = wrapper.save_state(Path(tmp) / STATE_ARTIFACT)
        # models-from-code: the registry keeps a code file of this project and plain-data state,
        # so loading a version runs only the project's code (no cloudpickled object)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(SERVING_CODE), artifacts={STATE_ARTIFACT: str(state)},
            signature=signature, input_example=example, pip_requirements=pip_requirements(),
            registered_model_name=settings.platform.mlflow.registered_model)
    return str(info.registered_model_version)


def train_and_register(spark: SparkSession, settings: Settings, end: date, progress: bool = True) -> TrainingOutcome:
    """Walk-forward evaluate, fit, log and register every configured family; tag the best ``@challenger``."""
    started = time.monotonic()
    data = load_training_data(spark, settings, end)
    panel, cfg = data.panel, settings.model
    log.info("training on %d rows (%d labelled), %d symbols, %d features, through %s", len(panel),
             len(panel.labelled()), panel.frame["symbol"].nunique(), len(panel.features), end)
    evaluations = walk_forward_models(panel, cfg, progress=progress)
    table = comparison_table(evaluations, data.bayes_accuracy)
    fitted, _, seconds = fit_models(panel, panel.labelled(), cfg, progress=progress)

    configure_mlflow(settings)
    client = MlflowClient()
    name = settings.platform.mlflow.registered_model
    ts = panel.frame["ts"]
    data_end = pd.Timestamp(ts.max()).isoformat()
    with mlflow.start_run(run_name=f"train {settings.data.dataset} through {end}") as parent:
        mlflow.set_tags({"dataset": settings.data.dataset, "source": settings.data.source, "data_end": data_end})
        mlflow.log_params({"dataset": settings.data.dataset, "end": end.isoformat(), "rows": len(panel),
                           "labelled_rows": len(panel.labelled()), "symbols": panel.frame["symbol"].nunique(),
                           "n_features": len(panel.features), "data_start": pd.Timestamp(ts.min()).isoformat(),
                           "data_end": data_end, **{f"{k}_table_version": v for k, v in data.table_versions.items()},
                           "families": ",".join(cfg.families), "promotion_metric": cfg.promotion.metric})
        mlflow.log_dict({"features": panel.features}, "features.json")
        mlflow.log_text(table.to_markdown(index=False), "comparison.md")
        predictions_table = write_predictions(spark, settings, evaluations, parent.info.run_id)
        mlflow.log_param("predictions_table", predictions_table)
        versions = {}
        for family, model in fitted.items():
            with mlflow.start_run(run_name=family, nested=True) as run:
                mlflow.set_tags({"dataset": settings.data.dataset, "data_end": data_end, "family": family})
                version = _log_family(family, model, evaluations[family], data, settings, seconds.get(family, 0.0))
            pooled = evaluations[family].pooled.as_dict()
            tags = {"family": family, "dataset": settings.data.dataset, "data_end": data_end,
                    "parent_run_id": parent.info.run_id, "run_id": run.info.run_id,
                    **{f"oos_{k}": f"{v:.6f}" for k, v in pooled.items()}}
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value)
            versions[family] = version
        for version in versions.values():   # the gate judges every family of this run together
            client.set_model_version_tag(name, version, "run_versions", json.dumps(versions))
        candidate = best_model(evaluations, cfg.promotion.metric)
        client.set_registered_model_alias(name, CHALLENGER, versions[candidate])
        mlflow.set_tags({"candidate": candidate, "candidate_version": versions[candidate]})
    return TrainingOutcome(parent.info.run_id, evaluations, table, versions, candidate, versions[candidate],
                           predictions_table, data, time.monotonic() - started)
