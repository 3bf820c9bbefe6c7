"""Labels: what a model learns to predict. They look forward, so only training (and the live
report, judging past predictions) uses them; live decisions import the feature library, never
this module."""

from __future__ import annotations

import numpy as np
import pandas as pd


def compute_labels(bars: pd.DataFrame, horizon: int, price: str = "close") -> pd.DataFrame:
    """Forward log return over ``horizon`` bars and its direction (1 up, 0 not up), NaN at the end.

    Args:
        bars: one symbol's bars in time order, with ``close`` (and ``open`` for ``price="open"``).
        horizon: bars the return spans.
        price: ``"close"``: close(t) -> close(t + horizon). ``"open"``: open(t + 1) -> open(t + 1 +
            horizon), the return of a position decided at bar t's close and filled at the next
            open, as the backtest and the live path trade it (no credit for the gap between
            t's close and the next open, which no order placed at t can earn).
    """
    if price == "open":
        fwd = np.log(bars["open"].shift(-(horizon + 1)) / bars["open"].shift(-1))
    elif price == "close":
        fwd = np.log(bars["close"].shift(-horizon) / bars["close"])
    else:
        raise ValueError(f"label price {price!r}: expected 'close' or 'open'")
    direction = (fwd > 0).astype(float).where(fwd.notna())
    return pd.DataFrame({"fwd_return": fwd, "direction": direction}, index=bars.index)
