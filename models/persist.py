"""A fitted model's state as plain data: JSON for settings and scalars, an ``.npz`` of arrays.

Registered models are logged as models-from-code (:mod:`models.serving`): MLflow stores a
code file of this project and this state, never a pickled Python object, so loading a
champion from a registry executes only the project's own code (``np.load`` runs with
``allow_pickle=False``; network weights are arrays like the rest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from config.schemas.model import LightGbmSettings, ModelSettings
from models.baselines import AlwaysUp, LinearModel, MomentumSign, Tabular
from models.ensemble import Ensemble
from models.nets import build_net
from models.sequence import Scaler, SequenceModel
from models.trees import GradientBoosting

META, ARRAYS = "state.json", "arrays.npz"


def _tabular_state(model: Tabular) -> tuple[dict, dict[str, np.ndarray]]:
    inner = model.model
    if isinstance(inner, AlwaysUp):
        return {"kind": "always_up", "p": inner.p, "mean_return": inner.mean_return}, {}
    if isinstance(inner, MomentumSign):
        return {"kind": "momentum_sign", "column": inner.column, "p": inner.p, "scale": inner.scale}, {}
    if isinstance(inner, LinearModel):
        meta = {"kind": "linear", "l2": inner.l2, "median_index": [str(i) for i in inner.median.index]}
        arrays = {"median": inner.median.to_numpy(float), "mean": inner.mean, "std": inner.std,
                  "clf_coef": inner.classifier.coef_, "clf_intercept": inner.classifier.intercept_,
                  "clf_classes": inner.classifier.classes_.astype(bool), "reg_coef": inner.regressor.coef_,
                  "reg_intercept": np.atleast_1d(inner.regressor.intercept_)}
        return meta, arrays
    raise TypeError(f"no saved form for the tabular model {type(inner).__name__}")


def _tabular_from(meta: dict, a: dict[str, np.ndarray]) -> Tabular:
    kind = meta["kind"]
    if kind == "always_up":
        inner = AlwaysUp()
        inner.p, inner.mean_return = meta["p"], meta["mean_return"]
    elif kind == "momentum_sign":
        inner = MomentumSign()
        inner.column, inner.p, inner.scale = meta["column"], meta["p"], meta["scale"]
    else:
        inner = LinearModel(meta["l2"])
        inner.median = pd.Series(a["median"], index=meta["median_index"])
        inner.mean, inner.std = a["mean"], a["std"]
        clf = LogisticRegression(C=1.0 / inner.l2)
        clf.coef_, clf.intercept_, clf.classes_ = a["clf_coef"], a["clf_intercept"], a["clf_classes"]
        clf.n_features_in_ = a["clf_coef"].shape[1]
        reg = Ridge()
        reg.coef_, reg.intercept_, reg.n_features_in_ = a["reg_coef"], float(a["reg_intercept"][0]), len(a["reg_coef"])
        inner.classifier, inner.regressor = clf, reg
    return Tabular(inner)


def _sequence_state(model: SequenceModel) -> tuple[dict, dict[str, np.ndarray]]:
    meta = {"kind": "sequence", "family": model.name, "cfg": model.cfg.model_dump(mode="json"),
            "features": model.features, "return_scale": model.return_scale, "epochs": model.epochs,
            "best_epoch": model.best_epoch}
    arrays = {"scaler.median": model.scaler.median, "scaler.mean": model.scaler.mean, "scaler.std": model.scaler.std}
    arrays |= {f"net.{k}": v.detach().cpu().numpy() for k, v in model.net.state_dict().items()}
    return meta, arrays


def _sequence_from(meta: dict, a: dict[str, np.ndarray]) -> SequenceModel:
    cfg = ModelSettings.model_validate(meta["cfg"])
    model = SequenceModel(meta["family"], cfg)
    model.features, model.return_scale = list(meta["features"]), float(meta["return_scale"])
    model.epochs, model.best_epoch, model.history = meta["epochs"], meta["best_epoch"], []
    model.scaler = Scaler(a["scaler.median"], a["scaler.mean"], a["scaler.std"])
    model.net = build_net(model.name, len(model.features), cfg)
    model.net.load_state_dict({k[4:]: torch.from_numpy(v.copy()) for k, v in a.items() if k.startswith("net.")})
    model.net.eval()
    return model


def _trees_state(model: GradientBoosting) -> tuple[dict, dict[str, np.ndarray]]:
    """LightGBM's own text format for both boosters (no pickle)."""
    return {"kind": "lightgbm", "cfg": model.cfg.model_dump(mode="json"), "seed": model.seed,
            "features": model.features, "return_scale": model.return_scale,
            "classifier": model.classifier.model_to_string(), "regressor": model.regressor.model_to_string()}, {}


def _trees_from(meta: dict) -> GradientBoosting:
    model = GradientBoosting(LightGbmSettings.model_validate(meta["cfg"]), meta["seed"])
    model.features, model.return_scale = list(meta["features"]), float(meta["return_scale"])
    model.classifier = lgb.Booster(model_str=meta["classifier"])
    model.regressor = lgb.Booster(model_str=meta["regressor"])
    return model


def state_of(model: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` describing a fitted model of the zoo or an ensemble of them."""
    if isinstance(model, Ensemble):
        meta: dict = {"kind": "ensemble", "members": []}
        arrays = {"weights": np.asarray(model.weights, dtype=float)}
        for i, member in enumerate(model.members):
            m_meta, m_arrays = state_of(member)
            meta["members"].append(m_meta)
            arrays |= {f"m{i}.{k}": v for k, v in m_arrays.items()}
        return meta, arrays
    if isinstance(model, SequenceModel):
        return _sequence_state(model)
    if isinstance(model, Tabular):
        return _tabular_state(model)
    if isinstance(model, GradientBoosting):
        return _trees_state(model)
    raise TypeError(f"no saved form for {type(model).__name__}")


def model_from(meta: dict, arrays: dict[str, np.ndarray]) -> Any:
    """The fitted model that :func:`state_of` described."""
    if meta["kind"] == "ensemble":
        members = []
        for i, m_meta in enumerate(meta["members"]):
            prefix = f"m{i}."
            members.append(model_from(m_meta, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}))
        ensemble = Ensemble(members)
        ensemble.weights = arrays["weights"]
        return ensemble
    if meta["kind"] == "sequence":
        return _sequence_from(meta, arrays)
    if meta["kind"] == "lightgbm":
        return _trees_from(meta)
    return _tabular_from(meta, arrays)


def save(model: Any, folder: Path, extra: dict | None = None) -> Path:
    """Write the model's state (and ``extra`` JSON, e.g. its feature recipe) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    meta, arrays = state_of(model)
    (folder / META).write_text(json.dumps({"model": meta, **(extra or {})}, indent=1))
    np.savez(folder / ARRAYS, **arrays)
    return folder


def load(folder: Path) -> tuple[Any, dict]:
    """The fitted model saved in ``folder`` and the rest of its ``state.json``."""
    doc = json.loads((Path(folder) / META).read_text())
    with np.load(Path(folder) / ARRAYS, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return model_from(doc.pop("model"), arrays), doc
