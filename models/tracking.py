"""MLflow tracking: one place that points the client at the server and the experiment."""

from __future__ import annotations

import os

import mlflow

from config import Settings


def configure_mlflow(settings: Settings, experiment: str | None = None) -> str:
    """Point MLflow at the configured tracking server and experiment; return the experiment id.

    ``MLFLOW_TRACKING_URI`` in the environment wins over ``platform.yaml`` (tests use a
    per-test SQLite store that way).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.platform.mlflow.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.set_experiment(experiment or settings.platform.mlflow.experiment)
    return exp.experiment_id
