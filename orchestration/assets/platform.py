"""Platform smoke assets: a Delta table, a Kafka round trip and an MLflow run.

They prove the services answer and the wiring is right before any research runs.
"""

import time

import mlflow
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, MaterializeResult, MetadataValue, asset, asset_check

from orchestration.resources import KafkaResource, MlflowResource, SettingsResource, SparkResource
from pipelines import lake
from pipelines.lake.tables import SMOKE_PRICES
from pipelines.smoke import sample_prices
from streaming.smoke import kafka_roundtrip

GROUP = "platform"


@asset(group_name=GROUP, description="A small deterministic price table written to Delta (bronze/smoke_prices).")
def smoke_prices(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    session = spark.session()
    pdf = sample_prices()
    path = SMOKE_PRICES.path(settings.get())
    df = SMOKE_PRICES.conform(session.createDataFrame(pdf))
    version = lake.overwrite(df, path, partition_by=list(SMOKE_PRICES.partition_by))
    context.log.info("wrote %d rows to %s (version %d)", len(pdf), path, version)
    return MaterializeResult(metadata={
        "rows": len(pdf),
        "path": MetadataValue.path(path),
        "delta_version": version,
        "preview": MetadataValue.md(pdf.head(5).to_markdown(index=False)),
    })


@asset_check(asset=smoke_prices, blocking=True, description="The Delta table reads back whole, with no null keys.")
def smoke_prices_complete(spark: SparkResource, settings: SettingsResource) -> AssetCheckResult:
    df = lake.read(spark.session(), SMOKE_PRICES.path(settings.get()))
    rows = df.count()
    null_keys = df.where("symbol IS NULL OR ts IS NULL").count()
    expected = len(sample_prices())
    return AssetCheckResult(passed=rows == expected and null_keys == 0,
                            metadata={"rows": rows, "expected_rows": expected, "null_keys": null_keys})


@asset(group_name=GROUP, deps=[smoke_prices],
       description="1,000 messages through the Kafka broker, read back by kafka-python and Spark's Kafka source.")
def smoke_kafka_roundtrip(spark: SparkResource, kafka: KafkaResource) -> MaterializeResult:
    trip = kafka_roundtrip(kafka.settings.get(), spark.session())
    return MaterializeResult(metadata={
        "topic": trip.topic, "produced": trip.produced, "consumed": trip.consumed,
        "spark_read": trip.spark_read, "seconds": round(trip.seconds, 2), "bootstrap": kafka.bootstrap,
    })


@asset_check(asset=smoke_kafka_roundtrip, blocking=True, description="Every produced message came back, twice.")
def smoke_kafka_lossless(context: AssetCheckExecutionContext) -> AssetCheckResult:
    meta = context.instance.get_latest_materialization_event(smoke_kafka_roundtrip.key).asset_materialization.metadata
    produced, consumed, spark_read = (meta[k].value for k in ("produced", "consumed", "spark_read"))
    return AssetCheckResult(passed=produced == consumed == spark_read,
                            metadata={"produced": produced, "consumed": consumed, "spark_read": spark_read})


@asset(group_name=GROUP, deps=[smoke_prices, smoke_kafka_roundtrip],
       description="An MLflow run with the smoke table's statistics and its Delta version.")
def smoke_mlflow_run(spark: SparkResource, tracking: MlflowResource, settings: SettingsResource) -> MaterializeResult:
    experiment_id = tracking.configure()
    path = SMOKE_PRICES.path(settings.get())
    df = lake.read(spark.session(), path).toPandas()
    with mlflow.start_run(run_name=f"smoke-{int(time.time())}") as run:
        mlflow.log_params({"table": path, "delta_version": lake.table_version(spark.session(), path)})
        mlflow.log_metrics({"rows": len(df), "mean_daily_return": float(df["ret"].mean()),
                            "daily_volatility": float(df["ret"].std())})
    uri = mlflow.get_tracking_uri()
    return MaterializeResult(metadata={
        "run_id": run.info.run_id, "experiment_id": experiment_id,
        "run_url": MetadataValue.url(f"{uri}/#/experiments/{experiment_id}/runs/{run.info.run_id}"),
    })
