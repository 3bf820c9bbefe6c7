"""Dagster resources: thin wrappers that hand assets the platform's adapters.

All of them read ``config/`` through :class:`SettingsResource`, so one setting
(``QL_CONFIG_DIR`` or the resource's ``config_dir``) picks the environment for every
resource at once. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource, InitResourceContext
from kafka import KafkaConsumer, KafkaProducer
from pydantic import PrivateAttr
from pyspark.sql import SparkSession

from config import Settings, load_settings
from models.tracking import configure_mlflow
from pipelines.lake.spark import get_spark
from streaming.kafka_io import make_consumer, make_producer


class SettingsResource(ConfigurableResource):
    """The validated configuration.

    ``config_dir`` empty means ``$QL_CONFIG_DIR`` or ``config/``. ``overrides`` take the
    same ``QL_*`` keys as the environment and win over it, so a run (a sensor's, say) can
    point every resource at another dataset: ``{"QL_DATA__SOURCE": "files", ...}``.
    """

    config_dir: str = ""
    overrides: dict[str, str] = {}
    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # read and validated once per run; every asset of the run sees the same settings
        self._settings = self._load()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self._settings = None

    def _load(self) -> Settings:
        return load_settings(self.config_dir or None, env={**os.environ, **self.overrides})

    def get(self) -> Settings:
        """The run's settings (read from ``config/`` when used outside a run)."""
        return self._settings if self._settings is not None else self._load()


class SparkResource(ConfigurableResource):
    """The process's SparkSession with Delta."""

    settings: SettingsResource

    def session(self) -> SparkSession:
        return get_spark(self.settings.get())


class KafkaResource(ConfigurableResource):
    """Producers and consumers for the configured brokers, logged in as Kafka user ``user``
    (the platform check writes and reads a topic of its own: the admin)."""

    settings: SettingsResource
    user: str = "admin"

    @property
    def bootstrap(self) -> str:
        return self.settings.get().kafka_bootstrap

    def producer(self, **overrides) -> KafkaProducer:
        return make_producer(self.settings.get(), self.user, **overrides)

    def consumer(self, *topics: str, **overrides) -> KafkaConsumer:
        return make_consumer(self.settings.get(), self.user, *topics, **overrides)


class MlflowResource(ConfigurableResource):
    """Points the MLflow client at the tracking server and the platform's experiment."""

    settings: SettingsResource

    def configure(self) -> str:
        """Set tracking URI and experiment; return the experiment id."""
        return configure_mlflow(self.settings.get())


def default_resources(config_dir: str = "", overrides: dict[str, str] | None = None) -> dict[str, ConfigurableResource]:
    """The resource set every job uses (``overrides``: ``QL_*`` keys, as in the environment)."""
    settings = SettingsResource(config_dir=config_dir, overrides=overrides or {})
    return {
        "settings": settings,
        "spark": SparkResource(settings=settings),
        "kafka": KafkaResource(settings=settings),
        "tracking": MlflowResource(settings=settings),
    }
