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
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
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


def _column(raw: DataFrame, file: Path, name: str, expr: str) -> Column:
    """The file column or Spark SQL expression mapped to platform column ``name``."""
    column = F.expr(expr)
    try:
        raw.select(column).schema  # resolve now: a wrong name is one line, not a query plan
    except AnalysisException:
        raise SourceError(f"{file}: data_config.yaml files.columns.{name} = {expr!r} names no column of the file "
                          f"(it has {', '.join(raw.columns)})") from None
    return column


def _parsed(raw: Column, name: str, dtype: str, cfg: FileSourceSettings) -> tuple[Column, Column]:
    """``(value, malformed)``: the cell read as ``dtype`` (NULL for the null tokens and for cells
    that do not parse), and for the latter ``"malformed <name>: '<cell>'"``."""
    text = raw.cast("string")
    missing = raw.isNull() | F.trim(text).isin(list(cfg.null_values))
    if name == "ts" and cfg.ts_format:
        value = F.try_to_timestamp(text, F.lit(cfg.ts_format))
    elif dtype == "string":
        value = text
    else:
        value = raw.try_cast(dtype)
    value = F.when(missing, F.lit(None).cast(dtype)).otherwise(value)
    bad = ~missing & value.isNull()
    return value, F.when(bad, F.concat(F.lit(f"malformed {name}: '"), F.substring(text, 1, 60), F.lit("'")))


def _check_timestamps(frame: DataFrame, file: Path, cfg: FileSourceSettings) -> None:
    """A file whose first timestamp does not parse has the wrong format: say so with the value."""
    first = frame.where(F.col("ts").isNotNull() | F.col("malformed").isNotNull()).select("ts", "malformed").first()
    if first is not None and first["ts"] is None and "malformed ts" in (first["malformed"] or ""):
        example = first["malformed"].split(": ", 1)[1]
        hint = (f"it does not match files.ts_format {cfg.ts_format!r}" if cfg.ts_format
                else "set data_config.yaml files.ts_format, e.g. 'dd/MM/yyyy'")
        raise SourceError(f"{file}: column ts: cannot read {example} as a timestamp; {hint}")


def read_files(spark: SparkSession, cfg: FileSourceSettings, files: list[Path] | None = None) -> DataFrame:
    """Read ``cfg.path`` (or ``files``) into the bar or tick contract, as received (no cleaning).

    Cells are read tolerantly: ``null_values`` are missing, and a cell that does not parse as
    its column's type leaves the value NULL and says why in ``malformed`` (silver quarantines
    such rows with that reason; every other row is ingested).

    Raises:
        SourceError: no file matched; a file is empty, has no data rows or no column for a
            required field; a mapped expression names no column; its timestamps do not parse.
            The message names the file, the column and an example value.
    """
    files = files or resolve_files(cfg.path or "")
    contract = BAR_COLUMNS if cfg.kind == "bars" else TICK_COLUMNS
    frames = []
    for file in files:
        if file.stat().st_size == 0:
            raise SourceError(f"{file}: the file is empty")
        raw = _read_one(spark, file, _format(file, cfg.format))
        if cfg.where:
            raw = raw.where(cfg.where)
        if not raw.columns:
            raise SourceError(f"{file}: no columns (not a CSV file with a header row?)")
        present = set(raw.columns)
        cols, problems = [], []
        for name, dtype in contract.items():
            expr = cfg.columns.get(name)
            if name == "symbol" and cfg.symbol_from_filename:
                column = F.lit(file.name.split(".")[0])
            elif expr:
                column = _column(raw, file, name, expr)
            elif name in present:
                column = F.col(f"`{name}`")
            elif name in OPTIONAL:
                column = F.lit(None)
            else:
                raise SourceError(f"{file}: no column for '{name}' (the file has {', '.join(raw.columns)}; "
                                  "map one in data_config.yaml files.columns)")
            value, malformed = _parsed(column, name, dtype, cfg)
            cols.append(value.alias(name))
            problems.append(malformed)
        joined = F.concat_ws("; ", *problems)
        frame = raw.select(*cols, F.when(joined != "", joined).alias("malformed"))
        if frame.limit(1).count() == 0:
            raise SourceError(f"{file}: no data rows" + (f" matching files.where {cfg.where!r}" if cfg.where else ""))
        _check_timestamps(frame, file, cfg)
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
