"""Dagster webserver and daemon over ``workspace.yaml``, instance storage in PostgreSQL."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import yaml

from config import Settings
from infra.services.base import Service
from infra.services.mlflow import venv_script

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def dagster_home(settings: Settings) -> Path:
    """Write ``dagster.yaml`` (PostgreSQL storage, queued runs) and return DAGSTER_HOME."""
    home = settings.platform.state_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    pg = settings.platform.postgres
    instance = {
        "storage": {"postgres": {"postgres_url": pg.url(pg.dagster_database)}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # Spark in local mode wants both cores: one run at a time on this machine
            "config": {"max_concurrent_runs": 1},
        },
        "local_artifact_storage": {
            "module": "dagster.core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home / "storage")},
        },
        "telemetry": {"enabled": False},
    }
    path = home / "dagster.yaml"
    text = yaml.safe_dump(instance, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return home


class _DagsterProcess(Service):
    def _env(self) -> dict[str, str]:
        return {"DAGSTER_HOME": str(dagster_home(self.settings)), "DAGSTER_DISABLE_TELEMETRY": "1"}

    @property
    def workspace(self) -> str:
        return str(PROJECT_ROOT / "workspace.yaml")


class DagsterWebserver(_DagsterProcess):
    name = "dagster-webserver"

    @property
    def host(self) -> str:
        return self.settings.platform.dagster.host

    @property
    def port(self) -> int:
        return self.settings.platform.dagster.port

    def start(self) -> None:
        self.spawn([venv_script("dagster-webserver"), "-w", self.workspace, "-h", self.host, "-p", str(self.port)],
                   env=self._env(), cwd=PROJECT_ROOT)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/server_info", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


class DagsterDaemon(_DagsterProcess):
    """The daemon has no port: it is up while the process we started lives."""

    name = "dagster-daemon"

    @property
    def host(self) -> str:
        return "-"

    @property
    def port(self) -> int:
        return 0

    @property
    def address(self) -> str:
        return "(no port)"

    def reachable(self) -> bool:
        return self.pid() is not None

    def up(self, timeout: float = 120.0) -> str:
        if self.pid():
            return "running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fail_orphaned_runs(self.settings)
        self.start()
        return "started"

    def start(self) -> None:
        self.spawn([venv_script("dagster-daemon"), "run", "-w", self.workspace], env=self._env(), cwd=PROJECT_ROOT)


def fail_orphaned_runs(settings: Settings) -> list[str]:
    """Mark runs the previous daemon launched and never finished as failed; return their ids.

    Run workers are children of the daemon's code server, so when the daemon is not running
    none of its runs can be. Left STARTED (a machine restart, a killed daemon), such a run
    holds the queue's only slot and every later run waits forever. Runs executed in-process
    (``python -m orchestration.main``) carry no code-location tag and are left alone.
    """
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    instance = DagsterInstance.from_config(str(dagster_home(settings)))
    try:
        stuck = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING,
                                                       DagsterRunStatus.CANCELING]))
        orphans = [run for run in stuck if "dagster/code_location" in run.tags]
        for run in orphans:
            instance.report_run_failed(run, "its run worker is gone: the Dagster daemon was restarted")
        return [run.run_id for run in orphans]
    finally:
        instance.dispose()
