"""Per-symbol bar history in Spark's state store, and the features of each new bar.

:class:`BarHistory` is the stream's only Python-side state: for each symbol it keeps the last
``max_lookback(windows)`` bars (what the champion's feature recipe needs) in a
``ListState`` of the RocksDB state store, so it survives restarts with the checkpoint. For
every bar the windowed aggregation emits, it calls the batch tables' own
:func:`~pipelines.features.library.compute_features` on the held bars and emits the bar with
its (not yet ranked) features. A bar with less history than the recipe needs is emitted with
``complete = false`` and NULL features, never with features computed from a short window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues

from pipelines.features.library import compute_features, feature_names, max_lookback
from pipelines.ingest.bars import BAR_COLUMNS

STATE_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "vwap"]
STATE_SCHEMA = "ts timestamp, open double, high double, low double, close double, volume double, vwap double"
STREAM_BAR_COLUMNS = [*BAR_COLUMNS, "last_append"]


def output_schema(windows: Sequence[int]) -> str:
    """What :class:`BarHistory` emits: the bar, ``history`` and ``complete``, then the features."""
    bars = ("symbol string, ts timestamp, interval string, open double, high double, low double, close double, "
            "volume double, vwap double, trades long, last_append timestamp")
    return f"{bars}, history long, complete boolean, " + ", ".join(f"`{n}` double" for n in feature_names(windows))


class BarHistory(StatefulProcessor):
    """Keeps each symbol's last ``max_lookback(windows)`` bars (the newest included: what gives
    every feature its batch value); emits features per new bar."""

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(int(w) for w in windows)
        self.keep = max_lookback(self.windows)

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.bars = handle.getListState("bars", STATE_SCHEMA)

    def _held(self) -> pd.DataFrame:
        rows = list(self.bars.get()) if self.bars.exists() else []
        return pd.DataFrame(rows, columns=STATE_COLUMNS)

    def _store(self, frame: pd.DataFrame) -> None:
        tail = frame.tail(self.keep)
        self.bars.put([(ts.to_pydatetime(), *vals) for ts, *vals in
                       zip(pd.to_datetime(tail["ts"]), *(tail[c].astype(float) for c in STATE_COLUMNS[1:]))])

    def handleInitialState(self, key, initialState: pd.DataFrame, timerValues: TimerValues) -> None:
        """Warm start (first batch of a new checkpoint): the symbol's last bars from silver."""
        self._store(initialState[STATE_COLUMNS].drop_duplicates("ts", keep="last").sort_values("ts"))

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        new = pd.concat(list(rows), ignore_index=True).sort_values("ts").drop_duplicates("ts", keep="last")
        held = self._held()
        held = held[~held["ts"].isin(new["ts"])]
        frame = (pd.concat([held, new[STATE_COLUMNS]], ignore_index=True) if len(held) else new[STATE_COLUMNS])
        frame = frame.sort_values("ts").reset_index(drop=True)
        self._store(frame)

        # features of the new bars: each needs `keep` bars ending at itself
        n_new = len(new)
        window = frame.tail(self.keep + n_new - 1).reset_index(drop=True)
        features = compute_features(window, self.windows).tail(n_new).reset_index(drop=True)
        position = np.arange(len(frame) - n_new, len(frame)) + 1  # bars held up to and including each new bar
        complete = position >= self.keep
        features.loc[~complete, :] = np.nan
        out = new[STREAM_BAR_COLUMNS].reset_index(drop=True).assign(
            symbol=key[0], history=np.minimum(position, self.keep).astype("int64"), complete=complete)
        yield pd.concat([out, features], axis=1)

    def close(self) -> None:
        pass
