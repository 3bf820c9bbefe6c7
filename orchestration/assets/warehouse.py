"""Warehouse assets: the Delta gold (and silver bars) loaded into the PostgreSQL star schema,
each reconciled with its source by a blocking check, then the Tableau files and extracts.

The research loads share the research assets' monthly partitions: ``warehouse_bars`` replaces
exactly the run's months; the prediction and backtest loads replace each model family's and
strategy's slice of the dataset (their Delta tables hold one run per family / strategy).
``warehouse_live`` loads the live tables' dates on ``warehouse_live_schedule`` (every minute).
"""


from collections.abc import Sequence

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from config import Settings
from orchestration.assets.backtest import backtests, montecarlo
from orchestration.assets.models import trained_models
from orchestration.assets.research import run_range, silver_bars
from orchestration.partitions import date_range, monthly, single_run
from orchestration.resources import SettingsResource
from warehouse import db
from warehouse import load as dw_load

GROUP = "warehouse"
KINDS = {"postgres", "delta"}


def _months(context) -> list[str] | None:
    if not context.has_partition_key_range:
        return None
    start, end = date_range(context)
    return dw_load.months_between(start, end)


def _load(context: AssetExecutionContext, cfg: Settings, group: str, values: Sequence[str] | None = None,
          registry: dict | None = None, pieces: Sequence[dw_load.Slice] | None = None) -> MaterializeResult:
    specs = dw_load.GROUPS[group]
    pieces = dw_load.slices(cfg, specs, values=values) if pieces is None else pieces
    done = dw_load.load(cfg, db.engine(cfg, "loader"), specs, pieces, registry, progress=context.log.info)
    per_fact = pd.DataFrame([{"fact": d.fact, "slice": str(d.slice), "rows": d.rows, "replaced": d.replaced,
                              "seconds": round(d.seconds, 3)} for d in done])
    rows = int(per_fact["rows"].sum()) if len(per_fact) else 0
    seconds = float(per_fact["seconds"].sum()) if len(per_fact) else 0.0
    return MaterializeResult(metadata={
        "rows": rows, "slices": len(pieces), "rows_per_second": round(rows / seconds) if seconds else 0,
        "loads": MetadataValue.md(per_fact.to_markdown(index=False) if len(per_fact) else "nothing to load"),
        "values": MetadataValue.json([p.value for p in pieces])})


def _reconciled(cfg: Settings, group: str, values: Sequence[str] | None = None) -> AssetCheckResult:
    specs = dw_load.GROUPS[group]
    pieces = dw_load.slices(cfg, specs, values=values)
    problems = dw_load.reconcile(cfg, db.engine(cfg, "reporting"), specs, pieces)
    return AssetCheckResult(passed=not problems, metadata={
        "slices": len(pieces), "facts": MetadataValue.json(sorted({s.name for s in specs})),
        "differences": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")})


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run, deps=[silver_bars],
       description="Silver bars of the run's months as daily bars (dw.fact_daily_bar) and the quarantine's counts "
                   "by day and reason (dw.fact_data_quality); each month replaced in one transaction via COPY.")
def warehouse_bars(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    return _load(context, settings.get(), "bars", _months(context))


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run, deps=[trained_models],
       description="Every family's out-of-sample predictions (dw.fact_prediction) with its model dimension row: "
                   "MLflow run, registered version and aliases, out-of-sample accuracy and rank IC.")
def warehouse_predictions(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    cfg = settings.get()
    return _load(context, cfg, "predictions", registry=dw_load.registry_info(cfg))


@asset(group_name=GROUP, kinds=KINDS, partitions_def=monthly, backfill_policy=single_run,
       deps=[backtests, montecarlo],
       description="Each strategy's backtest: equity by day with drawdown, trades, round trips, metrics, Monte "
                   "Carlo summary and fan quantiles (dw.fact_backtest_* and dw.fact_montecarlo_*).")
def warehouse_backtests(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    return _load(context, settings.get(), "backtests")


@asset(group_name=GROUP, kinds=KINDS, deps=["live_predictions", "live_dead_letters"],
       description="The live tables: orders, risk rejections, fills, position and equity snapshots, dead letters "
                   "by reason; each run loads the dates not loaded yet and replaces the newest. "
                   "warehouse_live_schedule runs it every minute.")
def warehouse_live(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    cfg = settings.get()
    return _load(context, cfg, "live", pieces=dw_load.live_slices(cfg, db.engine(cfg, "loader")))


def _check(group: str, asset_def):
    @asset_check(asset=asset_def, name=f"{asset_def.key.path[-1]}_reconciled", blocking=True,
                 description="Row counts and column sums of every loaded slice equal its Delta source's.")
    def check(context: AssetCheckExecutionContext, settings: SettingsResource) -> AssetCheckResult:
        span = run_range(context) if group == "bars" else None
        values = dw_load.months_between(pd.Timestamp(span[0]).date(), pd.Timestamp(span[1]).date()) if span else None
        return _reconciled(settings.get(), group, values)
    return check


warehouse_bars_reconciled = _check("bars", warehouse_bars)
warehouse_predictions_reconciled = _check("predictions", warehouse_predictions)
warehouse_backtests_reconciled = _check("backtests", warehouse_backtests)
warehouse_live_reconciled = _check("live", warehouse_live)


@asset(group_name="tableau", kinds={"tableau", "postgres"}, partitions_def=monthly, backfill_policy=single_run,
       deps=[warehouse_bars, warehouse_predictions, warehouse_backtests],
       description="The .tds data sources and quantlake.twb on the live warehouse (reporting role), and the "
                   "quantlake.hyper extract of every warehouse table with quantlake_extract.twb on it, in "
                   "<state>/tableau.")
def tableau_workbook(context: AssetExecutionContext, settings: SettingsResource) -> MaterializeResult:
    from tableau.build import build_all

    outcome = build_all(settings.get())
    return MaterializeResult(metadata={
        "folder": MetadataValue.path(str(settings.get().platform.tableau_dir)),
        "documents": MetadataValue.json([p.name for p in outcome.documents]),
        "extract_rows": MetadataValue.json(outcome.rows), "extract_seconds": round(outcome.seconds, 2),
        "sheet_marks": MetadataValue.json({c.sheet.name: len(c.rows) for c in outcome.sheets}),
        "previews": MetadataValue.path(str(settings.get().platform.tableau_dir / "previews"))})


@asset_check(asset=tableau_workbook, description="Every table of the .hyper extract has the warehouse's row count and "
                                                 "column sums.")
def tableau_extract_matches_warehouse(settings: SettingsResource) -> AssetCheckResult:
    from tableau.build import extract_differences

    problems = extract_differences(settings.get())
    return AssetCheckResult(passed=not problems,
                            metadata={"differences": MetadataValue.md("\n".join(problems) or "none")})


@asset_check(asset=tableau_workbook, description="Every research sheet draws marks for the configured dataset, "
                                                 "and each sheet's marks on the .hyper extract equal the warehouse's "
                                                 "(the live sheets fill after `make live`).")
def tableau_sheets_draw(settings: SettingsResource) -> AssetCheckResult:
    from tableau.build import sheet_problems

    problems = sheet_problems(settings.get())
    return AssetCheckResult(passed=not problems, metadata={"problems": MetadataValue.md("\n".join(problems) or "none")})
