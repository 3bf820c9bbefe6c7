"""Schedules: nightly retraining at 02:00 UTC on the newest partition."""

from __future__ import annotations

from datetime import timedelta

from dagster import RunRequest, ScheduleEvaluationContext, schedule

from orchestration.jobs import nightly_retrain_job
from orchestration.partitions import month_key


@schedule(job=nightly_retrain_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
          description="Every night at 02:00 UTC: re-ingest the month holding yesterday, rebuild its features and "
                      "labels, retrain on all history, evaluate against @champion, promote if it wins.")
def nightly_retrain(context: ScheduleEvaluationContext) -> RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).date()
    return RunRequest(run_key=f"nightly-{yesterday.isoformat()}", partition_key=month_key(yesterday),
                      tags={"trigger": "nightly_retrain"})
