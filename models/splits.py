"""Walk-forward splits by time with a purge and an embargo.

Folds are expanding windows over the sorted unique timestamps: fold k trains on
everything before its test block, minus the ``purge`` timestamps right before the block
(their labels look into it), and the ``embargo`` timestamps right after each earlier test
block stay out of training too. Both are at least the label horizon. Given each row's
label end (the time of its symbol's ``horizon``-th next bar), a training row must also
have its label end before the test block starts: with missing bars a label spans more
timestamps than the horizon, and a count of shared timestamps would not purge it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fold:
    number: int
    train: np.ndarray  # row positions
    test: np.ndarray
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def _naive(t) -> np.datetime64:
    """A timestamp as naive UTC ``datetime64[ns]`` (how :class:`models.panel.Panel` keeps times)."""
    stamp = pd.Timestamp(t)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_datetime64()


def walk_forward(ts: pd.Series, n_folds: int, horizon: int, purge: int = 0, embargo: int = 0,
                 min_train_fraction: float = 0.3, label_end: np.ndarray | None = None,
                 test_start: pd.Timestamp | None = None) -> Iterator[Fold]:
    """Yield ``n_folds`` expanding-window folds over the timestamps in ``ts``.

    Args:
        ts: the timestamp of each row (several rows may share one: a cross-section).
        n_folds: number of test blocks after the first ``min_train_fraction`` of time.
        horizon: label horizon in bars; purge and embargo are raised to at least this.
        purge, embargo: timestamps removed before each test block / after each past block.
        label_end: per row, when its label ends (datetime64, NaT when unknown); rows whose
            label reaches into the test block are purged whatever the timestamp count.
        test_start: the first test block starts at the first timestamp on or after this one
            (instead of after ``min_train_fraction`` of the timestamps); the folds split the
            time from there to the end.

    Raises:
        ValueError: too few timestamps for the folds asked, or none after ``test_start``.
    """
    purge, embargo = max(purge, horizon), max(embargo, horizon)
    times = np.sort(ts.unique())
    if test_start is None:
        first_test = int(len(times) * min_train_fraction)
    else:
        naive = np.array([_naive(t) for t in times], dtype="datetime64[ns]")
        first_test = int(np.searchsorted(naive, _naive(test_start)))
        if first_test >= len(times):
            raise ValueError(f"no timestamp on or after the test start {test_start} (the last is {times[-1]})")
    block = (len(times) - first_test) // n_folds
    if block <= purge or first_test <= purge:
        raise ValueError(f"{len(times)} timestamps are too few for {n_folds} folds with purge {purge}")
    index = pd.Index(times)
    pos = index.get_indexer(ts.to_numpy())
    for k in range(n_folds):
        start = first_test + k * block
        end = len(times) if k == n_folds - 1 else start + block
        train_mask = pos < start - purge
        if label_end is not None:
            train_mask &= np.asarray(label_end) < _naive(times[start])  # NaT compares False: dropped
        for j in range(k):  # embargo after each earlier test block (it is training data now)
            past_end = first_test + (j + 1) * block
            train_mask &= ~((pos >= past_end) & (pos < past_end + embargo))
        test_mask = (pos >= start) & (pos < end)
        yield Fold(k, np.flatnonzero(train_mask), np.flatnonzero(test_mask),
                   pd.Timestamp(times[start]), pd.Timestamp(times[end - 1]))
