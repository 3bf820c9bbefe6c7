"""Per-symbol feature state in Spark's state store, and the features of each new bar.

:class:`BarHistory` is the stream's only Python-side state: for each symbol it keeps the
compiled feature kernel's state (:class:`~pipelines.features.kernel.FeatureState`, about 15 KB:
the last bars of every window, running sums, deques, sorted windows and the smoothed
indicators) in a ``ValueState`` of the RocksDB state store, so it survives restarts with the
checkpoint. Each new bar advances that state in O(1) and yields the bar's features, the very
numbers the batch tables compute (the kernel's incremental form runs the batch form's per-bar
code). The state is warm-started from the symbol's last ``max_lookback(windows)`` silver bars;
a bar with less history than that is emitted with ``complete = false`` and NULL features, never
with features computed from a short window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues

from pipelines.features import kernel
from pipelines.features.library import feature_names, max_lookback
from pipelines.ingest.bars import BAR_COLUMNS

log = logging.getLogger(__name__)

STATE_COLUMNS = ["ts", *kernel.INPUTS]
STATE_SCHEMA = "ts timestamp, open double, high double, low double, close double, volume double, vwap double"
# + the Kafka append time of the bar's last tick, and the quote of its first tick (a venue in
# next-tick mode fills there)
STREAM_BAR_COLUMNS = [*BAR_COLUMNS, "last_append", "open_bid", "open_ask"]
VALUE_SCHEMA = "kernel binary, bars long, last_ts timestamp"


def output_schema(windows: Sequence[int]) -> str:
    """What :class:`BarHistory` emits: the bar, ``history`` and ``complete``, then the features."""
    bars = ("symbol string, ts timestamp, interval string, open double, high double, low double, close double, "
            "volume double, vwap double, trades long, last_append timestamp, open_bid double, open_ask double")
    return f"{bars}, history long, complete boolean, " + ", ".join(f"`{n}` double" for n in feature_names(windows))


class BarHistory(StatefulProcessor):
    """Keeps each symbol's feature-kernel state; emits the features of every new bar."""

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(int(w) for w in windows)
        self.keep = max_lookback(self.windows)

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.value = handle.getValueState("features", VALUE_SCHEMA)

    def _load(self) -> tuple[kernel.FeatureState, int, pd.Timestamp | None]:
        if not self.value.exists():
            return kernel.FeatureState(self.windows, 1), 0, None
        raw, bars, last_ts = self.value.get()
        return kernel.FeatureState.from_rows(self.windows, [bytes(raw)]), int(bars), pd.Timestamp(last_ts)

    def _save(self, state: kernel.FeatureState, bars: int, last_ts: pd.Timestamp) -> None:
        self.value.update((state.row_bytes(0), bars, last_ts.to_pydatetime()))

    def handleInitialState(self, key, initialState: pd.DataFrame, timerValues: TimerValues) -> None:
        """Warm start (first batch of a new checkpoint): the symbol's last bars from silver."""
        held = initialState[STATE_COLUMNS].drop_duplicates("ts", keep="last").sort_values("ts")
        if held.empty:
            return
        state = kernel.warm_state(held[list(kernel.INPUTS)].to_numpy(float), self.windows)
        self._save(state, len(held), pd.Timestamp(held["ts"].iloc[-1]))

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        new = pd.concat(list(rows), ignore_index=True).sort_values("ts").drop_duplicates("ts", keep="last")
        state, seen, last_ts = self._load()
        if last_ts is not None:
            stale = pd.to_datetime(new["ts"]) <= last_ts
            if stale.any():   # append-mode bars come once and in order; a replayed one is not taken twice
                log.warning("%s: %d bar(s) at or before %s already in the state, skipped", key[0], stale.sum(), last_ts)
                new = new[~stale]
            if new.empty:
                return
        new = new.reset_index(drop=True)
        features = state.advance(0, new[list(kernel.INPUTS)].to_numpy(float))
        position = seen + np.arange(1, len(new) + 1)   # bars taken up to and including each new one
        complete = position >= self.keep
        features[~complete] = np.nan
        self._save(state, int(position[-1]), pd.Timestamp(new["ts"].iloc[-1]))
        out = new[STREAM_BAR_COLUMNS].assign(symbol=key[0], history=np.minimum(position, self.keep).astype("int64"),
                                            complete=complete)
        yield pd.concat([out, pd.DataFrame(features, columns=feature_names(self.windows))], axis=1)

    def close(self) -> None:
        pass
