"""The main job from the command line: ``python -m orchestration.main``.

Runs, in this process and against the platform's Dagster instance (PostgreSQL storage, so
runs and materializations show in the Dagster UI): the platform smoke job, then the
research job over every day of the configured source. Prints headline figures and where
the UIs are.
"""

from __future__ import annotations

import sys
import time

from dagster import DagsterInstance, JobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from config import Settings, load_settings
from infra.services.dagster import dagster_home
from orchestration.definitions import defs
from orchestration.partitions import month_key
from pipelines.research import source_date_range
from pipelines.spark import get_spark

HIDDEN = {"preview", "run_url", "path", "table", "quarantine_table", "seconds"}


def _run(job: JobDefinition, instance: DagsterInstance, tags: dict[str, str] | None = None) -> bool:
    started = time.monotonic()
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    print(f"\n{job.name} {'succeeded' if result.success else 'FAILED'} in {time.monotonic() - started:.0f}s "
          f"(run {result.run_id})")
    shown: set[str] = set()
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        if key in shown:  # a partition range reports once per day; the figures are the same
            continue
        shown.add(key)
        figures = ", ".join(f"{k}={v.value}" for k, v in mat.metadata.items() if k not in HIDDEN)
        print(f"  {mat.asset_key.to_user_string():<24} {figures}")
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            print(f"  check {check.check_name:<30} {'passed' if check.passed else 'FAILED'}")
    return result.success


def main(settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    instance = DagsterInstance.from_config(str(dagster_home(settings)))
    ok = _run(defs.resolve_job_def("platform_smoke_job"), instance)
    start, end = source_date_range(get_spark(settings), settings)
    print(f"\nresearch data: source={settings.data.source} dataset={settings.data.dataset} {start}..{end}")
    tags = {ASSET_PARTITION_RANGE_START_TAG: month_key(start), ASSET_PARTITION_RANGE_END_TAG: month_key(end)}
    ok = ok and _run(defs.resolve_job_def("research_job"), instance, tags)
    p = settings.platform
    print(f"\nDagster UI   {p.dagster.url}")
    print(f"MLflow UI    {p.mlflow.tracking_uri}")
    print(f"Delta lake   {p.lake_root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
