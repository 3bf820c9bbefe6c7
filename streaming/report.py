"""Live quality: how the champion's live predictions did, next to what it promised and what
is possible.

A live prediction for bar ``t`` is judged when the live bars reach ``t + horizon``: the
direction of ``close(t + horizon) / close(t)``, the label the model was trained on. The
accuracy's 95% interval clusters errors by timestamp (symbols of one bar share market
moves, so their hits are not independent). Beside it: the model's walk-forward accuracy
(its registry tag) and, for the synthetic continuation, the Bayes bound of the live bars
(``feed.json``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from config import Settings
from models.tracking import configure_mlflow
from pipelines import lake
from pipelines.features.labels import compute_labels
from pipelines.lake.tables import LIVE_BARS, LIVE_PREDICTIONS
from streaming.status import live_dir


def clustered_accuracy(hits: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``hits`` with a 95% interval whose errors are clustered by ``clusters``."""
    n = len(hits)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(hits.mean())
    resid = pd.Series(hits - mean).groupby(clusters).sum().to_numpy()
    k = len(resid)
    se = math.sqrt((resid**2).sum()) / n * (math.sqrt(k / (k - 1)) if k > 1 else 1.0)
    return mean, mean - 1.96 * se, mean + 1.96 * se


@dataclass(frozen=True)
class LiveReport:
    predictions: int
    judged: int
    accuracy: float
    low: float
    high: float
    model: str
    walk_forward: float | None
    bayes: float | None
    horizon: int

    def text(self) -> str:
        if not self.judged:
            return f"live accuracy: no judged predictions yet ({self.predictions} predictions, horizon {self.horizon})"
        parts = [f"live accuracy of {self.model}: {self.accuracy:.4f} (95% CI {self.low:.4f}-{self.high:.4f}, "
                 f"clustered by bar) on {self.judged:,} judged predictions of {self.predictions:,}"]
        if self.walk_forward is not None:
            parts.append(f"walk-forward (out-of-sample, research period): {self.walk_forward:.4f}")
        if self.bayes is not None:
            parts.append(f"Bayes bound of the live bars: {self.bayes:.4f}")
        return "\n".join(parts)


def judged_predictions(predictions: pd.DataFrame, bars: pd.DataFrame, horizon: int,
                       price: str = "close") -> pd.DataFrame:
    """Predictions with the realized ``direction`` of their next ``horizon`` live bars (the label
    the model was trained on: ``price`` as in :func:`~pipelines.features.labels.compute_labels`)."""
    bars = bars.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    parts = [compute_labels(g, horizon, price) for _, g in bars.groupby("symbol", sort=False)]
    labels = bars[["symbol", "ts"]].join(pd.concat(parts)[["direction"]])
    return predictions.merge(labels, on=["symbol", "ts"], how="inner").dropna(subset=["direction"])


def live_report(settings: Settings, spark=None) -> LiveReport:
    """The live-accuracy report of the configured dataset's live tables."""
    if spark is None:
        from pipelines.lake.spark import get_spark

        spark = get_spark(settings)
    horizon = settings.model.label_horizon
    paths = [LIVE_PREDICTIONS.path(settings), LIVE_BARS.path(settings)]
    if not all(lake.exists(spark, p) for p in paths):
        return LiveReport(0, 0, float("nan"), float("nan"), float("nan"), "none", None, None, horizon)
    predictions = lake.read(spark, paths[0]).select("symbol", "ts", "model", "model_version", "p_up").toPandas()
    bars = lake.read(spark, paths[1]).select("symbol", "ts", "open", "close").toPandas()
    judged = judged_predictions(predictions, bars, horizon, settings.model.label_price)
    hits = ((judged["p_up"] > 0.5).astype(float) == judged["direction"]).to_numpy(dtype=float)
    accuracy, low, high = clustered_accuracy(hits, judged["ts"].to_numpy())
    model, walk_forward = "none", None
    if not predictions.empty:
        name, version = predictions["model"].iloc[-1], str(predictions["model_version"].iloc[-1])
        model = f"{name} v{version}"
        configure_mlflow(settings)
        tag = MlflowClient().get_model_version(name, version).tags.get("oos_accuracy")
        walk_forward = float(tag) if tag else None
        if predictions["model_version"].nunique() > 1:
            model += f" (and {predictions['model_version'].nunique() - 1} earlier version(s))"
    facts_path = live_dir(settings) / "feed.json"
    bayes = json.loads(facts_path.read_text()).get("bayes_accuracy") if facts_path.exists() else None
    return LiveReport(len(predictions), len(judged), accuracy, low, high, model, walk_forward, bayes, horizon)
