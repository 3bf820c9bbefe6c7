"""The Dagster code location: assets, checks, resources, jobs and schedules, assembled."""

from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from orchestration.assets import platform
from orchestration.jobs import main_job
from orchestration.resources import default_resources

_modules = [platform]

defs = Definitions(
    assets=load_assets_from_modules(_modules),
    asset_checks=load_asset_checks_from_modules(_modules),
    resources=default_resources(),
    jobs=[main_job],
)
