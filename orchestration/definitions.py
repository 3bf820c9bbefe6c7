"""The Dagster code location: assets, checks, resources, jobs, schedules and sensors, assembled."""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from orchestration.assets import backtest, live, models, platform, research, warehouse
from orchestration.jobs import (
    backtest_job,
    nightly_retrain_job,
    platform_smoke_job,
    promote_model_job,
    research_job,
    training_job,
    warehouse_job,
    warehouse_live_job,
)
from orchestration.resources import default_resources
from orchestration.schedules import nightly_retrain, warehouse_live_schedule
from orchestration.assets.live import LIVE_ASSETS, live_figures_sensor
from orchestration.sensors import dead_runs_sensor, landing_files_sensor

_modules = [platform, research, models, backtest, warehouse]

defs = Definitions(
    assets=[*load_assets_from_modules(_modules), *LIVE_ASSETS],
    asset_checks=load_asset_checks_from_modules([*_modules, live]),
    resources=default_resources(),
    jobs=[platform_smoke_job, research_job, training_job, backtest_job, warehouse_job, warehouse_live_job,
          nightly_retrain_job, promote_model_job],
    schedules=[nightly_retrain, warehouse_live_schedule],
    sensors=[landing_files_sensor, dead_runs_sensor, live_figures_sensor],
    # one process per run: every step shares one SparkSession (a JVM per step cost ~10 s each,
    # and a Great Expectations step in its own process exited early)
    executor=in_process_executor,
)
