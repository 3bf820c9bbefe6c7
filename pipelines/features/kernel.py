"""The feature library as one compiled pass: every time-series feature of a bar from O(1) state.

:func:`~pipelines.features.library.compute_features` (pandas) defines the features and stays the
test oracle; this module computes the same numbers (within 1e-9) an order of magnitude faster,
and in two shapes that run the very same per-bar code, :func:`_step`:

* **batch** -- :func:`compute` walks one symbol's bars and returns every feature row;
* **incremental** -- :class:`FeatureState` holds the state of many symbols and
  :meth:`FeatureState.update` takes one new bar for each of some of them and returns their
  feature rows, vectorized across symbols (the live stream's form).

How each statistic is kept, per window ``w`` (and the Bollinger band's 20):

* means, variances, the OLS slope / R-squared / residual and correlations come from running
  sums (sum, sum of squares, sum of index x value, sum of products), each updated by adding the
  new bar and removing the one that left the window, with Kahan compensation. Every series
  with a second moment (close, volume, log volume, return, volume change) is summed as its
  deviation from a reference level ``K`` that is reset to the current bar every ``ring`` bars,
  when all sums are recomputed exactly from the ring buffer: cancellation stays small and
  rounding cannot accumulate over a long series;
* a window whose values are all identical is recognised from the bar where the value last
  changed (as pandas does, so a constant window has exactly zero spread, not rounding noise);
* a window holding a missing value gives NaN, recognised from the bar where it was last missing;
* rolling max / min: monotonic deques of bar indices; quantiles: a sorted copy of the window,
  updated by replacing the value that left with the new one (O(w) moves, no allocation);
* RSI, MACD and ATR: pandas' ``ewm(adjust=False)`` recursion, including its handling of the
  first value and of missing values.

The kernel computes in float64 and writes NaN where the oracle writes NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np

from pipelines.features.library import EPS

# inputs, in this order, as float64 arrays
INPUTS = ("open", "high", "low", "close", "volume", "vwap")

# channels kept in the ring buffer (the values a window removes when it slides)
C, H, L, V, RET, LOGV, DV, UP, DOWN, GAIN, MOVE, N_CHANNELS = range(12)
# running sums per window: prices as z = close - K_c, log volume as u = log1p(volume) - K_u
(SZ, SZZ, SIZ, SU, SUU, SZU, SR, SRR, SD, SDD, SRD, SV, SVV, SUP, SDOWN, SGAIN, SMOVE, N_SUMS) = range(18)
# per-symbol integers: bars seen, then per channel the last bar it was missing and the bar it
# last changed value (identical values since then)
T, NAN0, CHANGE0 = 0, 1, 1 + N_CHANNELS
N_META = 1 + 2 * N_CHANNELS
# per-symbol floats: reference levels of the channels with second moments, then pandas ewm
# state (value, old weight, observations)
K_C, K_U, K_R, K_D, K_V, N_LEVELS = range(6)
LEVEL_CHANNELS = np.array([C, LOGV, RET, DV, V])
# the largest squared deviation from K each of those took since the reset (bounds rounding)
PEAK0 = 5
EWM_GAIN, EWM_LOSS, EWM_12, EWM_26, EWM_SIGNAL, EWM_ATR, N_EWM = range(7)
EWM0 = 10
N_SCALARS = EWM0 + 3 * N_EWM
# ewm decays (alpha) and minimum observations, in the EWM_* order
EWM_ALPHA = np.array([1 / 14, 1 / 14, 2 / 13, 2 / 27, 2 / 10, 1 / 14])
EWM_MINP = np.array([14, 14, 12, 26, 9, 14])
N_PER_WINDOW = 19
N_HEAD = 13  # k-bar shape and price ratios
N_INDICATORS = 6


@dataclass(frozen=True)
class Spec:
    """The window layout: the feature windows plus the Bollinger band's 20 (``rolling``)."""

    windows: tuple[int, ...]

    @property
    def rolling(self) -> np.ndarray:
        return np.array(sorted({*self.windows, 20}), dtype=np.int64)

    @property
    def ring(self) -> int:
        """Bars kept: the longest window plus the bar that leaves it, rounded up to a power of
        two (a bar's slot is then ``t & (ring - 1)``, not a division)."""
        return 1 << int(self.rolling.max()).bit_length()

    @property
    def feature_slot(self) -> np.ndarray:
        """Per rolling window, the index of its block in the output (-1: Bollinger only)."""
        return np.array([self.windows.index(w) if w in self.windows else -1 for w in self.rolling], dtype=np.int64)

    @property
    def sorted_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.rolling)]).astype(np.int64)

    @property
    def n_features(self) -> int:
        return N_HEAD + N_PER_WINDOW * len(self.windows) + N_INDICATORS


