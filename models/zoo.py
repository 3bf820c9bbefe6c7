"""The model zoo: every family behind one interface, declared once.

A family is a constructor in :data:`ZOO`; the configured names (``model_config.yaml``
``families``) are checked against it by a test, and the ensemble is built on top of the
others. Every member follows :class:`Forecaster`: fit on rows of a :class:`Panel`, predict
the probability of an up move and the expected return for rows of a panel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from config.schemas.model import ModelSettings
from models.baselines import AlwaysUp, LinearModel, MomentumSign, Tabular
from models.panel import Panel
from models.sequence import SequenceModel
from models.trees import GradientBoosting

ENSEMBLE = "ensemble"


@runtime_checkable
class Forecaster(Protocol):
    """What every model family offers the walk-forward loop, the ensemble and the registry."""

    name: str

    def fit(self, panel: Panel, train: np.ndarray, valid: np.ndarray) -> "Forecaster":
        """Fit on the ``train`` rows; ``valid`` (later in time) may stop training early."""

    def predict(self, panel: Panel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p_up, expected_return)`` for ``rows``, each from data known at that row's time."""


@dataclass(frozen=True)
class Family:
    """A zoo entry: how to build a fresh model, and whether it reads a window of bars."""

    make: Callable[[ModelSettings, bool], Forecaster]
    sequence: bool = False


ZOO: dict[str, Family] = {
    "always_up": Family(lambda cfg, progress: Tabular(AlwaysUp())),
    "momentum_sign": Family(lambda cfg, progress: Tabular(MomentumSign())),
    "linear": Family(lambda cfg, progress: Tabular(LinearModel())),
    "lightgbm": Family(lambda cfg, progress: GradientBoosting(cfg.lightgbm, cfg.training.seed)),
    "lstm": Family(lambda cfg, progress: SequenceModel("lstm", cfg, progress), sequence=True),
    "transformer": Family(lambda cfg, progress: SequenceModel("transformer", cfg, progress), sequence=True),
}


def make_members(cfg: ModelSettings, progress: bool = False) -> list[Forecaster]:
    """Fresh, unfitted models for the configured families (the ensemble is built on top of them)."""
    return [ZOO[name].make(cfg, progress) for name in cfg.families if name != ENSEMBLE]


def sequence_length_of(family: str, cfg: ModelSettings) -> int:
    """Feature rows a family reads per prediction: the configured window for sequence models
    and for the ensemble (which holds them), one row otherwise."""
    if family == ENSEMBLE:
        return max([cfg.sequence_length if ZOO[n].sequence else 1 for n in cfg.families if n != ENSEMBLE] or [1])
    return cfg.sequence_length if ZOO[family].sequence else 1
