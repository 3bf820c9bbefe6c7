"""Sources: real panels from ../shared/data through the files source, and the arch sample."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from config.schemas.data import FileSourceSettings
from pipelines.ingest.quality import adjust_bars, validate_bars, QualitySettings
from pipelines.ingest.sources.arch_sample import load_arch_bars
from pipelines.ingest.sources.files import SourceError, read_files

SP500_FILE = "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"


def test_sp500_panel_long_format_with_adjusted_close(spark, shared_data: Path) -> None:
    cfg = FileSourceSettings(path=str(shared_data / SP500_FILE), columns={"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"},
                             symbols=["AAPL", "MSFT", "AIG"])
    bars = read_files(spark, cfg)
    counts = {r["symbol"]: r["count"] for r in bars.groupBy("symbol").count().collect()}
    assert set(counts) == {"AAPL", "MSFT", "AIG"} and all(n > 5000 for n in counts.values())
    # AAPL 2014-06-09 7:1 split: raw closes jump, adjusted ones do not
    window = bars.where((F.col("symbol") == "AAPL") & F.col("ts").between("2014-06-05", "2014-06-10")).orderBy("ts")
    raw = [r["close"] for r in window.collect()]
    adjusted = [r["close"] for r in adjust_bars(window).collect()]
    assert raw[0] / raw[-1] > 5
    assert 0.8 < adjusted[0] / adjusted[-1] < 1.25
    result = validate_bars(adjust_bars(bars).drop("adj_close"), QualitySettings())
    assert result.quarantine.count() == 0  # the manifest reports no inconsistent rows


def test_crypto_hourly_and_one_minute_bars(spark, shared_data: Path) -> None:
    DATA = shared_data
    crypto = read_files(spark, FileSourceSettings(
        path=str(DATA / "crypto_binance_1h_cryptodatadownload_2017_2021.parquet"), columns={"volume": "volume_base"}))
    assert crypto.count() == 81_782
    minute = read_files(spark, FileSourceSettings(
        path=str(DATA / "intraday_1m_bars_nautilus_testdata.parquet"),
        columns={"symbol": "instrument"}, where="price_side IN ('trade', 'bid')"))
    by_symbol = {r["symbol"]: r["count"] for r in minute.groupBy("symbol").count().collect()}
    assert by_symbol == {"BTC-PERP": 45_031, "GBP/USD": 30_117, "USD/JPY": 28_761, "6EH4.XCME": 29_996}
    # the first BTC bar is a known bad print (high 16199.91): the spike rule or OHLC rules must not drop good rows
    result = validate_bars(crypto.drop("adj_close"), QualitySettings())
    assert result.valid.count() + result.quarantine.count() == 81_782


def test_tick_file_with_expression_mapping(spark, shared_data: Path) -> None:
    cfg = FileSourceSettings(
        path=str(shared_data / "binance_usdm_btcusdt_20240808" / "trades.parquet"), kind="ticks",
        columns={"symbol": "'BTCUSDT'", "ts": "timestamp_millis(trade_ms)", "seq": "trade_id", "size": "qty",
                 "side": "CASE WHEN buyer_is_maker THEN 'sell' ELSE 'buy' END"})
    ticks = read_files(spark, cfg)
    row = ticks.agg(F.count("*").alias("n"), F.min("price").alias("lo"), F.countDistinct("side").alias("sides")).first()
    assert row["n"] == 21_313 and 61_590 <= row["lo"] < 61_600 and row["sides"] == 2


def test_one_file_per_symbol_csv(spark, tmp_path: Path) -> None:
    for sym in ("AAA", "BBB"):
        (tmp_path / f"{sym}.csv").write_text("Date,O,H,L,C,V\n2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1.5,2,1,1.8,12\n")
    cfg = FileSourceSettings(path=str(tmp_path), symbol_from_filename=True,
                             columns={"ts": "to_timestamp(Date)", "open": "O", "high": "H", "low": "L",
                                      "close": "C", "volume": "V"})
    rows = read_files(spark, cfg).orderBy("symbol", "ts").collect()
    assert [(r["symbol"], r["close"]) for r in rows] == [("AAA", 1.5), ("AAA", 1.8), ("BBB", 1.5), ("BBB", 1.8)]


def test_missing_column_and_missing_file_are_named(spark, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("symbol,ts,open,high,low\nA,2024-01-02,1,2,0.5\n")
    with pytest.raises(SourceError, match="no column for 'close'"):
        read_files(spark, FileSourceSettings(path=str(tmp_path / "x.csv")))
    with pytest.raises(SourceError, match="files.path: no CSV or Parquet file"):
        read_files(spark, FileSourceSettings(path=str(tmp_path / "nothing-*.parquet")))


def test_arch_sample_series() -> None:
    bars = load_arch_bars(["sp500", "vix"])
    assert set(bars["symbol"]) == {"SPX", "VIX"}
    spx = bars[bars["symbol"] == "SPX"]
    assert len(spx) == 5031 and spx["ts"].min().year == 1999 and (spx["high"] >= spx["low"]).all()
    vix = bars[bars["symbol"] == "VIX"]
    priced = vix["close"].notna()
    assert (vix.loc[priced, "open"] == vix.loc[priced, "close"]).all() and vix["volume"].isna().all()
    assert (~priced).sum() == 46  # holidays carried as empty rows; silver quarantines them


HEADER = "symbol,ts,open,high,low,close,volume\n"


def _csv(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_files_that_do_not_fit_fail_in_one_line_naming_file_column_and_value(spark, tmp_path: Path) -> None:
    def read(path: Path, **cfg):
        return read_files(spark, FileSourceSettings(path=str(path), **cfg))

    with pytest.raises(SourceError, match=r"empty\.csv: the file is empty"):
        read(_csv(tmp_path / "a", "empty.csv", ""))
    with pytest.raises(SourceError, match=r"header\.csv: no data rows"):
        read(_csv(tmp_path / "b", "header.csv", HEADER))
    good = _csv(tmp_path / "c", "ok.csv", HEADER + "A,2024-01-02,10,11,9,10.5,100\n")
    with pytest.raises(SourceError, match=r"ok\.csv: data_config\.yaml files\.columns\.close = 'Close_Price' names "
                                          r"no column of the file \(it has symbol, ts, open"):
        read(good, columns={"close": "Close_Price"})
    european = _csv(tmp_path / "d", "eu.csv", HEADER + "A,31/01/2024,10,11,9,10.5,100\nA,01/02/2024,10,11,9,10.6,100\n")
    with pytest.raises(SourceError, match=r"eu\.csv: column ts: cannot read '31/01/2024' as a timestamp; set "
                                          r"data_config\.yaml files\.ts_format"):
        read(european)
    rows = read(european, ts_format="dd/MM/yyyy").orderBy("ts").collect()
    assert [r["ts"].date().isoformat() for r in rows] == ["2024-01-31", "2024-02-01"]


def test_a_vendor_folder_with_a_few_bad_files_skips_them_naming_each(spark, tmp_path: Path) -> None:
    """A folder of per-symbol daily ``.txt`` files as vendors ship them: ``format: csv`` reads
    any extension (auto names the key to set); an empty file is skipped with its reason, as is
    one with no data rows, while they stay within files.max_bad_files; one more bad file stops
    the run, naming the share and the files. A single bad file still stops in one line."""
    from pipelines.ingest.sources.files import FileSource

    folder = tmp_path / "vendor"
    for i in range(100):
        _csv(folder, f"S{i:03d}.txt", "ts,open,high,low,close,volume\n"
             + "".join(f"2024-01-{d:02d},10,11,9,{10 + d / 10},100\n" for d in range(2, 12)))
    (folder / "S007.txt").write_text("")
    with pytest.raises(SourceError, match=r"no CSV or Parquet file at .*files\.format: csv reads any extension"):
        read_files(spark, FileSourceSettings(path=str(folder), symbol_from_filename=True))

    cfg = FileSourceSettings(path=str(folder), format="csv", symbol_from_filename=True, max_bad_files=0.02)
    source = FileSource(cfg)
    df = source.read(spark, date(2024, 1, 1), date(2024, 1, 31))
    assert df.select("symbol").distinct().count() == 99 and df.count() == 99 * 10
    assert [(Path(b.file).name, b.reason) for b in source.skipped] == [("S007.txt", "the file is empty")]

    (folder / "S042.txt").write_text("ts,open,high,low,close,volume\n")  # a header and nothing else
    skipped: list = []
    df = read_files(spark, cfg, skipped_out=skipped)
    assert sorted((Path(b.file).name, b.reason) for b in skipped) == [("S007.txt", "the file is empty"),
                                                                      ("S042.txt", "no data rows")]
    assert df.select("symbol").distinct().count() == 98

    (folder / "S050.txt").write_text("ts,open,high,low,close,volume\nyesterday,10,11,9,10,100\n")
    with pytest.raises(SourceError, match=r"3 of 100 files could not be read, more than data_config\.yaml "
                                          r"files\.max_bad_files \(2\.0%\) allows: .*S007\.txt: the file is empty"):
        read_files(spark, cfg)
    with pytest.raises(SourceError, match=r"S007\.txt: the file is empty$"):
        read_files(spark, cfg.model_copy(update={"path": str(folder / "S007.txt")}))


def test_unparseable_cells_quarantine_their_row_and_the_rest_is_ingested(spark, tmp_path: Path) -> None:
    """A vendor export with 'null' and thousands separators: three bad rows quarantined with the
    cell that did not parse, every other row in silver; null tokens are plain missing values."""
    from datetime import date

    from config import load_settings
    from pipelines import lake
    from pipelines.ingest.layers import write_bronze, write_silver
    from pipelines.lake.tables import QUARANTINE, SILVER_BARS

    text = HEADER + "".join(f"A,2024-01-{d:02d},10,11,9,10.5,100\n" for d in range(2, 9))
    text += "A,2024-01-09,10,11,9,null,100\nA,2024-01-10,10,11,9,\"1,234.5\",100\nA,2024-01-11,10,11,9,10.5,abc\n"
    text += "A,2024-01-12,10,11,9,10.5,N/A\n"  # volume missing (a null token), not malformed
    path = _csv(tmp_path / "vendor", "A.csv", text)
    settings = load_settings(env={"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
                                  "QL_DATA__FILES__PATH": str(path), "QL_DATA__FILES__NAME": "vendor"})
    start, end = date(2024, 1, 1), date(2024, 1, 31)
    write_bronze(spark, settings, start, end)
    result = write_silver(spark, settings, start, end)
    reasons = sorted(r["reason"] for r in lake.read(spark, QUARANTINE.path(settings)).collect())
    # 'null' is a null token: a missing close, quarantined by the bar rules like any missing price
    assert reasons == ["malformed close: '1,234.5'", "malformed volume: 'abc'", "missing price"], reasons
    assert result.rows == 8 and result.extra["quarantined"] == 3
    silver = lake.read(spark, SILVER_BARS.path(settings)).where("ts >= '2024-01-12'").collect()
    assert len(silver) == 1 and silver[0]["volume"] == 0.0  # N/A volume: missing, defaulted like any gap


def test_a_failed_first_write_leaves_no_table_folder(spark, tmp_path: Path) -> None:
    from pyspark.sql.utils import CapturedException

    from pipelines import lake

    target = tmp_path / "never"
    broken = spark.range(3).selectExpr("CAST(id AS STRING) AS date", "CASE WHEN id < 2 THEN id ELSE raise_error('bad input') END AS x")
    with pytest.raises(CapturedException):
        lake.replace_range(broken, target, "date", "0", "9")
    assert not target.exists()


def test_a_folder_of_one_csv_per_symbol_is_read_by_a_few_spark_jobs_not_a_few_per_file(spark, tmp_path: Path) -> None:
    """A vendor folder (AlphaVantage's columns, 'null' cells) is read by one Spark read with the
    symbol from each file's name: a fixed number of Spark jobs whatever the number of files."""
    folder = tmp_path / "daily"
    folder.mkdir()
    header = "timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient\n"
    for i in range(24):
        lines = [f"2024-01-{d:02d},10,11,9,{'null' if (i, d) == (3, 5) else 10 + d / 10},10.0,{100 + i},0.0,1.0\n"
                 for d in range(2, 22)]
        (folder / f"S{i:02d}.csv").write_text(header + "".join(reversed(lines)))
    (folder / "ODD.csv").write_text("timestamp,open,high,low,close,volume\n2024-01-02,5,5,5,5,1\n")  # another layout
    cfg = FileSourceSettings(path=str(folder), symbol_from_filename=True,
                             columns={"ts": "timestamp", "adj_close": "adjusted_close"})
    with pytest.raises(SourceError, match=r"ODD\.csv: data_config\.yaml files\.columns\.adj_close = 'adjusted_close' "
                                          r"names no column of the file \(it has timestamp, open, high, low, close, vol"):
        read_files(spark, cfg)
    (folder / "ODD.csv").unlink()
    sc = spark.sparkContext
    sc.setJobGroup("folder-read", "read_files on a folder")
    try:
        df = read_files(spark, cfg)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    jobs = len(sc.statusTracker().getJobIdsForGroup("folder-read"))
    assert jobs <= 5, f"{jobs} Spark jobs to read 24 files"  # header, schema inference, the per-file checks
    rows = df.groupBy("symbol").agg(F.count("*").alias("n"), F.max("volume").alias("v"),
                                    F.count("malformed").alias("bad")).orderBy("symbol").collect()
    assert [(r["symbol"], r["n"], r["v"]) for r in rows] == [(f"S{i:02d}", 20, 100.0 + i) for i in range(24)]
    assert sum(r["bad"] for r in rows) == 0  # 'null' is a null token, not a malformed cell
    assert df.where("close IS NULL").select("symbol", "source_file").collect() == [("S03", "S03.csv")]


def test_volume_is_counted_in_today_s_shares_across_a_split_whatever_range_is_built(spark, tmp_path: Path) -> None:
    """A 2-for-1 split on the 8th: prices come adjusted by the vendor's adjusted close, volume by
    the splits after each bar (from the whole file, also for a range that ends before the split)."""
    from datetime import date

    from config import load_settings
    from pipelines import lake
    from pipelines.ingest.layers import write_bronze, write_silver
    from pipelines.lake.tables import SILVER_BARS

    lines = ["symbol,ts,open,high,low,close,adjusted_close,volume,split_coefficient\n"]
    for d in range(2, 13):
        before = d < 8
        px, vol, split = (100.0, 1000, 1.0) if before else (50.0, 2000, 2.0 if d == 8 else 1.0)
        lines.append(f"A,2024-01-{d:02d},{px},{px * 1.01},{px * 0.99},{px},50.0,{vol},{split}\n")
    path = _csv(tmp_path / "split", "A.csv", "".join(lines))
    settings = load_settings(env={"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SOURCE": "files",
                                  "QL_DATA__FILES__PATH": str(path), "QL_DATA__FILES__NAME": "split",
                                  "QL_DATA__FILES__COLUMNS": '{"adj_close": "adjusted_close"}'})
    write_bronze(spark, settings, date(2024, 1, 1), date(2024, 1, 5))  # ends before the split
    write_silver(spark, settings, date(2024, 1, 1), date(2024, 1, 5))
    early = lake.read(spark, SILVER_BARS.path(settings)).orderBy("ts").collect()
    assert [(r["close"], r["volume"]) for r in early] == [(50.0, 2000.0)] * 4
    write_bronze(spark, settings, date(2024, 1, 1), date(2024, 1, 31))
    write_silver(spark, settings, date(2024, 1, 1), date(2024, 1, 31))
    rows = lake.read(spark, SILVER_BARS.path(settings)).orderBy("ts").collect()
    assert [(r["close"], r["volume"]) for r in rows] == [(50.0, 2000.0)] * 11
