"""A run launched the way the UI launches it: queued in PostgreSQL, started by the daemon in a
run-worker process of its own. Catches what in-process execution cannot (imports that behave
differently in a worker, executor choice)."""

from __future__ import annotations

import json
import time
import uuid
import urllib.request
from pathlib import Path

import pytest

from infra.services import all_services

pytestmark = pytest.mark.services

LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status
  stepStats { stepKey status } } } }"""


def _graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.load(resp)["data"]


def _launch_and_wait(url: str, job: str, overrides: dict, deadline_s: float = 480) -> dict:
    params = {
        "selector": {"repositoryLocationName": "quantlake", "repositoryName": "__repository__", "jobName": job},
        "runConfigData": {"resources": {"settings": {"config": {"overrides": overrides}}}},
        "executionMetadata": {"tags": [{"key": "dagster/asset_partition_range_start", "value": "2024-05-01"},
                                       {"key": "dagster/asset_partition_range_end", "value": "2024-05-01"}]},
    }
    launched = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        run = _graphql(url, STATUS, {"id": run_id})["runOrError"]
        if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(3)
    assert run["status"] == "SUCCESS", run["stepStats"]
    return {s["stepKey"]: s["status"] for s in run["stepStats"]}


@pytest.mark.chaos  # ~2.5 min: in make chaos; the suite keeps the quick dead-run sweep test below
def test_after_a_killed_main_job_the_daemon_runs_the_research_then_the_training_job(services, tmp_path: Path) -> None:
    """What a user does in the UI (materialize the research group, then the models group), right
    after ``kill -9`` of ``python -m orchestration.main`` mid-run: the killed run is failed by the
    daemon's dead_runs_sensor, so the UI's run gets the queue's slot and completes."""
    import os
    import signal
    import subprocess
    import sys

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from config.settings import PROJECT_ROOT
    from infra.services.dagster import PID_TAG, dagster_home

    for svc in all_services(services, ["dagster-webserver", "dagster-daemon"]):
        svc.up()
    url = services.platform.dagster.url
    overrides = {"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SYNTHETIC__N_SYMBOLS": "2",
                 "QL_DATA__SYNTHETIC__N_DAYS": "3", "QL_DATA__SYNTHETIC__START_DATE": "2024-05-06"}
    main = subprocess.Popen([sys.executable, "-m", "orchestration.main", "--stages", "research"],
                            env={**os.environ, **overrides}, cwd=PROJECT_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instance = DagsterInstance.from_config(str(dagster_home(services)))
    try:
        killed = None
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline and main.poll() is None:
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED], tags={PID_TAG: str(main.pid)}))
            killed = runs[0].run_id if runs else None
            time.sleep(0.2)
        assert killed, "the main job's research run never started"
        os.killpg(main.pid, signal.SIGKILL)  # the main job and its Spark JVM, mid-run
        main.wait(30)
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.STARTED  # what used to block the queue

        started = time.monotonic()
        steps = _launch_and_wait(url, "research_job", overrides, deadline_s=300)
        print(f"UI-style run completed {time.monotonic() - started:.0f}s after the kill")
        assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
    finally:
        if main.poll() is None:
            os.killpg(main.pid, signal.SIGKILL)
        instance.dispose()
    assert steps["silver_bars_silver_bars_expectations"] == "SUCCESS"
    assert (tmp_path / "lake" / "gold" / "synthetic" / "features" / "_delta_log").is_dir()

    # the networks train in the run worker too (small sizes), and the gate promotes a first champion
    model = f"daemon-{uuid.uuid4().hex[:8]}"
    tiny = {"QL_MODEL__SEQUENCE_LENGTH": "5", "QL_MODEL__LSTM__HIDDEN_SIZE": "4", "QL_MODEL__LSTM__NUM_LAYERS": "1",
            "QL_MODEL__TRANSFORMER__D_MODEL": "4", "QL_MODEL__TRANSFORMER__N_HEADS": "2",
            "QL_MODEL__TRANSFORMER__N_LAYERS": "1", "QL_MODEL__TRANSFORMER__DIM_FEEDFORWARD": "8",
            "QL_MODEL__TRAINING__MAX_EPOCHS": "2", "QL_MODEL__WALK_FORWARD__N_FOLDS": "2",
            "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": model,
            # ~300 out-of-sample rows of 2 symbols cannot show significance at 0.025 / 7: this test
            # is about the daemon running the gate and the promotion, so the gate's level is loose
            "QL_MODEL__PROMOTION__LEVEL": "0.45", "QL_MODEL__PROMOTION__MIN_ROWS": "50"}
    steps = _launch_and_wait(url, "training_job", {**overrides, **tiny})
    assert steps["champion_model"] == "SUCCESS", steps
    from mlflow import MlflowClient

    from models.tracking import configure_mlflow

    configure_mlflow(services)
    assert MlflowClient().get_model_version_by_alias(model, "champion").tags["dataset"] == "synthetic"


def test_daemon_start_fails_runs_its_predecessor_left_behind(services) -> None:
    """A run left STARTED by a daemon that died would hold the queue's only slot forever."""
    import uuid

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun

    from infra.services.dagster import dagster_home, fail_orphaned_runs

    instance = DagsterInstance.from_config(str(dagster_home(services)))
    launched = DagsterRun(job_name="research_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                          tags={"dagster/code_location": "quantlake"})
    in_process = DagsterRun(job_name="research_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    try:
        for run in (launched, in_process):
            instance.add_run(run)
        assert launched.run_id in fail_orphaned_runs(services)
        assert instance.get_run_by_id(launched.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(in_process.run_id).status == DagsterRunStatus.STARTED  # main job's: not ours
    finally:
        for run in (launched, in_process):
            instance.delete_run(run.run_id)
        instance.dispose()
