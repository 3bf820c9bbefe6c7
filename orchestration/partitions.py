"""Daily partitions for time-partitioned research tables (back to 1985 for the longest samples)."""

from datetime import date

from dagster import AssetExecutionContext, BackfillPolicy, DailyPartitionsDefinition

daily = DailyPartitionsDefinition(start_date="1985-01-01", end_offset=1)

# a range of days runs as one Spark job, not one run per day
single_run = BackfillPolicy.single_run()


def date_range(context: AssetExecutionContext) -> tuple[date, date]:
    """First and last day of the partitions this run materializes."""
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), date.fromisoformat(keys.end)
