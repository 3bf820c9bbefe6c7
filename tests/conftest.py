"""Shared fixtures: configuration, the real local services, one SparkSession per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings, load_settings
from config.settings import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
TABLEAU_SCHEMA = SHARED / "tableau-schema" / "twb_2026.1.0.xsd"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share two cores: one OpenMP / BLAS thread per process (torch, LightGBM, numpy,
    # and the subprocesses they start) instead of threads spinning against the other worker's
    # Spark; measured: the planted-signal test took 350 s beside Spark with two threads, 48 s alone
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


# Under ``pytest -n 2 --dist loadgroup`` (``make test``) the tests on the shared services run in
# two groups, each one test at a time in one worker: the Dagster / MLflow / warehouse side here,
# the Kafka / Redis / stream side in the other. Nothing in one group touches what the other
# uses (topics, accounts, datasets and model names are per test; the warehouse's writers and
# the Tableau extract's check are all in this group). A module with any test on the services
# goes whole into its group, so its module fixtures are built once. The cluster's tests use
# services of their own (other ports) and run in a group of their own.
ORCHESTRATION_GROUP = {"test_main_job.py", "test_model_registry.py", "test_dagster.py", "test_dagster_daemon.py",
                       "test_mlflow.py", "test_warehouse.py", "test_tableau.py", "test_infra.py",
                       "test_redis_postgres.py", "test_research_assets.py", "test_cli_errors.py"}
OWN_SERVICES = {"test_cluster.py"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Assign each test its xdist group (see above); other modules are a group each and go to
    whichever worker is free."""
    on_services = {item.path.name for item in items
                   if "services" in getattr(item, "fixturenames", ()) or item.get_closest_marker("services")}
    for item in items:
        module = item.path.name
        if module in ORCHESTRATION_GROUP and module in on_services:
            group = "services-orchestration"
        elif module in on_services and module not in OWN_SERVICES:
            group = "services-live"
        else:
            group = module
        item.add_marker(pytest.mark.xdist_group(group))


def _beside(path: Path) -> Path:
    """``path`` under ../shared; skips outside CI when it is absent, fails in CI (where it must be)."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI runs with ../shared beside the project")
        pytest.skip(f"{path} is not beside the project")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``."""
    return _beside(SHARED_DATA)


@pytest.fixture(scope="session")
def tableau_schema() -> Path:
    """Tableau's workbook schema in ``../shared/tableau-schema``."""
    return _beside(TABLEAU_SCHEMA)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The project's configuration, with the Delta lake moved to a temporary folder."""
    lake = tmp_path_factory.mktemp("lake")
    return load_settings(env={**os.environ, "QL_PLATFORM__LAKE__ROOT": str(lake)})


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Bring up PostgreSQL, Redis, Kafka and MLflow (a no-op when they already run)."""
    from infra.services import all_services

    for svc in all_services(settings, ["postgres", "redis", "kafka", "mlflow"]):
        svc.up()
    return settings


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator:
    """One SparkSession for the whole run: starting Spark per test would dominate test time."""
    from pipelines.lake.spark import get_spark

    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture
def lake_dir(settings: Settings, request: pytest.FixtureRequest) -> Path:
    """A fresh folder in the test lake for one test."""
    path = settings.platform.lake_root / "tests" / request.node.name.replace("[", "_").replace("]", "")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file-backed MLflow tracking store and registry in a temporary folder (no server), with
    an experiment ``tests`` whose artifacts stay there; returns its URI."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("QL_PLATFORM__MLFLOW__EXPERIMENT", "tests")
    mlflow.set_tracking_uri(uri)
    MlflowClient(uri).create_experiment("tests", artifact_location=str(tmp_path / "artifacts"))
    return uri
