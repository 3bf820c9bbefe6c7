"""Model assets: train (walk-forward + final fit + MLflow) -> evaluate against @champion -> promote.

The gate is a blocking check of ``model_evaluation``, computed from the gate's decision in the
same step: when no family of the run beats the champion and the baselines out-of-sample in a
one-sided paired test (``promotion.level`` over the families judged, see
``models/registry/gate.py``), ``champion_model`` does not run and the champion stays.
"""


import time

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    job,
    op,
)
from models import registry, training
from models.champion import CHALLENGER
from models.tracking import configure_mlflow
from orchestration.assets.research import features, labels
from orchestration.partitions import date_range, monthly, single_run
from orchestration.resources import SettingsResource, SparkResource

GROUP = "models"


@asset(group_name=GROUP, kinds={"pytorch", "mlflow", "delta"}, partitions_def=monthly, backfill_policy=single_run,
       deps=[features, labels],
       description="Every configured family (baselines, LSTM, Transformer, ensemble) evaluated walk-forward on all "
                   "history up to the run's last day, fitted, logged to MLflow and registered; the best version is "
                   "@challenger. Out-of-sample predictions land in gold/<dataset>/predictions.")
def trained_models(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    _, end = date_range(context)
    cfg = settings.get()
    outcome = training.train_and_register(spark.session(), cfg, end, progress=True)
    context.log.info("trained %s in %.0fs; challenger: %s v%s", ", ".join(outcome.versions), outcome.seconds,
                     outcome.candidate, outcome.candidate_version)
    data = outcome.data
    return MaterializeResult(metadata={
        "comparison": MetadataValue.md(outcome.table.to_markdown(index=False)),
        "challenger": outcome.candidate, "challenger_version": outcome.candidate_version,
        "versions": MetadataValue.json(outcome.versions),
        "mlflow_run": MetadataValue.url(f"{cfg.platform.mlflow.tracking_uri}/#/experiments/"
                                        f"{configure_mlflow(cfg)}/runs/{outcome.run_id}"),
        "rows": len(data.panel), "labelled_rows": len(data.panel.labelled()),
        "table_versions": MetadataValue.json(data.table_versions),
        "predictions_table": MetadataValue.path(outcome.predictions_table),
        **({"bayes_accuracy": round(data.bayes_accuracy, 4)} if data.bayes_accuracy else {}),
        "seconds": round(outcome.seconds, 1)})


GATE_CHECK = "beats_champion"


@asset(group_name=GROUP, kinds={"mlflow"}, partitions_def=monthly, backfill_policy=single_run, deps=[trained_models],
       check_specs=[AssetCheckSpec(GATE_CHECK, asset="model_evaluation", blocking=True,
                                   description="A family of the run beats the champion and the baselines "
                                               "out-of-sample beyond chance (one-sided paired test at "
                                               "promotion.level / families). Failing keeps the champion and "
                                               "skips champion_model.")],
       description="Every family of the @challenger's run against the @champion and the baselines on the same "
                   "out-of-sample rows (bars the champion never saw); the best passing family becomes @challenger; "
                   "the decision and its p-value go on its version tags.")
def model_evaluation(context: AssetExecutionContext, spark: SparkResource, settings: SettingsResource) -> MaterializeResult:
    started = time.monotonic()
    decision = registry.evaluate_challenger(spark.session(), settings.get())
    context.log.info("gate: %s (%s) in %.0fs", "promote" if decision.promote else "keep champion",
                     decision.reason, time.monotonic() - started)
    return MaterializeResult(metadata=decision.metadata(), check_results=[AssetCheckResult(
        check_name=GATE_CHECK, passed=decision.promote,
        metadata={"reason": decision.reason, "basis": decision.basis, "p_value": decision.p_value,
                  "level": decision.level, "challenger_version": decision.candidate_version})])


@asset(group_name=GROUP, kinds={"mlflow"}, partitions_def=monthly, backfill_policy=single_run, deps=[model_evaluation],
       description="models:/<name>@champion: the challenger that passed the gate.")
def champion_model(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    cfg = settings.get()
    challenger = registry.alias_version(cfg, CHALLENGER)
    if challenger is None:
        raise RuntimeError("no @challenger to promote")
    entry = registry.promote(cfg, challenger.version, challenger.tags.get("gate_reason", "passed the gate"))
    context.log.info("@champion -> v%s (was %s)", entry["version"], entry["previous"])
    return MaterializeResult(metadata={"champion_version": entry["version"], "family": challenger.tags.get("family"),
                                       "previous": entry["previous"] or "none", "reason": entry["reason"],
                                       "model_uri": f"models:/{cfg.platform.mlflow.registered_model}@champion"})


class PromoteConfig(Config):
    """``version``: the version to make champion (empty: the current @challenger).
    ``rollback``: give @champion back to the previous champion instead."""

    version: str = ""
    rollback: bool = False
    reason: str = "manual"


@op(description="Move @champion by hand: promote a version, or roll back to the previous champion.")
def set_champion(context: OpExecutionContext, config: PromoteConfig, settings: SettingsResource) -> dict:
    cfg = settings.get()
    if config.rollback:
        entry = registry.rollback(cfg, config.reason)
    else:
        version = config.version
        if not version:
            challenger = registry.alias_version(cfg, CHALLENGER)
            if challenger is None:
                raise ValueError("no version given and no @challenger")
            version = challenger.version
        entry = registry.promote(cfg, version, config.reason)
    context.log.info("@champion -> v%s (was %s): %s", entry["version"], entry["previous"], entry["reason"])
    return entry


@job(description="Manual promotion or roll-back of models:/<name>@champion (config: version, rollback, reason).")
def promote_model_job():
    set_champion()
