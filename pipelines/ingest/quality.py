"""Bronze to silver: adjustment and validation (per-row and window rules), with a quarantine.

Every rule that rejects a row says why in ``reason``; rejected rows go to the quarantine
table with their full record, so nothing is dropped silently. A row can fail several
rules: ``reason`` lists them all, joined by ``; ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from config.schemas.data import QualitySettings
from pipelines.ingest.row_rules import bar_rules, reasons, tick_rules
from pipelines.ingest.window_rules import BAR_KEYS, TICK_KEYS, flag_duplicates, with_spike_flag


@dataclass(frozen=True)
class Validated:
    valid: DataFrame
    quarantine: DataFrame  # original columns as JSON in `record`, plus layer, table, reason, quarantined_at


def _split(df: DataFrame, reason: Column, table: str) -> Validated:
    """Tag rows with ``reason`` (helper columns start with ``_`` and are dropped)."""
    helpers = [c for c in df.columns if c.startswith("_")]
    tagged = df.withColumn("_reason", reason).drop(*helpers)
    data_cols = [c for c in df.columns if c not in helpers]
    valid = tagged.where(F.col("_reason").isNull()).drop("_reason")
    quarantine = tagged.where(F.col("_reason").isNotNull()).select(
        F.lit(table).alias("table"),
        F.col("symbol").cast("string").alias("symbol"),
        F.col("ts").alias("ts"),
        F.coalesce(F.to_date("ts"), F.lit("1970-01-01").cast("date")).cast("string").alias("date"),
        F.col("_reason").alias("reason"),
        F.to_json(F.struct(*data_cols)).alias("record"),
        F.current_timestamp().alias("quarantined_at"),
    )
    return Validated(valid, quarantine)


def split_malformed(df: DataFrame, table: str) -> Validated:
    """Rows with a cell the source could not parse (its ``malformed`` column, e.g.
    ``malformed close: '1,234.5'``) go to the quarantine with that reason."""
    if "malformed" not in df.columns:
        return _split(df, F.lit(None).cast("string"), table)
    return _split(df.withColumnRenamed("malformed", "_malformed"), F.col("_malformed"), table)


def adjust_bars(df: DataFrame) -> DataFrame:
    """Scale open/high/low/close by ``adj_close / close`` where an adjusted close is given, and
    volume by ``split_factor`` where the source gives one (shares in today's split terms, so a
    split is not a volume jump)."""
    factor = F.when(F.col("adj_close").isNotNull() & (F.col("close") > 0), F.col("adj_close") / F.col("close")) \
        .otherwise(F.lit(1.0))
    if "split_factor" in df.columns:
        df = df.withColumn("volume", F.col("volume") * F.coalesce(F.col("split_factor"), F.lit(1.0)))
    return (df.withColumn("_f", factor)
            .withColumn("open", F.col("open") * F.col("_f"))
            .withColumn("high", F.col("high") * F.col("_f"))
            .withColumn("low", F.col("low") * F.col("_f"))
            .withColumn("close", F.col("close") * F.col("_f"))
            .drop("_f"))


def validate_bars(df: DataFrame, cfg: QualitySettings, now: datetime | None = None,
                  neighbours: DataFrame | None = None) -> Validated:
    """Split bars into valid rows and quarantined rows with their reasons.

    Rules: the per-row bar rules (:func:`pipelines.ingest.row_rules.bar_rules`), one row per
    (symbol, ts), and no isolated price spike (a move beyond ``max_abs_log_return`` that
    reverses on the next bar).

    Args:
        neighbours: bars just outside ``df``'s range at the same stage (e.g. the days before and
            after it). The spike rule sees them as the bars before and after ``df``'s first and
            last bar, so a bar is judged the same whatever range it is built in; they are not
            themselves returned.
    """
    rules = bar_rules(cfg, now)
    if neighbours is not None:
        df = df.withColumn("_outside", F.lit(False)).unionByName(
            neighbours.select(*df.columns).withColumn("_outside", F.lit(True)))
    staged = with_spike_flag(flag_duplicates(df, rules, BAR_KEYS, [F.col("volume").desc_nulls_last()]),
                             cfg.max_abs_log_return)
    if neighbours is not None:
        staged = staged.where(~F.col("_outside"))
    reason = reasons(*rules, (F.col("_dup"), "duplicate (symbol, ts)"),
                     (F.col("_spike"), f"price spike beyond |log return| {cfg.max_abs_log_return}"))
    return _split(staged, reason, "bars")


def validate_ticks(df: DataFrame, cfg: QualitySettings, now: datetime | None = None) -> Validated:
    """Split ticks into valid rows and quarantined rows with their reasons.

    Rules: the per-row tick rules (:func:`pipelines.ingest.row_rules.tick_rules`) and one row
    per (symbol, seq).
    """
    rules = tick_rules(cfg, now)
    staged = flag_duplicates(df, rules, TICK_KEYS, [F.col("ts")])
    return _split(staged, reasons(*rules, (F.col("_dup"), "duplicate (symbol, seq)")), "ticks")


def reason_counts(quarantine: DataFrame) -> dict[str, int]:
    """Quarantined rows per single reason (a row with two reasons counts for both)."""
    exploded = quarantine.select(F.explode(F.split("reason", "; ")).alias("r")).groupBy("r").count()
    return {row["r"]: int(row["count"]) for row in exploded.collect()}
