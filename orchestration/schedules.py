"""Schedules: nightly retraining at 02:00 UTC on the newest partition; the live tables into the
warehouse every minute (off until switched on in the UI, e.g. while ``make live`` trades)."""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from config import load_settings

from orchestration.jobs import nightly_retrain_job, warehouse_live_job
from orchestration.partitions import month_key


@schedule(job=nightly_retrain_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Every night at 02:00 UTC: re-ingest the month holding yesterday, rebuild its features and "
                      "labels, retrain on all history, evaluate against @champion, promote if it wins. "
                      "Runs by default; model_config.yaml training.nightly_retrain: false turns it off.")
def nightly_retrain(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    if not load_settings().model.training.nightly_retrain:
        return SkipReason("nightly retraining is off (model_config.yaml training.nightly_retrain: false)")
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    return RunRequest(run_key=f"nightly-{yesterday.isoformat()}", partition_key=month_key(yesterday),
                      tags={"trigger": "nightly_retrain"})


# a schedule's cron is fixed when the code location loads, and reading the configuration at import
# would make a bad config value break every import of the definitions: the cadence is code
warehouse_live_schedule = ScheduleDefinition(
    name="warehouse_live_schedule", job=warehouse_live_job, cron_schedule="* * * * *", execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="The live tables into the warehouse every minute. Off by default: switch it on in the UI while "
                "trading live.")
