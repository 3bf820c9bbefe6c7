"""The main job from the command line: ``python -m orchestration.main``.

Runs ``main_job`` in this process against the platform's Dagster instance (PostgreSQL
storage), so the run and its materializations show in the Dagster UI, then prints the
headline figures and where the UIs are.
"""

from __future__ import annotations

import sys
import time

from dagster import DagsterInstance

from config import load_settings
from infra.services.dagster import dagster_home
from orchestration.definitions import defs


def main() -> int:
    settings = load_settings()
    instance = DagsterInstance.from_config(str(dagster_home(settings)))
    started = time.monotonic()
    result = defs.get_job_def("main_job").execute_in_process(instance=instance, raise_on_error=False)
    elapsed = time.monotonic() - started
    print(f"\nmain_job {'succeeded' if result.success else 'FAILED'} in {elapsed:.0f}s (run {result.run_id})")
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        figures = ", ".join(f"{k}={v.value}" for k, v in mat.metadata.items()
                            if k not in {"preview", "run_url", "path"} and not isinstance(v.value, dict))
        print(f"  {mat.asset_key.to_user_string():<28} {figures}")
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            print(f"  check {check.check_name:<30} {'passed' if check.passed else 'FAILED'}")
    p = settings.platform
    print(f"\nDagster UI   {p.dagster.url}/runs/{result.run_id}")
    print(f"MLflow UI    {p.mlflow.tracking_uri}")
    print(f"Delta lake   {p.lake_root}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
