"""The Dagster code location: assets, checks, resources, jobs, schedules and sensors, assembled."""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from orchestration.assets import platform, research
from orchestration.jobs import platform_smoke_job, research_job
from orchestration.resources import default_resources
from orchestration.sensors import landing_files_sensor

_modules = [platform, research]

defs = Definitions(
    assets=load_assets_from_modules(_modules),
    asset_checks=load_asset_checks_from_modules(_modules),
    resources=default_resources(),
    jobs=[platform_smoke_job, research_job],
    sensors=[landing_files_sensor],
    # one process per run: every step shares one SparkSession (a JVM per step cost ~10 s each,
    # and a Great Expectations step in its own process exited early)
    executor=in_process_executor,
)
