"""MLflow tracking server (PostgreSQL backend): runs, registered versions and aliases."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.tracking import configure_mlflow

pytestmark = pytest.mark.services


class _Threshold(mlflow.pyfunc.PythonModel):
    """p_up = 1 if the feature is positive: a tiny deterministic model to register."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return (model_input["x"].to_numpy() > 0).astype(float)


def test_run_register_alias_roundtrip(services) -> None:
    experiment_id = configure_mlflow(services, experiment="tests")
    assert mlflow.get_tracking_uri() == services.platform.mlflow.tracking_uri
    name = f"test-model-{uuid.uuid4().hex[:8]}"
    example = pd.DataFrame({"x": [-1.0, 2.0]})

    with mlflow.start_run(run_name="roundtrip") as run:
        mlflow.log_params({"lr": 0.01, "layers": 2})
        mlflow.log_metric("accuracy", 0.51, step=0)
        mlflow.log_metric("accuracy", 0.53, step=1)
        info = mlflow.pyfunc.log_model(name="model", python_model=_Threshold(), input_example=example,
                                       registered_model_name=name, pip_requirements=["mlflow"])

    client = MlflowClient()
    stored = client.get_run(run.info.run_id)
    assert stored.info.experiment_id == experiment_id
    assert stored.data.params == {"lr": "0.01", "layers": "2"}
    assert stored.data.metrics["accuracy"] == 0.53
    assert [m.value for m in client.get_metric_history(run.info.run_id, "accuracy")] == [0.51, 0.53]

    version = info.registered_model_version
    assert version is not None and int(version) == 1
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == str(version)

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert loaded.predict(example).tolist() == [0.0, 1.0]
    assert loaded.metadata.get_input_schema().input_names() == ["x"]

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(name, "champion")
    client.delete_registered_model(name)
