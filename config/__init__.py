"""Configuration: YAML files in this folder and the one typed loader."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
