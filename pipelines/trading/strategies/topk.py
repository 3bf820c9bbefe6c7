"""``topk_dropout``: hold the ``k`` best-scored names, replacing at most ``n_drop`` per rebalance
(Qlib's ``TopkDropoutStrategy``), long-only or long-short.

At a rebalance (every ``rebalance_every`` decisions, counted by ``ctx.step``), for the long leg:
the names held and the best ``n_drop + k - held`` names not held are ranked together by score;
the held names among the ``n_drop`` worst of them are sold (with ``buffer`` b, only those
ranked below ``k + b`` in the whole cross-section), and the best names not held are bought
until ``k`` are held. The short leg does the same on the reversed score. A name bought gets
``gross / k`` of equity (``gross / 2k`` per leg when long-short); a name kept is left as it is
(its value drifts; no trade to re-weight it), so the book trades only what changed. Between
rebalances every position is kept. Names without a score or a price are never bought; held,
they rank last.

Example::

    strategy: topk_dropout
    strategies:
      topk_dropout: {k: 50, n_drop: 5, rebalance_every: 5, long_short: false, buffer: 0, gross: 1.0}
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit
from pydantic import Field

from pipelines.trading import rules as R
from pipelines.trading.strategy import CompiledStrategy, Params

SCORES = {"expected_return": 0, "p_up": 1}


class TopkParams(Params):
    k: int = Field(50, ge=1)                      # names held per leg
    n_drop: int = Field(5, ge=1)                  # names replaced per leg and rebalance, at most
    rebalance_every: int = Field(1, ge=1)         # decisions between rebalances (the label horizon, say)
    long_short: bool = False                      # also short the k worst names
    buffer: int = Field(0, ge=0)                  # sell a held name only once it ranks below k + buffer
    gross: float = Field(1.0, gt=0, le=10)        # the book's gross exposure over equity
    score: Literal["expected_return", "p_up"] = "expected_return"


@njit(cache=True)
def _leg(score, valid, held, taken, k, n_drop, buffer, out, side):
    """One leg's top-k dropout on ``score`` (higher is better): ``out`` gets ``side`` for names to
    buy, 0 for names to sell, NaN (keep) for held names kept; ``taken`` marks names used."""
    n = len(score)
    key = np.empty(n)
    for i in range(n):
        key[i] = score[i] if valid[i] else -np.inf
    order = np.argsort(-key, kind="mergesort")    # best first, ties by symbol order
    rank = np.empty(n, dtype=np.int64)
    for r in range(n):
        rank[order[r]] = r
    n_held = 0
    for i in range(n):
        if held[i]:
            n_held += 1
    # the held names and the best newcomers, ranked together
    want = n_drop + k - n_held
    comb = np.empty(n, dtype=np.int64)
    m = 0
    newcomers = 0
    for r in range(n):
        i = order[r]
        if held[i]:
            comb[m] = i
            m += 1
        elif valid[i] and not taken[i] and newcomers < want:
            comb[m] = i
            m += 1
            newcomers += 1
    sell = np.zeros(n, dtype=np.bool_)
    sold = 0
    for j in range(max(0, m - n_drop), m):        # the n_drop worst of them
        i = comb[j]
        if held[i] and (not valid[i] or rank[i] >= k + buffer):
            sell[i] = True
            sold += 1
    to_buy = sold + k - n_held
    for j in range(m):
        i = comb[j]
        if held[i]:
            out[i] = 0.0 if sell[i] else np.nan   # sold, or kept
            taken[i] = True
        elif to_buy > 0:
            out[i] = side
            taken[i] = True
            to_buy -= 1


@njit(cache=True)
def topk_signal(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account,
                params, out):
    k, n_drop, every, long_short, buffer, _gross, score_kind = params
    n = len(out)
    if step % int(every) != 0:
        out[:] = np.nan                           # between rebalances: keep everything
        return
    score = p_up if score_kind == 1 else expected_return
    valid = np.empty(n, dtype=np.bool_)
    for i in range(n):
        valid[i] = np.isfinite(score[i]) and close[i] > 0
    out[:] = 0.0
    held_long = (shares + working) > 0
    held_short = (shares + working) < 0
    taken = held_short.copy()                     # a name held short is not bought long
    _leg(score, valid, held_long, taken, int(k), int(n_drop), int(buffer), out, 1.0)
    if long_short:
        _leg(-score, valid, held_short, taken, int(k), int(n_drop), int(buffer), out, -1.0)


@njit(cache=True)
def topk_size(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account,
              params, signal, out):
    k, _n_drop, _every, long_short, _buffer, gross, _score = params
    per_name = gross / (2.0 * k if long_short else k) * account[1]
    for i in range(len(out)):
        if np.isnan(signal[i]):
            out[i] = R.held_value(shares[i], working[i], close[i])
        else:
            out[i] = signal[i] * per_name


class TopkDropout(CompiledStrategy):
    """Qlib's top-k with dropout (see the module docstring)."""

    name = "topk_dropout"
    Params = TopkParams
    signal_kernel = topk_signal
    size_kernel = topk_size

    def sweep_grid(self) -> list[dict]:
        """Half, once and twice ``k`` x ``n_drop`` of 1, the configured one and ``k`` (no dropout limit)."""
        k = self.params.k
        return [{"k": kk, "n_drop": max(1, d)} for kk in sorted({max(1, k // 2), k, 2 * k})
                for d in sorted({1, self.params.n_drop, kk})]

    def kernel_params(self) -> tuple[float, ...]:
        p = self.params
        return (float(p.k), float(p.n_drop), float(p.rebalance_every), float(p.long_short), float(p.buffer),
                float(p.gross), float(SCORES[p.score]))
