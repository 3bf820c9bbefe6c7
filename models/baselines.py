"""Honest baselines every model is shown next to: always-up, momentum sign, and a linear
model on the same features. Each predicts p_up and an expected return."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge

from models.panel import Panel


class AlwaysUp:
    """Predicts up every time, with the training up-rate as its confidence (floored above 0.5)."""

    name = "always_up"

    def fit(self, X: pd.DataFrame, direction: np.ndarray, fwd_return: np.ndarray) -> "AlwaysUp":
        self.p = float(np.clip(np.mean(direction), 0.5 + 1e-3, 1 - 1e-3))
        self.mean_return = float(np.mean(fwd_return))
        return self

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(X), self.p), np.full(len(X), self.mean_return)


class MomentumSign:
    """Up if the last ``window`` bars went up; confidence = the training hit rate of that rule."""

    name = "momentum_sign"

    def __init__(self, window: int = 5) -> None:
        self.column = f"roc_{window}"  # close[t-w] / close[t]: below 1 means the price rose

    def _up(self, X: pd.DataFrame) -> np.ndarray:
        return (X[self.column].fillna(1.0).to_numpy() < 1.0)

    def fit(self, X: pd.DataFrame, direction: np.ndarray, fwd_return: np.ndarray) -> "MomentumSign":
        hit = float(np.mean(self._up(X) == (np.asarray(direction) > 0.5)))
        self.p = float(np.clip(hit, 1e-3, 1 - 1e-3))
        self.scale = float(np.mean(np.abs(fwd_return)))
        return self

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        up = self._up(X)
        p_up = np.where(up, self.p, 1 - self.p)
        return p_up, (2 * p_up - 1) * self.scale


class LinearModel:
    """Logistic regression for direction and ridge for the return, on standardized features
    (missing values filled with the training median)."""

    name = "linear"

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        filled = X.fillna(self.median).to_numpy(dtype=float)
        return (filled - self.mean) / self.std

    def fit(self, X: pd.DataFrame, direction: np.ndarray, fwd_return: np.ndarray) -> "LinearModel":
        self.median = X.median()
        filled = X.fillna(self.median).fillna(0.0)
        self.median = self.median.fillna(0.0)
        self.mean = filled.mean().to_numpy()
        self.std = filled.std().replace(0, 1.0).fillna(1.0).to_numpy()
        Z = self._matrix(X)
        self.classifier = LogisticRegression(C=1.0 / self.l2, max_iter=500).fit(Z, np.asarray(direction) > 0.5)
        self.regressor = Ridge(alpha=self.l2 * len(Z) ** 0.5).fit(Z, fwd_return)
        return self

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        Z = self._matrix(X)
        return self.classifier.predict_proba(Z)[:, 1], self.regressor.predict(Z)


BASELINES = (AlwaysUp, MomentumSign, LinearModel)


class Tabular:
    """Runs a row-wise model (the baselines above) on panel rows: it sees only each row's features."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name

    def fit(self, panel: Panel, train: np.ndarray, valid: np.ndarray | None = None) -> "Tabular":
        self.model.fit(panel.frame.iloc[train][panel.features], panel.target_direction[train],
                       panel.target_return[train])
        return self

    def predict(self, panel: Panel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(panel.frame.iloc[rows][panel.features])
