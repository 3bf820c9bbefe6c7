"""The platform smoke run's data: a small deterministic price table for the Delta round trip
(the Kafka round trip is :func:`streaming.smoke.kafka_roundtrip`)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sample_prices(n_symbols: int = 3, n_days: int = 250, seed: int = 7) -> pd.DataFrame:
    """Daily closes of a few geometric random walks (deterministic by ``seed``)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-01", periods=n_days, tz="UTC")
    frames = []
    for i in range(n_symbols):
        returns = rng.normal(0.0, 0.01, n_days)
        frames.append(pd.DataFrame({
            "symbol": f"SYM{i}",
            "ts": dates,
            "close": 100.0 * np.exp(np.cumsum(returns)),
            "ret": returns,
        }))
    out = pd.concat(frames, ignore_index=True)
    out["date"] = out["ts"].dt.strftime("%Y-%m-%d")
    return out
