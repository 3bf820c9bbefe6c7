"""Dagster webserver and daemon over ``workspace.yaml``, instance storage in PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import yaml

from config import Settings
from infra.services.base import Service, pid_alive
from infra.services.mlflow import venv_script

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def dagster_home(settings: Settings) -> Path:
    """Write ``dagster.yaml`` (PostgreSQL storage, queued runs) and return DAGSTER_HOME."""
    home = settings.platform.state_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    pg, dg = settings.platform.postgres, settings.platform.dagster
    instance = {
        "storage": {"postgres": {"postgres_url": pg.url(pg.dagster_database)}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": dg.max_concurrent_runs},
        },
        "local_artifact_storage": {
            "module": "dagster.core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home / "storage")},
        },
        "telemetry": {"enabled": False},
        # runs stuck STARTING or CANCELING are ended; runs whose process died are found by
        # fail_dead_runs (the default run launcher offers no worker health check of its own)
        "run_monitoring": {"enabled": True, "start_timeout_seconds": dg.run_start_timeout_s,
                           "cancel_timeout_seconds": dg.run_cancel_timeout_s,
                           "poll_interval_seconds": dg.monitor_interval_s},
    }
    if dg.run_launcher is not None:  # e.g. every run in its own container (docker/docker-compose.cluster.yml)
        launcher = dg.run_launcher
        instance["run_launcher"] = {"module": launcher.module, "class": launcher.class_name, "config": launcher.config}
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
    protocol = "the Dagster webserver"

    @property
    def host(self) -> str:
        return self.settings.platform.dagster.host

    @property
    def port(self) -> int:
        return self.settings.platform.dagster.port

    def start(self) -> None:
        self.spawn([venv_script("dagster-webserver"), "-w", self.workspace, "-h", self.host, "-p", str(self.port)],
                   env=self._env(), cwd=PROJECT_ROOT)

    def handshake(self) -> None:
        with urllib.request.urlopen(f"http://{self.address}/server_info", timeout=2) as resp:
            info = json.loads(resp.read(4096) or b"{}")
        if "dagster_webserver_version" not in info:
            raise ConnectionError(f"/server_info has no dagster_webserver_version: {str(info)[:80]}")


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

    def check(self) -> str:
        return "" if self.pid() is not None else "nothing listens"

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


PID_TAG, HOST_TAG = "quantlake/pid", "quantlake/host"


def process_tags() -> dict[str, str]:
    """Tags that let a later process tell whether this run's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def run_pid(instance, run) -> int | None:
    """The process executing ``run`` on this host: the tag an in-process run carries, or the
    pid a run worker reports in its first engine event; None when unknown or on another host."""
    from dagster import DagsterEventType

    if PID_TAG in run.tags:
        return int(run.tags[PID_TAG]) if run.tags.get(HOST_TAG) == socket.gethostname() else None
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value)
    return None


def fail_dead_runs(instance) -> list[str]:
    """Mark STARTED runs whose process is gone (killed, crashed, machine restarted) as failed.

    Such a run would otherwise hold a slot of the run queue forever (with one slot, every
    later run from the UI, the schedule or a sensor waits). Returns the runs failed.
    """
    from dagster import DagsterRunStatus, RunsFilter

    failed = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        pid = run_pid(instance, run)
        if pid is not None and not pid_alive(pid):
            instance.report_run_failed(run, f"its process (pid {pid}) is gone: it was killed or crashed")
            failed.append(run.run_id)
    return failed