def _spec(windows: Sequence[int]) -> Spec:
    ws = tuple(int(w) for w in windows)
    if len(set(ws)) != len(ws) or min(ws) < 2:
        raise ValueError(f"windows must be distinct and at least 2 bars, got {list(windows)}")
    return Spec(ws)


class FeatureState:
    """The kernel state of ``n`` symbols: everything the next bar's features need.

    Slice a symbol out with :meth:`row_bytes` (for a state store) and put it back with
    :meth:`from_rows`; :meth:`update` advances any subset of symbols by one bar.
    """

    def __init__(self, windows: Sequence[int], n: int) -> None:
        self.spec = spec = _spec(windows)
        nw, ring = len(spec.rolling), spec.ring
        self.meta = np.zeros((n, N_META), np.int64)
        self.meta[:, NAN0:NAN0 + N_CHANNELS] = -(1 << 40)   # never missing
        self.scalars = np.zeros((n, N_SCALARS), np.float64)
        self.scalars[:, EWM0::3] = np.nan                     # no ewm value yet
        self.ring = np.zeros((n, ring, N_CHANNELS), np.float64)
        self.sums = np.zeros((n, nw, N_SUMS), np.float64)
        self.comp = np.zeros((n, nw, N_SUMS), np.float64)
        self.sorted = np.zeros((n, int(spec.sorted_offsets[-1])), np.float64)
        self.deque = np.zeros((n, nw, 2, ring), np.int64)    # [max of high, min of low]
        self.deque_ends = np.zeros((n, nw, 2, 2), np.int64)  # head, length

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.meta, self.scalars, self.ring, self.sums, self.comp, self.sorted, self.deque, self.deque_ends)

    def __len__(self) -> int:
        return len(self.meta)

    def bars_seen(self) -> np.ndarray:
        """Bars each symbol's state has taken in."""
        return self.meta[:, T].copy()

    def update(self, rows: np.ndarray, bars: np.ndarray) -> np.ndarray:
        """Advance symbols ``rows`` by one bar each and return their feature rows.

        Args:
            rows: int64 indices of the symbols that have a new bar (each at most once).
            bars: float64 ``(len(rows), 6)`` in :data:`INPUTS` order.

        Returns:
            float64 ``(len(rows), n_features)`` in :func:`~pipelines.features.library.feature_names` order; identical to
            the rows :func:`compute` gives for the same bars.
        """
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        bars = np.ascontiguousarray(bars, dtype=np.float64)
        if bars.shape != (len(rows), len(INPUTS)):
            raise ValueError(f"bars must be ({len(rows)}, {len(INPUTS)}), got {bars.shape}")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("a symbol can take one bar per update")
        out = _output(len(rows), self.spec.n_features)
        _update(rows, bars, *self.arrays, *self._layout(), out)
        return out

    def advance(self, i: int, bars: np.ndarray) -> np.ndarray:
        """Symbol ``i`` takes ``bars`` (``(n, 6)``, in time order) one after the other; returns
        their ``n`` feature rows."""
        bars = as_matrix(bars)
        out = _output(len(bars), self.spec.n_features)
        _update(np.full(len(bars), i, np.int64), bars, *self.arrays, *self._layout(), out)
        return out

    def _layout(self) -> tuple[np.ndarray, ...]:
        s = self.spec
        return (s.rolling, s.feature_slot, s.sorted_offsets)

    def row_bytes(self, i: int) -> bytes:
        """Symbol ``i``'s state as bytes (fixed length for a given window set)."""
        return b"".join(a[i].tobytes() for a in self.arrays)

    @classmethod
    def from_rows(cls, windows: Sequence[int], rows: Sequence[bytes]) -> FeatureState:
        """The state of ``len(rows)`` symbols from :meth:`row_bytes` of each."""
        state = cls(windows, len(rows))
        for i, raw in enumerate(rows):
            offset = 0
            for a in state.arrays:
                size = a[i].nbytes
                a[i] = np.frombuffer(raw, a.dtype, count=a[i].size, offset=offset).reshape(a[i].shape)
                offset += size
            if offset != len(raw):
                raise ValueError(f"state of {len(raw)} bytes does not match windows {list(windows)}")
        return state


