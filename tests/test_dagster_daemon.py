"""A run launched the way the UI launches it: queued in PostgreSQL, started by the daemon in a
run-worker process of its own. Catches what in-process execution cannot (imports that behave
differently in a worker, executor choice)."""

from __future__ import annotations

import json
import time
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


def test_daemon_runs_the_research_job(services, tmp_path: Path) -> None:
    for svc in all_services(services, ["dagster-webserver", "dagster-daemon"]):
        svc.up()
    url = services.platform.dagster.url
    overrides = {"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SYNTHETIC__N_SYMBOLS": "2",
                 "QL_DATA__SYNTHETIC__N_DAYS": "2", "QL_DATA__SYNTHETIC__START_DATE": "2024-05-06"}
    params = {
        "selector": {"repositoryLocationName": "quantlake", "repositoryName": "__repository__", "jobName": "research_job"},
        "runConfigData": {"resources": {"settings": {"config": {"overrides": overrides}}}},
        "executionMetadata": {"tags": [{"key": "dagster/asset_partition_range_start", "value": "2024-05-01"},
                                       {"key": "dagster/asset_partition_range_end", "value": "2024-05-01"}]},
    }
    launched = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 480
    status = None
    while time.monotonic() < deadline:
        run = _graphql(url, STATUS, {"id": run_id})["runOrError"]
        status = run["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(3)
    assert status == "SUCCESS", run["stepStats"]
    steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
    assert steps["silver_bars_silver_bars_expectations"] == "SUCCESS"
    assert (tmp_path / "lake" / "gold" / "synthetic" / "features" / "_delta_log").is_dir()


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
