"""The research assets in Dagster: synthetic and real data, quarantine metadata, blocking checks, sensor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, build_sensor_context, load_asset_checks_from_modules, load_assets_from_modules
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.assets import research as research_assets
from orchestration.jobs import research_job
from orchestration.resources import default_resources
from orchestration.sensors import landing_files_sensor
from config import load_settings
from pipelines import lake
from pipelines.lake.tables import FEATURES, SILVER_BARS
from pipelines.ingest.sources.synthetic import generate_market, generate_ticks



def _run(overrides: dict[str, str], start: str, end: str):
    defs = Definitions(assets=load_assets_from_modules([research_assets]),
                       asset_checks=load_asset_checks_from_modules([research_assets]),
                       resources=default_resources(overrides=overrides), jobs=[research_job])
    tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return defs.resolve_job_def("research_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=tags, raise_on_error=False)


def _meta(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mats[0].metadata.items()} if mats else {}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def small_synthetic(tmp_path: Path) -> dict[str, str]:
    return {"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SYNTHETIC__N_SYMBOLS": "3",
            "QL_DATA__SYNTHETIC__N_DAYS": "4", "QL_DATA__SYNTHETIC__START_DATE": "2024-03-04"}


def test_synthetic_range_materializes_and_reruns_idempotently(spark, small_synthetic) -> None:
    result = _run(small_synthetic, "2024-03-01", "2024-03-01")
    assert result.success
    silver = _meta(result, "silver_bars")
    assert silver["rows"] == 3 * 4 * 78 and "quarantined" in silver
    assert _meta(result, "features")["rows"] == silver["rows"]
    assert _meta(result, "labels")["labelled"] == silver["rows"] - 3
    assert _checks(result) == {"silver_bars_expectations": True, "features_complete": True, "labels_coverage": True}

    settings = load_settings(env={**os.environ, **small_synthetic})
    market = generate_market(settings.data.synthetic)
    ticks = generate_ticks(market, settings.data.synthetic)
    assert silver["quarantined"] == ticks.duplicated(["symbol", "seq"]).sum() > 0
    # what survives validation is the clean feed: silver closes are the generator's closes
    closes = lake.read(spark, SILVER_BARS.path(settings)).select("symbol", "ts", "close").toPandas()
    closes["ts"] = closes["ts"].dt.tz_localize("UTC")  # Spark hands back naive UTC
    merged = closes.merge(market.bars[["symbol", "ts", "close"]], on=["symbol", "ts"], suffixes=("", "_true"))
    assert len(merged) == len(market.bars) and (merged["close"] == merged["close_true"]).all()

    again = _run(small_synthetic, "2024-03-01", "2024-03-01")  # re-running the month replaces it
    assert again.success
    feats = lake.read(spark, FEATURES.path(settings))
    assert feats.count() == 3 * 4 * 78
    assert feats.groupBy("symbol", "ts").count().where("count > 1").count() == 0


CSV = """symbol,ts,open,high,low,close,volume
AAA,2024-02-05,10,11,9,10.5,100
AAA,2024-02-06,10.5,11,10,10.8,120
AAA,2024-02-07,10.8,10.5,10,10.9,90
AAA,2024-02-07,10.8,11.2,10,10.9,90
AAA,2024-02-08,10.9,11.5,10.7,11.2,-3
AAA,2024-02-09,11.2,11.6,11.0,11.4,80
BBB,2024-02-05,20,21,19,20.5,100
BBB,2024-02-06,20.5,21,0,20.8,100
BBB,2024-02-07,20.8,21.5,20.5,21.0,100
"""


@pytest.fixture
def crafted_files(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "crafted.csv"
    path.write_text(CSV)
    return {"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
            "QL_DATA__FILES__PATH": str(path), "QL_DATA__FILES__COLUMNS__TS": "to_timestamp(ts)"}


def test_crafted_bad_rows_are_quarantined_and_counted(spark, crafted_files) -> None:
    result = _run(crafted_files, "2024-02-01", "2024-02-01")
    assert result.success
    meta = _meta(result, "silver_bars")
    # the clean AAA 2024-02-07 row is kept; its broken twin is quarantined for both reasons
    assert meta["quarantined"] == 3 and meta["rows"] == 6 and meta["source_rows"] == 9
    assert meta["quarantine_reasons"] == {"high below open/close": 1, "negative volume": 1,
                                          "non-positive price": 1, "duplicate (symbol, ts)": 1}


def test_failing_expectations_block_features(spark, crafted_files, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.ingest import layers
    from pipelines.ingest.quality import Validated

    def let_everything_through(df, cfg, now=None, neighbours=None):
        return Validated(df, df.limit(0).selectExpr("'bars' AS table", "symbol", "ts", "'x' AS date",
                                                     "'x' AS reason", "'x' AS record", "current_timestamp() AS quarantined_at"))

    monkeypatch.setattr(layers, "validate_bars", let_everything_through)
    result = _run(crafted_files, "2024-02-01", "2024-02-01")
    assert not result.success
    assert _checks(result)["silver_bars_expectations"] is False
    assert result.asset_materializations_for_node("features") == []
    assert result.asset_materializations_for_node("labels") == []


def test_real_sp500_panel_through_the_assets(spark, tmp_path: Path, shared_data: Path) -> None:
    DATA = shared_data
    overrides = {
        "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
        "QL_DATA__FILES__NAME": "sp500",
        "QL_DATA__FILES__PATH": str(DATA / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"),
        "QL_DATA__FILES__COLUMNS": json.dumps({"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"}),
        "QL_DATA__FILES__SYMBOLS": json.dumps(["AAPL", "MSFT", "XOM", "JPM"]),
    }
    result = _run(overrides, "2019-01-01", "2020-12-01")
    assert result.success, _checks(result)
    silver = _meta(result, "silver_bars")
    assert silver["rows"] == 4 * 505 and silver["quarantined"] == 0  # 505 NYSE sessions in 2019-2020
    assert _meta(result, "features")["rows"] == silver["rows"]
    assert all(_checks(result).values())


def test_landing_sensor_requests_one_run_per_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QL_PLATFORM__STATE_DIR", str(tmp_path / "state"))
    landing = tmp_path / "state" / "landing"
    landing.mkdir(parents=True)
    (landing / "bars.csv").write_text(CSV)
    (landing / "notes.txt").write_text("ignored")
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance)
        [request] = landing_files_sensor(context)
        assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2024-02-01"  # the file's month
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2024-02-01"
        overrides = request.run_config["resources"]["settings"]["config"]["overrides"]
        assert overrides["QL_DATA__FILES__PATH"] == str(landing / "bars.csv")
        again = landing_files_sensor(build_sensor_context(instance=instance, cursor=context.cursor))
        assert "no new files" in again.skip_message


def test_a_range_without_data_writes_nothing_and_passes(spark, small_synthetic) -> None:
    result = _run(small_synthetic, "2024-04-01", "2024-04-01")  # the market ends in March
    assert result.success, _checks(result)
    assert _meta(result, "bronze_market_data")["rows"] == 0 and _meta(result, "features")["rows"] == 0
