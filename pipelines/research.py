"""The research layers for one date range: bronze, silver (+ quarantine), features, labels.

Each function reads the configured source or the layer below for ``[start, end]`` and
replaces exactly that range of its Delta table, so re-running a range never appends twice.
Tables live under ``<lake>/<layer>/<dataset>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from config import Settings
from pipelines import lake
from pipelines.bars import ticks_to_bars, with_bar_defaults
from pipelines.feature_tables import feature_table, label_table, with_future, with_history
from pipelines.quality import adjust_bars, reason_counts, validate_bars, validate_ticks
from pipelines.sources.arch_sample import load_arch_bars
from pipelines.sources.files import read_files
from pipelines.sources.synthetic import bar_timestamps, generate_market, generate_ticks


# explicit schemas: an empty date range (a weekend) must write nothing, not fail on inference
TICK_SCHEMA = ("symbol string, ts timestamp, seq long, price double, size double, bid double, ask double, "
               "side string, source string")
BAR_SCHEMA = "symbol string, ts timestamp, open double, high double, low double, close double, volume double, adj_close double"


@dataclass(frozen=True)
class LayerResult:
    """What a layer wrote: rows, table version and anything worth showing as metadata."""

    table: str
    rows: int
    version: int
    extra: dict = field(default_factory=dict)


def path(settings: Settings, layer: lake.Layer, table: str) -> str:
    return str(lake.table_path(settings, layer, f"{settings.data.dataset}/{table}"))


def source_kind(settings: Settings) -> str:
    """``ticks`` if the configured source delivers ticks, else ``bars``."""
    d = settings.data
    if d.source == "synthetic":
        return "ticks"
    return d.files.kind if d.source == "files" else "bars"


def _in_range(df: DataFrame, start: date, end: date) -> DataFrame:
    """Rows dated in ``[start, end]``, plus rows no range would ever take (no timestamp, or one
    after today) so that silver quarantines them instead of losing them."""
    day = F.to_date("ts")
    inside = (day >= F.lit(start.isoformat()).cast("date")) & (day <= F.lit(end.isoformat()).cast("date"))
    return df.where(inside | F.col("ts").isNull() | (day > F.current_date()))


def read_source(spark: SparkSession, settings: Settings, start: date, end: date) -> tuple[DataFrame, dict]:
    """The configured source's records in ``[start, end]``, as received, and facts about the source
    (for the synthetic market: the best directional accuracy any model can reach on it)."""
    d = settings.data
    facts: dict = {}
    if d.source == "synthetic":
        market = generate_market(d.synthetic, progress=True)
        ticks = generate_ticks(market, d.synthetic)
        days = ticks["ts"].dt.date
        df = spark.createDataFrame(ticks[(days >= start) & (days <= end)].reset_index(drop=True), TICK_SCHEMA)
        facts = {"mode": d.synthetic.mode, "bayes_accuracy": round(market.bayes_accuracy, 4)}
    elif d.source == "arch":
        bars = load_arch_bars(list(d.arch.series))
        days = bars["ts"].dt.date
        df = spark.createDataFrame(bars[(days >= start) & (days <= end)].reset_index(drop=True), BAR_SCHEMA)
    else:
        df = _in_range(read_files(spark, d.files), start, end)
    return df, facts


def source_date_range(spark: SparkSession, settings: Settings) -> tuple[date, date]:
    """First and last date the configured source has data for."""
    d = settings.data
    if d.source == "synthetic":
        ts = bar_timestamps(d.synthetic)
        return ts[0].date(), ts[-1].date()
    if d.source == "arch":
        ts = load_arch_bars(list(d.arch.series))["ts"]
        return ts.min().date(), ts.max().date()
    row = read_files(spark, d.files).agg(F.min("ts").alias("a"), F.max("ts").alias("b")).collect()[0]
    return row["a"].date(), row["b"].date()


def write_bronze(spark: SparkSession, settings: Settings, start: date, end: date) -> LayerResult:
    """Bronze: the source's records for the range, with ingest time and date, as received."""
    kind = source_kind(settings)
    raw, facts = read_source(spark, settings, start, end)
    df = _dated(raw.withColumn("date", F.date_format("ts", "yyyy-MM-dd")), start, end).withColumn(
        "ingested_at", F.current_timestamp())
    target = path(settings, "bronze", kind)
    version = lake.replace_range(df, target, "date", start.isoformat(), end.isoformat())
    rows = lake.read(spark, target).where(_range_filter(start, end)).count()
    return LayerResult(target, rows, version, {"kind": kind, "source": settings.data.source, **facts})