def compute(bars: dict[str, np.ndarray] | np.ndarray, windows: Sequence[int] = (5, 10, 20, 30, 60)) -> np.ndarray:
    """Every time-series feature of one symbol's bars (sorted by time), one row per bar.

    Args:
        bars: a mapping with the :data:`INPUTS` columns (``vwap`` optional: typical price), or a
            float64 ``(n, 6)`` array in that order.
        windows: rolling window lengths in bars.

    Returns:
        float64 ``(n, n_features)`` in :func:`~pipelines.features.library.feature_names`
        ``(windows)`` order, equal to :func:`~pipelines.features.library.compute_features`
        within 1e-9.
    """
    matrix = as_matrix(bars)
    state = FeatureState(windows, 1)
    out = _output(len(matrix), state.spec.n_features)
    _update(np.zeros(len(matrix), np.int64), matrix, *state.arrays, *state._layout(), out)
    return out


def compute_panel(bars: np.ndarray, bounds: np.ndarray, windows: Sequence[int] = (5, 10, 20, 30, 60),
                  out: np.ndarray | None = None) -> np.ndarray:
    """:func:`compute` for many symbols at once, in parallel across symbols (all cores).

    Args:
        bars: float64 ``(n, 6)`` in :data:`INPUTS` order, each symbol's rows together and in
            time order.
        bounds: int64 ``(k + 1,)``: symbol ``i``'s rows are ``bounds[i]:bounds[i + 1]``.
        out: optional ``(n, n_features)`` float64 array to fill (reusing one saves the page
            faults of fresh memory, which cost as much as the arithmetic).
    """
    matrix = as_matrix(bars)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    if len(bounds) < 1 or bounds[0] != 0 or bounds[-1] != len(matrix) or np.any(np.diff(bounds) < 0):
        raise ValueError("bounds must rise from 0 to the number of rows")
    state = FeatureState(windows, len(bounds) - 1)
    if out is None:
        out = _output(len(matrix), state.spec.n_features)
    _run_panel(matrix, bounds, *state.arrays, *state._layout(), out)
    return out


def warm_state(bars: np.ndarray, windows: Sequence[int]) -> FeatureState:
    """The state of one symbol after its ``bars`` (``(n, 6)``), for :meth:`FeatureState.update`."""
    state = FeatureState(windows, 1)
    matrix = as_matrix(bars)
    _update(np.zeros(len(matrix), np.int64), matrix, *state.arrays, *state._layout(),
            _output(len(matrix), state.spec.n_features))
    return state


def _output(n: int, n_features: int) -> np.ndarray:
    """Feature rows laid out by column (each feature contiguous: Arrow takes a column without a
    copy). Every entry point uses this one layout, so the per-bar code compiles once."""
    return np.empty((n, n_features), order="F")


