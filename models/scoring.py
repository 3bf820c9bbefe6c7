"""Out-of-sample prediction metrics with confidence intervals.

Directional accuracy (standard error clustered by timestamp: symbols share factor shocks,
so rows of one timestamp are not independent and a binomial error would be too small), log loss, and the information
coefficient (Pearson) and rank IC (Spearman) per timestamp across symbols, summarized by
mean, standard error and IR (mean / std of the per-timestamp series, not annualized). The
IR's standard error is Lo's (2002) for a Sharpe ratio of independent periods,
``sqrt((1 + IR^2 / 2) / T)``. A single-symbol series has no cross-section, so its IC is the
correlation over time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pipelines.backtest.performance import Z95, ratio_se

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
    ic_ir_se: float = float("nan")    # Lo (2002): sqrt((1 + IR^2 / 2) / timestamps)
    rank_ic_ir_se: float = float("nan")

    @property
    def accuracy_ci(self) -> tuple[float, float]:
        return self.accuracy - Z95 * self.accuracy_se, self.accuracy + Z95 * self.accuracy_se

    def ci(self, name: str) -> tuple[float, float]:
        """95% interval of ``accuracy``, ``log_loss``, ``ic``, ``rank_ic``, ``ic_ir`` or ``rank_ic_ir``."""
        value, se = getattr(self, name), getattr(self, f"{name}_se")
        return value - Z95 * se, value + Z95 * se

    def as_dict(self) -> dict[str, float]:
        out = asdict(self)
        for name in ("accuracy", "log_loss", "ic", "rank_ic", "ic_ir", "rank_ic_ir"):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = self.ci(name)
        return out


def _corr(a: pd.Series, b: pd.Series, method: str) -> float:
    # a constant score (always-up) has no correlation to speak of
    return a.corr(b, method=method) if a.nunique() > 1 and b.nunique() > 1 else np.nan


def _per_ts_ic(frame: pd.DataFrame, method: str) -> pd.Series:
    """The cross-sectional correlation of score and forward return at each timestamp (NaN with
    fewer than three rows)."""
    return frame.groupby("ts").apply(lambda g: _corr(g["score"], g["fwd_return"], method) if len(g) > 2 else np.nan,
                                     include_groups=False)


def _ic_series(frame: pd.DataFrame, method: str) -> pd.Series:
    if frame["ts"].nunique() == len(frame):  # one row per timestamp: correlate over time
        return pd.Series([_corr(frame["score"], frame["fwd_return"], method)]).dropna()
    return _per_ts_ic(frame, method).dropna()


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
                  ll_se, se(ic), se(ric), ratio_se(ir(ic), len(ic)), ratio_se(ir(ric), len(ric)))


@dataclass(frozen=True)
class PairedTest:
    """One-sided test that a challenger beats an opponent on the same rows.

    ``gain`` is the challenger's mean per-row improvement in the metric (hits for accuracy,
    loss for log loss; per timestamp for the ICs), ``std_error`` its standard error clustered
    by timestamp, ``p_value`` the chance of a gain at least this large if the two were equally
    good (Student t with clusters - 1 degrees of freedom).
    """

    opponent: str
    metric: str
    rows: int
    clusters: int
    challenger_score: float
    opponent_score: float
    gain: float
    std_error: float
    p_value: float

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def one_sided_clustered(gain: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float, int]:
    """Mean of ``gain``, its clustered standard error (never below the i.i.d. one), the one-sided
    p-value of ``mean > 0`` and the number of clusters."""
    from scipy.stats import t as student_t

    gain = np.asarray(gain, dtype=float)
    n = len(gain)
    if n == 0:
        return float("nan"), float("nan"), 1.0, 0
    mean = float(gain.mean())
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums, counts = np.bincount(inverse, weights=gain), np.bincount(inverse)
    iid = gain.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
    se = _clustered_se(sums, counts, mean, iid)
    g = len(counts)
    if not se > 0 or g < 2:   # no spread at all: identical predictions are no evidence
        return mean, float(se), (0.0 if mean > 0 and g >= 2 else 1.0), g
    return mean, float(se), float(student_t.sf(mean / se, g - 1)), g


def paired_test(ts: pd.Series, direction: np.ndarray, fwd_return: np.ndarray, challenger: tuple[np.ndarray, np.ndarray],
                opponent: tuple[np.ndarray, np.ndarray], metric: str, opponent_name: str) -> PairedTest:
    """Challenger against opponent on the same rows; each side is ``(p_up, expected_return)``.

    accuracy and log loss compare row by row (clustered by timestamp); ``ic`` / ``rank_ic``
    compare the per-timestamp cross-sectional correlations (a constant score, such as
    always-up, has an IC of 0 there: it ranks nothing).
    """
    y = np.asarray(direction, dtype=float)
    ts = np.asarray(ts)
    if metric in ("accuracy", "log_loss"):
        def per_row(p_up: np.ndarray) -> np.ndarray:
            p = np.clip(np.asarray(p_up, dtype=float), 1e-6, 1 - 1e-6)
            if metric == "accuracy":
                return ((p > 0.5) == (y > 0.5)).astype(float)
            return y * np.log(p) + (1 - y) * np.log(1 - p)   # minus the loss: higher is better

        a, b = per_row(challenger[0]), per_row(opponent[0])
        mean, se, p, g = one_sided_clustered(a - b, ts)
        sign = 1.0 if metric == "accuracy" else -1.0
        return PairedTest(opponent_name, metric, len(y), g, sign * float(a.mean()), sign * float(b.mean()),
                          mean, se, p)
    method = "pearson" if metric == "ic" else "spearman"

    def per_ts(score: tuple[np.ndarray, np.ndarray]) -> pd.Series:
        return _per_ts_ic(pd.DataFrame({"ts": ts, "score": np.asarray(score[1], dtype=float),
                                        "fwd_return": np.asarray(fwd_return, dtype=float)}), method)

    a, b = per_ts(challenger).fillna(0.0), per_ts(opponent).fillna(0.0)
    mean, se, p, g = one_sided_clustered((a - b).to_numpy(), a.index.to_numpy())
    return PairedTest(opponent_name, metric, len(y), g, float(a.mean()), float(b.mean()), mean, se, p)
