"""A panel of bars: features and labels for many symbols, sorted by symbol then time.

Every model takes a :class:`Panel` and row positions, so a sequence model can look back
over the rows before a test row (its features only: they are known at that time) while
tabular models just take those rows. Rows without labels stay in the panel as history.

Models fit the panel's *targets* (:attr:`Panel.target_direction`, :attr:`Panel.target_return`):
the labels as they are, or after :meth:`Panel.rank_targets` each timestamp's forward returns
as cross-sectional ranks. Scores always use the raw labels (:meth:`Panel.tail`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KEYS = ["symbol", "ts"]
LABELS = ["direction", "fwd_return"]
RANK_SCALE = 3.46  # x 3.46: about unit variance for a uniform rank (as Qlib's CSRankNorm)


@dataclass
class Panel:
    """Rows sorted by ``symbol, ts`` with the ``features`` as a float32 matrix."""

    frame: pd.DataFrame
    features: list[str]
    X: np.ndarray = field(init=False, repr=False)
    first_of_symbol: np.ndarray = field(init=False, repr=False)
    times: np.ndarray = field(init=False, repr=False)  # ts as UTC datetime64[ns], for fast comparisons
    target: str = field(init=False, default="none")     # what the models fit: none (the labels) or rank
    _targets: tuple[np.ndarray, np.ndarray] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        missing = [c for c in KEYS + self.features if c not in self.frame.columns]
        if missing:
            raise ValueError(f"panel is missing columns {missing}")
        self.frame = self.frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
        self.X = self.frame[self.features].to_numpy(dtype=np.float32, na_value=np.nan)
        self.times = pd.to_datetime(self.frame["ts"], utc=True).dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
        codes = pd.factorize(self.frame["symbol"])[0]
        starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
        self.first_of_symbol = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ts(self) -> pd.Series:
        return self.frame["ts"]

    @property
    def direction(self) -> np.ndarray:
        return self.frame["direction"].to_numpy(dtype=float)

    @property
    def fwd_return(self) -> np.ndarray:
        return self.frame["fwd_return"].to_numpy(dtype=float)

    @property
    def target_direction(self) -> np.ndarray:
        """What models fit as the direction: the label, or 1 above the timestamp's median after
        :meth:`rank_targets`."""
        return self.direction if self._targets is None else self._targets[0]

    @property
    def target_return(self) -> np.ndarray:
        """What models fit as the return: the forward return, or its cross-sectional rank score
        after :meth:`rank_targets`."""
        return self.fwd_return if self._targets is None else self._targets[1]

    def rank_targets(self) -> "Panel":
        """Fit cross-sectional ranks from now on: per timestamp of ``n`` labelled rows, each
        forward return of rank ``r`` (1 the lowest, ties share their average rank) becomes
        ``((r - 0.5) / n - 0.5) x 3.46``, centred on zero, and its direction ``1`` when that is
        above zero, i.e. above the timestamp's median. A label ends when its whole
        cross-section's does, so the rank adds no look-ahead."""
        fwd = pd.Series(self.fwd_return)
        by_time = fwd.groupby(self.times)
        uniform = (by_time.rank(method="average") - 0.5) / by_time.transform("count")
        score = ((uniform - 0.5) * RANK_SCALE).to_numpy(dtype=float)  # NaN where the label is
        direction = np.where(np.isnan(score), np.nan, (score > 0).astype(float))
        self._targets, self.target = (direction, score), "rank"
        return self

    def labelled(self) -> np.ndarray:
        """Positions of rows that have both labels."""
        if not set(LABELS) <= set(self.frame.columns):
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.frame[LABELS].notna().all(axis=1).to_numpy())

    def windows(self, rows: np.ndarray, length: int) -> np.ndarray:
        """Positions of the ``length`` rows ending at each of ``rows`` (same symbol, oldest
        first); ``-1`` where a symbol's history is shorter than the window."""
        return window_index(rows, length, self.first_of_symbol)

    def label_end(self, horizon: int) -> np.ndarray:
        """Per row, the time of its symbol's ``horizon``-th next bar, where its forward label
        ends (NaT when the symbol has no such bar)."""
        idx = np.arange(len(self)) + horizon
        inside = idx < len(self)
        same = np.zeros(len(self), dtype=bool)
        same[inside] = self.first_of_symbol[idx[inside]] == self.first_of_symbol[inside]
        out = np.full(len(self), np.datetime64("NaT"), dtype="datetime64[ns]")
        out[same] = self.times[idx[same]]
        return out

    def tail(self, rows: np.ndarray) -> pd.DataFrame:
        """Keys and labels of ``rows`` (for prediction tables)."""
        cols = KEYS + [c for c in LABELS if c in self.frame.columns]
        return self.frame.iloc[rows][cols].reset_index(drop=True)


def window_index(rows: np.ndarray, length: int, first_of_symbol: np.ndarray) -> np.ndarray:
    """:meth:`Panel.windows` on bare arrays (what a training worker has)."""
    rows = np.asarray(rows, dtype=np.int64)
    idx = rows[:, None] - np.arange(length - 1, -1, -1)[None, :]
    return np.where(idx >= first_of_symbol[rows][:, None], idx, -1)


def time_split(panel: Panel, rows: np.ndarray, fraction: float, gap: int,
               label_end: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` by time: the last ``fraction`` of their timestamps is validation, and the
    ``gap`` timestamps before it are dropped (their labels look into the validation block);
    with ``label_end`` (per panel row) so is every row whose label ends in the validation block."""
    ts = panel.times[rows]
    times = np.unique(ts)
    cut = int(len(times) * (1 - fraction))
    if cut - gap < 1 or cut >= len(times):
        raise ValueError(f"{len(times)} timestamps are too few to hold out {fraction:.0%} for validation")
    keep = ts < times[cut - gap]
    if label_end is not None:
        keep &= label_end[rows] < times[cut]
    fit = rows[keep]
    valid = rows[ts >= times[cut]]
    return fit, valid
