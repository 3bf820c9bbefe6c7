"""Labels: what a model learns to predict. They look forward, so only training uses them;
live code imports the feature library, never this module."""

from __future__ import annotations

import numpy as np
import pandas as pd


def compute_labels(close: pd.Series, horizon: int) -> pd.DataFrame:
    """Forward log return over ``horizon`` bars and its direction (1 up, 0 not up), NaN at the end."""
    fwd = np.log(close.shift(-horizon) / close)
    direction = (fwd > 0).astype(float).where(fwd.notna())
    return pd.DataFrame({"fwd_return": fwd, "direction": direction}, index=close.index)
