"""Bars and ticks from CSV or Parquet files, mapped onto the platform's contracts.

Long format (a ``symbol`` column) or one file per symbol (``symbol_from_filename``). Each
platform column is a Spark SQL expression over the file's columns, so vendors' layouts
need configuration, not code::

    columns: {symbol: ticker, ts: date, adj_close: adjusted_close}          # S&P 500 panel
    columns: {symbol: "'BTCUSDT'", ts: "timestamp_millis(trade_ms)",        # Binance trades
              size: qty, side: "CASE WHEN buyer_is_maker THEN 'sell' ELSE 'buy' END"}
"""

from __future__ import annotations

import glob
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from config.schemas.data import FileSourceSettings
from pipelines.ingest.sources.base import in_range

BAR_COLUMNS = {"symbol": "string", "ts": "timestamp", "open": "double", "high": "double", "low": "double",
               "close": "double", "volume": "double", "adj_close": "double"}
TICK_COLUMNS = {"symbol": "string", "ts": "timestamp", "seq": "bigint", "price": "double", "size": "double",
                "bid": "double", "ask": "double", "side": "string"}
OPTIONAL = {"volume", "adj_close", "seq", "bid", "ask", "side", "size"}


class SourceError(ValueError):
    """A source file or its configuration does not fit the contract; the message says which."""


def resolve_files(path: str) -> list[Path]:
    """A file, every CSV/Parquet file in a folder, or a glob."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in {".csv", ".parquet", ".gz"} and f.is_file())
    elif any(ch in path for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(path))
    else:
        files = [p] if p.exists() else []
    if not files:
        raise SourceError(f"data_config.yaml: files.path: no CSV or Parquet file at {path!r}")
    return files


def _format(file: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    return "parquet" if file.suffix.lower() == ".parquet" else "csv"


def _read_one(spark: SparkSession, file: Path, fmt: str) -> DataFrame:
    if fmt != "parquet":
        return spark.read.option("header", True).option("inferSchema", True).csv(str(file))
    # pandas writes nanosecond timestamps, which Spark cannot read as timestamps; the session
    # reads them as longs (spark.sql.legacy.parquet.nanosAsLong) and they are converted here
    schema = pq.read_schema(file)
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    df = spark.read.parquet(str(file))
    for name in nanos:
        df = df.withColumn(name, F.timestamp_micros(F.floor(F.col(name) / 1000).cast("long")))
    return df


def read_files(spark: SparkSession, cfg: FileSourceSettings, files: list[Path] | None = None) -> DataFrame:
    """Read ``cfg.path`` (or ``files``) into the bar or tick contract, as received (no cleaning).

    Raises:
        SourceError: no file matched, or a required column is neither mapped nor present.
    """
    files = files or resolve_files(cfg.path or "")
    contract = BAR_COLUMNS if cfg.kind == "bars" else TICK_COLUMNS
    frames = []
    for file in files:
        raw = _read_one(spark, file, _format(file, cfg.format))
        if cfg.where:
            raw = raw.where(cfg.where)
        present = set(raw.columns)
        cols = []
        for name, dtype in contract.items():
            expr = cfg.columns.get(name)
            if name == "symbol" and cfg.symbol_from_filename:
                column = F.lit(file.name.split(".")[0])
            elif expr:
                column = F.expr(expr)
            elif name in present:
                column = F.col(name)
            elif name in OPTIONAL:
                column = F.lit(None)
            else:
                raise SourceError(f"{file}: no column for '{name}' (map it in data_config.yaml files.columns)")
            cols.append(column.cast(dtype).alias(name))
        frame = raw.select(*cols)
        if cfg.kind == "ticks":  # the tick contract names where a tick came from
            frame = frame.withColumn("source", F.lit(cfg.name))
        frames.append(frame.withColumn("source_file", F.lit(file.name)))
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    if cfg.symbols:
        df = df.where(F.col("symbol").isin(cfg.symbols))
    return df


class FileSource:
    """CSV/Parquet files as a :class:`~pipelines.ingest.sources.base.Source` of bars or ticks."""

    def __init__(self, cfg: FileSourceSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.kind = cfg.kind
        self.interval = cfg.interval

    def read(self, spark: SparkSession, start: date, end: date) -> DataFrame:
        return in_range(read_files(spark, self.cfg), start, end)

    def date_range(self, spark: SparkSession) -> tuple[date, date]:
        row = read_files(spark, self.cfg).agg(F.min("ts").alias("a"), F.max("ts").alias("b")).collect()[0]
        if row["a"] is None:
            raise SourceError(f"{self.cfg.path}: no row with a timestamp")
        return row["a"].date(), row["b"].date()

    def facts(self) -> dict[str, float]:
        return {}
