"""Typed configuration: the YAML files in ``config/`` validated into frozen models.

One loader, :func:`load_settings`, reads ``platform.yaml``, ``kafka_config.yaml``,
``model_config.yaml`` and ``trading_config.yaml``, applies environment overrides and
validates everything. A wrong type or an unknown key fails at start-up with a
:class:`ConfigError` that names the file and the key.

Environment overrides use the file's prefix and the key path joined by ``__``::

    QL_PLATFORM__POSTGRES__PORT=5544
    QL_TRADING__RISK__MAX_DRAWDOWN=0.1
    QL_CONFIG_DIR=/etc/quantlake        # read the YAML files from another folder

Values are parsed as YAML scalars, so ``true``, ``12`` and ``null`` get their types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "QL_"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file and key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# platform.yaml


class SparkSettings(_Frozen):
    master: str = "local[2]"
    app_name: str = "quantlake"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    version: str = "4.2.0"
    delta_version: str = "4.4.0"
    ui_enabled: bool = False

    @property
    def line(self) -> str:
        """The Spark major.minor line that names Delta's artifact (``4.2``)."""
        return ".".join(self.version.split(".")[:2])


class LakeSettings(_Frozen):
    root: str = "lake"


class PostgresSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(5544, ge=1, le=65535)
    user: str = "quantlake"
    database: str = "quantlake"
    mlflow_database: str = "mlflow"
    dagster_database: str = "dagster"
    os_user: str = "postgres"

    def url(self, database: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL for ``database`` (default: the warehouse database)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database or self.database}"


class RedisSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(6390, ge=1, le=65535)
    db: int = Field(0, ge=0)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


class KafkaServerSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(9392, ge=1, le=65535)
    controller_port: int = Field(9393, ge=1, le=65535)
    version: str = "4.4.0"
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class MlflowSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(5500, ge=1, le=65535)
    experiment: str = "quantlake"
    registered_model: str = "quantlake-direction"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"


class DagsterSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(3300, ge=1, le=65535)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class PlatformSettings(_Frozen):
    environment: Literal["local", "ci", "production"] = "local"
    state_dir: Path = Path(".state")
    spark: SparkSettings = SparkSettings()
    lake: LakeSettings = LakeSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    kafka: KafkaServerSettings = KafkaServerSettings()
    mlflow: MlflowSettings = MlflowSettings()
    dagster: DagsterSettings = DagsterSettings()
    reports_dir: Path = Path("reports")  # tear sheets; relative to state_dir

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value if value.is_absolute() else (PROJECT_ROOT / value).resolve()

    @property
    def lake_root(self) -> Path:
        root = Path(self.lake.root)
        return root if root.is_absolute() else self.state_dir / root

    @property
    def reports_root(self) -> Path:
        return self.reports_dir if self.reports_dir.is_absolute() else self.state_dir / self.reports_dir


# kafka_config.yaml


class KafkaTopics(_Frozen):
    market_data: str = "market-data"
    dead_letter: str = "market-data-dlq"
    orders: str = "orders"
    fills: str = "fills"


class KafkaProducerSettings(_Frozen):
    linger_ms: int = Field(5, ge=0)
    batch_size: int = Field(65536, ge=1)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"
    acks: Literal["all", 0, 1] = "all"


class KafkaConsumerSettings(_Frozen):
    group_id: str = "quantlake-stream"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


class KafkaSettings(_Frozen):
    bootstrap_servers: str | None = None
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    producer: KafkaProducerSettings = KafkaProducerSettings()
    consumer: KafkaConsumerSettings = KafkaConsumerSettings()


# model_config.yaml


