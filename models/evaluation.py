"""Walk-forward evaluation: every figure is out-of-sample, per fold and pooled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from pipelines.metrics import Scores, score
from pipelines.splits import walk_forward


@dataclass(frozen=True)
class Evaluation:
    model: str
    folds: list[Scores]
    pooled: Scores
    predictions: pd.DataFrame  # symbol, ts, fold, p_up, expected_return, direction, fwd_return


def evaluate(frame: pd.DataFrame, features: list[str], make_model: Callable[[], object], n_folds: int,
             horizon: int, purge: int = 0, embargo: int = 0, progress: bool = False) -> Evaluation:
    """Fit ``make_model()`` on each fold's training rows and score it on the fold's test rows.

    ``frame`` has symbol, ts, the ``features`` and the labels direction and fwd_return;
    unlabelled rows are dropped first.
    """
    data = frame.dropna(subset=["direction", "fwd_return"]).sort_values(["ts", "symbol"]).reset_index(drop=True)
    name = getattr(make_model(), "name", "model")
    folds, parts = [], []
    splits = list(walk_forward(data["ts"], n_folds, horizon, purge, embargo))
    for fold in tqdm(splits, desc=f"walk-forward {name}", unit="fold", disable=not progress):
        train, test = data.iloc[fold.train], data.iloc[fold.test]
        model = make_model().fit(train[features], train["direction"].to_numpy(), train["fwd_return"].to_numpy())
        p_up, expected = model.predict(test[features])
        folds.append(score(test["ts"], p_up, test["direction"].to_numpy(), test["fwd_return"].to_numpy(), expected))
        parts.append(test[["symbol", "ts", "direction", "fwd_return"]].assign(
            fold=fold.number, p_up=p_up, expected_return=expected))
    oos = pd.concat(parts, ignore_index=True)
    pooled = score(oos["ts"], oos["p_up"].to_numpy(), oos["direction"].to_numpy(), oos["fwd_return"].to_numpy(),
                   oos["expected_return"].to_numpy())
    return Evaluation(name, folds, pooled, oos)


def feature_frame(bars: pd.DataFrame, windows: list[int], rank_features: list[str], horizon: int) -> pd.DataFrame:
    """Features and labels from bars with the shared library, in pandas (small data, tests, notebooks)."""
    from pipelines.features import add_cross_sectional_ranks, compute_features, compute_labels

    parts = []
    for _, g in bars.groupby("symbol", sort=True):
        g = g.sort_values("ts").reset_index(drop=True)
        if "vwap" not in g:
            g["vwap"] = (g["high"] + g["low"] + g["close"]) / 3
        parts.append(pd.concat([g[["symbol", "ts"]], compute_features(g, windows),
                                compute_labels(g["close"], horizon)], axis=1))
    frame = pd.concat(parts, ignore_index=True)
    if rank_features:
        frame = pd.concat(add_cross_sectional_ranks(rows, rank_features) for _, rows in frame.groupby("ts"))
    return frame.reset_index(drop=True)


def gap_closed(accuracy: float, bayes: float) -> float:
    """Share of the distance from 50% to the Bayes bound that ``accuracy`` covers."""
    return float((accuracy - 0.5) / (bayes - 0.5)) if bayes > 0.5 else float("nan")



