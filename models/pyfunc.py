"""The one inference wrapper every registered model goes through.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(frame)`` takes rows of
``symbol, ts`` and the model's feature columns (raw, unscaled: the fitted scaling is inside)
and returns ``symbol, ts, p_up, expected_return`` in the input's order. Sequence models read
the rows before each row of the same symbol in the frame as its history, so pass at least
``spec.sequence_length`` bars per symbol to score the last one with a full window.

The wrapper carries the model's feature recipe (:class:`FeatureSpec`): the windows, ranked
features and sequence length it was trained with, so serving rebuilds exactly its inputs.
Registered models are logged as models-from-code: :mod:`models.serving` is the code file and
the fitted state (:mod:`models.persist`) the artifact that :meth:`DirectionModel.load_context` reads.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.panel import Panel
from pipelines.features.recipe import FeatureSpec

OUTPUT_COLUMNS = ["symbol", "ts", "p_up", "expected_return"]


STATE_ARTIFACT = "state"


class DirectionModel(mlflow.pyfunc.PythonModel):
    """A fitted model (baseline, sequence network or ensemble) with its feature recipe."""

    def __init__(self, model=None, spec: FeatureSpec | None = None, family: str = "") -> None:
        self.model = model
        self.spec = spec
        self.family = family

    def load_context(self, context) -> None:
        """Rebuild the fitted model from its saved state (models-from-code loading)."""
        if self.model is not None or STATE_ARTIFACT not in (context.artifacts or {}):
            return
        from models import persist

        self.model, extra = persist.load(Path(context.artifacts[STATE_ARTIFACT]))
        self.spec, self.family = FeatureSpec.from_dict(extra["spec"]), extra["family"]

    def save_state(self, folder: Path) -> Path:
        """Write the fitted state and recipe that :meth:`load_context` reads."""
        from models import persist

        return persist.save(self.model, folder, {"spec": self.spec.to_dict(), "family": self.family})

    @property
    def features(self) -> list[str]:
        return self.spec.names

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        missing = [c for c in ["symbol", "ts", *self.features] if c not in model_input.columns]
        if missing:
            raise ValueError(f"{self.family} model input is missing columns: {missing[:10]}"
                             f"{' ...' if len(missing) > 10 else ''}")
        frame = model_input[["symbol", "ts", *self.features]].copy()
        frame["_row"] = np.arange(len(frame))
        panel = Panel(frame, self.features)
        p_up, expected = self.model.predict(panel, np.arange(len(panel)))
        out = panel.frame[["symbol", "ts", "_row"]].assign(p_up=p_up, expected_return=expected)
        return out.sort_values("_row")[OUTPUT_COLUMNS].reset_index(drop=True)
