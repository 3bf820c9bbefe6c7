"""End to end: the README's main job, as a user runs it, against the real services."""

from __future__ import annotations

import os
import subprocess
import uuid
import sys
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT

pytestmark = pytest.mark.services


@pytest.mark.timeout(1200)
def test_main_job_runs_and_prints_where_the_uis_are(services, tmp_path: Path) -> None:
    model = f"main-job-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "QL_PROFILE": "demo", "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"),
           "QL_PLATFORM__REPORTS_DIR": str(tmp_path / "reports"),
           "QL_PLATFORM__WAREHOUSE__TABLEAU__OUTPUT_DIR": str(tmp_path / "tableau"),
           "QL_DATA__SYNTHETIC__N_SYMBOLS": "4", "QL_DATA__SYNTHETIC__N_DAYS": "5",
           "QL_PLATFORM__MLFLOW__REGISTERED_MODEL": model,
           # the networks at a size that trains in seconds: this test is about the job's flow
           "QL_MODEL__SEQUENCE_LENGTH": "5", "QL_MODEL__LSTM__HIDDEN_SIZE": "8", "QL_MODEL__TRANSFORMER__D_MODEL": "8",
           "QL_MODEL__TRANSFORMER__N_HEADS": "2", "QL_MODEL__TRANSFORMER__N_LAYERS": "1",
           "QL_MODEL__TRANSFORMER__DIM_FEEDFORWARD": "16", "QL_MODEL__TRAINING__MAX_EPOCHS": "2",
           "QL_TRADING__BACKTEST__MONTECARLO_SIMULATIONS": "2000",
           # 4 symbols: halves give the long-short book its min_per_leg of 2 names a leg
           "QL_TRADING__STRATEGIES__LONG_SHORT__QUANTILE": "0.5"}
    proc = subprocess.run([sys.executable, "-m", "orchestration.main"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "platform_smoke_job succeeded" in out and "research_job succeeded" in out
    assert "training_job succeeded" in out and "backtest_job succeeded" in out and "warehouse_job succeeded" in out
    assert "produced=1000, consumed=1000, spark_read=1000" in out
    assert "research data: source=synthetic dataset=synthetic 2024-01-02..2024-01-08" in out
    assert "bayes_accuracy=0.5" in out or "bayes_accuracy=0.6" in out
    assert f"rows={4 * 5 * 78}, delta_version=0" in out  # silver bars, features and labels of 4 symbols x 5 days
    # every model out-of-sample in one table, the first challenger promoted (no champion before)
    for family in ("always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer", "ensemble"):
        assert f"| {family}" in out
    # the gate: a family beat both baselines on the walk-forward rows (the planted signal makes
    # momentum_sign the Bayes rule, which beats always-up by far) at level 0.025 / 7 families
    assert "basis=no champion" in out and "promote=True" in out and "level=0.003571" in out
    assert "champion_model           champion_version=" in out
    for check in ("smoke_prices_complete", "silver_bars_expectations", "features_complete", "beats_champion",
                  "warehouse_bars_reconciled", "warehouse_predictions_reconciled", "warehouse_backtests_reconciled",
                  "tableau_extract_matches_warehouse", "tableau_sheets_draw"):
        assert f"check {check:<30} passed" in out
    assert f"MLflow UI    {services.platform.mlflow.tracking_uri}" in out
    from mlflow import MlflowClient

    from models.tracking import configure_mlflow

    configure_mlflow(services)
    assert MlflowClient().get_model_version_by_alias(model, "champion").tags["dataset"] == "synthetic"
    assert f"Dagster UI   {services.platform.dagster.url}" in out
    assert "Tableau      " in out and "quantlake.twb" in out
    from tableau.documents import sheets
    from tableau.previews import file_name

    previews = tmp_path / "tableau" / "previews"
    assert {p.name for p in previews.glob("*.png")} == {file_name(s) for s in sheets(services)}
    assert "Nightly      retraining next at " in out and "UTC (schedule nightly_retrain)" in out
    assert (out + proc.stderr).count("BetaWarning") == 0  # library warnings are filtered where understood
    # the demo's strategies (threshold, top-k dropout) on every family, with their figures, Monte
    # Carlo per run, a tear sheet each
    assert "| strategy" in out and "deflated_sharpe" in out and "risk_of_ruin" in out
    assert "threshold_lstm" in out and "topk_dropout_ensemble" in out and "rejected_orders" in out
    # and every family's decile long-short book, traded by the engine, its bars in gold long_short
    assert "long_short_backtests" in out and "sharpe_net_ci_low" in out and "rebalance_every=1" in out
    reports = tmp_path / "reports" / "synthetic"
    families = ("always_up", "momentum_sign", "linear", "lightgbm", "lstm", "transformer", "ensemble")
    assert {p.stem for p in reports.glob("*.html")} == {f"{s}_{f}" for s in ("threshold", "topk_dropout")
                                                        for f in families}
    for table in ("bronze/smoke_prices", "silver/synthetic/bars", "gold/synthetic/features", "gold/synthetic/labels",
                  "gold/synthetic/predictions", "gold/synthetic/backtest_trades", "gold/synthetic/backtest_equity",
                  "gold/synthetic/backtest_metrics", "gold/synthetic/long_short", "gold/synthetic/montecarlo_summary"):
        assert (tmp_path / "lake" / table / "_delta_log").is_dir(), table
