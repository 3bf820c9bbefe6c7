"""Walk-forward evaluation: every figure is out-of-sample, per fold and pooled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config.schemas.model import ModelSettings
from models.ensemble import Ensemble
from models.panel import Panel, time_split
from models.scoring import Scores, score
from models.splits import walk_forward
from models.zoo import ENSEMBLE, make_members
from pipelines.features.labels import compute_labels
from pipelines.features.recipe import FeatureSpec
from pipelines.progress import progress_bar

RULE_BASELINES = ("always_up", "momentum_sign")  # the one-line rules a model must beat


@dataclass(frozen=True)
class Evaluation:
    model: str
    folds: list[Scores]
    pooled: Scores
    predictions: pd.DataFrame  # symbol, ts, fold, p_up, expected_return, direction, fwd_return
    fit_seconds: float = 0.0
    details: dict = field(default_factory=dict)  # e.g. the ensemble's weights per fold


def fit_models(panel: Panel, train: np.ndarray, cfg: ModelSettings, progress: bool = False,
               predict_rows: np.ndarray | None = None) -> tuple[dict[str, object], dict[str, tuple], dict[str, float]]:
    """Fit every configured family on ``train``: members on its earlier part; the later
    ``validation_fraction`` stops the networks early and, when the ensemble is configured, is cut
    in two purged blocks by time: the first stops the networks, the second (which no member saw
    while fitting or stopping) learns the ensemble's weights.

    Returns the fitted models by name, their predictions for ``predict_rows`` (if given) and
    the seconds each took to fit.
    """
    label_end = panel.label_end(cfg.label_span)
    fit, valid = time_split(panel, train, cfg.training.validation_fraction, cfg.label_span, label_end)
    stop, weigh = valid, valid
    if ENSEMBLE in cfg.families:
        stop, weigh = time_split(panel, valid, 0.5, cfg.label_span, label_end)
    members = make_members(cfg, progress)
    fitted, preds, seconds, valid_preds = {}, {}, {}, {}
    for model in members:
        started = time.perf_counter()
        model.fit(panel, fit, stop)
        seconds[model.name] = time.perf_counter() - started
        fitted[model.name] = model
        if ENSEMBLE in cfg.families:
            valid_preds[model.name] = model.predict(panel, weigh)
        if predict_rows is not None:
            preds[model.name] = model.predict(panel, predict_rows)
    if ENSEMBLE in cfg.families:
        started = time.perf_counter()
        ensemble = Ensemble(members).fit(panel, None, weigh, valid_preds)
        seconds[ENSEMBLE] = time.perf_counter() - started
        fitted[ENSEMBLE] = ensemble
        if predict_rows is not None:
            preds[ENSEMBLE] = ensemble.combine(preds)
    return fitted, preds, seconds


def walk_forward_models(panel: Panel, cfg: ModelSettings, progress: bool = False) -> dict[str, Evaluation]:
    """Walk-forward evaluation of every configured family on the panel's labelled rows.

    Each fold trains on the past only (purge and embargo at least the label horizon) and
    scores the next block of time; all figures are out-of-sample, per fold and pooled.
    """
    labelled = panel.labelled()
    wf = cfg.walk_forward
    label_end = panel.label_end(cfg.label_span)[labelled]
    test_start = pd.Timestamp(wf.test_start) if wf.test_start else None
    splits = list(walk_forward(panel.ts.iloc[labelled].reset_index(drop=True), wf.n_folds, cfg.label_span,
                               wf.purge_bars, wf.embargo_bars, label_end=label_end, test_start=test_start))
    folds: dict[str, list[Scores]] = {}
    parts: dict[str, list[pd.DataFrame]] = {}
    seconds: dict[str, float] = {}
    weights: list[dict[str, float]] = []
    for fold in progress_bar(splits, desc="walk-forward", unit="fold", enabled=progress):
        train, test = labelled[fold.train], labelled[fold.test]
        fitted, preds, took = fit_models(panel, train, cfg, progress, predict_rows=test)
        if ENSEMBLE in fitted:
            weights.append(fitted[ENSEMBLE].weight_table())
        keys = panel.tail(test)
        for name, (p_up, expected) in preds.items():
            folds.setdefault(name, []).append(score(keys["ts"], p_up, keys["direction"].to_numpy(),
                                                    keys["fwd_return"].to_numpy(), expected))
            parts.setdefault(name, []).append(keys.assign(fold=fold.number, p_up=p_up, expected_return=expected))
            seconds[name] = seconds.get(name, 0.0) + took.get(name, 0.0)
    out = {}
    for name, frames in parts.items():
        oos = pd.concat(frames, ignore_index=True)
        pooled = score(oos["ts"], oos["p_up"].to_numpy(), oos["direction"].to_numpy(), oos["fwd_return"].to_numpy(),
                       oos["expected_return"].to_numpy())
        details = {"weights_per_fold": weights} if name == ENSEMBLE else {}
        out[name] = Evaluation(name, folds[name], pooled, oos, round(seconds[name], 2), details)
    return out


def comparison_table(evaluations: dict[str, Evaluation], bayes: float | None = None) -> pd.DataFrame:
    """One row per model: pooled out-of-sample metrics with the accuracy's 95% interval, and with
    ``bayes`` the share of the gap from the best baseline's accuracy to the bound each closes."""
    rows = []
    floor = best_baseline_accuracy(evaluations)
    for name, ev in evaluations.items():
        s = ev.pooled
        low, high = s.accuracy_ci
        row = {"model": name, "n": s.n, "accuracy": round(s.accuracy, 4), "acc_ci95": f"[{low:.4f}, {high:.4f}]",
               "log_loss": round(s.log_loss, 4), "log_loss_se": round(s.log_loss_se, 4)}
        for metric, digits in (("ic", 4), ("ic_ir", 3), ("rank_ic", 4), ("rank_ic_ir", 3)):
            lo, hi = s.ci(metric)
            row[metric], row[f"{metric}_ci95"] = round(getattr(s, metric), digits), f"[{lo:.{digits}f}, {hi:.{digits}f}]"
        row["fit_s"] = ev.fit_seconds
        if bayes is not None:
            row["gap_closed"] = round(gap_closed(s.accuracy, bayes, floor), 3)
        rows.append(row)
    return pd.DataFrame(rows)


def feature_frame(bars: pd.DataFrame, windows: list[int], rank_features: list[str], horizon: int,
                  price: str = "close") -> pd.DataFrame:
    """Features and labels from bars with the shared library, in pandas (small data, tests, notebooks)."""
    features = FeatureSpec(tuple(windows), tuple(rank_features)).compute(bars)
    labels = [pd.concat([g[["symbol", "ts"]], compute_labels(g, horizon, price)], axis=1)
              for _, g in bars.sort_values("ts", kind="stable").groupby("symbol", sort=True)]
    return features.merge(pd.concat(labels, ignore_index=True), on=["symbol", "ts"], how="left")


def best_baseline_accuracy(evaluations: dict[str, Evaluation]) -> float:
    """The best pooled accuracy of the baselines evaluated (always_up, momentum_sign), at least 0.5."""
    return max([0.5] + [evaluations[b].pooled.accuracy for b in RULE_BASELINES if b in evaluations])


def gap_closed(accuracy: float, bayes: float, floor: float = 0.5) -> float:
    """Share of the distance from ``floor`` (a coin flip, or the best baseline's accuracy) to the
    Bayes bound that ``accuracy`` covers; NaN when the bound is not above the floor."""
    return float((accuracy - floor) / (bayes - floor)) if bayes > floor else float("nan")



