"""Quality rules that need a row's neighbours: duplicates of a key and isolated price spikes.

They run on a batch (a range of bars or ticks); the per-row rules in
:mod:`pipelines.ingest.row_rules` are the half a stream can apply on its own.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.ingest.row_rules import Rule, any_broken

BAR_KEYS = ("symbol", "ts")
TICK_KEYS = ("symbol", "seq")


def flag_duplicates(df: DataFrame, rules: list[Rule], keys, order: list[Column]) -> DataFrame:
    """Add ``_dup``: a later row of its key. Rows that break no other rule come first, so a clean
    original is kept and its corrupted resend is the one quarantined."""
    by_key = Window.partitionBy(*keys).orderBy(any_broken(rules).asc(), *order)
    return df.withColumn("_dup", F.row_number().over(by_key) > 1)


def with_spike_flag(df: DataFrame, max_abs_log_return: float) -> DataFrame:
    """Add ``_spike``: a move beyond ``max_abs_log_return`` that reverses on the next bar."""
    by_symbol = Window.partitionBy("symbol").orderBy("ts")
    r_in = F.log(F.col("close") / F.lag("close").over(by_symbol))
    r_out = F.log(F.lead("close").over(by_symbol) / F.col("close"))
    staged = df.withColumn("_r_in", r_in).withColumn("_r_out", r_out)
    lim = max_abs_log_return
    spike = (F.abs("_r_in") > lim) & (F.abs("_r_out") > lim) & (F.signum("_r_in") != F.signum("_r_out"))
    return staged.withColumn("_spike", F.coalesce(spike, F.lit(False)))
