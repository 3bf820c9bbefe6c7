"""Research data assets: bronze -> silver (+ quarantine) -> features and labels, by month.

Each body reads like its docstring and calls one function (``pipelines.ingest.layers``,
``pipelines.features.build``) that replaces exactly the run's date range of its Delta table.
"""

import time

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG
from pyspark.sql import functions as F

from orchestration.partitions import date_range, days_of, monthly, single_run
from orchestration.resources import SettingsResource, SparkResource
from pipelines import lake
from pipelines.features.build import write_features, write_labels
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.expectations import run_bar_suite
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.lake import LayerResult
from pipelines.lake.tables import FEATURES, LABELS, SILVER_BARS, Table

GROUP = "research"
KINDS = {"spark", "delta"}


def _write_layer(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource,
                 write) -> MaterializeResult:
    """Run ``write`` (a layer's ``write_*``) for the run's days; its result becomes metadata."""
    start, end = date_range(context)
    started = time.monotonic()
    result = write(spark.session(), settings.get(), start, end)
    seconds = round(time.monotonic() - started, 1)
    context.log.info("%s: %d rows for %s..%s (Delta version %d, %.1fs)", result.table, result.rows, start, end,
                     result.version, seconds)
    sample = lake.preview(spark.session(), result.table, start, end)
    return MaterializeResult(metadata={**_metadata(result), "seconds": seconds,
                                       "preview": MetadataValue.md(sample.to_markdown(index=False))})


def _metadata(result: LayerResult, **extra) -> dict:
    meta = {"rows": result.rows, "delta_version": result.version, "table": MetadataValue.path(result.table)}
    for key, value in {**result.extra, **extra}.items():
        meta[key] = MetadataValue.json(value) if isinstance(value, dict) else value
    return meta


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run,
       description="Raw ticks or bars from the configured source (data_config.yaml `source`), as received.")
def bronze_market_data(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    return _write_layer(context, spark, settings, write_bronze)


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run, deps=[bronze_market_data],
       description="Validated, deduplicated, adjusted bars; every rejected row is in the quarantine table with its reason.")
def silver_bars(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    return _write_layer(context, spark, settings, write_silver)


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run, deps=[silver_bars],
       description="Point-in-time features (the shared feature library) per symbol and bar.")
def features(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    return _write_layer(context, spark, settings, write_features)


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run, deps=[silver_bars],
       description="Forward return over the label horizon and its direction, from later bars only.")
def labels(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    return _write_layer(context, spark, settings, write_labels)


def run_range(context: AssetCheckExecutionContext) -> tuple[str, str] | None:
    """The days of the months the check's run materialized (None: not a partitioned run)."""
    tags = context.run.tags
    start = tags.get(ASSET_PARTITION_RANGE_START_TAG) or tags.get(PARTITION_NAME_TAG)
    if start is None:
        return None
    first, last = days_of(start, tags.get(ASSET_PARTITION_RANGE_END_TAG) or start)
    return first.isoformat(), last.isoformat()


def _table_for_run(context: AssetCheckExecutionContext, spark: SparkResource, settings: SettingsResource,
                   table: Table):
    df = lake.read(spark.session(), table.path(settings.get()))
    bounds = run_range(context)
    if bounds:
        df = df.where((F.col("date") >= bounds[0]) & (F.col("date") <= bounds[1]))
    return df


@asset_check(asset=silver_bars, blocking=True,
             description="Great Expectations suite: keys, OHLC consistency, positive prices, time increasing per "
                         "symbol, no future timestamps, sane returns. A failure stops features and labels.")
def silver_bars_expectations(context: AssetCheckExecutionContext, spark: SparkResource,
                             settings: SettingsResource) -> AssetCheckResult:
    bars = _table_for_run(context, spark, settings, SILVER_BARS)
    result = run_bar_suite(bars, settings.get().data.quality)
    return AssetCheckResult(passed=result.success, metadata={
        "expectations": result.evaluated, "failed": MetadataValue.json(result.failed),
        "success_percent": float(result.statistics.get("success_percent") or 0.0)})


@asset_check(asset=features, blocking=True,
             description="One feature row per silver bar, every feature column present and finite where defined.")
def features_complete(context: AssetCheckExecutionContext, spark: SparkResource,
                      settings: SettingsResource) -> AssetCheckResult:
    feats = _table_for_run(context, spark, settings, FEATURES)
    bars = _table_for_run(context, spark, settings, SILVER_BARS)
    names = FeatureSpec.from_settings(settings.get()).names
    missing = [n for n in names if n not in feats.columns]
    rows, bar_rows = feats.count(), bars.count()
    infinite = feats.select(*[F.sum(F.when(F.col(n).isin(float("inf"), float("-inf")), 1).otherwise(0)).alias(n)
                              for n in names if n not in missing]).collect()[0].asDict()
    bad = {k: v for k, v in infinite.items() if v}
    return AssetCheckResult(passed=not missing and rows == bar_rows and not bad, metadata={
        "rows": rows, "silver_rows": bar_rows, "features": len(names) - len(missing),
        "missing_columns": MetadataValue.json(missing), "infinite_values": MetadataValue.json(bad)})


@asset_check(asset=labels, description="Labels exist for all but the last horizon bars of each symbol.",
             blocking=False)
def labels_coverage(context: AssetCheckExecutionContext, spark: SparkResource,
                    settings: SettingsResource) -> AssetCheckResult:
    df = _table_for_run(context, spark, settings, LABELS)
    row = df.agg(F.count("*").alias("rows"), F.count("direction").alias("labelled"),
                 F.countDistinct("symbol").alias("symbols")).collect()[0]
    horizon = settings.get().model.label_span
    unlabelled = row["rows"] - row["labelled"]
    return AssetCheckResult(passed=unlabelled <= row["symbols"] * horizon,
                            severity=AssetCheckSeverity.WARN,
                            metadata={"rows": row["rows"], "labelled": row["labelled"], "unlabelled": unlabelled})
