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
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.errors import ConfigError
from config.schemas.base import PROJECT_ROOT, Frozen
from config.schemas.data import DataSettings
from config.schemas.kafka import KafkaSettings
from config.schemas.model import ModelSettings
from config.schemas.platform import PlatformSettings
from config.schemas.trading import TradingSettings

CONFIG_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "QL_"

__all__ = ["CONFIG_DIR", "PROJECT_ROOT", "ConfigError", "Settings", "load_settings"]


class Settings(Frozen):
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


FILES: dict[str, tuple[str, type[Frozen]]] = {
    "platform": ("platform.yaml", PlatformSettings),
    "kafka": ("kafka_config.yaml", KafkaSettings),
    "model": ("model_config.yaml", ModelSettings),
    "trading": ("trading_config.yaml", TradingSettings),
    "data": ("data_config.yaml", DataSettings),
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
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
        scalar = isinstance(err.get("input"), (str, int, float, bool, type(None)))
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" and scalar else ""
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
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
    origin = "" if config_dir or not env.get(f"{ENV_PREFIX}CONFIG_DIR") else f" (from ${ENV_PREFIX}CONFIG_DIR)"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such configuration folder{origin}")
    missing = [name for name, _ in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{folder}: missing {', '.join(missing)}{origin}; a configuration folder holds "
                          f"{', '.join(name for name, _ in FILES.values())} (copy them from {CONFIG_DIR})")
    profile_path, profile = (_read_profile(folder, env[f"{ENV_PREFIX}PROFILE"])
                             if env.get(f"{ENV_PREFIX}PROFILE") else (None, {}))
    sections: dict[str, Frozen] = {}
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
    model, data = sections["model"], sections["data"]
    if model.label_price == "auto":  # the tradable label for daily bars, where the overnight gap is large
        sections["model"] = model.model_copy(update={"label_price": "open" if data.daily else "close"})
    return Settings(**sections)
