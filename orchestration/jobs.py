"""Jobs: named selections of assets."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

# The main job: everything the README's first command runs, in dependency order.
main_job = define_asset_job(
    "main_job",
    selection=AssetSelection.groups("platform"),
    description="The platform's main run on the built-in sample data.",
)
