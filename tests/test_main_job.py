"""End to end: the README's main job, as a user runs it, against the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT

pytestmark = pytest.mark.services


def test_main_job_runs_and_prints_where_the_uis_are(services, tmp_path: Path) -> None:
    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake")}
    proc = subprocess.run([sys.executable, "-m", "orchestration.main"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "main_job succeeded" in out
    assert "produced=1000, consumed=1000, spark_read=1000" in out
    assert "check smoke_prices_complete          passed" in out
    assert f"MLflow UI    {services.platform.mlflow.tracking_uri}" in out
    assert f"Dagster UI   {services.platform.dagster.url}/runs/" in out
    assert (tmp_path / "lake" / "bronze" / "smoke_prices" / "_delta_log").is_dir()
