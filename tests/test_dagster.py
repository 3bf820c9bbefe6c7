"""The Dagster code location: it loads, an asset materializes into Delta, the UI serves it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, Definitions, materialize

from orchestration.assets.platform import smoke_prices, smoke_prices_complete
from orchestration.definitions import defs
from orchestration.resources import default_resources
from pipelines import lake
from pipelines.smoke import sample_prices


def test_definitions_load() -> None:
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} >= {
        "smoke_prices", "smoke_kafka_roundtrip", "smoke_mlflow_run"}
    assert repo.has_job("platform_smoke_job") and repo.has_job("research_job")
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert {"smoke_prices_complete", "smoke_kafka_lossless"} <= checks
    assert set(defs.resources) >= {"settings", "spark", "kafka", "tracking"}
    # the warehouse loads sit after the gold assets they read, each with a blocking reconciliation
    graph = repo.asset_graph
    for load, parents in (("warehouse_bars", {"silver_bars"}), ("warehouse_predictions", {"trained_models"}),
                          ("warehouse_backtests", {"backtests", "montecarlo"}),
                          ("tableau_workbook", {"warehouse_bars", "warehouse_predictions", "warehouse_backtests"})):
        node = graph.get(AssetKey(load))
        assert {k.to_user_string() for k in node.parent_keys} == parents, load
        assert node.group_name == ("tableau" if load == "tableau_workbook" else "warehouse")
    for load in ("warehouse_bars", "warehouse_predictions", "warehouse_backtests", "warehouse_live"):
        assert f"{load}_reconciled" in checks
        assert graph.get_check_spec(AssetCheckKey(AssetKey(load), f"{load}_reconciled")).blocking
    schedule = defs.resolve_schedule_def("warehouse_live_schedule")
    assert schedule.cron_schedule == "* * * * *" and schedule.job_name == "warehouse_live_job"
    # runs launched from the UI must keep every step in one process (one SparkSession)
    for job in ("research_job", "platform_smoke_job"):
        assert defs.resolve_job_def(job).executor_def.name == "in_process"


def test_asset_materializes_into_delta(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QL_PLATFORM__LAKE__ROOT", str(tmp_path / "lake"))
    result = materialize([smoke_prices, smoke_prices_complete], resources=default_resources(),
                         instance=DagsterInstance.ephemeral())
    assert result.success
    mat = result.asset_materializations_for_node("smoke_prices")[0]
    assert mat.metadata["rows"].value == len(sample_prices())
    assert mat.metadata["delta_version"].value == 0
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["null_keys"].value == 0

    table = tmp_path / "lake" / "bronze" / "smoke_prices"
    assert lake.read(spark, table).count() == len(sample_prices())

    again = materialize([smoke_prices], resources=default_resources(), instance=DagsterInstance.ephemeral())
    assert again.asset_materializations_for_node("smoke_prices")[0].metadata["delta_version"].value == 1
    assert lake.read(spark, table).count() == len(sample_prices())  # replaced, not appended


@pytest.mark.services
def test_webserver_serves_the_code_location(services) -> None:
    from infra.services import all_services

    for svc in all_services(services, ["dagster-webserver"]):
        svc.up()
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError {"
             " __typename ... on RepositoryLocation { repositories { jobs { name } } }"
             " ... on PythonError { message } } } } } }")
    request = urllib.request.Request(f"{services.platform.dagster.url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        entries = json.load(resp)["data"]["workspaceOrError"]["locationEntries"]
    [entry] = entries
    assert entry["name"] == "quantlake" and entry["loadStatus"] == "LOADED", entry
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    assert {"platform_smoke_job", "research_job"} <= {j["name"] for r in location["repositories"] for j in r["jobs"]}


def test_settings_are_read_once_per_run(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every asset and check of a run sees one validated Settings, not a fresh read of the YAML files."""
    import orchestration.resources as resources

    calls = []
    real = resources.load_settings

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(resources, "load_settings", counting)
    monkeypatch.setenv("QL_PLATFORM__LAKE__ROOT", str(tmp_path / "lake"))
    result = materialize([smoke_prices, smoke_prices_complete], resources=default_resources(),
                         instance=DagsterInstance.ephemeral())
    assert result.success
    assert len(calls) <= 2, len(calls)  # the settings resource, and at most once more for the nested copy
