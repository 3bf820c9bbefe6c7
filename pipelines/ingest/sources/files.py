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
import gzip
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from config.schemas.data import FileSourceSettings
from pipelines.ingest.sources.base import in_range

log = logging.getLogger(__name__)

BAR_COLUMNS = {"symbol": "string", "ts": "timestamp", "open": "double", "high": "double", "low": "double",
               "close": "double", "volume": "double", "adj_close": "double", "split_coefficient": "double"}
TICK_COLUMNS = {"symbol": "string", "ts": "timestamp", "seq": "bigint", "price": "double", "size": "double",
                "bid": "double", "ask": "double", "side": "string"}
OPTIONAL = {"volume", "adj_close", "split_coefficient", "seq", "bid", "ask", "side", "size"}


class SourceError(ValueError):
    """A source file or its configuration does not fit the contract; the message says which."""


def resolve_files(path: str, fmt: str = "auto") -> list[Path]:
    """A file, a folder's files, or a glob. In a folder, ``fmt`` "auto" takes the CSV, Parquet
    and gzipped files by their extension; "csv" or "parquet" takes every file but hidden ones
    (vendors name daily files ``.txt``)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and (fmt != "auto" or f.suffix.lower() in {".csv", ".parquet", ".gz"}))
    elif any(ch in path for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(path))
    else:
        files = [p] if p.exists() else []
    if not files:
        what = "CSV or Parquet file" if fmt == "auto" else "file"
        hint = " (files.format: csv reads any extension)" if p.is_dir() and fmt == "auto" else ""
        raise SourceError(f"data_config.yaml: files.path: no {what} at {path!r}{hint}")
    return files


@dataclass(frozen=True)
class BadFile:
    """A file of a folder source that could not be read, skipped with the reason."""

    file: str
    reason: str


def _format(file: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    return "parquet" if file.suffix.lower() == ".parquet" else "csv"


def _layout(file: Path, fmt: str) -> tuple:
    """What a file's columns look like: its CSV header line or its Parquet schema. Files with the
    same layout are read together by one Spark read."""
    if fmt == "parquet":
        return (fmt, tuple((f.name, str(f.type)) for f in pq.read_schema(file)))
    opener = gzip.open if file.suffix.lower() == ".gz" else open
    with opener(file, "rt", newline="") as handle:
        return (fmt, handle.readline().strip())


FILE_NAME, FILE_PATH = "__file_name", "__file_path"


def _with_file(df: DataFrame) -> DataFrame:
    """The rows with the name and path of the file each was read from."""
    return df.select("*", F.col("_metadata.file_name").alias(FILE_NAME), F.col("_metadata.file_path").alias(FILE_PATH))


def _read_group(spark: SparkSession, files: list[Path], fmt: str) -> DataFrame:
    """Files of one layout in one read. CSV types are inferred once over all of them (a column
    holding a 'null' or '1,234.5' anywhere stays a string and is parsed cell by cell later)."""
    paths = [str(f) for f in files]
    if fmt != "parquet":
        return _with_file(spark.read.option("header", True).option("inferSchema", True).csv(paths))
    # pandas writes nanosecond timestamps, which Spark cannot read as timestamps; the session
    # reads them as longs (spark.sql.legacy.parquet.nanosAsLong) and they are converted here
    schema = pq.read_schema(files[0])
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    df = _with_file(spark.read.parquet(*paths))
    for name in nanos:
        df = df.withColumn(name, F.timestamp_micros(F.floor(F.col(name) / 1000).cast("long")))
    return df


def _file_columns(raw: DataFrame) -> str:
    return ", ".join(c for c in raw.columns if c not in (FILE_NAME, FILE_PATH))


def _column(raw: DataFrame, file: Path, name: str, expr: str) -> Column:
    """The file column or Spark SQL expression mapped to platform column ``name``."""
    column = F.expr(expr)
    quiet = logging.getLogger("SQLQueryContextLogger")  # PySpark logs every analysis error with its plan
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        raw.select(column).schema  # resolve now: a wrong name is one line, not a query plan
    except AnalysisException:
        raise SourceError(f"{file}: data_config.yaml files.columns.{name} = {expr!r} names no column of the file "
                          f"(it has {_file_columns(raw)})") from None
    finally:
        quiet.setLevel(level)
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


def _file_problems(frame: DataFrame, files: list[Path], cfg: FileSourceSettings) -> dict[Path, tuple[str, str | None]]:
    """The files with no data rows, or with timestamps in a format that does not parse: file ->
    (reason, the path as Spark names it). One Spark job for all files: a count per file, and an
    example cell of a file where no timestamp parsed."""
    stats = {unquote(urlparse(r["path"]).path): r for r in frame.groupBy(F.col("_path").alias("path")).agg(
        F.count("ts").alias("parsed"),
        F.first(F.when(F.col("malformed").startswith("malformed ts: "), F.col("malformed")), ignorenulls=True)
        .alias("bad_ts"),
    ).collect()}
    problems = {}
    for file in files:
        row = stats.get(str(file.absolute()))
        if row is None:
            problems[file] = ("no data rows" + (f" matching files.where {cfg.where!r}" if cfg.where else ""), None)
        elif row["parsed"] == 0 and row["bad_ts"]:
            example = row["bad_ts"].split(": ", 1)[1].split("; malformed ")[0]
            hint = (f"it does not match files.ts_format {cfg.ts_format!r}" if cfg.ts_format
                    else "set data_config.yaml files.ts_format, e.g. 'dd/MM/yyyy'")
            problems[file] = (f"column ts: cannot read {example} as a timestamp; {hint}", row["path"])
    return problems


def _contract_frame(raw: DataFrame, first: Path, cfg: FileSourceSettings) -> DataFrame:
    """One read's rows as the contract's columns, plus ``malformed`` and the file each came from."""
    contract = BAR_COLUMNS if cfg.kind == "bars" else TICK_COLUMNS
    file_name = F.col(FILE_NAME)
    present = set(raw.columns) - {FILE_NAME, FILE_PATH}
    cols, problems = [], []
    for name, dtype in contract.items():
        expr = cfg.columns.get(name)
        if name == "symbol" and cfg.symbol_from_filename:
            column = F.substring_index(file_name, ".", 1)
        elif expr:
            column = _column(raw, first, name, expr)
        elif name in present:
            column = F.col(f"`{name}`")
        elif name in OPTIONAL:
            column = F.lit(None)
        else:
            raise SourceError(f"{first}: no column for '{name}' (the file has {_file_columns(raw)}; "
                              "map one in data_config.yaml files.columns)")
        value, malformed = _parsed(column, name, dtype, cfg)
        cols.append(value.alias(name))
        problems.append(malformed)
    joined = F.concat_ws("; ", *problems)
    return raw.select(*cols, F.when(joined != "", joined).alias("malformed"),
                      file_name.alias("source_file"), F.col(FILE_PATH).alias("_path"))


def read_files(spark: SparkSession, cfg: FileSourceSettings, files: list[Path] | None = None,
               skipped_out: list[BadFile] | None = None) -> DataFrame:
    """Read ``cfg.path`` (or ``files``) into the bar or tick contract, as received (no cleaning).

    Files with the same layout (CSV header or Parquet schema) are read by one Spark read, so a
    folder of one CSV per symbol costs a few Spark jobs, not a few per file; the symbol comes
    from the file name (``symbol_from_filename``) and ``source_file`` names each row's file.

    Cells are read tolerantly: ``null_values`` are missing, and a cell that does not parse as
    its column's type leaves the value NULL and says why in ``malformed`` (silver quarantines
    such rows with that reason; every other row is ingested).

    A single file that cannot be read stops the read. Of several (a folder or a glob), one
    that cannot be read is skipped, logged and added to ``skipped_out`` with the reason, unless
    more than ``files.max_bad_files`` of them are bad.

    Raises:
        SourceError: no file matched; a file is empty, has no data rows or no column for a
            required field; a mapped expression names no column; its timestamps do not parse
            (of several files: more than ``files.max_bad_files`` of them). The message names
            the file, the column and an example value.
    """
    files = files or resolve_files(cfg.path or "", cfg.format)
    several = len(files) > 1  # a folder or a glob: a file that cannot be read is skipped, up to a share
    skipped: list[BadFile] = []

    def bad(file: Path, reason: str) -> None:
        if not several:
            raise SourceError(f"{file}: {reason}")
        log.warning("skipped %s: %s", file, reason)
        skipped.append(BadFile(str(file), reason))

    groups: dict[tuple, list[Path]] = {}
    for file in files:
        if file.stat().st_size == 0:
            bad(file, "the file is empty")
            continue
        fmt = _format(file, cfg.format)
        try:
            layout = _layout(file, fmt)
        except (OSError, EOFError, UnicodeDecodeError, pa.ArrowException) as error:
            bad(file, f"cannot be read as {fmt}: {error}")
            continue
        groups.setdefault(layout, []).append(file)
    frames = []
    for (fmt, _), group in groups.items():
        try:
            raw = _read_group(spark, group, fmt)
            if raw.columns == [FILE_NAME, FILE_PATH]:
                raise SourceError(f"{group[0]}: no columns (not a CSV file with a header row?)")
            if cfg.where:
                raw = raw.where(cfg.where)
            frames.append(_contract_frame(raw, group[0], cfg))
        except SourceError as error:  # the layout does not fit: every file that has it
            if not several:
                raise
            for file in group:
                bad(file, str(error).removeprefix(f"{group[0]}: "))
    _too_many_bad(skipped, files, cfg)
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    readable = [f for f in files if str(f) not in {b.file for b in skipped}]
    problems = _file_problems(df, readable, cfg)
    for file, (reason, _) in problems.items():
        bad(file, reason)
    if problems:
        _too_many_bad(skipped, files, cfg)
        df = df.where(~F.col("_path").isin([uri for _, uri in problems.values() if uri is not None]))
    if skipped_out is not None:
        skipped_out.extend(skipped)
    names = [c for c in df.columns if c not in ("_path", "source_file")]
    if cfg.kind == "ticks":  # the tick contract names where a tick came from
        df = df.withColumn("source", F.lit(cfg.name))
        names.append("source")
    df = df.select(*names, "source_file")
    if cfg.symbols:
        df = df.where(F.col("symbol").isin(cfg.symbols))
    return df


def _too_many_bad(skipped: list[BadFile], files: list[Path], cfg: FileSourceSettings) -> None:
    """Stop when more than ``files.max_bad_files`` of ``files`` were skipped (or all were)."""
    if not skipped or (len(skipped) <= cfg.max_bad_files * len(files) and len(skipped) < len(files)):
        return
    shown = "; ".join(f"{b.file}: {b.reason}" for b in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    raise SourceError(f"{len(skipped)} of {len(files)} files could not be read, more than data_config.yaml "
                      f"files.max_bad_files ({cfg.max_bad_files:.1%}) allows: {shown}")


def with_split_factor(history: DataFrame, rows: DataFrame) -> DataFrame:
    """``rows`` with ``split_factor``: the product of the symbol's split coefficients after each
    row in ``history`` (2.0 before one 2-for-1 split), so a bar's volume in today's shares is
    ``volume * split_factor``; 1.0 without splits. The splits are collected from the whole
    history (a few rows), so a range's factor does not depend on where the range ends."""
    splits = (history.where((F.col("split_coefficient") > 0) & (F.col("split_coefficient") != 1))
              .groupBy("symbol").agg(F.collect_list(F.struct(F.col("ts").alias("at"),
                                                              F.log("split_coefficient").alias("log"))).alias("_splits")))
    later = F.filter("_splits", lambda s: s["at"] > F.col("ts"))
    factor = F.exp(F.aggregate(later, F.lit(0.0), lambda total, s: total + s["log"]))
    return (rows.join(F.broadcast(splits), "symbol", "left")
            .withColumn("split_factor", F.when(F.col("_splits").isNull(), F.lit(1.0)).otherwise(factor))
            .drop("_splits"))


class FileSource:
    """CSV/Parquet files as a :class:`~pipelines.ingest.sources.base.Source` of bars or ticks."""

    def __init__(self, cfg: FileSourceSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.kind = cfg.kind
        self.interval = cfg.interval
        self.skipped: list[BadFile] = []  # the files of the last read that could not be read

    def read(self, spark: SparkSession, start: date, end: date) -> DataFrame:
        self.skipped = []
        df = read_files(spark, self.cfg, skipped_out=self.skipped)
        ranged = in_range(df, start, end)
        return with_split_factor(df, ranged) if self.kind == "bars" else ranged

    def date_range(self, spark: SparkSession) -> tuple[date, date]:
        row = read_files(spark, self.cfg).agg(F.min("ts").alias("a"), F.max("ts").alias("b")).collect()[0]
        if row["a"] is None:
            raise SourceError(f"{self.cfg.path}: no row with a timestamp")
        return row["a"].date(), row["b"].date()

    def facts(self) -> dict[str, float]:
        return {}
