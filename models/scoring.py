"""Out-of-sample prediction metrics with confidence intervals.

Directional accuracy (standard error clustered by timestamp: symbols share factor shocks,
so rows of one timestamp are not independent and a binomial error would be too small), log loss, and the information
coefficient (Pearson) and rank IC (Spearman) per timestamp across symbols, summarized by
mean, standard error and IR (mean / std). A single-symbol series has no cross-section, so
its IC is the correlation over time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

Z95 = 1.959964
HIGHER_IS_BETTER = {"accuracy": True, "log_loss": False, "ic": True, "rank_ic": True}


@dataclass(frozen=True)
class Scores:
    n: int
    accuracy: float
    accuracy_se: float
    log_loss: float
    ic: float
    ic_ir: float
    rank_ic: float
    rank_ic_ir: float
    log_loss_se: float = float("nan")
    ic_se: float = float("nan")       # of the mean over timestamps
    rank_ic_se: float = float("nan")

    @property
    def accuracy_ci(self) -> tuple[float, float]:
        return self.accuracy - Z95 * self.accuracy_se, self.accuracy + Z95 * self.accuracy_se

    def ci(self, name: str) -> tuple[float, float]:
        """95% interval of ``accuracy``, ``log_loss``, ``ic`` or ``rank_ic``."""
        value, se = getattr(self, name), getattr(self, f"{name}_se")
        return value - Z95 * se, value + Z95 * se

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        for name in ("accuracy", "log_loss", "ic", "rank_ic"):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = self.ci(name)
        return out


def _corr(a: pd.Series, b: pd.Series, method: str) -> float:
    # a constant score (always-up) has no correlation to speak of
    return a.corr(b, method=method) if a.nunique() > 1 and b.nunique() > 1 else np.nan


def _ic_series(frame: pd.DataFrame, method: str) -> pd.Series:
    per_ts = frame.groupby("ts")
    if per_ts.ngroups == len(frame):  # one row per timestamp: correlate over time
        return pd.Series([_corr(frame["score"], frame["fwd_return"], method)]).dropna()
    return per_ts.apply(lambda g: _corr(g["score"], g["fwd_return"], method) if len(g) > 2 else np.nan,
                        include_groups=False).dropna()


def _clustered_se(sums: np.ndarray, counts: np.ndarray, mean: float, floor: float) -> float:
    """Standard error of a mean over rows with one cluster per timestamp (``sums``/``counts``
    per timestamp), never below ``floor`` (the i.i.d. standard error)."""
    n, g = counts.sum(), len(counts)
    if g < 2:
        return float(floor)
    resid = sums - mean * counts
    clustered = np.sqrt(g / (g - 1) * np.sum(resid**2)) / n
    return float(max(clustered, floor))


def score(ts: pd.Series, p_up: np.ndarray, direction: np.ndarray, fwd_return: np.ndarray,
          expected_return: np.ndarray | None = None) -> Scores:
    """Metrics of predictions ``p_up`` (and optionally ``expected_return``) against realized labels."""
    p = np.clip(np.asarray(p_up, dtype=float), 1e-6, 1 - 1e-6)
    y = np.asarray(direction, dtype=float)
    n = len(y)
    hits = ((p > 0.5) == (y > 0.5)).astype(float)
    acc = float(hits.mean())
    per_ts = pd.Series(hits).groupby(np.asarray(ts)).agg(["sum", "count"])
    acc_se = _clustered_se(per_ts["sum"].to_numpy(), per_ts["count"].to_numpy(), acc, np.sqrt(acc * (1 - acc) / n))
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    log_loss = float(losses.mean())
    per_ts_ll = pd.Series(losses).groupby(np.asarray(ts)).agg(["sum", "count"])
    ll_se = _clustered_se(per_ts_ll["sum"].to_numpy(), per_ts_ll["count"].to_numpy(), log_loss,
                          losses.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan)
    signal = np.asarray(expected_return if expected_return is not None else p - 0.5, dtype=float)
    frame = pd.DataFrame({"ts": np.asarray(ts), "score": signal, "fwd_return": np.asarray(fwd_return, dtype=float)})
    ic = _ic_series(frame, "pearson")
    ric = _ic_series(frame, "spearman")

    def ir(series: pd.Series) -> float:
        sd = series.std(ddof=1)
        return float(series.mean() / sd) if len(series) > 1 and sd > 0 else float("nan")

    def se(series: pd.Series) -> float:
        return float(series.std(ddof=1) / np.sqrt(len(series))) if len(series) > 1 else float("nan")

    return Scores(n, acc, acc_se, log_loss, float(ic.mean()), ir(ic), float(ric.mean()), ir(ric),
                  ll_se, se(ic), se(ric))