def _dated(df: DataFrame, start: date, end: date) -> DataFrame:
    """Rows without a usable date in the range (no or future timestamp) are filed under ``start``."""
    inside = F.col("date").isNotNull() & _range_filter(start, end)
    return df.withColumn("date", F.when(inside, F.col("date")).otherwise(F.lit(start.isoformat())))


def _range_filter(start: date, end: date):
    return (F.col("date") >= start.isoformat()) & (F.col("date") <= end.isoformat())


def write_silver(spark: SparkSession, settings: Settings, start: date, end: date) -> LayerResult:
    """Silver bars for the range: validated ticks aggregated to bars, or validated source bars.

    Rejected rows of either stage land in the quarantine table with their reason.
    """
    d = settings.data
    kind = source_kind(settings)
    bronze = lake.read(spark, path(settings, "bronze", kind)).where(_range_filter(start, end))
    quarantined = []
    if kind == "ticks":
        ticks = validate_ticks(bronze.drop("date", "ingested_at"), d.quality)
        quarantined.append(ticks.quarantine)
        minutes = d.synthetic.bar_minutes if d.source == "synthetic" else _interval_minutes(d.files.interval)
        bars = ticks_to_bars(ticks.valid, minutes).withColumn("adj_close", F.lit(None).cast("double"))
    else:
        interval = d.files.interval if d.source == "files" else "1d"
        bars = bronze.drop("date", "ingested_at")
        bars = with_bar_defaults(adjust_bars(bars), interval).withColumn(
            "adj_close", F.lit(None).cast("double"))
    checked = validate_bars(bars.drop("adj_close"), d.quality)
    quarantined.append(checked.quarantine)
    silver = checked.valid.withColumn("date", F.date_format("ts", "yyyy-MM-dd"))
    target = path(settings, "silver", "bars")
    version = lake.replace_range(silver, target, "date", start.isoformat(), end.isoformat())

    quarantine = quarantined[0] if len(quarantined) == 1 else quarantined[0].unionByName(quarantined[1])
    q_path = path(settings, "silver", "quarantine")
    lake.replace_range(_dated(quarantine, start, end), q_path, "date", start.isoformat(), end.isoformat())
    q_rows = lake.read(spark, q_path).where(_range_filter(start, end))
    rows = lake.read(spark, target).where(_range_filter(start, end)).count()
    return LayerResult(target, rows, version, {
        "quarantined": q_rows.count(), "quarantine_reasons": reason_counts(q_rows), "quarantine_table": q_path,
        "source_rows": bronze.count(),
    })


def _interval_minutes(interval: str) -> int:
    unit = interval[-1]
    value = int(interval[:-1])
    return value * {"m": 1, "h": 60, "d": 1440}[unit]


def write_features(spark: SparkSession, settings: Settings, start: date, end: date) -> LayerResult:
    """Gold features for the range, each row from its symbol's history up to that bar only."""
    f = settings.data.features
    silver = lake.read(spark, path(settings, "silver", "bars"))
    table = feature_table(with_history(silver, start, end, f.windows), f.windows, f.rank_features)
    table = table.where(_range_filter(start, end))
    target = path(settings, "gold", "features")
    version = lake.replace_range(table, target, "date", start.isoformat(), end.isoformat())
    written = lake.read(spark, target).where(_range_filter(start, end))
    return LayerResult(target, written.count(), version, {"features": len(table.columns) - 3})


def write_labels(spark: SparkSession, settings: Settings, start: date, end: date) -> LayerResult:
    """Gold labels for the range: forward return over ``model.label_horizon`` bars and direction."""
    horizon = settings.model.label_horizon
    silver = lake.read(spark, path(settings, "silver", "bars"))
    table = label_table(with_future(silver, start, end, horizon), horizon).where(_range_filter(start, end))
    target = path(settings, "gold", "labels")
    version = lake.replace_range(table, target, "date", start.isoformat(), end.isoformat())
    written = lake.read(spark, target).where(_range_filter(start, end))
    stats = written.agg(F.count("direction").alias("n"), F.avg("direction").alias("up")).collect()[0]
    return LayerResult(target, written.count(), version, {
        "horizon_bars": horizon, "labelled": int(stats["n"]), "share_up": float(stats["up"] or 0.0)})


def preview(spark: SparkSession, table: str, start: date, end: date, n: int = 5, columns: int = 10) -> pd.DataFrame:
    """The first ``n`` rows (and ``columns`` columns) of ``table`` in ``[start, end]``, for asset metadata."""
    df = lake.read(spark, table).where(_range_filter(start, end))
    return df.select(*df.columns[:columns]).limit(n).toPandas()
