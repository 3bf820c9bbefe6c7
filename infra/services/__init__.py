"""Local services, in the order they must start (each may depend on the ones before)."""

from __future__ import annotations

from config import Settings
from infra.services.base import Service, ServiceError, Status
from infra.services.dagster import DagsterDaemon, DagsterWebserver
from infra.services.kafka import Kafka
from infra.services.mlflow import Mlflow
from infra.services.postgres import Postgres
from infra.services.api import Api
from infra.services.prometheus import Prometheus
from infra.services.redis import Redis

SERVICES: tuple[type[Service], ...] = (Postgres, Redis, Kafka, Mlflow, DagsterWebserver, DagsterDaemon, Api,
                                       Prometheus)


def all_services(settings: Settings, names: list[str] | None = None) -> list[Service]:
    """Service objects in start order, optionally only ``names``."""
    known = {cls.name: cls for cls in SERVICES}
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ServiceError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [cls(settings) for cls in SERVICES if not names or cls.name in names]


__all__ = ["SERVICES", "Service", "ServiceError", "Status", "all_services"]
