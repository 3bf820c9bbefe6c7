"""The feature library: written once, used by batch tables, backtests and the streaming job.

Features in the spirit of Qlib's Alpha158, computed per symbol from bars up to and
including the current one (never later ones):

* k-bar shape (9): body, range, upper and lower shadows, relative and absolute;
* price ratios (4): open, high, low, vwap over close;
* per window ``w`` in ``windows`` (19 each): rate of change, moving average, standard
  deviation, linear-trend slope, R-squared and residual, max, min, 80%/20% quantiles,
  stochastic position (RSV), correlation of price and log volume, correlation of returns
  and volume changes, share of up bars, share of up minus down bars, up-move share of total
  movement (RSI-like), volume moving average and its standard deviation, realized volatility;
* indicators (6): RSI(14), MACD line, signal and histogram (12/26/9, over close),
  Bollinger position (20, 2 sigma), average true range (14) over close;
* cross-sectional ranks (configurable): percentile rank across symbols at each timestamp.

Every ratio is scale-free, so symbols at different prices are comparable. With the default
windows (5, 10, 20, 30, 60) and four ranks there are 9 + 4 + 5 x 19 + 6 + 4 = 118 features.

:func:`compute_features` takes one symbol's bars sorted by time and is pure pandas, so the
streaming job can call it on a rolling buffer; :func:`add_cross_sectional_ranks` takes the
rows of one timestamp. Labels, which look forward, live apart in :mod:`pipelines.features.labels`
so that live code imports this module only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

EPS = 1e-12
KBAR = ["kmid", "klen", "kmid2", "kup", "kup2", "klow", "klow2", "ksft", "ksft2"]
PRICE = ["open0", "high0", "low0", "vwap0"]
INDICATORS = ["rsi_14", "macd", "macd_signal", "macd_hist", "boll_pos", "atr_14"]
PER_WINDOW = ["roc", "ma", "std", "beta", "rsqr", "resi", "max", "min", "qtlu", "qtld", "rsv",
              "corr", "cord", "cntp", "cntd", "sump", "vma", "vstd", "volat"]


def feature_names(windows: Sequence[int], rank_features: Sequence[str] = ()) -> list[str]:
    """Column names :func:`compute_features` and :func:`add_cross_sectional_ranks` produce, in order."""
    names = KBAR + PRICE
    for w in windows:
        names += [f"{name}_{w}" for name in PER_WINDOW]
    names += INDICATORS
    names += [f"rank_{name}" for name in rank_features]
    return names


# RSI, MACD and ATR are exponentially smoothed, so in principle they depend on all history.
# They are defined here on the last EWM_WARMUP bars: the weight left on older bars is at most
# EWM_TRUNCATION, so a row computed from that many bars of history equals the full-history
# value to ~1e-12 (relative to the price level). Every build (any partition range) and the
# live stream reproduce a row from that much history, whatever came before it.
EWM_TRUNCATION = 1e-12


def _bars_to_forget(decay: float) -> int:
    """Bars after which an EWM with this per-bar decay keeps at most EWM_TRUNCATION of its start."""
    return math.ceil(math.log(EWM_TRUNCATION) / math.log(decay))


# RSI and ATR decay by 13/14 per bar; MACD's signal (decay 8/10) smooths the MACD line,
# whose slower EMA decays by 25/27: the line must forget its start before the signal does
EWM_WARMUP = max(_bars_to_forget(13 / 14), _bars_to_forget(25 / 27) + _bars_to_forget(8 / 10))


def max_lookback(windows: Sequence[int]) -> int:
    """Bars of history a feature row needs: the longest window, or the smoothed indicators'
    warm-up (:data:`EWM_WARMUP`), whichever is longer."""
    return max([*windows, EWM_WARMUP, 20]) + 1


def _rolling_slope_stats(close: pd.Series, w: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Slope, R-squared and last residual of an OLS line through the last ``w`` closes."""
    x = np.arange(w, dtype=float)
    x_mean = x.mean()
    sxx = ((x - x_mean) ** 2).sum()
    y = close.to_numpy(dtype=float)
    n = len(y)
    slope = np.full(n, np.nan)
    rsq = np.full(n, np.nan)
    resid = np.full(n, np.nan)
    if n >= w:
        windows = np.lib.stride_tricks.sliding_window_view(y, w)
        y_mean = windows.mean(axis=1)
        sxy = ((windows - y_mean[:, None]) * (x - x_mean)).sum(axis=1)
        b = sxy / sxx
        a = y_mean - b * x_mean
        fitted_last = a + b * (w - 1)
        ss_tot = ((windows - y_mean[:, None]) ** 2).sum(axis=1)
        ss_res = ((windows - (a[:, None] + b[:, None] * x)) ** 2).sum(axis=1)
        slope[w - 1:] = b
        # a flat window has no trend to explain (0); a window with a missing close has no fit (NaN)
        rsq[w - 1:] = np.where(np.isnan(ss_tot), np.nan, np.where(ss_tot > EPS, 1.0 - ss_res / np.maximum(ss_tot, EPS), 0.0))
        resid[w - 1:] = windows[:, -1] - fitted_last
    idx = close.index
    return pd.Series(slope, idx), pd.Series(rsq, idx), pd.Series(resid, idx)


