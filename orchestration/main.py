"""The main job from the command line: ``python -m orchestration.main``.

Runs, in this process and against the platform's Dagster instance (PostgreSQL storage, so
runs and materializations show in the Dagster UI): the platform smoke job, the research
job over every day of the configured source, the training job (walk-forward evaluation of
every model family, MLflow registration, the promotion gate), then the backtest job
(every strategy on the out-of-sample predictions, tear sheets, Monte Carlo) and the warehouse
job (the PostgreSQL star schema, the Tableau files and extract). Prints
headline figures, the comparison tables and where the UIs and reports are.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from dagster import DagsterInstance, JobDefinition
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from config import Settings, load_settings
from config.cli import guarded
from infra.services.dagster import dagster_home, fail_dead_runs, process_tags
from orchestration.assets.models import GATE_CHECK
from orchestration.definitions import defs
from orchestration.partitions import month_key
from orchestration.schedules import nightly_retrain
from pipelines.ingest.layers import source_date_range
from pipelines.lake.spark import get_spark

HIDDEN = {"preview", "run_url", "path", "table", "quarantine_table", "seconds", "comparison", "mlflow_run",
          "predictions_table", "versions", "table_versions", "model_uri", "strategies", "summary", "tear_sheets",
          "tests", "loads", "values", "documents", "extract_rows", "folder", "books"}
TABLES = ("comparison", "strategies", "books", "summary")  # markdown tables printed in full


def _run(job: JobDefinition, instance: DagsterInstance, tags: dict[str, str] | None = None) -> bool:
    started = time.monotonic()
    # the console shows the assets' own INFO lines, not Dagster's per-step DEBUG events
    # (all events are in the run's log in the Dagster UI)
    # the pid tag lets the daemon (dead_runs_sensor) fail this run if this process is killed
    result = job.execute_in_process(instance=instance, tags={**(tags or {}), **process_tags()}, raise_on_error=False,
                                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}})
    # a failed promotion gate is an outcome, not a failure: its blocking check fails the step
    # that evaluates it (model_evaluation); any other failed step is a real failure
    held_by = {e.event_specific_data.asset_key.to_python_identifier() for e in result.all_events
               if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == GATE_CHECK
               and not e.event_specific_data.passed}
    gate_held = bool(held_by)
    failed_steps = [e.step_key for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE" and e.step_key not in held_by]
    ok = result.success or (gate_held and not failed_steps)
    outcome = "succeeded" if result.success else ("succeeded (champion kept)" if ok else "FAILED")
    print(f"\n{job.name} {outcome} in {time.monotonic() - started:.0f}s (run {result.run_id})")
    shown: set[str] = set()
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        if key in shown:  # a partition range reports once per day; the figures are the same
            continue
        shown.add(key)
        figures = ", ".join(f"{k}={v.value}" for k, v in mat.metadata.items() if k not in HIDDEN)
        print(f"  {mat.asset_key.to_user_string():<24} {figures}")
        for name in TABLES:  # the models' out-of-sample table, the backtests, the long-short books, Monte Carlo
            if name in mat.metadata:
                print("\n" + "\n".join("    " + line for line in mat.metadata[name].value.splitlines()) + "\n")
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            held = "not passed: the champion stays" if check.check_name == GATE_CHECK else "FAILED"
            print(f"  check {check.check_name:<30} {'passed' if check.passed else held}")
    return ok


def next_nightly_tick(settings: Settings) -> str:
    """When the nightly retraining schedule fires next (it runs by default while the daemon runs)."""
    from dagster._utils.schedules import cron_string_iterator

    if not settings.model.training.nightly_retrain:
        return "retraining off (model_config.yaml training.nightly_retrain: false)"
    tick = next(cron_string_iterator(time.time(), nightly_retrain.cron_schedule, nightly_retrain.execution_timezone))
    return f"retraining next at {tick:%Y-%m-%d %H:%M} {nightly_retrain.execution_timezone} (schedule nightly_retrain)"


STAGES = {"smoke": "platform_smoke_job", "research": "research_job", "training": "training_job",
          "backtest": "backtest_job", "warehouse": "warehouse_job"}


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.main", description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)} (default: all, in that order)")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; expected some of {list(STAGES)}")
    # the runs' own summaries below say what matters; MLflow's per-run links and INFO lines
    # would bury them (the links are in the Dagster metadata and the MLflow UI)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return guarded(lambda: _main(stages, settings), fixable=(ValueError,))


def _main(stages: list[str], settings: Settings | None) -> int:
    settings = settings or load_settings()
    instance = DagsterInstance.from_config(str(dagster_home(settings)))
    for run_id in fail_dead_runs(instance):  # e.g. an earlier main job that was killed
        print(f"run {run_id} failed: its process was gone")
    ok = True
    if "smoke" in stages:
        ok = _run(defs.resolve_job_def("platform_smoke_job"), instance)
    start, end = source_date_range(get_spark(settings), settings)
    print(f"\nresearch data: source={settings.data.source} dataset={settings.data.dataset} {start}..{end}")
    tags = {ASSET_PARTITION_RANGE_START_TAG: month_key(start), ASSET_PARTITION_RANGE_END_TAG: month_key(end)}
    for stage in ("research", "training", "backtest", "warehouse"):
        if stage in stages:
            ok = ok and _run(defs.resolve_job_def(STAGES[stage]), instance, tags)
    p = settings.platform
    print(f"\nDagster UI   {p.dagster.url}")
    print(f"MLflow UI    {p.mlflow.tracking_uri}")
    print(f"Delta lake   {p.lake_root}")
    print(f"Nightly      {next_nightly_tick(settings)}")
    if "backtest" in stages:
        print(f"Tear sheets  {p.reports_root / settings.data.dataset}")
    if "warehouse" in stages:
        print(f"Warehouse    postgresql://{p.warehouse.reporting_role}@{p.postgres.host}:{p.postgres.port}/"
              f"{p.postgres.database} (schema dw; password: python -m warehouse password reporting)")
        print(f"Tableau      {p.tableau_dir / 'quantlake.twb'} (live) and quantlake_extract.twb (.hyper)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
