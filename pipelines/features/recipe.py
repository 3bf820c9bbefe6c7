"""The feature recipe: everything needed to rebuild a model's inputs from bars.

A registered model stores its recipe; live code builds features from the champion's
recipe, never from today's config (what serves live is what was trained).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from config import Settings
from pipelines.features.library import add_cross_sectional_ranks, compute_features, feature_names, max_lookback


@dataclass(frozen=True)
class FeatureSpec:
    """Windows, ranked features and how many rows of them a model reads per prediction."""

    windows: tuple[int, ...]
    rank_features: tuple[str, ...]
    sequence_length: int = 1  # feature rows per prediction (1 for row-wise models)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(int(w) for w in self.windows))
        object.__setattr__(self, "rank_features", tuple(self.rank_features))
        unknown = [n for n in self.rank_features if n not in feature_names(self.windows)]
        if unknown:
            raise ValueError(f"rank_features {unknown} are not features of windows {list(self.windows)}")

    @classmethod
    def from_settings(cls, settings: Settings, sequence_length: int = 1) -> "FeatureSpec":
        f = settings.data.features
        return cls(tuple(f.windows), tuple(f.rank_features), sequence_length)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        return cls(tuple(data["windows"]), tuple(data["rank_features"]), int(data.get("sequence_length", 1)))

    def to_dict(self) -> dict:
        return {**asdict(self), "windows": list(self.windows), "rank_features": list(self.rank_features),
                "features": self.names, "lookback_bars": self.lookback_bars}

    @property
    def names(self) -> list[str]:
        """The feature columns, in the order the model takes them."""
        return feature_names(self.windows, self.rank_features)

    @property
    def lookback_bars(self) -> int:
        """Bars of history per symbol needed to score the newest bar with every feature defined."""
        return max_lookback(self.windows) + self.sequence_length - 1

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        """symbol, ts and every feature of the recipe, from bars of one or many symbols (pandas).

        Args:
            bars: symbol, ts, open, high, low, close, volume (vwap optional: typical price).
        """
        parts = []
        for _, g in bars.groupby("symbol", sort=True):
            g = g.sort_values("ts").reset_index(drop=True)
            if "vwap" not in g:
                g["vwap"] = (g["high"] + g["low"] + g["close"]) / 3
            parts.append(pd.concat([g[["symbol", "ts"]], compute_features(g, self.windows)], axis=1))
        frame = pd.concat(parts, ignore_index=True)
        if self.rank_features:
            frame = pd.concat(add_cross_sectional_ranks(rows, self.rank_features) for _, rows in frame.groupby("ts"))
        frame = frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        return frame[["symbol", "ts", *self.names]]
