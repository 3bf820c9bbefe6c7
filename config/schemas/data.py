"""Schema of ``data_config.yaml``: sources, quality rules and the feature recipe."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator

from config.schemas.base import Frozen


class SyntheticSettings(Frozen):
    name: str = "synthetic"
    n_symbols: int = Field(8, ge=1)
    start_date: date = date(2024, 1, 2)
    n_days: int = Field(20, ge=1)
    bar_minutes: int = Field(5, ge=1)
    bars_per_day: int = Field(78, ge=1)
    ticks_per_bar: float = Field(8, gt=0)
    seed: int = 7
    mode: Literal["planted", "interaction", "random_walk"] = "planted"
    signal_strength: float = Field(0.25, ge=0)
    signal_lookback: int = Field(5, ge=2)
    annual_vol: float = Field(0.25, gt=0)
    n_factors: int = Field(2, ge=0)
    df_tails: float = Field(5.0, gt=2)
    garch_alpha: float = Field(0.08, ge=0, lt=1)
    garch_beta: float = Field(0.90, ge=0, lt=1)
    regime_switch_prob: float = Field(0.002, ge=0, le=1)
    regime_vol_mult: float = Field(2.0, ge=1)
    half_spread_bps: float = Field(2.0, ge=0)
    bad_tick_rate: float = Field(0.0005, ge=0, lt=1)

    @field_validator("garch_beta")
    @classmethod
    def _stationary(cls, beta: float, info) -> float:
        if beta + info.data.get("garch_alpha", 0) >= 1:
            raise ValueError("garch_alpha + garch_beta must be below 1 (stationary volatility)")
        return beta


class FileSourceSettings(Frozen):
    """Bars or ticks from CSV/Parquet. ``columns`` maps each platform column to a Spark SQL
    expression over the file's columns (a plain name, or e.g. ``timestamp_millis(trade_ms)``)."""

    name: str = "files"
    path: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    kind: Literal["bars", "ticks"] = "bars"
    interval: str = "1d"
    columns: dict[str, str | None] = {}
    where: str | None = None
    symbol_from_filename: bool = False
    symbols: list[str] | None = None
    ts_format: str | None = None  # Spark datetime pattern when timestamps are not ISO, e.g. "dd/MM/yyyy"
    null_values: list[str] = ["", "null", "NULL", "NaN", "nan", "N/A", "n/a", "NA", "-"]
    # of a folder's (or a glob's) files, the share that may be unreadable (empty, no header, a
    # layout the columns do not fit, no data rows): each is skipped with its reason; past it the run stops
    max_bad_files: float = Field(0.01, ge=0, le=1)


class ArchSourceSettings(Frozen):
    name: str = "arch"
    series: list[Literal["sp500", "nasdaq", "vix", "wti"]] = ["sp500", "nasdaq"]


class QualitySettings(Frozen):
    max_abs_log_return: float = Field(1.0, gt=0)
    max_future_minutes: float = Field(5, ge=0)
    neighbour_days: int = Field(10, ge=1, le=366)


class FeatureSettings(Frozen):
    windows: list[int] = [5, 10, 20, 30, 60]
    rank_features: list[str] = ["roc_5", "roc_20", "volat_20", "vma_5"]


class DataSettings(Frozen):
    source: Literal["synthetic", "files", "arch"] = "synthetic"
    synthetic: SyntheticSettings = SyntheticSettings()
    files: FileSourceSettings = FileSourceSettings()

    @field_validator("files")
    @classmethod
    def _path_when_selected(cls, files: FileSourceSettings, info) -> FileSourceSettings:
        if info.data.get("source") == "files" and not files.path:
            raise ValueError("path is required when source is 'files'")
        return files
    arch: ArchSourceSettings = ArchSourceSettings()
    landing_dir: str = "landing"
    quality: QualitySettings = QualitySettings()
    features: FeatureSettings = FeatureSettings()

    @property
    def daily(self) -> bool:
        """Whether the selected source has daily (or longer) bars."""
        if self.source == "arch":
            return True
        if self.source == "synthetic":
            return self.synthetic.bar_minutes >= 1440
        interval = self.files.interval
        return interval[-1:] == "d" or (interval[-1:] == "h" and int(interval[:-1] or 0) >= 24)

    @property
    def dataset(self) -> str:
        """Name of the selected dataset; its tables live under ``<layer>/<dataset>/``."""
        return getattr(self, self.source).name
