"""Bronze to silver: typing, adjustment, deduplication and validation, with a quarantine.

Every rule that rejects a row says why in ``reason``; rejected rows go to the quarantine
table with their full record, so nothing is dropped silently. A row can fail several
rules: ``reason`` lists them all, joined by ``; ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from config.settings import QualitySettings

BAR_KEYS = ("symbol", "ts")
TICK_KEYS = ("symbol", "seq")


@dataclass(frozen=True)
class Validated:
    valid: DataFrame
    quarantine: DataFrame  # original columns as JSON in `record`, plus layer, table, reason, quarantined_at


def _reasons(*rules: tuple[Column, str]) -> Column:
    """``"a; b"`` for every rule whose condition holds, or NULL when none does."""
    parts = [F.when(cond, F.lit(text)) for cond, text in rules]
    joined = F.concat_ws("; ", *parts)
    return F.when(joined == "", F.lit(None)).otherwise(joined)


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


def _future_limit(cfg: QualitySettings, now: datetime | None) -> Column:
    now = now or datetime.now(timezone.utc)
    return F.lit((now + timedelta(minutes=cfg.max_future_minutes)).replace(tzinfo=None)).cast("timestamp")


def adjust_bars(df: DataFrame) -> DataFrame:
    """Scale open/high/low/close by ``adj_close / close`` where an adjusted close is given."""
    factor = F.when(F.col("adj_close").isNotNull() & (F.col("close") > 0), F.col("adj_close") / F.col("close")) \
        .otherwise(F.lit(1.0))
    return (df.withColumn("_f", factor)
            .withColumn("open", F.col("open") * F.col("_f"))
            .withColumn("high", F.col("high") * F.col("_f"))
            .withColumn("low", F.col("low") * F.col("_f"))
            .withColumn("close", F.col("close") * F.col("_f"))
            .drop("_f"))


def validate_bars(df: DataFrame, cfg: QualitySettings, now: datetime | None = None) -> Validated:
    """Split bars into valid rows and quarantined rows with their reasons.

    Rules: key present, prices present and positive, OHLC consistent, volume not negative,
    timestamp not in the future, one row per (symbol, ts), no isolated price spike (a move
    beyond ``max_abs_log_return`` that reverses on the next bar).
    """
    by_symbol = Window.partitionBy("symbol").orderBy("ts")
    lim = cfg.max_abs_log_return
    price_ok = F.col("open").isNotNull() & F.col("high").isNotNull() & F.col("low").isNotNull() & F.col("close").isNotNull()
    rules = [
        (F.col("symbol").isNull() | F.col("ts").isNull(), "missing key"),
        (~price_ok, "missing price"),
        (price_ok & (F.least("open", "high", "low", "close") <= 0), "non-positive price"),
        (price_ok & (F.col("high") < F.greatest("open", "close")), "high below open/close"),
        (price_ok & (F.col("low") > F.least("open", "close")), "low above open/close"),
        (F.col("volume") < 0, "negative volume"),
        (F.col("ts") > _future_limit(cfg, now), "timestamp in the future"),
    ]
    staged = (_flag_duplicates(df, rules, BAR_KEYS, [F.col("volume").desc_nulls_last()])
              .withColumn("_r_in", F.log(F.col("close") / F.lag("close").over(by_symbol)))
              .withColumn("_r_out", F.log(F.lead("close").over(by_symbol) / F.col("close"))))
    spike = (F.abs("_r_in") > lim) & (F.abs("_r_out") > lim) & (F.signum("_r_in") != F.signum("_r_out"))
    reason = _reasons(*rules, (F.col("_dup"), "duplicate (symbol, ts)"),
                      (F.coalesce(spike, F.lit(False)), f"price spike beyond |log return| {lim}"))
    return _split(staged, reason, "bars")


def validate_ticks(df: DataFrame, cfg: QualitySettings, now: datetime | None = None) -> Validated:
    """Split ticks into valid rows and quarantined rows with their reasons.

    Rules: key present, price positive, size positive, quote not crossed, timestamp not in
    the future, one row per (symbol, seq).
    """
    rules = [
        (F.col("symbol").isNull() | F.col("ts").isNull() | F.col("seq").isNull(), "missing key"),
        (F.col("price").isNull() | (F.col("price") <= 0), "missing or non-positive price"),
        (F.col("size").isNotNull() & (F.col("size") <= 0), "non-positive size"),
        (F.col("bid").isNotNull() & F.col("ask").isNotNull() & (F.col("bid") > F.col("ask")), "crossed quote"),
        (F.col("ts") > _future_limit(cfg, now), "timestamp in the future"),
    ]
    staged = _flag_duplicates(df, rules, TICK_KEYS, [F.col("ts")])
    return _split(staged, _reasons(*rules, (F.col("_dup"), "duplicate (symbol, seq)")), "ticks")


def _flag_duplicates(df: DataFrame, rules: list[tuple[Column, str]], keys, order: list[Column]) -> DataFrame:
    """``_dup``: a later row of its key. Rows that break no other rule come first, so a clean
    original is kept and its corrupted resend is the one quarantined."""
    broken = F.lit(False)
    for cond, _ in rules:
        broken = broken | F.coalesce(cond, F.lit(False))
    by_key = Window.partitionBy(*keys).orderBy(broken.asc(), *order)
    return df.withColumn("_dup", F.row_number().over(by_key) > 1)


def reason_counts(quarantine: DataFrame) -> dict[str, int]:
    """Quarantined rows per single reason (a row with two reasons counts for both)."""
    exploded = quarantine.select(F.explode(F.split("reason", "; ")).alias("r")).groupBy("r").count()
    return {row["r"]: int(row["count"]) for row in exploded.collect()}
