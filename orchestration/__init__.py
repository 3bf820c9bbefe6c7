"""The Dagster code location: assets, checks, resources, jobs, schedules and sensors."""

import warnings

from dagster import BetaWarning

# every partitioned asset declares a single-run backfill policy (a range of months is one Spark
# job); Dagster flags the parameter as beta once per asset, dozens of lines on every start
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