class LstmSettings(_Frozen):
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class TransformerSettings(_Frozen):
    d_model: int = Field(256, ge=1)
    n_heads: int = Field(8, ge=1)
    n_layers: int = Field(6, ge=1)
    dim_feedforward: int = Field(1024, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerSettings":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class TrainingSettings(_Frozen):
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    max_epochs: int = Field(50, ge=1)
    early_stopping_patience: int = Field(5, ge=1)
    seed: int = 42
    validation_fraction: float = Field(0.2, gt=0, lt=0.5)
    return_loss_weight: float = Field(0.5, ge=0)
    weight_decay: float = Field(1e-5, ge=0)
    history_days: int | None = Field(None, ge=1)
    distributed: bool = False
    num_processes: int = Field(2, ge=1)


ModelFamily = Literal["always_up", "momentum_sign", "linear", "lstm", "transformer", "ensemble"]


class WalkForwardSettings(_Frozen):
    n_folds: int = Field(5, ge=1)
    purge_bars: int = Field(1, ge=0)
    embargo_bars: int = Field(1, ge=0)


class PromotionSettings(_Frozen):
    metric: Literal["accuracy", "log_loss", "ic", "rank_ic"] = "accuracy"
    min_improvement: float = Field(0.002, ge=0)


class ModelSettings(_Frozen):
    label_horizon: int = Field(1, ge=1)
    sequence_length: int = Field(60, ge=1)
    families: list[ModelFamily] = ["always_up", "momentum_sign", "linear", "lstm", "transformer", "ensemble"]
    lstm: LstmSettings = LstmSettings()
    transformer: TransformerSettings = TransformerSettings()
    training: TrainingSettings = TrainingSettings()
    walk_forward: WalkForwardSettings = WalkForwardSettings()
    promotion: PromotionSettings = PromotionSettings()


# trading_config.yaml


class SignalSettings(_Frozen):
    long_threshold: float = Field(0.55, ge=0, le=1)
    short_threshold: float = Field(0.45, ge=0, le=1)


class SizingSettings(_Frozen):
    method: Literal["fixed_fraction", "fixed_notional", "vol_target", "kelly"] = "fixed_fraction"
    vol_target_annual: float = Field(0.10, gt=0)
    kelly_fraction: float = Field(0.25, gt=0, le=1)


class CostSettings(_Frozen):
    commission_bps: float = Field(1.0, ge=0)
    half_spread_bps: float = Field(2.0, ge=0)
    slippage_bps_per_pct_volume: float = Field(5.0, ge=0)
    max_participation: float = Field(0.05, gt=0, le=1)


class RiskSettings(_Frozen):
    max_position_size: float = Field(0.02, gt=0, le=1)
    stop_loss: float = Field(0.02, gt=0)
    take_profit: float = Field(0.04, gt=0)
    max_drawdown: float = Field(0.05, gt=0, lt=1)


class BacktestSettings(_Frozen):
    strategies: list[ModelFamily] | None = None  # None: every model in the predictions table
    sweep: bool = True
    sweep_seeds: int = Field(1, ge=1)
    montecarlo_simulations: int = Field(10_000, ge=100)
    montecarlo_method: Literal["iid", "stationary"] = "stationary"
    montecarlo_block: float = Field(20.0, ge=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    ruin_fraction: float = Field(0.5, gt=0, lt=1)


class TradingSettings(_Frozen):
    initial_capital: float = Field(100_000, gt=0)
    backtest: BacktestSettings = BacktestSettings()
    signal: SignalSettings = SignalSettings()
    sizing: SizingSettings = SizingSettings()
    costs: CostSettings = CostSettings()
    risk: RiskSettings = RiskSettings()


# data_config.yaml


class SyntheticSettings(_Frozen):
    name: str = "synthetic"
    n_symbols: int = Field(8, ge=1)
    start_date: date = date(2024, 1, 2)
    n_days: int = Field(20, ge=1)
    bar_minutes: int = Field(5, ge=1)
    bars_per_day: int = Field(78, ge=1)
    ticks_per_bar: float = Field(8, gt=0)
    seed: int = 7
    mode: Literal["planted", "random_walk"] = "planted"
    signal_strength: float = Field(0.25, ge=0)
    signal_lookback: int = Field(5, ge=1)
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


class FileSourceSettings(_Frozen):
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


class ArchSourceSettings(_Frozen):
    name: str = "arch"
    series: list[Literal["sp500", "nasdaq", "vix", "wti"]] = ["sp500", "nasdaq"]


class QualitySettings(_Frozen):
    max_abs_log_return: float = Field(1.0, gt=0)
    max_future_minutes: float = Field(5, ge=0)


class FeatureSettings(_Frozen):
    windows: list[int] = [5, 10, 20, 30, 60]
    rank_features: list[str] = ["roc_5", "roc_20", "volat_20", "vma_5"]


class DataSettings(_Frozen):
    source: Literal["synthetic", "files", "arch"] = "synthetic"
    synthetic: SyntheticSettings = SyntheticSettings()
    files: FileSourceSettings = FileSourceSettings()
    arch: ArchSourceSettings = ArchSourceSettings()
    landing_dir: str = "landing"
    quality: QualitySettings = QualitySettings()
    features: FeatureSettings = FeatureSettings()

    @property
    def dataset(self) -> str:
        """Name of the selected dataset; its tables live under ``<layer>/<dataset>/``."""
        return getattr(self, self.source).name


class Settings(_Frozen):
    """Everything the platform reads from ``config/``."""

    platform: PlatformSettings
    kafka: KafkaSettings
    model: ModelSettings
    trading: TradingSettings
    data: DataSettings

    @property
    def kafka_bootstrap(self) -> str:
        """Brokers to connect to: kafka_config's list, else the local broker."""
        return self.kafka.bootstrap_servers or self.platform.kafka.bootstrap


FILES: dict[str, tuple[str, type[_Frozen]]] = {
    "platform": ("platform.yaml", PlatformSettings),
    "kafka": ("kafka_config.yaml", KafkaSettings),
    "model": ("model_config.yaml", ModelSettings),
    "trading": ("trading_config.yaml", TradingSettings),
    "data": ("data_config.yaml", DataSettings),
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _apply_overrides(
    data: dict[str, Any], section: str, env: Mapping[str, str]
) -> dict[str, str]:
    """Write ``QL_<SECTION>__A__B=value`` into ``data['a']['b']``; return key path -> variable."""
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    applied: dict[str, str] = {}
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        path = [part.lower() for part in name[len(prefix) :].split("__")]
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        applied[".".join(path)] = name
    return applied


def _format_error(path: Path, exc: ValidationError, overrides: dict[str, str]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        source = f" (from ${overrides[key]})" if key in overrides else ""
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else ""
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{path}: {key}: {message}{got}{source}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _read_profile(folder: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """``profiles/<name>.yaml``: per-section values laid over the files (``model: {...}``)."""
    path = folder / "profiles" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (folder / "profiles").glob("*.yaml"))
        raise ConfigError(f"{path}: no such profile ${ENV_PREFIX}PROFILE={name!r} (known: {', '.join(known) or 'none'})")
    data = _read_yaml(path)
    unknown = sorted(set(data) - set(FILES))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected some of {sorted(FILES)}")
    return path, data


def load_settings(
    config_dir: Path | str | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, override and validate all configuration files.

    Precedence, lowest first: the YAML files, the profile named by ``$QL_PROFILE``
    (``profiles/<name>.yaml``, e.g. the main job's ``demo`` sizes), ``QL_<FILE>__A__B``
    variables.

    Args:
        config_dir: folder holding the YAML files; default ``$QL_CONFIG_DIR`` or ``config/``.
        env: environment to read overrides from; default ``os.environ``.

    Raises:
        ConfigError: a file is not valid YAML, a key is unknown or a value has the wrong
            type; the message names the file and the dotted key.
    """
    env = os.environ if env is None else env
    folder = Path(config_dir or env.get(f"{ENV_PREFIX}CONFIG_DIR") or CONFIG_DIR)
    profile_path, profile = (_read_profile(folder, env[f"{ENV_PREFIX}PROFILE"])
                             if env.get(f"{ENV_PREFIX}PROFILE") else (None, {}))
    sections: dict[str, _Frozen] = {}
    for section, (filename, model) in FILES.items():
        path = folder / filename
        data = _read_yaml(path)
        if section in profile:
            _deep_merge(data, profile[section])
        overrides = _apply_overrides(data, section, env)
        try:
            sections[section] = model.model_validate(data)
        except ValidationError as exc:
            shown = Path(f"{path} + {profile_path}") if section in profile else path
            raise ConfigError(_format_error(shown, exc, overrides)) from None
    settings = Settings(**sections)
    signal = settings.trading.signal
    if settings.data.source == "files" and not settings.data.files.path:
        raise ConfigError(f"{folder / 'data_config.yaml'}: files.path: required when source is 'files'")
    if signal.short_threshold > signal.long_threshold:
        raise ConfigError(
            f"{folder / 'trading_config.yaml'}: signal.short_threshold "
            f"({signal.short_threshold}) is above signal.long_threshold ({signal.long_threshold})"
        )
    return settings
