"""The serving side of the registry: the model behind an alias, with the recipe it was trained on.

Live code calls :func:`load_champion` and builds features with ``champion.spec`` (or
:meth:`Champion.features`), never with today's ``data_config.yaml``: what serves live is
what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient

from config import Settings
from models.pyfunc import DirectionModel
from models.tracking import configure_mlflow
from pipelines.features.recipe import FeatureSpec

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Champion:
    """A registered model loaded by alias: the pyfunc, its recipe and where it came from."""

    model: mlflow.pyfunc.PyFuncModel
    spec: FeatureSpec
    name: str
    version: str
    family: str

    def features(self, bars: pd.DataFrame) -> pd.DataFrame:
        """The model's inputs from bars (symbol, ts, OHLCV), computed with its own recipe."""
        return self.spec.compute(bars)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """symbol, ts, p_up, expected_return for feature rows (history rows included for windows)."""
        return self.model.predict(features)


def load_champion(settings: Settings, alias: str = CHAMPION) -> Champion:
    """Load ``models:/<registered model>@<alias>`` with its feature recipe.

    Raises:
        mlflow.exceptions.MlflowException: no version holds the alias.
    """
    configure_mlflow(settings)
    name = settings.platform.mlflow.registered_model
    version = MlflowClient().get_model_version_by_alias(name, alias)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")  # the version the alias named
    wrapper: DirectionModel = model.unwrap_python_model()
    return Champion(model, wrapper.spec, name, str(version.version), wrapper.family)
