"""Silver rules and the Great Expectations suite catch crafted bad data; nothing is lost."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from config.schemas.data import QualitySettings
from pipelines.ingest.bars import with_bar_defaults
from pipelines.ingest.expectations import run_bar_suite
from pipelines.features.driver import with_cross_sectional_ranks
from pipelines.features.library import add_cross_sectional_ranks
from pipelines.ingest.quality import adjust_bars, reason_counts, validate_bars, validate_ticks

Q = QualitySettings()
D = dt.datetime
SCHEMA = "symbol string, ts timestamp, open double, high double, low double, close double, volume double, adj_close double"
GOOD = [("A", D(2024, 1, d), 10.0, 11.0, 9.0, 10.5, 100.0, None) for d in (1, 2, 3, 4)]
BAD = {
    "missing key": (None, D(2024, 1, 1), 1.0, 1.0, 1.0, 1.0, 1.0, None),
    "missing price": ("B", D(2024, 1, 1), 10.0, None, 9.0, 10.0, 1.0, None),
    "non-positive price": ("B", D(2024, 1, 2), 10.0, 11.0, 0.0, 10.0, 1.0, None),
    "high below open/close": ("B", D(2024, 1, 3), 10.0, 10.2, 9.0, 10.5, 1.0, None),
    "low above open/close": ("B", D(2024, 1, 4), 10.0, 11.0, 10.2, 10.5, 1.0, None),
    "negative volume": ("B", D(2024, 1, 5), 10.0, 11.0, 9.0, 10.5, -5.0, None),
    "timestamp in the future": ("B", D(2099, 1, 1), 10.0, 11.0, 9.0, 10.5, 1.0, None),
    "duplicate (symbol, ts)": ("A", D(2024, 1, 2), 10.0, 11.0, 9.0, 10.4, 100.0, None),
}


def test_every_rule_quarantines_with_its_reason(spark) -> None:
    rows = GOOD + list(BAD.values())
    result = validate_bars(spark.createDataFrame(rows, SCHEMA), Q)
    assert result.valid.count() + result.quarantine.count() == len(rows)  # nothing silently dropped
    counts = reason_counts(result.quarantine)
    assert set(counts) == set(BAD)
    assert all(n == 1 for n in counts.values())
    assert result.valid.where("symbol = 'A'").count() == 4
    record = result.quarantine.where("reason = 'negative volume'").first()["record"]
    assert '"volume":-5.0' in record


def test_price_spike_is_quarantined_but_a_lasting_move_is_kept(spark) -> None:
    closes = [10.0, 10.1, 40.0, 10.2, 10.1, 10.0, 3.0, 3.1]  # a one-bar spike, then a real crash
    rows = [("S", D(2024, 1, i + 1), c, c * 1.01, c * 0.99, c, 1.0, None) for i, c in enumerate(closes)]
    result = validate_bars(spark.createDataFrame(rows, SCHEMA), Q)
    assert [json.loads(r["record"])["close"] for r in result.quarantine.collect()] == [40.0]
    assert result.valid.count() == len(closes) - 1


def test_a_spike_is_judged_the_same_whichever_range_holds_it(spark, tmp_path) -> None:
    """The spike rule needs the next bar: silver for a range ending on the spike (or starting on
    the bar after it) reads bronze's neighbouring days, so the spike is quarantined there exactly
    as in a build of the whole month."""
    from config import load_settings
    from pipelines import lake
    from pipelines.ingest.layers import write_bronze, write_silver
    from pipelines.lake.tables import QUARANTINE, SILVER_BARS

    closes = {d: 10.0 + d / 100 for d in range(2, 31)}
    closes[15] = 40.0  # a one-bar spike on the 15th; a lasting crash from the 22nd
    closes.update({d: 3.0 for d in range(22, 31)})
    path = tmp_path / "A.csv"
    path.write_text("symbol,ts,open,high,low,close,volume\n" + "".join(
        f"A,2024-01-{d:02d},{c},{c * 1.01},{c * 0.99},{c},100\n" for d, c in closes.items()))
    settings = load_settings(env={"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
                                  "QL_DATA__FILES__PATH": str(path), "QL_DATA__FILES__NAME": "spiky"})
    write_bronze(spark, settings, dt.date(2024, 1, 1), dt.date(2024, 1, 31))

    def quarantined(*ranges) -> list[tuple[str, str]]:
        for start, end in ranges:
            write_silver(spark, settings, start, end)
        rows = lake.read(spark, QUARANTINE.path(settings)).collect()
        return sorted((r["ts"].date().isoformat(), r["reason"]) for r in rows)

    spike = [("2024-01-15", "price spike beyond |log return| 1.0")]
    assert quarantined((dt.date(2024, 1, 1), dt.date(2024, 1, 31))) == spike
    # the spike's range ends on it; the crash's range starts on the crash (its first return is large)
    split = [(dt.date(2024, 1, 1), dt.date(2024, 1, 15)), (dt.date(2024, 1, 16), dt.date(2024, 1, 21)),
             (dt.date(2024, 1, 22), dt.date(2024, 1, 31))]
    assert quarantined(*split) == spike
    silver = lake.read(spark, SILVER_BARS.path(settings)).where("ts >= '2024-01-14' AND ts <= '2024-01-23'")
    assert sorted(r["ts"].day for r in silver.collect()) == [14, 16, 17, 18, 19, 20, 21, 22, 23]


def test_tick_rules(spark) -> None:
    schema = "symbol string, ts timestamp, seq long, price double, size double, bid double, ask double, side string"
    t = D(2024, 1, 2, 15, 0)
    rows = [("A", t, 1, 10.0, 5.0, 9.99, 10.01, "buy"), ("A", t, 2, -1.0, 5.0, 9.99, 10.01, "buy"),
            ("A", t, 3, 10.0, 0.0, 9.99, 10.01, "buy"), ("A", t, 4, 10.0, 5.0, 10.02, 10.01, "sell"),
            ("A", t, 1, 10.0, 5.0, 9.99, 10.01, "buy"), ("A", None, 5, 10.0, 5.0, 9.99, 10.01, "buy")]
    result = validate_ticks(spark.createDataFrame(rows, schema), Q)
    assert result.valid.count() == 1
    assert reason_counts(result.quarantine) == {
        "missing or non-positive price": 1, "non-positive size": 1, "crossed quote": 1,
        "duplicate (symbol, seq)": 1, "missing key": 1}


def test_adjusted_close_scales_ohlc(spark) -> None:
    df = spark.createDataFrame([("A", D(2024, 1, 1), 100.0, 110.0, 90.0, 100.0, 1.0, 50.0)], SCHEMA)
    row = adjust_bars(df).first()
    assert (row["open"], row["high"], row["low"], row["close"]) == (50.0, 55.0, 45.0, 50.0)


def test_expectation_suite_passes_clean_and_names_each_failure(spark) -> None:
    clean = with_bar_defaults(spark.createDataFrame(GOOD, SCHEMA), "1d")
    assert run_bar_suite(clean, Q).success
    bad_rows = GOOD + [BAD["missing key"], BAD["high below open/close"], BAD["timestamp in the future"],
                       BAD["negative volume"]]
    bad = with_bar_defaults(spark.createDataFrame(bad_rows, SCHEMA), "1d")
    result = run_bar_suite(bad, Q)
    assert not result.success
    failed = " | ".join(result.failed)
    for expected in ["not_be_null(symbol)", "high>max_open_close", "be_between(ts_epoch)", "be_between(volume)"]:
        assert expected in failed, failed


def test_spark_ranks_equal_the_library_ranks(spark) -> None:
    pdf = pd.DataFrame({"symbol": list("ABCDE") * 2, "ts": [D(2024, 1, 1)] * 5 + [D(2024, 1, 2)] * 5,
                        "x": [3.0, 1.0, 3.0, None, 2.0, 5.0, 4.0, 3.0, 2.0, 1.0]})
    expected = pd.concat(add_cross_sectional_ranks(g, ["x"]) for _, g in pdf.groupby("ts"))
    got = with_cross_sectional_ranks(spark.createDataFrame(pdf.astype({"x": "float64"})), ["x"]).toPandas()
    merged = expected.merge(got, on=["symbol", "ts"], suffixes=("_pd", "_spark"))
    pd.testing.assert_series_equal(merged["rank_x_pd"], merged["rank_x_spark"], check_names=False)


def test_time_must_increase_per_symbol(spark) -> None:
    rows = GOOD + [("A", D(2024, 1, 2), 10.0, 11.0, 9.0, 10.5, 100.0, None)]  # repeated timestamp
    result = run_bar_suite(with_bar_defaults(spark.createDataFrame(rows, SCHEMA), "1d"), Q)
    assert any("ts_increasing" in f for f in result.failed), result.failed


@pytest.mark.parametrize("ret", [3.0, 0.2])
def test_return_magnitude_expectation(spark, ret: float) -> None:
    closes = [10.0] * 5 + [10.0 * (1 + ret)] * 5
    rows = [("R", D(2024, 1, i + 1), c, c, c, c, 1.0, None) for i, c in enumerate(closes)]
    result = run_bar_suite(with_bar_defaults(spark.createDataFrame(rows, SCHEMA), "1d"), Q)
    assert result.success == (ret < 1.0)


def test_row_rules_run_on_a_stream_and_window_rules_do_not(spark, tmp_path) -> None:
    """The per-row half of the rules is what a Structured Streaming job can apply to ticks."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from pipelines.ingest.row_rules import reasons, tick_rules
    from pipelines.ingest.window_rules import TICK_KEYS, flag_duplicates

    landing = tmp_path / "ticks"
    landing.mkdir()
    rows = [{"symbol": "A", "ts": f"2024-01-02T10:00:{i:02d}", "seq": i, "price": -1.0 if i % 5 == 0 else 100.0,
             "size": 1.0, "bid": 99.9, "ask": 100.1} for i in range(40)]
    (landing / "part-0.json").write_text("\n".join(json.dumps(r) for r in rows))
    schema = "symbol string, ts timestamp, seq long, price double, size double, bid double, ask double"
    ticks = spark.readStream.schema(schema).json(str(landing))
    rules = tick_rules(Q)
    query = (ticks.withColumn("reason", reasons(*rules)).writeStream.format("memory").queryName("row_rules")
             .option("checkpointLocation", str(tmp_path / "cp")).trigger(availableNow=True).start())
    query.awaitTermination(120)
    got = spark.sql("SELECT seq, reason FROM row_rules").toPandas()
    assert len(got) == len(rows)
    bad = got["seq"] % 5 == 0
    assert (got.loc[bad, "reason"] == "missing or non-positive price").all() and got.loc[~bad, "reason"].isna().all()
    with pytest.raises(AnalysisException):
        (flag_duplicates(ticks, rules, TICK_KEYS, [F.col("ts")]).writeStream.format("memory").queryName("dups")
         .option("checkpointLocation", str(tmp_path / "cp2")).trigger(availableNow=True).start())
