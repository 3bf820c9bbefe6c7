"""What each sheet draws, computed without Tableau.

A sheet's shelves and filters mean one query: its dimensions (rows, columns, colour) set the
level of detail, its measures are aggregated at that level, and its filters keep their members.
:func:`sheet_sql` writes that query over the sheet's star, in three steps as Tableau evaluates
it: the joined rows (fact and dimensions under their local names), the row-level calculations
(a ``FIXED`` level of detail as a window over its dimensions, before the filters), then the
filtered, grouped marks. The same SQL runs on the PostgreSQL warehouse and on the ``.hyper``
extract, so the two can be compared, and the rows feed the previews (:mod:`tableau.previews`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, text

from config import Settings
from tableau.documents import LIVE_SOURCES, MAY_BE_EMPTY, Sheet, Shelf, Star, fields, sheets, stars
from warehouse.schema import SCHEMA

_AGG_SQL = {"Sum": "SUM", "Avg": "AVG", "Max": "MAX", "Min": "MIN"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _dimension(shelf: Shelf) -> str:
    column = _q(shelf.column)
    if shelf.derivation == "Day-Trunc":
        return f"CAST({column} AS DATE)"
    if shelf.derivation == "Month-Trunc":
        return f"CAST(DATE_TRUNC('month', {column}) AS DATE)"
    return column


def _measure(shelf: Shelf, star: Star) -> str:
    if shelf.derivation == "User":
        return f"CAST({star.calculations[shelf.column].sql} AS DOUBLE PRECISION)"
    return f"CAST({_AGG_SQL[shelf.derivation]}({_q(shelf.column)}) AS DOUBLE PRECISION)"


def column_name(shelf: Shelf) -> str:
    """The result column of a shelf: its instance name without brackets (``sum:equity:qk``)."""
    return shelf.instance.strip("[]")


def sheet_sql(sheet: Sheet, star: Star) -> str:
    """The query ``sheet`` means on ``star``: one row per mark, dimensions first, ordered."""
    aliases = {star.fact.__tablename__: "f"} | {d.__tablename__: f"d{i}" for i, (d, _) in enumerate(star.dims)}
    select = ", ".join(f'{aliases[f["table"]]}.{_q(f["remote"])} AS {_q(f["local"])}' for f in fields(star))
    joins = " ".join(f"JOIN {SCHEMA}.{_q(d.__tablename__)} {aliases[d.__tablename__]} "
                     f"ON f.{_q(key)} = {aliases[d.__tablename__]}.{_q(key)}" for d, key in star.dims)
    base = f"SELECT {select} FROM {SCHEMA}.{_q(star.fact.__tablename__)} f {joins}"
    row_calcs = "".join(f", {c.sql} AS {_q(name)}" for name, c in star.calculations.items() if not c.aggregate)
    dims = sheet.dimensions
    outer = [f"{_dimension(s)} AS {_q(column_name(s))}" for s in dims]
    outer += [f"{_measure(s, star)} AS {_q(column_name(s))}" for s in sheet.measures]
    where = " AND ".join(f"{_q(f.column)} IN ({', '.join(_literal(m) for m in f.members)})" for f in sheet.filters)
    group = ", ".join(str(i + 1) for i in range(len(dims)))
    return (f"SELECT {', '.join(outer)} FROM (SELECT b.*{row_calcs} FROM ({base}) b) r"
            + (f" WHERE {where}" if where else "")
            + (f" GROUP BY {group} ORDER BY {group}" if dims else ""))


def _plain(value):
    """A Hyper API value as the Python value the warehouse driver returns."""
    for method in ("to_datetime", "to_date"):
        if hasattr(value, method):
            return getattr(value, method)()
    return value


def _frame(rows: list, sheet: Sheet) -> pd.DataFrame:
    frame = pd.DataFrame([[_plain(v) for v in row] for row in rows], columns=_columns(sheet))
    for shelf in sheet.measures:
        frame[column_name(shelf)] = pd.to_numeric(frame[column_name(shelf)], errors="coerce").astype(float)
    for name in (column_name(s) for s in sheet.dimensions):
        sample = frame[name].dropna()
        if len(sample) and isinstance(sample.iloc[0], dt.datetime):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif len(sample) and isinstance(sample.iloc[0], dt.date):
            frame[name] = pd.to_datetime(frame[name])
    return frame


def _columns(sheet: Sheet) -> list[str]:
    return [column_name(s) for s in (*sheet.dimensions, *sheet.measures)]


def warehouse_rows(engine: Engine, sheet: Sheet, star: Star) -> pd.DataFrame:
    """The marks of ``sheet`` computed on the warehouse."""
    with engine.connect() as conn:
        result = conn.execute(text(sheet_sql(sheet, star).replace(":", r"\:")))
        return _frame([tuple(r) for r in result], sheet)


def extract_rows(path: Path, log_dir: Path, queries: dict[str, tuple[Sheet, Star]]) -> dict[str, pd.DataFrame]:
    """The marks of each sheet in ``queries`` computed on the ``.hyper`` extract at ``path``."""
    from tableauhyperapi import Connection, HyperProcess, Telemetry

    log_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    with HyperProcess(telemetry=Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU,
                      parameters={"log_dir": str(log_dir)}) as hyper, \
            Connection(hyper.endpoint, str(path)) as extract:
        for name, (sheet, star) in queries.items():
            out[name] = _frame(extract.execute_list_query(sheet_sql(sheet, star)), sheet)
    return out


@dataclass
class SheetCheck:
    """One sheet's marks on the warehouse and on the extract, and whether they agree."""

    sheet: Sheet
    rows: pd.DataFrame
    extract: pd.DataFrame | None
    live: bool

    @property
    def agrees(self) -> bool:
        if self.extract is None:
            return True
        if len(self.rows) != len(self.extract):
            return False
        if self.rows.empty:
            return True
        try:
            pd.testing.assert_frame_equal(self.rows.reset_index(drop=True), self.extract.reset_index(drop=True),
                                          check_dtype=False, rtol=1e-9, atol=1e-9)
        except AssertionError:
            return False
        return True

    @property
    def empty_means(self) -> str | None:
        """Why this sheet may rightly draw nothing (None: an empty sheet is a defect)."""
        return MAY_BE_EMPTY.get(self.sheet.source)

    def line(self) -> str:
        where = "" if self.extract is None else (" = extract" if self.agrees else " != extract")
        empty = "" if not self.rows.empty else f" (empty: {self.empty_means})" if self.empty_means else " (EMPTY)"
        return f"{self.sheet.name:<26} {len(self.rows):>6} marks{where}{empty}"


def check_sheets(settings: Settings, engine: Engine, extract: Path | None = None,
                 log_dir: Path | None = None) -> list[SheetCheck]:
    """Every sheet's marks on the warehouse (and on the extract when ``extract`` is given)."""
    by_name = {s.name: s for s in stars(settings)}
    queries = {sheet.name: (sheet, by_name[sheet.source]) for sheet in sheets(settings)}
    found = extract_rows(extract, log_dir or extract.parent / "hyper-logs", queries) if extract else {}
    return [SheetCheck(sheet, warehouse_rows(engine, sheet, star), found.get(sheet.name),
                       sheet.source in LIVE_SOURCES) for sheet, star in queries.values()]


def problems(checks: list[SheetCheck], live: bool = False) -> list[str]:
    """The sheets that draw nothing where they should (the live ones too when ``live``) or
    differ between the warehouse and the extract."""
    out = []
    for c in checks:
        if c.rows.empty and (not c.empty_means or (live and c.live)):
            out.append(f"{c.sheet.name}: no marks on the warehouse")
        if not c.agrees:
            out.append(f"{c.sheet.name}: the extract's marks differ from the warehouse's")
    return out
