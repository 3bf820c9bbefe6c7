"""The ``.hyper`` extract: every warehouse table copied into one Hyper file (schema ``dw``, the
same table and column names), so ``quantlake_extract.twb`` opens without database access.

Rows move in bulk: PostgreSQL ``COPY ... TO STDOUT`` (as the reporting role) into a CSV file,
then Hyper's own ``COPY ... FROM`` that file. The Hyper server runs locally and offline
(usage data off). The file is written beside its final name and renamed when complete.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, Engine, Integer, SmallInteger, String

from warehouse.report import tables
from warehouse.schema import SCHEMA, Base


def _sql_type(column):
    from tableauhyperapi import SqlType

    kind = column.type
    for cls, make in ((BigInteger, SqlType.big_int), (SmallInteger, SqlType.small_int), (Integer, SqlType.int),
                      (Double, SqlType.double), (Boolean, SqlType.bool), (DateTime, SqlType.timestamp_tz),
                      (Date, SqlType.date), (String, SqlType.text)):
        if isinstance(kind, cls):
            return make()
    raise TypeError(f"no Hyper type for {column}")


def build_extract(engine: Engine, path: Path, log_dir: Path) -> dict[str, int]:
    """Copy every warehouse table into the Hyper file ``path``; return rows per table."""
    from tableauhyperapi import (
        Connection,
        CreateMode,
        HyperProcess,
        Nullability,
        TableDefinition,
        TableName,
        Telemetry,
        escape_string_literal,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.hyper")
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hyper-csv-") as scratch, \
            HyperProcess(telemetry=Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU,
                         parameters={"log_dir": str(log_dir)}) as hyper, \
            Connection(hyper.endpoint, str(partial), CreateMode.CREATE_AND_REPLACE) as extract:
        extract.catalog.create_schema_if_not_exists(SCHEMA)
        raw = engine.raw_connection()
        try:
            for name in tables():
                table = Base.metadata.tables[f"{SCHEMA}.{name}"]
                columns = list(table.columns)
                target = TableName(SCHEMA, name)
                extract.catalog.create_table(TableDefinition(target, [
                    TableDefinition.Column(c.name, _sql_type(c), Nullability.NULLABLE if c.nullable
                                           else Nullability.NOT_NULLABLE) for c in columns]))
                csv_path = Path(scratch) / f"{name}.csv"
                names = ", ".join(c.name for c in columns)
                with csv_path.open("w") as out, raw.cursor() as cur:
                    cur.copy_expert(f"COPY (SELECT {names} FROM {SCHEMA}.{name}) TO STDOUT WITH (FORMAT csv)", out)
                counts[name] = extract.execute_command(
                    f"COPY {target} FROM {escape_string_literal(str(csv_path))} WITH (FORMAT csv, NULL '')")
        finally:
            raw.close()
    partial.replace(path)
    return counts


def extract_figures(path: Path, log_dir: Path, numeric: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per table of ``numeric``: the extract's row count and the sums of the listed columns
    (what :func:`warehouse.report.numeric_sums` gives for the warehouse)."""
    from tableauhyperapi import Connection, HyperProcess, TableName, Telemetry

    out = {}
    with HyperProcess(telemetry=Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU,
                      parameters={"log_dir": str(log_dir)}) as hyper, \
            Connection(hyper.endpoint, str(path)) as extract:
        for table, columns in numeric.items():
            select = ", ".join(["count(*)", *(f'coalesce(sum(CAST("{c}" AS DOUBLE PRECISION)), 0)' for c in columns)])
            row = extract.execute_list_query(f"SELECT {select} FROM {TableName(SCHEMA, table)}")[0]
            out[table] = {"rows": float(row[0]), **{c: float(v) for c, v in zip(columns, row[1:])}}
    return out
