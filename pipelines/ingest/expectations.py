"""Great Expectations 1.x suite for silver bars, run on the Spark DataFrame itself.

Rules that GX has no per-group form for (time increasing per symbol, returns per symbol)
are computed as helper columns first and then expected like any other column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from config.schemas.data import QualitySettings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network here; GX would try to phone home


@dataclass(frozen=True)
class SuiteResult:
    success: bool
    evaluated: int
    failed: list[str]           # "expectation(column): observed" for each failed expectation
    statistics: dict


def _with_helpers(bars: DataFrame) -> DataFrame:
    by_symbol = Window.partitionBy("symbol").orderBy("ts")
    prev_ts = F.lag("ts").over(by_symbol)
    return (bars
            .withColumn("max_open_close", F.greatest("open", "close"))
            .withColumn("min_open_close", F.least("open", "close"))
            .withColumn("ts_increasing", F.coalesce(F.col("ts") > prev_ts, F.lit(True)))
            .withColumn("log_return", F.coalesce(F.log(F.col("close") / F.lag("close").over(by_symbol)), F.lit(0.0)))
            .withColumn("ts_epoch", F.col("ts").cast("double")))


def bar_suite(cfg: QualitySettings, now: datetime | None = None):
    """The expectations every silver bar table must meet."""
    import great_expectations.expectations as gxe

    now = now or datetime.now(timezone.utc)
    future = (now + timedelta(minutes=cfg.max_future_minutes)).timestamp()
    lim = cfg.max_abs_log_return
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="symbol"),
        gxe.ExpectColumnValuesToNotBeNull(column="ts"),
        gxe.ExpectColumnValuesToNotBeNull(column="close"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="max_open_close", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="min_open_close", column_B="low", or_equal=True),
        gxe.ExpectColumnValuesToBeBetween(column="low", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnValuesToBeInSet(column="ts_increasing", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="ts_epoch", max_value=future),
        # a real crash can exceed the bound once in a long history; a broken feed does it often
        gxe.ExpectColumnValuesToBeBetween(column="log_return", min_value=-lim, max_value=lim, mostly=0.9999),
    ]


def run_bar_suite(bars: DataFrame, cfg: QualitySettings, now: datetime | None = None) -> SuiteResult:
    """Validate ``bars`` with :func:`bar_suite` in an ephemeral GX context."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_spark(name="silver").add_dataframe_asset(name="bars")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="silver_bars"))
    for expectation in bar_suite(cfg, now):
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="silver_bars", data=batch_definition, suite=suite))
    result = validation.run(batch_parameters={"dataframe": _with_helpers(bars)})
    failed = []
    for r in result.results:
        if not r.success:
            cfg_ = r.expectation_config
            column = cfg_.kwargs.get("column") or f"{cfg_.kwargs.get('column_A')}>{cfg_.kwargs.get('column_B')}"
            observed = r.result.get("unexpected_count", r.result.get("observed_value"))
            failed.append(f"{cfg_.type}({column}): {observed} unexpected")
    return SuiteResult(bool(result.success), len(result.results), failed, dict(result.statistics))
