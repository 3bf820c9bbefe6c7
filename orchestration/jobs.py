"""Jobs: named selections of assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from orchestration.partitions import monthly

platform_smoke_job = define_asset_job(
    "platform_smoke_job",
    selection=AssetSelection.groups("platform"),
    description="Checks the services: a Delta table, a Kafka round trip, an MLflow run.",
)

research_job = define_asset_job(
    "research_job",
    selection=AssetSelection.groups("research"),
    partitions_def=monthly,
    description="Bronze -> silver -> features and labels for a range of months of the configured source.",
)
