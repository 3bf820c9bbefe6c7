"""``long_short``: the decile long-short book, as a strategy: at every rebalance, long the top
``quantile`` of the cross-section by score and short the bottom one, equal weights, each leg
``gross / 2`` of equity; names in neither leg are flattened. With fewer than ``min_per_leg``
names a leg the book is flat (the research summary says so). Between rebalances (every
``rebalance_every`` decisions: the label horizon, so the periods do not overlap) every position
is kept. Equal scores are ranked in a seeded pseudo-random order, so a constant score (always-up)
gives a random book: what costs and chance alone earn.

The research asset ``long_short_backtests`` runs this strategy through the backtest engine for
every model, with the engine's costs, participation cap, gate and fills at the next open.

Example::

    strategy: long_short
    strategies:
      long_short: {quantile: 0.1, rebalance_every: 5, gross: 1.0}
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numba import njit
from pydantic import Field

from pipelines.trading import rules as R
from pipelines.trading.strategy import CompiledStrategy, Params
from pipelines.trading.strategies.topk import SCORES


class LongShortParams(Params):
    quantile: float = Field(0.1, gt=0, le=0.5)    # share of the cross-section in each leg
    rebalance_every: int = Field(1, ge=1)         # decisions between rebalances
    gross: float = Field(1.0, gt=0, le=10)        # both legs together, over equity
    score: Literal["expected_return", "p_up"] = "expected_return"
    seed: int = 0                                 # orders equal scores
    min_per_leg: int = Field(2, ge=1)             # fewer names a leg: no book (one name is a bet on it, not a ranking)


@njit(cache=True)
def _tie_break(i: int, step: int, seed: float) -> float:
    x = math.sin((i + 1) * 12.9898 + (step + 1) * 78.233 + seed * 37.719) * 43758.5453
    return x - math.floor(x)


@njit(cache=True)
def long_short_signal(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol,
                      account, params, out):
    quantile, every, _gross, score_kind, seed, min_leg = params
    n = len(out)
    if step % int(every) != 0:
        out[:] = np.nan
        return
    score = p_up if score_kind == 1 else expected_return
    out[:] = 0.0
    valid = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        if np.isfinite(score[i]) and close[i] > 0:
            valid[m] = i
            m += 1
    if m < 2:
        return
    idx = valid[:m]
    noise = np.empty(m)
    for j in range(m):
        noise[j] = _tie_break(idx[j], step, seed)
    by_noise = idx[np.argsort(noise)]
    ranked = by_noise[np.argsort(score[by_noise], kind="mergesort")]   # worst first
    per_leg = max(1, int(math.floor(m * quantile)))
    if per_leg < min_leg:  # flat: too few names for a ranking
        return
    for j in range(per_leg):
        out[ranked[j]] = -1.0 / per_leg
        out[ranked[m - 1 - j]] = 1.0 / per_leg


@njit(cache=True)
def long_short_size(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol,
                    account, params, signal, out):
    gross = params[2]
    for i in range(len(out)):
        if np.isnan(signal[i]):
            out[i] = R.held_value(shares[i], working[i], close[i])
        else:
            out[i] = signal[i] * gross / 2.0 * account[1]


class LongShort(CompiledStrategy):
    """The decile long-short book (see the module docstring)."""

    name = "long_short"
    Params = LongShortParams
    signal_kernel = long_short_signal
    size_kernel = long_short_size

    def sweep_grid(self) -> list[dict]:
        """Legs of 5%, 10%, 20% and 30% of the cross-section."""
        return [{"quantile": q} for q in (0.05, 0.1, 0.2, 0.3)]

    def kernel_params(self) -> tuple[float, ...]:
        p = self.params
        return (float(p.quantile), float(p.rebalance_every), float(p.gross), float(SCORES[p.score]), float(p.seed),
                float(p.min_per_leg))
