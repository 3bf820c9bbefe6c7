"""Jobs: named selections of assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from orchestration.assets.models import promote_model_job

platform_smoke_job = define_asset_job(
    "platform_smoke_job",
    selection=AssetSelection.groups("platform"),
    description="Checks the services: a Delta table, a Kafka round trip, an MLflow run.",
)

research_job = define_asset_job(
    "research_job",
    selection=AssetSelection.groups("research"),
    description="Bronze -> silver -> features and labels for a range of months of the configured source.",
)

training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.groups("models"),
    description="Train and register every model family on history up to the run's last month, evaluate the "
                "challenger against @champion, promote it if it wins.",
)

backtest_job = define_asset_job(
    "backtest_job",
    selection=AssetSelection.groups("backtest"),
    description="Backtest every strategy on the models' out-of-sample predictions, then Monte Carlo.",
)

warehouse_job = define_asset_job(
    "warehouse_job",
    selection=AssetSelection.groups("warehouse", "tableau") - AssetSelection.assets("warehouse_live"),
    description="Load the research, model and backtest tables into the PostgreSQL star schema (reconciled with "
                "Delta), then build the Tableau data sources, workbooks and .hyper extract.",
)

warehouse_live_job = define_asset_job(
    "warehouse_live_job",
    selection=AssetSelection.assets("warehouse_live"),
    description="Load the live orders, rejections, fills, positions, equity and dead letters into the warehouse.",
)

nightly_retrain_job = define_asset_job(
    "nightly_retrain_job",
    selection=AssetSelection.groups("research", "models", "backtest", "warehouse", "tableau")
    - AssetSelection.assets("warehouse_live"),
    description="Ingest -> features -> train -> evaluate -> promote -> backtest -> Monte Carlo -> warehouse -> "
                "Tableau for one month (the schedule's newest).",
)

__all__ = ["platform_smoke_job", "research_job", "training_job", "backtest_job", "warehouse_job",
           "warehouse_live_job", "nightly_retrain_job", "promote_model_job"]