def as_matrix(bars: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """Bars as a contiguous float64 ``(n, 6)`` array in :data:`INPUTS` order."""
    if isinstance(bars, np.ndarray):
        return np.ascontiguousarray(bars, dtype=np.float64)
    cols = [np.asarray(bars[k], dtype=np.float64) for k in INPUTS[:5]]
    if "vwap" in bars:
        cols.append(np.asarray(bars["vwap"], dtype=np.float64))
    else:
        cols.append((cols[1] + cols[2] + cols[3]) / 3.0)
    return np.ascontiguousarray(np.column_stack(cols)) if len(cols[0]) else np.empty((0, 6))


__all__ = ["INPUTS", "FeatureState", "as_matrix", "compute", "compute_panel", "warm_state"]


# --------------------------------------------------------------------------- compiled part
# Every array below is indexed in full ([symbol, ...]) rather than sliced: a slice is a new
# array object whose reference count numba maintains atomically, which cost more than the
# arithmetic in this loop.

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_INLINE = dict(inline="always", **_JIT)


@nb.njit(**_INLINE)
def _clean(x):
    """A missing value adds nothing to a sum (a window holding one yields NaN anyway)."""
    return 0.0 if np.isnan(x) else x


@nb.njit(**_INLINE)
def _centered(x, k):
    return 0.0 if np.isnan(x) else x - k


@nb.njit(**_INLINE)
def _add(sums, comp, r, k, j, value):
    """Kahan-compensated ``sums[r, k, j] += value``."""
    y = value - comp[r, k, j]
    t = sums[r, k, j] + y
    comp[r, k, j] = (t - sums[r, k, j]) - y
    sums[r, k, j] = t


@nb.njit(**_INLINE)
def _missing(meta, r, ch, t, w):
    """Whether channel ``ch`` was missing in any of the last ``w`` bars."""
    return meta[r, NAN0 + ch] > t - w


@nb.njit(**_INLINE)
def _constant(meta, r, ch, t, w):
    """Whether channel ``ch`` held one value over the last ``w`` bars."""
    return meta[r, CHANGE0 + ch] <= t - w + 1


@nb.njit(**_JIT)
def _ewm(sc, r, k, x, alpha, minp):
    """pandas ``ewm(alpha, adjust=False, ignore_na=False, min_periods=minp)``, one value."""
    base = EWM0 + 3 * k
    weighted, old_wt, nobs = sc[r, base], sc[r, base + 1], sc[r, base + 2]
    observed = not np.isnan(x)
    if observed:
        nobs += 1.0
    if not np.isnan(weighted):
        old_wt *= 1.0 - alpha
        if observed:
            if weighted != x:
                weighted = (old_wt * weighted + alpha * x) / (old_wt + alpha)
            old_wt = 1.0
    elif observed:
        weighted, old_wt = x, 1.0
    sc[r, base], sc[r, base + 1], sc[r, base + 2] = weighted, old_wt, nobs
    return weighted if nobs >= minp else np.nan


@nb.njit(**_INLINE)
def _add_bar(ring, sums, comp, sc, r, k, p, sign, index_weight):
    """Add (sign 1) or remove (sign -1) ring position ``p`` to window ``k``'s sums."""
    z = _centered(ring[r, p, C], sc[r, K_C])
    u = _centered(ring[r, p, LOGV], sc[r, K_U])
    q = _centered(ring[r, p, RET], sc[r, K_R])
    d = _centered(ring[r, p, DV], sc[r, K_D])
    v = _centered(ring[r, p, V], sc[r, K_V])
    _add(sums, comp, r, k, SZ, sign * z)
    _add(sums, comp, r, k, SZZ, sign * z * z)
    _add(sums, comp, r, k, SIZ, index_weight * z)
    _add(sums, comp, r, k, SU, sign * u)
    _add(sums, comp, r, k, SUU, sign * u * u)
    _add(sums, comp, r, k, SZU, sign * z * u)
    _add(sums, comp, r, k, SR, sign * q)
    _add(sums, comp, r, k, SRR, sign * q * q)
    _add(sums, comp, r, k, SD, sign * d)
    _add(sums, comp, r, k, SDD, sign * d * d)
    _add(sums, comp, r, k, SRD, sign * q * d)
    _add(sums, comp, r, k, SV, sign * v)
    _add(sums, comp, r, k, SVV, sign * v * v)
    _add(sums, comp, r, k, SUP, sign * _clean(ring[r, p, UP]))
    _add(sums, comp, r, k, SDOWN, sign * _clean(ring[r, p, DOWN]))
    _add(sums, comp, r, k, SGAIN, sign * _clean(ring[r, p, GAIN]))
    _add(sums, comp, r, k, SMOVE, sign * _clean(ring[r, p, MOVE]))


@nb.njit(**_JIT)
def _recompute_sums(ring, sums, comp, sc, r, k, t, w, size):
    """Window ``k``'s sums, exactly, from the ring (relative to the reference levels)."""
    mask = size - 1
    for j in range(N_SUMS):
        sums[r, k, j] = 0.0
        comp[r, k, j] = 0.0
    n = min(t + 1, w)
    for i in range(n):
        _add_bar(ring, sums, comp, sc, r, k, (t - n + 1 + i) & mask, 1.0, float(i))


@nb.njit(**_JIT)
def _slide_sums(ring, sums, comp, sc, r, k, t, w, size):
    """Add bar ``t`` to window ``k``'s sums and, once the window is full, remove bar ``t - w``."""
    mask = size - 1
    p = t & mask
    if t >= w:
        _add_bar(ring, sums, comp, sc, r, k, (t - w) & mask, -1.0, 0.0)
        # every remaining value moves one index down: sum(i * z) drops by their sum
        _add(sums, comp, r, k, SIZ, -sums[r, k, SZ])
        weight = w - 1.0
    else:
        weight = float(t)
    z = _centered(ring[r, p, C], sc[r, K_C])
    _add_bar(ring, sums, comp, sc, r, k, p, 1.0, 0.0)
    _add(sums, comp, r, k, SIZ, weight * z)


@nb.njit(**_JIT)
def _deque_push(dq, ends, ring, r, k, side, t, w, size, ch, sign):
    """Monotonic deque of bar indices whose front is the window's max (sign 1) or min (-1)."""
    mask = size - 1
    head, n = ends[r, k, side, 0], ends[r, k, side, 1]
    while n > 0 and dq[r, k, side, head] <= t - w:   # left the window
        head = (head + 1) & mask
        n -= 1
    x = ring[r, t & mask, ch]
    if not np.isnan(x):
        while n > 0 and sign * ring[r, dq[r, k, side, (head + n - 1) & mask] & mask, ch] <= sign * x:
            n -= 1
        dq[r, k, side, (head + n) & mask] = t
        n += 1
    ends[r, k, side, 0], ends[r, k, side, 1] = head, n
    return ring[r, dq[r, k, side, head] & mask, ch] if n > 0 else np.nan


@nb.njit(**_JIT)
def _sorted_replace(srt, r, start, n, old, new, full):
    """Keep ``srt[r, start:start + n]`` sorted: replace ``old`` by ``new`` (``full``) or append."""
    if full:
        lo, hi = start, start + n
        while lo < hi:   # leftmost position of old
            mid = (lo + hi) // 2
            if srt[r, mid] < old:
                lo = mid + 1
            else:
                hi = mid
        pos = lo
    else:
        pos = start + n
        n += 1
    srt[r, pos] = new
    while pos > start and srt[r, pos - 1] > srt[r, pos]:
        srt[r, pos - 1], srt[r, pos] = srt[r, pos], srt[r, pos - 1]
        pos -= 1
    while pos < start + n - 1 and srt[r, pos + 1] < srt[r, pos]:
        srt[r, pos + 1], srt[r, pos] = srt[r, pos], srt[r, pos + 1]
        pos += 1


@nb.njit(**_INLINE)
def _quantile(srt, r, start, w, q):
    """pandas' rolling quantile with linear interpolation over a full sorted window."""
    f = q * (w - 1)
    i = int(f)
    if f == i:
        return srt[r, start + i]
    return srt[r, start + i] + (srt[r, start + i + 1] - srt[r, start + i]) * (f - i)


@nb.njit(**_INLINE)
def _corr(ss_a, ss_b, s_ab, undefined):
    """Pearson correlation from centred sums (NaN when undefined or a side has no spread)."""
    if undefined:
        return np.nan
    denom = np.sqrt(max(ss_a, 0.0) * max(ss_b, 0.0))
    if not denom > EPS:
        return np.nan
    return s_ab / denom


# a spread below this share of what the sums held (w x the peak squared deviation since the
# reset: values that left the window leave their rounding behind) may have lost too many digits
ILL_CONDITIONED = 1e-4


@nb.njit(**_INLINE)
def _ill(spread, sc, r, k, w):
    return spread < ILL_CONDITIONED * w * sc[r, PEAK0 + k]


@nb.njit(**_JIT)
def _exact_moments(ring, r, t, w, size, ch_a, ch_b):
    """Two-pass sums of squared deviations of channels a and b over the last ``w`` bars, their
    cross product, and the cross product of a with the bar index (for the OLS slope)."""
    mask = size - 1
    mean_a = mean_b = 0.0
    for i in range(w):
        p = (t - w + 1 + i) & mask
        mean_a += _clean(ring[r, p, ch_a])
        mean_b += _clean(ring[r, p, ch_b])
    mean_a /= w
    mean_b /= w
    xm = (w - 1) / 2.0
    ss_a = ss_b = s_ab = s_xa = 0.0
    for i in range(w):
        p = (t - w + 1 + i) & mask
        da, db = _clean(ring[r, p, ch_a]) - mean_a, _clean(ring[r, p, ch_b]) - mean_b
        ss_a += da * da
        ss_b += db * db
        s_ab += da * db
        s_xa += (i - xm) * da
    return ss_a, ss_b, s_ab, s_xa


@nb.njit(**_JIT)
def _step(bars, b, r, meta, sc, ring, sums, comp, srt, dq, dq_ends, rolling, slot, offsets, out):
    """Symbol ``r`` takes bar ``bars[b]`` (o, h, l, c, v, vwap); its feature row goes to ``out[b]``."""
    size = ring.shape[1]
    mask = size - 1
    t = meta[r, T]
    o, h, lo, c, v, vw = bars[b, 0], bars[b, 1], bars[b, 2], bars[b, 3], bars[b, 4], bars[b, 5]
    v = 0.0 if np.isnan(v) else v
    rng = (h - lo) + EPS
    top, bottom = max(o, c), min(o, c)
    if np.isnan(o) or np.isnan(c):   # numpy's maximum / minimum propagate NaN
        top = bottom = np.nan
    out[b, 0] = (c - o) / o
    out[b, 1] = (h - lo) / o
    out[b, 2] = (c - o) / rng
    out[b, 3] = (h - top) / o
    out[b, 4] = (h - top) / rng
    out[b, 5] = (bottom - lo) / o
    out[b, 6] = (bottom - lo) / rng
    out[b, 7] = (2 * c - h - lo) / o
    out[b, 8] = (2 * c - h - lo) / rng
    out[b, 9], out[b, 10], out[b, 11], out[b, 12] = o / c, h / c, lo / c, vw / c

    # derived channels, from the previous bar
    p, pp = t & mask, (t - 1) & mask
    has_prev = t > 0
    c_prev = ring[r, pp, C] if has_prev else np.nan
    traded_prev = (ring[r, pp, V] if ring[r, pp, V] > 0 else np.nan) if has_prev else np.nan
    diff = c - c_prev
    ring[r, p, C], ring[r, p, H], ring[r, p, L], ring[r, p, V] = c, h, lo, v
    ring[r, p, RET] = np.log(c / c_prev)
    ring[r, p, LOGV] = np.log1p(v)
    ring[r, p, DV] = np.log1p(v / (traded_prev + EPS))
    ring[r, p, UP] = np.nan if np.isnan(c_prev) else (1.0 if c > c_prev else 0.0)
    ring[r, p, DOWN] = np.nan if np.isnan(c_prev) else (1.0 if c < c_prev else 0.0)
    ring[r, p, GAIN] = diff if (np.isnan(diff) or diff > 0) else 0.0
    ring[r, p, MOVE] = abs(diff)
    for ch in range(N_CHANNELS):
        if np.isnan(ring[r, p, ch]):
            meta[r, NAN0 + ch] = t
        if not has_prev or not (ring[r, p, ch] == ring[r, pp, ch]):
            meta[r, CHANGE0 + ch] = t

    # reference levels: reset every `size` bars, when the sums are recomputed exactly
    refresh = (t & mask) == 0
    for k in range(N_LEVELS):
        ch = LEVEL_CHANNELS[k]
        if refresh:
            sc[r, k] = _clean(ring[r, p, ch])
            peak = 0.0
            for i in range(min(t + 1, size)):
                peak = max(peak, _centered(ring[r, (t - i) & mask, ch], sc[r, k]) ** 2)
            sc[r, PEAK0 + k] = peak
        else:
            sc[r, PEAK0 + k] = max(sc[r, PEAK0 + k], _centered(ring[r, p, ch], sc[r, k]) ** 2)
    kc = sc[r, K_C]
    traded = v if v > 0 else np.nan
    boll_ma, boll_sd, boll_ok = np.nan, np.nan, False
    for k in range(len(rolling)):
        w = rolling[k]
        if refresh:
            _recompute_sums(ring, sums, comp, sc, r, k, t, w, size)
        else:
            _slide_sums(ring, sums, comp, sc, r, k, t, w, size)
        hh = _deque_push(dq, dq_ends, ring, r, k, 0, t, w, size, H, 1.0)
        ll = _deque_push(dq, dq_ends, ring, r, k, 1, t, w, size, L, -1.0)
        start = offsets[k]
        full = t >= w
        old_c = ring[r, (t - w) & mask, C] if full else 0.0
        _sorted_replace(srt, r, start, min(t, w), np.inf if np.isnan(old_c) else old_c,
                        np.inf if np.isnan(c) else c, full)

        ready = t + 1 >= w
        # second moments from the sums, or exactly from the ring where the sums cancelled
        # too much (a window far from the reference level with almost no spread)
        s_z, s_u = sums[r, k, SZ], sums[r, k, SU]
        mean_z = s_z / w
        ss_z, ss_u = sums[r, k, SZZ] - s_z * mean_z, sums[r, k, SUU] - s_u * s_u / w
        s_zu, s_xz = sums[r, k, SZU] - s_z * s_u / w, sums[r, k, SIZ] - (w - 1) / 2.0 * s_z
        if ready and (_ill(ss_z, sc, r, K_C, w) or _ill(ss_u, sc, r, K_U, w)):
            ss_z, ss_u, s_zu, s_xz = _exact_moments(ring, r, t, w, size, C, LOGV)
        s_r, s_d = sums[r, k, SR], sums[r, k, SD]
        ss_r, ss_d = sums[r, k, SRR] - s_r * s_r / w, sums[r, k, SDD] - s_d * s_d / w
        s_rd = sums[r, k, SRD] - s_r * s_d / w
        if ready and (_ill(ss_r, sc, r, K_R, w) or _ill(ss_d, sc, r, K_D, w)):
            ss_r, ss_d, s_rd, _ = _exact_moments(ring, r, t, w, size, RET, DV)
        ss_v = sums[r, k, SVV] - sums[r, k, SV] * sums[r, k, SV] / w
        if ready and _ill(ss_v, sc, r, K_V, w):
            ss_v, _, _, _ = _exact_moments(ring, r, t, w, size, V, V)
        if _constant(meta, r, C, t, w):
            ss_z, s_xz = 0.0, 0.0
        missing_c = _missing(meta, r, C, t, w)
        ma = kc + mean_z
        sd = np.sqrt(max(ss_z, 0.0) / w)
        if w == 20:
            boll_ma, boll_sd, boll_ok = ma, sd, ready and not missing_c
        j = slot[k]
        if j < 0:   # window 20 kept for the Bollinger band only
            continue
        f = N_HEAD + N_PER_WINDOW * j
        out[b, f] = ring[r, (t - w) & mask, C] / c if full else np.nan                      # roc
        if not ready or missing_c:
            for i in (1, 2, 3, 4, 5, 8, 9):
                out[b, f + i] = np.nan
        else:
            xm = (w - 1) / 2.0
            slope = s_xz / (w * (w * w - 1) / 12.0)
            out[b, f + 1] = ma / c                                                           # ma
            out[b, f + 2] = sd / c                                                           # std
            out[b, f + 3] = slope / c                                                        # beta
            out[b, f + 4] = 1.0 - (ss_z - slope * s_xz) / ss_z if ss_z > EPS else 0.0        # rsqr
            resid = (ring[r, p, C] - kc) - (mean_z + slope * (w - 1 - xm))
            out[b, f + 5] = 0.0 if ss_z == 0.0 else resid / c                                # resi
            out[b, f + 8] = _quantile(srt, r, start, w, 0.8) / c                             # qtlu
            out[b, f + 9] = _quantile(srt, r, start, w, 0.2) / c                             # qtld
        hh = hh if ready and not _missing(meta, r, H, t, w) else np.nan
        ll = ll if ready and not _missing(meta, r, L, t, w) else np.nan
        out[b, f + 6], out[b, f + 7] = hh / c, ll / c                                        # max, min
        out[b, f + 10] = (c - ll) / (hh - ll + EPS)                                          # rsv
        out[b, f + 11] = _corr(ss_z, ss_u, s_zu, not ready or missing_c or _missing(meta, r, LOGV, t, w)
                               or _constant(meta, r, C, t, w) or _constant(meta, r, LOGV, t, w))  # corr
        out[b, f + 12] = _corr(ss_r, ss_d, s_rd, not ready or _missing(meta, r, RET, t, w)
                               or _missing(meta, r, DV, t, w) or _constant(meta, r, RET, t, w)
                               or _constant(meta, r, DV, t, w))                              # cord
        if ready and not _missing(meta, r, UP, t, w):
            out[b, f + 13] = sums[r, k, SUP] / w                                             # cntp
            out[b, f + 14] = sums[r, k, SUP] / w - sums[r, k, SDOWN] / w                     # cntd
        else:
            out[b, f + 13] = out[b, f + 14] = np.nan
        if ready and not _missing(meta, r, GAIN, t, w):
            out[b, f + 15] = sums[r, k, SGAIN] / (sums[r, k, SMOVE] + EPS)                   # sump
        else:
            out[b, f + 15] = np.nan
        if ready:
            sd_v = 0.0 if _constant(meta, r, V, t, w) else np.sqrt(max(ss_v, 0.0) / w)
            out[b, f + 16] = (sc[r, K_V] + sums[r, k, SV] / w) / (traded + EPS)              # vma
            out[b, f + 17] = sd_v / (traded + EPS)                                           # vstd
        else:
            out[b, f + 16] = out[b, f + 17] = np.nan
        if ready and not _missing(meta, r, RET, t, w):
            out[b, f + 18] = 0.0 if _constant(meta, r, RET, t, w) else np.sqrt(max(ss_r, 0.0) / w)  # volat
        else:
            out[b, f + 18] = np.nan

    # smoothed indicators
    ind = out.shape[1] - N_INDICATORS
    gain = _ewm(sc, r, EWM_GAIN, ring[r, p, GAIN], EWM_ALPHA[EWM_GAIN], EWM_MINP[EWM_GAIN])
    loss_x = np.nan if np.isnan(diff) else (-diff if diff < 0 else 0.0)
    loss = _ewm(sc, r, EWM_LOSS, loss_x, EWM_ALPHA[EWM_LOSS], EWM_MINP[EWM_LOSS])
    out[b, ind] = gain / (gain + loss + EPS)
    e12 = _ewm(sc, r, EWM_12, c, EWM_ALPHA[EWM_12], EWM_MINP[EWM_12])
    e26 = _ewm(sc, r, EWM_26, c, EWM_ALPHA[EWM_26], EWM_MINP[EWM_26])
    macd = (e12 - e26) / c
    signal = _ewm(sc, r, EWM_SIGNAL, macd, EWM_ALPHA[EWM_SIGNAL], EWM_MINP[EWM_SIGNAL])
    out[b, ind + 1], out[b, ind + 2], out[b, ind + 3] = macd, signal, macd - signal
    out[b, ind + 4] = (c - boll_ma) / (2 * boll_sd + EPS) if boll_ok else np.nan
    tr = h - lo
    for x in (abs(h - c_prev), abs(lo - c_prev)):
        if not np.isnan(x) and (np.isnan(tr) or x > tr):
            tr = x
    out[b, ind + 5] = _ewm(sc, r, EWM_ATR, tr, EWM_ALPHA[EWM_ATR], EWM_MINP[EWM_ATR]) / c
    meta[r, T] = t + 1


@nb.njit(parallel=True, **_JIT)
def _run_panel(bars, bounds, meta, sc, ring, sums, comp, srt, dq, dq_ends, rolling, slot, offsets, out):
    """Batch of many symbols: symbol ``i`` (state row ``i``) through ``bars[bounds[i]:bounds[i + 1]]``."""
    for i in nb.prange(len(bounds) - 1):
        for b in range(bounds[i], bounds[i + 1]):
            _step(bars, b, np.int64(i), meta, sc, ring, sums, comp, srt, dq, dq_ends, rolling, slot, offsets, out)


@nb.njit(**_JIT)
def _update(rows, bars, meta, sc, ring, sums, comp, srt, dq, dq_ends, rolling, slot, offsets, out):
    """Incremental: symbol ``rows[b]`` takes bar ``bars[b]``."""
    for b in range(len(rows)):
        _step(bars, b, rows[b], meta, sc, ring, sums, comp, srt, dq, dq_ends, rolling, slot, offsets, out)
