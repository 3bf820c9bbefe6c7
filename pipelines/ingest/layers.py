"""The ingest layers for one date range: bronze (as received) and silver (+ quarantine).

Each function reads the configured source or the layer below for ``[start, end]`` and
replaces exactly that range of its Delta table, so re-running a range never appends twice.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from config import Settings
from config.schemas.data import DataSettings
from pipelines import lake
from pipelines.ingest.bars import ticks_to_bars, with_bar_defaults
from pipelines.ingest.quality import adjust_bars, reason_counts, split_malformed, validate_bars, validate_ticks
from pipelines.ingest.sources import Source, source_for
from pipelines.ingest.sources.base import interval_minutes
from pipelines.lake.tables import QUARANTINE, SILVER_BARS, SOURCE_FACTS, bronze


def _dated(df: DataFrame, start: date, end: date) -> DataFrame:
    """Rows without a usable date in the range (no or future timestamp) are filed under ``start``."""
    inside = F.col("date").isNotNull() & lake.date_between(start, end)
    return df.withColumn("date", F.when(inside, F.col("date")).otherwise(F.lit(start.isoformat())))


def write_source_facts(spark: SparkSession, settings: Settings, source: Source) -> dict[str, float]:
    """Record what is known about the source itself (e.g. the synthetic Bayes bound) beside its
    bronze data, so later stages read it instead of recomputing it."""
    facts = source.facts()
    rows = [(k, float(v), settings.data.source) for k, v in facts.items()]
    df = spark.createDataFrame(rows, "fact string, value double, source string").withColumn(
        "written_at", F.current_timestamp())
    lake.overwrite(SOURCE_FACTS.conform(df), SOURCE_FACTS.path(settings))
    return facts


def read_source_facts(spark: SparkSession, settings: Settings) -> dict[str, float]:
    """The facts bronze recorded for the configured dataset (empty when there are none)."""
    target = SOURCE_FACTS.path(settings)
    if not lake.exists(spark, target):
        return {}
    return {r["fact"]: float(r["value"]) for r in lake.read(spark, target).collect()}


def write_bronze(spark: SparkSession, settings: Settings, start: date, end: date) -> lake.LayerResult:
    """Bronze: the source's records for the range, with ingest time and date, as received."""
    source = source_for(settings.data)
    raw = source.read(spark, start, end)
    df = _dated(raw.withColumn("date", F.date_format("ts", "yyyy-MM-dd")), start, end).withColumn(
        "ingested_at", F.current_timestamp())
    table = bronze(source.kind)
    target = table.path(settings)
    version = lake.replace_range(table.conform(df), target, "date", start.isoformat(), end.isoformat())
    facts = write_source_facts(spark, settings, source)
    rows = lake.read(spark, target).where(lake.date_between(start, end)).count()
    extra = {"kind": source.kind, "source": settings.data.source}
    if settings.data.source == "synthetic":
        extra["mode"] = settings.data.synthetic.mode
    if "bayes_accuracy" in facts:
        extra["bayes_accuracy"] = round(facts["bayes_accuracy"], 4)
    skipped = getattr(source, "skipped", [])  # a folder's files that could not be read
    if skipped:
        extra["skipped_files"] = {"count": len(skipped),
                                  "files": [{"file": b.file, "reason": b.reason} for b in skipped[:50]]}
    return lake.LayerResult(target, rows, version, extra)


def write_silver(spark: SparkSession, settings: Settings, start: date, end: date) -> lake.LayerResult:
    """Silver bars for the range: validated ticks aggregated to bars, or validated source bars.

    Rejected rows of either stage land in the quarantine table with their reason.
    """
    d = settings.data
    source = source_for(d)
    bronze_rows = lake.read(spark, bronze(source.kind).path(settings))
    received = bronze_rows.where(lake.date_between(start, end))
    bars, quarantined = _bars(received, source, d)
    # the days around the range: the spike rule's neighbours of its first and last bar
    pad = timedelta(days=d.quality.neighbour_days)
    around = bronze_rows.where(lake.date_between(start - pad, start - timedelta(days=1))
                               | lake.date_between(end + timedelta(days=1), end + pad))
    checked = validate_bars(bars, d.quality, neighbours=_bars(around, source, d)[0])
    quarantined.append(checked.quarantine)
    silver = SILVER_BARS.conform(checked.valid.withColumn("date", F.date_format("ts", "yyyy-MM-dd")))
    target = SILVER_BARS.path(settings)
    version = lake.replace_range(silver, target, "date", start.isoformat(), end.isoformat())

    quarantine = quarantined[0]
    for more in quarantined[1:]:
        quarantine = quarantine.unionByName(more)
    q_path = QUARANTINE.path(settings)
    lake.replace_range(QUARANTINE.conform(_dated(quarantine, start, end)), q_path, "date", start.isoformat(),
                       end.isoformat())
    q_rows = lake.read(spark, q_path).where(lake.date_between(start, end))
    rows = lake.read(spark, target).where(lake.date_between(start, end)).count()
    return lake.LayerResult(target, rows, version, {
        "quarantined": q_rows.count(), "quarantine_reasons": reason_counts(q_rows), "quarantine_table": q_path,
        "source_rows": received.count(),
    })


def _bars(received: DataFrame, source: Source, d: DataSettings) -> tuple[DataFrame, list[DataFrame]]:
    """Bronze rows as bars ready for the bar rules (parsed, validated ticks aggregated, or source
    bars adjusted), and the quarantine of those steps."""
    parsed = split_malformed(received.drop("date", "ingested_at"), source.kind)  # cells that did not parse
    quarantined = [parsed.quarantine]
    if source.kind == "ticks":
        ticks = validate_ticks(parsed.valid, d.quality)
        quarantined.append(ticks.quarantine)
        return ticks_to_bars(ticks.valid, interval_minutes(source.interval)), quarantined
    return with_bar_defaults(adjust_bars(parsed.valid), source.interval), quarantined


def source_date_range(spark: SparkSession, settings: Settings) -> tuple[date, date]:
    """First and last date the configured source has data for."""
    return source_for(settings.data).date_range(spark)
