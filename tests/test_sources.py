"""Sources: real panels from ../shared/data through the files source, and the arch sample."""

from __future__ import annotations

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
