"""Gradient-boosted trees (LightGBM) on each row's features.

The family that Qlib's Alpha158 benchmarks find strongest on daily equities: trees need no
scaling, take missing values as they are, and find interactions a linear model cannot. Two
boosters per fit: a binary one for the direction and a squared-error one for the forward
return (standardized for fitting, scaled back when predicting). Both stop early on the
validation block when there is one. CPU, seeded and deterministic: the same data and config
give the same trees.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from config.schemas.model import LightGbmSettings
from models.panel import Panel


class GradientBoosting:
    """LightGBM on the features of each row (it sees one row, like the linear baseline)."""

    name = "lightgbm"

    def __init__(self, cfg: LightGbmSettings, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.classifier: lgb.Booster | None = None
        self.regressor: lgb.Booster | None = None
        self.features: list[str] = []
        self.return_scale = 1.0

    def _params(self, objective: str) -> dict:
        c = self.cfg
        return {"objective": objective, "learning_rate": c.learning_rate, "num_leaves": c.num_leaves,
                "min_data_in_leaf": c.min_child_samples, "feature_fraction": c.feature_fraction,
                "bagging_fraction": c.bagging_fraction, "bagging_freq": 1, "lambda_l2": c.lambda_l2,
                "num_threads": c.num_threads, "seed": self.seed, "deterministic": True, "force_row_wise": True,
                "verbosity": -1}

    def _matrix(self, panel: Panel, rows: np.ndarray) -> np.ndarray:
        return panel.frame.iloc[rows][self.features].to_numpy(dtype=np.float64)

    def _boost(self, objective: str, X: np.ndarray, y: np.ndarray, Xv: np.ndarray | None,
               yv: np.ndarray | None) -> lgb.Booster:
        data = lgb.Dataset(X, label=y, free_raw_data=True)
        if Xv is None or len(Xv) == 0:
            return lgb.train(self._params(objective), data, num_boost_round=self.cfg.n_estimators)
        valid = lgb.Dataset(Xv, label=yv, reference=data)
        return lgb.train(self._params(objective), data, num_boost_round=self.cfg.n_estimators, valid_sets=[valid],
                         callbacks=[lgb.early_stopping(self.cfg.early_stopping_rounds, verbose=False)])

    def fit(self, panel: Panel, train: np.ndarray, valid: np.ndarray | None = None) -> "GradientBoosting":
        """Fit both boosters on ``train``; ``valid`` (later in time) stops each early."""
        self.features = list(panel.features)
        X, Xv = self._matrix(panel, train), self._matrix(panel, valid) if valid is not None else None
        direction, fwd = panel.target_direction, panel.target_return
        self.return_scale = float(np.nanstd(fwd[train])) or 1.0
        yv_dir = direction[valid] if valid is not None else None
        yv_ret = fwd[valid] / self.return_scale if valid is not None else None
        self.classifier = self._boost("binary", X, direction[train], Xv, yv_dir)
        self.regressor = self._boost("regression", X, fwd[train] / self.return_scale, Xv, yv_ret)
        return self

    def predict(self, panel: Panel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p_up, expected_return)`` for ``rows`` from their own features."""
        if self.classifier is None or self.regressor is None:
            raise RuntimeError("lightgbm: predict before fit")
        X = self._matrix(panel, rows)
        p = self.classifier.predict(X, num_iteration=self.classifier.best_iteration or None)
        r = self.regressor.predict(X, num_iteration=self.regressor.best_iteration or None) * self.return_scale
        return np.asarray(p, dtype=float), np.asarray(r, dtype=float)
