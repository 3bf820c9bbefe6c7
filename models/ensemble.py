"""A stacked ensemble whose weights are learned on validation predictions only.

The members are fitted on a training window; their predictions on the validation block
that follows (never seen in fitting) choose convex weights that minimize log loss. The
expected return uses the same weights. Members the data does not support get weight ~0.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import softmax

from models.panel import Panel


def fit_weights(p_members: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Convex weights (summing to one) for the columns of ``p_members`` minimizing log loss."""
    p = np.clip(p_members, 1e-6, 1 - 1e-6)
    y = np.asarray(direction, dtype=float)

    def loss(theta: np.ndarray) -> float:
        q = np.clip(p @ softmax(theta), 1e-6, 1 - 1e-6)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    theta0 = np.zeros(p.shape[1])
    result = minimize(loss, theta0, method="L-BFGS-B", bounds=[(-20, 20)] * p.shape[1])
    return softmax(result.x)


class Ensemble:
    """Weights over already-fitted members; ``fit`` sees validation rows only."""

    name = "ensemble"

    def __init__(self, members: list) -> None:
        self.members = members

    def fit(self, panel: Panel, train: np.ndarray | None, valid: np.ndarray,
            valid_predictions: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> "Ensemble":
        """Learn weights from the members' predictions on ``valid`` (``train`` is not used: the
        members were fitted on it). Pass ``valid_predictions`` to reuse ones already made."""
        preds = valid_predictions or {m.name: m.predict(panel, valid) for m in self.members}
        p = np.column_stack([preds[m.name][0] for m in self.members])
        self.weights = fit_weights(p, panel.target_direction[valid])
        return self

    def combine(self, predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        p = np.column_stack([predictions[m.name][0] for m in self.members])
        r = np.column_stack([predictions[m.name][1] for m in self.members])
        return p @ self.weights, r @ self.weights

    def predict(self, panel: Panel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.combine({m.name: m.predict(panel, rows) for m in self.members})

    def weight_table(self) -> dict[str, float]:
        return {m.name: round(float(w), 4) for m, w in zip(self.members, self.weights)}
