"""Schema of ``model_config.yaml``: model families, sizes, training, walk-forward and promotion."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from config.schemas.base import Frozen


class LstmSettings(Frozen):
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class TransformerSettings(Frozen):
    d_model: int = Field(256, ge=1)
    n_heads: int = Field(8, ge=1)
    n_layers: int = Field(6, ge=1)
    dim_feedforward: int = Field(1024, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerSettings":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class LightGbmSettings(Frozen):
    """The gradient-boosted trees family (``models/trees.py``)."""

    n_estimators: int = Field(500, ge=1)       # boosting rounds at most (early stopping on the validation block)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(100, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=1)
    num_threads: int = Field(0, ge=0)          # 0: LightGBM's default (all cores)


class TrainingSettings(Frozen):
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    max_epochs: int = Field(50, ge=1)
    early_stopping_patience: int = Field(5, ge=1)
    seed: int = 42
    validation_fraction: float = Field(0.2, gt=0, lt=0.5)
    return_loss_weight: float = Field(0.5, ge=0)
    weight_decay: float = Field(1e-5, ge=0)
    history_days: int | None = Field(None, ge=1)
    start_date: date | None = None  # no training row before this day (null: from the first bar)
    # each epoch of a network draws this many training windows at random (seeded, without
    # replacement); null: every training row. Bounds a network's cost on a large panel.
    samples_per_epoch: int | None = Field(None, ge=1)
    nightly_retrain: bool = True  # the nightly_retrain schedule launches runs (false: it skips)
    distributed: bool = False
    num_processes: int = Field(2, ge=1)


ModelFamily = Literal["always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer", "ensemble"]


class WalkForwardSettings(Frozen):
    n_folds: int = Field(5, ge=1)
    # the first test block starts on this day and the folds split the time from it to the end
    # (null: after the first 30% of the timestamps)
    test_start: date | None = None
    purge_bars: int = Field(1, ge=0)
    embargo_bars: int = Field(1, ge=0)


class PromotionSettings(Frozen):
    """The promotion gate (``models/registry/gate.py``)."""

    metric: Literal["accuracy", "log_loss", "ic", "rank_ic"] = "accuracy"
    level: float = Field(0.025, gt=0, lt=0.5)  # one-sided, before dividing by the number of families judged
    baselines: tuple[ModelFamily, ...] = ("always_up", "momentum_sign")
    min_rows: int = Field(200, ge=10)           # rows the judged families and the champion share


class ModelSettings(Frozen):
    label_horizon: int = Field(1, ge=1)
    # close: close(t) -> close(t+h); open: open(t+1) -> open(t+1+h), what a trade decided at t's
    # close and filled at the next open earns; auto: open for daily bars, close for intraday
    label_price: Literal["auto", "close", "open"] = "auto"
    # what the models fit: none, the labels as they are; rank, each timestamp's forward returns
    # as cross-sectional ranks (as Qlib's CSRankNorm: ((r - 0.5) / n - 0.5) x 3.46) and the
    # direction as above that timestamp's median. Scores are always against the raw forward return.
    label_normalization: Literal["none", "rank"] = "none"
    sequence_length: int = Field(60, ge=1)
    families: list[ModelFamily] = ["always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer",
                                   "ensemble"]
    lstm: LstmSettings = LstmSettings()
    transformer: TransformerSettings = TransformerSettings()
    lightgbm: LightGbmSettings = LightGbmSettings()
    training: TrainingSettings = TrainingSettings()
    walk_forward: WalkForwardSettings = WalkForwardSettings()
    promotion: PromotionSettings = PromotionSettings()

    @property
    def label_span(self) -> int:
        """Bars from a row to the bar its label ends on: the horizon, plus the fill bar for open labels."""
        return self.label_horizon + (1 if self.label_price == "open" else 0)
