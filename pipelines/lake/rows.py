"""Appending rows to a catalog table without Spark (delta-rs), for the small live services.

The venue and portfolio services write a few rows per bar; a JVM per service would cost more
than the work. delta-rs writes the same Delta protocol Spark reads (timestamps as UTC
``timestamp``, the catalog's partitioning), and :func:`append_new` keeps a re-sent row out:
rows whose key the table already holds are dropped before the append.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from config import Settings
from pipelines.lake.tables import Table

_TYPES = {"string": pa.string(), "double": pa.float64(), "long": pa.int64(), "int": pa.int32(),
          "timestamp": pa.timestamp("us", tz="UTC"), "boolean": pa.bool_(), "binary": pa.binary()}


def arrow_schema(table: Table) -> pa.Schema:
    """The catalog declaration as an Arrow schema (timestamps in UTC microseconds)."""
    fields = []
    for part in table.schema.split(","):
        name, kind = part.strip().split(None, 1)
        if kind not in _TYPES:
            raise ValueError(f"table {table.name}: type {kind!r} of {name} has no Arrow mapping")
        fields.append(pa.field(name, _TYPES[kind]))
    return pa.schema(fields)


def _utc_micros(frame: pd.DataFrame, schema: pa.Schema) -> None:
    """Cast ``frame``'s timestamp columns of ``schema`` to UTC microseconds, in place."""
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.name in frame:
            frame[field.name] = pd.to_datetime(frame[field.name], utc=True).astype("datetime64[us, UTC]")


def existing_keys(table: Table, settings: Settings, key: Iterable[str]) -> set[tuple]:
    """The ``key`` tuples already in ``table`` (empty when the table does not exist yet)."""
    path = table.path(settings)
    key = list(key)
    if not (Path(path) / "_delta_log").exists():
        return set()
    frame = DeltaTable(path).to_pyarrow_table(columns=key).to_pandas()
    return set(frame.itertuples(index=False, name=None))


def append_new(table: Table, settings: Settings, rows: pd.DataFrame, key: list[str],
               known: set[tuple] | None = None) -> int:
    """Append the rows of ``rows`` whose ``key`` is not in the table (nor in ``known``, the
    caller's cache of keys it wrote, updated here); return how many were appended.

    ``rows`` carries the declared columns (``date`` is derived from ``ts`` when absent).
    """
    if rows.empty:
        return 0
    frame = rows.copy()
    if "date" in table.columns and "date" not in frame:
        frame["date"] = pd.to_datetime(frame["ts"], utc=True).dt.strftime("%Y-%m-%d")
    _utc_micros(frame, arrow_schema(table))
    seen = known if known is not None else existing_keys(table, settings, key)
    fresh = [k not in seen for k in frame[key].itertuples(index=False, name=None)]
    frame = frame[fresh].drop_duplicates(key)
    if frame.empty:
        return 0
    data = pa.Table.from_pandas(frame[table.columns], schema=arrow_schema(table), preserve_index=False)
    write_deltalake(table.path(settings), data, mode="append", partition_by=list(table.partition_by) or None)
    seen.update(frame[key].itertuples(index=False, name=None))
    return len(frame)


def write_frame(table: Table, settings: Settings, frame: pd.DataFrame, mode: str = "overwrite",
                schema: pa.Schema | None = None) -> None:
    """Write ``frame`` as ``table`` with delta-rs (``mode`` overwrite or append), in the catalog's
    schema (or ``schema``) and partitioning; ``month`` is derived from ``date`` when the table is
    partitioned by it, as the Spark writers do."""
    frame = frame.copy()
    schema = schema or arrow_schema(table)
    _utc_micros(frame, schema)
    if "month" in table.partition_by:
        frame["month"] = frame["date"].str.slice(0, 7)
        schema = schema.append(pa.field("month", pa.string()))
    data = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    write_deltalake(table.path(settings), data, mode=mode, partition_by=list(table.partition_by) or None,
                    schema_mode="overwrite" if mode == "overwrite" else None)
