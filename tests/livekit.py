"""What the live-path tests share: an isolated environment and a research period with a champion."""

from __future__ import annotations

import os
import uuid

import mlflow
import pandas as pd

from config import Settings
from models.baselines import LinearModel, Tabular
from models.panel import Panel
from models.pyfunc import DirectionModel
from models.registry import promote
from models.tracking import configure_mlflow
from models.training import register_model
from pipelines import lake
from pipelines.features.build import write_features
from pipelines.features.labels import compute_labels
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.ingest.sources.synthetic import generate_market
from pipelines.lake.tables import FEATURES


def live_env(tmp_path, **extra: str) -> dict[str, str]:
    """An environment with its own dataset name (so its own live folder, tables and paper
    account) and its own topics."""
    tag = uuid.uuid4().hex[:8]
    return {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"),
            "QL_DATA__SYNTHETIC__NAME": f"stream-{tag}", "QL_KAFKA__TOPICS__MARKET_DATA": f"md-{tag}",
            "QL_KAFKA__TOPICS__DEAD_LETTER": f"md-{tag}.dlq", "QL_KAFKA__TOPICS__PREDICTIONS": f"pred-{tag}",
            "QL_KAFKA__TOPICS__BARS": f"bars-{tag}", "QL_KAFKA__TOPICS__ORDERS": f"orders-{tag}",
            "QL_KAFKA__TOPICS__ORDERS_REJECTED": f"orders-{tag}.rejected", "QL_KAFKA__TOPICS__FILLS": f"fills-{tag}",
            "QL_KAFKA__STREAM__TRIGGER_SECONDS": "0.5", "QL_KAFKA__FEED__BATCH_TICKS": "2000", **extra}


def research_with_champion(spark, settings: Settings, days: pd.DatetimeIndex, sequence_length: int = 3):
    """Silver bars and features of ``days`` and a linear champion trained on them, promoted:
    (version, model, feature spec, the gold feature rows)."""
    cfg = settings.data.synthetic
    write_bronze(spark, settings, days[0].date(), days[-1].date())
    write_silver(spark, settings, days[0].date(), days[-1].date())
    write_features(spark, settings, days[0].date(), days[-1].date())
    spec = FeatureSpec(tuple(settings.data.features.windows), tuple(settings.data.features.rank_features),
                       sequence_length=sequence_length)
    gold = lake.read(spark, FEATURES.path(settings)).toPandas().sort_values(["symbol", "ts"])
    bars = generate_market(cfg).bars
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    labels = pd.concat([pd.concat([g[["symbol", "ts"]], compute_labels(g, 1)], axis=1)
                        for _, g in bars.sort_values("ts").groupby("symbol")])
    panel = Panel(gold.merge(labels, on=["symbol", "ts"])[["symbol", "ts", *spec.names, "fwd_return", "direction"]],
                  spec.names)
    model = Tabular(LinearModel()).fit(panel, panel.labelled(), None)
    configure_mlflow(settings)
    with mlflow.start_run():
        version = register_model(DirectionModel(model, spec, "linear"), gold[["symbol", "ts", *spec.names]].tail(3)
                                 .reset_index(drop=True), settings)
    promote(settings, version, "live test champion")
    return version, model, spec, gold
