"""Reading the warehouse back: row counts and the figures the extracts and tests compare."""

from __future__ import annotations

from sqlalchemy import Engine, text

from warehouse.schema import SCHEMA, Base


def tables() -> list[str]:
    """Every table of the star schema, dimensions first."""
    return sorted((t.name for t in Base.metadata.sorted_tables), key=lambda n: (not n.startswith("dim_"), n))


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table."""
    with engine.connect() as conn:
        return {name: conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{name}")).scalar_one() for name in tables()}


def numeric_columns(table: str) -> list[str]:
    """The numeric (integer and double) columns of ``table``."""
    return [c.name for c in Base.metadata.tables[f"{SCHEMA}.{table}"].columns if c.type.python_type in (int, float)]


def numeric_sums(engine: Engine, table: str) -> dict[str, float]:
    """The row count and the sum of every numeric column of ``table`` (what an extract must equal)."""
    columns = numeric_columns(table)
    select = ", ".join(["count(*) AS rows", *(f"coalesce(sum({c}::float8), 0) AS {c}" for c in columns)])
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {select} FROM {SCHEMA}.{table}")).one()._asdict()
    return {k: float(v) for k, v in row.items()}
