"""Sensors: files dropped into the landing folder (data_config.yaml ``landing_dir``) are ingested,
and runs whose process died are failed so they do not hold the run queue."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from config import Settings, load_settings
from infra.services.dagster import fail_dead_runs
from orchestration.jobs import research_job
from orchestration.partitions import month_key

SUFFIXES = {".csv", ".parquet"}


def landing_dir(settings: Settings) -> Path:
    folder = Path(settings.data.landing_dir)
    return folder if folder.is_absolute() else settings.platform.state_dir / folder


def file_dates(path: Path, settings: Settings) -> tuple[str, str]:
    """First and last date in a landed file, from its timestamp column."""
    ts_col = settings.data.files.columns.get("ts") or "ts"
    if path.suffix == ".parquet":
        ts = pd.read_parquet(path, columns=[ts_col])[ts_col]
    else:
        ts = pd.read_csv(path, usecols=[ts_col])[ts_col]
    ts = pd.to_datetime(ts, utc=True)
    return ts.min().date().isoformat(), ts.max().date().isoformat()


def landing_run_request(path: Path, settings: Settings) -> RunRequest:
    """A research run over the file's months that reads this file as the `landing` dataset."""
    first, last = file_dates(path, settings)
    start, end = month_key(date.fromisoformat(first)), month_key(date.fromisoformat(last))
    overrides = {"QL_DATA__SOURCE": "files", "QL_DATA__FILES__PATH": str(path), "QL_DATA__FILES__NAME": "landing"}
    return RunRequest(
        run_key=f"{path.name}:{path.stat().st_mtime_ns}",
        run_config={"resources": {"settings": {"config": {"overrides": overrides}}}},
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end, "landing_file": path.name},
    )


@sensor(job=research_job, minimum_interval_seconds=30,
        description="Ingests CSV/Parquet bar files dropped into the landing folder into the `landing` dataset.")
def landing_files_sensor(context: SensorEvaluationContext):
    settings = load_settings()
    folder = landing_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    new = [p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and seen.get(p.name) != p.stat().st_mtime_ns]
    if not new:
        return SkipReason(f"no new files in {folder}")
    requests = []
    for path in new:
        try:
            requests.append(landing_run_request(path, settings))
        except (ValueError, KeyError, OSError) as exc:
            context.log.error("cannot read dates of %s: %s", path, exc)
        seen[path.name] = path.stat().st_mtime_ns
    context.update_cursor(json.dumps(seen))
    return requests


@sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Fails STARTED runs whose process is gone (a killed main job, a crashed run worker), so "
                    "they do not hold the run queue's slot; Dagster's run monitoring covers stuck starts and "
                    "cancels.")
def dead_runs_sensor(context: SensorEvaluationContext) -> SkipReason:
    failed = fail_dead_runs(context.instance)
    for run_id in failed:
        context.log.warning("run %s failed: its process is gone", run_id)
    return SkipReason(f"failed {len(failed)} run(s) whose process was gone" if failed
                      else "every started run has a live process")
