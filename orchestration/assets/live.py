"""The streaming job's live tables as Dagster assets, with freshness checks and live figures.

The live tables are written by ``python -m streaming run`` (a long-running Structured
Streaming query), not by Dagster, so they are declared as external assets: the UI shows
them in the lineage after the research tables, and :func:`live_figures_sensor` records an
observation with the stream's figures (ticks in, dead letters by reason, bars, predictions,
last batch) each time a new micro-batch has finished, and evaluates the freshness checks:
a stream that stalled (no micro-batch for ``stream.stale_after_seconds``) fails them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    AssetSpec,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    sensor,
)

from config import Settings, load_settings
from pipelines.lake.tables import LIVE_BARS, LIVE_DEAD_LETTERS, LIVE_FEATURES, LIVE_PREDICTIONS
from orchestration.resources import SettingsResource
from streaming.status import read_status

GROUP = "live"
KINDS = {"spark", "delta", "kafka"}

live_bars = AssetSpec("live_bars", group_name=GROUP, kinds=KINDS, deps=["silver_bars"],
                      description="Bars the streaming job builds from Kafka ticks (event-time windows); "
                                  "the stream warms its state from silver_bars.",
                      metadata={"table": f"{LIVE_BARS.layer}/<dataset>/{LIVE_BARS.name}"})
live_features = AssetSpec("live_features", group_name=GROUP, kinds=KINDS, deps=[live_bars],
                          description="Ranked features of each live bar, from the champion's recipe.",
                          metadata={"table": f"{LIVE_FEATURES.layer}/<dataset>/{LIVE_FEATURES.name}"})
live_predictions = AssetSpec("live_predictions", group_name=GROUP, kinds=KINDS, deps=[live_features],
                             description="The champion's live predictions (also on the `predictions` topic).",
                             metadata={"table": f"{LIVE_PREDICTIONS.layer}/<dataset>/{LIVE_PREDICTIONS.name}"})
live_dead_letters = AssetSpec("live_dead_letters", group_name=GROUP, kinds=KINDS,
                              description="Malformed and late ticks with their reasons (also on "
                                          "`market-data.dlq`, original bytes, reasons in headers).",
                              metadata={"table": f"{LIVE_DEAD_LETTERS.layer}/<dataset>/{LIVE_DEAD_LETTERS.name}"})
LIVE_ASSETS = [live_bars, live_features, live_predictions, live_dead_letters]


def freshness(settings: Settings, now: datetime | None = None) -> tuple[bool, str, dict]:
    """Whether the stream finished a micro-batch within ``stale_after_seconds``, why, and its figures."""
    status = read_status(settings)
    limit = settings.kafka.stream.stale_after_seconds
    if status is None or not status.get("last_batch_at"):
        return False, "the stream has not finished a micro-batch (start it: python -m streaming run)", {}
    age = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(status["last_batch_at"])).total_seconds()
    figures = {"last_batch_id": status["last_batch_id"], "last_batch_at": status["last_batch_at"],
               "seconds_since_last_batch": round(age, 1), "stale_after_seconds": limit,
               "ticks_in": status["ticks_in"], "dead_letters": sum(status["dead_letters"].values()),
               "bars": status["bars"], "predictions": status["predictions"],
               "newest_bar": status["last_bar_ts"] or "none", "model": status["model"] or "none"}
    if age > limit:
        return False, f"stalled: no micro-batch for {age:.0f} s (limit {limit:.0f} s)", figures
    return True, f"last micro-batch {age:.0f} s ago", figures


def _result(settings: Settings) -> AssetCheckResult:
    passed, text, figures = freshness(settings)
    return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.ERROR,
                            metadata={"status": text, **figures})


@asset_check(asset="live_bars", description="The stream finished a micro-batch within stream.stale_after_seconds.")
def live_bars_fresh(context, settings: SettingsResource) -> AssetCheckResult:
    return _result(settings.get())


@asset_check(asset="live_predictions",
             description="The stream finished a micro-batch within stream.stale_after_seconds.")
def live_predictions_fresh(context, settings: SettingsResource) -> AssetCheckResult:
    return _result(settings.get())


FRESHNESS_CHECKS = {"live_bars": "live_bars_fresh", "live_predictions": "live_predictions_fresh"}


def live_events(settings: Settings, cursor: dict) -> tuple[list, dict]:
    """Observations of the live tables after a new micro-batch, freshness evaluations when there
    was a new batch or the verdict changed, and the new cursor (last batch id, last verdict)."""
    passed, text, figures = freshness(settings)
    status = read_status(settings) or {}
    batch = int(status.get("last_batch_id", -1))
    new_batch = batch > cursor.get("batch", -1)
    events: list = []
    if new_batch or passed != cursor.get("passed"):
        events += [AssetCheckEvaluation(asset_key=AssetKey(asset), check_name=check, passed=passed,
                                        severity=AssetCheckSeverity.ERROR, metadata={"status": text, **figures})
                   for asset, check in FRESHNESS_CHECKS.items()]
    if new_batch:
        dead = {f"dead letters: {reason}": n for reason, n in status["dead_letters"].items()}
        events += [
            AssetObservation(asset_key="live_bars", metadata={**figures, "ticks_valid": status["ticks_valid"],
                                                              "warming_bars": status["warming_bars"]}),
            AssetObservation(asset_key="live_features", metadata={"feature_rows": status["feature_rows"],
                                                                  "last_batch_id": batch}),
            AssetObservation(asset_key="live_predictions", metadata={"predictions": status["predictions"],
                                                                     "model": status["model"] or "none",
                                                                     "last_batch_id": batch}),
            AssetObservation(asset_key="live_dead_letters", metadata={"dead_letters": figures["dead_letters"],
                                                                      **dead, "last_batch_id": batch}),
        ]
    return events, {"batch": max(batch, cursor.get("batch", -1)), "passed": passed}


@sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Records the stream's live figures on the live assets after each new micro-batch and "
                    "evaluates their freshness checks (a stalled stream fails them).")
def live_figures_sensor(context: SensorEvaluationContext):
    settings = load_settings()
    if read_status(settings) is None:
        return SkipReason("the stream has not run for this dataset (python -m streaming run)")
    events, cursor = live_events(settings, json.loads(context.cursor) if context.cursor else {})
    context.update_cursor(json.dumps(cursor))
    if not events:
        return SkipReason(f"no micro-batch since batch {cursor['batch']}")
    return SensorResult(asset_events=events)