def _rolling_corr(x: pd.Series, y: pd.Series, w: int) -> pd.Series:
    """Pearson correlation of the last ``w`` values of ``x`` and ``y``, computed from each window
    itself (NaN if a value is missing or either side is constant: a constant side is tested
    exactly, not by its rounding-noise spread around a mean). pandas' rolling ``corr``
    updates running sums, so its value at a row drifts by ~1e-9 with how much history came
    before it; a row must not depend on where a build started."""
    a, b = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
    out = np.full(len(a), np.nan)
    if len(a) >= w:
        wa = np.lib.stride_tricks.sliding_window_view(a, w)
        wb = np.lib.stride_tricks.sliding_window_view(b, w)
        da = wa - wa.mean(axis=1, keepdims=True)
        db = wb - wb.mean(axis=1, keepdims=True)
        denom = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        flat = (np.ptp(wa, axis=1) == 0) | (np.ptp(wb, axis=1) == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[w - 1:] = np.where((denom > EPS) & ~flat, (da * db).sum(axis=1) / denom, np.nan)
    return pd.Series(out, index=x.index)


def _rolling_std(x: pd.Series, w: int) -> pd.Series:
    """Population standard deviation of the last ``w`` values, from each window itself (NaN if
    one is missing). pandas' rolling ``std`` updates a running Welford sum whose rounding
    accumulates: on 45,000 one-minute BTC bars its Bollinger band was off by 5e-8."""
    a = x.to_numpy(dtype=float)
    out = np.full(len(a), np.nan)
    if len(a) >= w:
        out[w - 1:] = np.lib.stride_tricks.sliding_window_view(a, w).std(axis=1)
    return pd.Series(out, index=x.index)


def compute_features(bars: pd.DataFrame, windows: Sequence[int] = (5, 10, 20, 30, 60)) -> pd.DataFrame:
    """Time-series features of one symbol's bars (sorted by ``ts``); one row per input row.

    Args:
        bars: columns open, high, low, close, volume, vwap (extra columns are ignored).
        windows: rolling window lengths in bars.

    Returns:
        A frame with the same index and :func:`feature_names` ``(windows)`` columns; rows
        without enough history hold NaN in the features that need it.
    """
    o, h, l, c = (bars[k].astype(float) for k in ("open", "high", "low", "close"))
    v = bars["volume"].astype(float).fillna(0.0)
    vwap = bars["vwap"].astype(float) if "vwap" in bars else (h + l + c) / 3.0
    rng = (h - l) + EPS
    out: dict[str, pd.Series] = {
        "kmid": (c - o) / o,
        "klen": (h - l) / o,
        "kmid2": (c - o) / rng,
        "kup": (h - np.maximum(o, c)) / o,
        "kup2": (h - np.maximum(o, c)) / rng,
        "klow": (np.minimum(o, c) - l) / o,
        "klow2": (np.minimum(o, c) - l) / rng,
        "ksft": (2 * c - h - l) / o,
        "ksft2": (2 * c - h - l) / rng,
        "open0": o / c,
        "high0": h / c,
        "low0": l / c,
        "vwap0": vwap / c,
    }
    ret = np.log(c / c.shift(1))
    log_v = np.log1p(v)
    # a bar without volume has no volume ratio: NaN (the models' missing-value handling), not
    # a division by ~0 that gave values of 1e14
    traded = v.where(v > 0)
    dv = np.log1p(v / (traded.shift(1) + EPS))
    up = (c > c.shift(1)).astype(float).where(c.shift(1).notna())
    down = (c < c.shift(1)).astype(float).where(c.shift(1).notna())
    diff = c.diff()
    for w in windows:
        roll_c = c.rolling(w, min_periods=w)
        out[f"roc_{w}"] = c.shift(w) / c
        out[f"ma_{w}"] = roll_c.mean() / c
        out[f"std_{w}"] = _rolling_std(c, w) / c
        slope, rsq, resid = _rolling_slope_stats(c, w)
        out[f"beta_{w}"] = slope / c
        out[f"rsqr_{w}"] = rsq
        out[f"resi_{w}"] = resid / c
        out[f"max_{w}"] = h.rolling(w, min_periods=w).max() / c
        out[f"min_{w}"] = l.rolling(w, min_periods=w).min() / c
        out[f"qtlu_{w}"] = roll_c.quantile(0.8) / c
        out[f"qtld_{w}"] = roll_c.quantile(0.2) / c
        hh = h.rolling(w, min_periods=w).max()
        ll = l.rolling(w, min_periods=w).min()
        out[f"rsv_{w}"] = (c - ll) / (hh - ll + EPS)
        out[f"corr_{w}"] = _rolling_corr(c, log_v, w)
        out[f"cord_{w}"] = _rolling_corr(ret, dv, w)
        cntp = up.rolling(w, min_periods=w).mean()
        out[f"cntp_{w}"] = cntp
        out[f"cntd_{w}"] = cntp - down.rolling(w, min_periods=w).mean()
        gains = diff.clip(lower=0).rolling(w, min_periods=w).sum()
        moves = diff.abs().rolling(w, min_periods=w).sum()
        out[f"sump_{w}"] = gains / (moves + EPS)
        roll_v = v.rolling(w, min_periods=w)
        out[f"vma_{w}"] = roll_v.mean() / (traded + EPS)
        out[f"vstd_{w}"] = _rolling_std(v, w) / (traded + EPS)
        out[f"volat_{w}"] = _rolling_std(ret, w)

    gain = diff.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-diff.clip(upper=0)).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    out["rsi_14"] = gain / (gain + loss + EPS)
    ema12 = c.ewm(span=12, adjust=False, min_periods=12).mean()
    ema26 = c.ewm(span=26, adjust=False, min_periods=26).mean()
    macd = (ema12 - ema26) / c
    signal = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    out["macd"], out["macd_signal"], out["macd_hist"] = macd, signal, macd - signal
    ma20, sd20 = c.rolling(20, min_periods=20).mean(), _rolling_std(c, 20)
    out["boll_pos"] = (c - ma20) / (2 * sd20 + EPS)
    true_range = pd.concat([h - l, (h - c.shift(1)).abs(), (l - c.shift(1)).abs()], axis=1).max(axis=1)
    out["atr_14"] = true_range.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean() / c

    frame = pd.DataFrame(out, index=bars.index)
    return frame[feature_names(windows)].astype("float64")


def add_cross_sectional_ranks(rows: pd.DataFrame, rank_features: Sequence[str]) -> pd.DataFrame:
    """Percentile rank (0..1] of each ``rank_features`` column across the rows of one timestamp."""
    out = rows.copy()
    for name in rank_features:
        out[f"rank_{name}"] = rows[name].rank(pct=True)
    return out
