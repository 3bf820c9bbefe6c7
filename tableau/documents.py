"""The Tableau data sources (.tds) and workbook (.twb) over the warehouse's star schema.

Each data source is one star: a fact joined to the dimensions its sheets need (inner joins on
the surrogate keys), with captions, number formats and calculated fields. The same data sources
are written twice: against the live PostgreSQL warehouse (server, port, database and the
reporting role from configuration; Tableau asks for the password) and against the ``.hyper``
extract (:mod:`tableau.hyper`), which holds the same tables under the same names.

The sheets are declared in :data:`SHEETS` (mark, rows, columns, colour, filters); the XML is
the structure Tableau Desktop writes (``datasource-dependencies`` per worksheet, shelves as
``[datasource].[derivation:field:kind]`` references).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, Integer, SmallInteger, String

from config import Settings
from warehouse import schema as dw

VERSION = "18.1"
HYPER_FILE = "quantlake.hyper"

# captions and formats of columns by name (the rest get a title-cased caption)
CAPTIONS = {"name": "Name", "date": "Date", "p_up": "P(up)", "fwd_return": "Forward return", "q05": "5%", "q25": "25%",
            "q50": "Median", "q75": "75%", "q95": "95%", "oos_accuracy": "Out-of-sample accuracy",
            "oos_ic": "Out-of-sample rank IC", "avg_px_open": "Average open price", "last_px": "Last price",
            "realized_pnl": "Realized P&L", "unrealized_pnl": "Unrealized P&L", "pnl": "P&L"}
FORMATS = {"equity": 'c"$"#,##0', "cash": 'c"$"#,##0', "peak_equity": 'c"$"#,##0', "gross_exposure": 'c"$"#,##0',
           "realized_pnl": 'c"$"#,##0.00', "unrealized_pnl": 'c"$"#,##0.00', "pnl": 'c"$"#,##0.00',
           "fees": 'c"$"#,##0.00', "cost": 'c"$"#,##0.00', "price": "n#,##0.00", "close": "n#,##0.00",
           "drawdown": "p0.00%", "daily_return": "p0.00%", "p_up": "p0.0%", "fwd_return": "p0.00%",
           "oos_accuracy": "p0.0%", "hit": "p0.0%", "trip_return": "p0.00%",
           **{q: 'c"$"#,##0' for q in ("q05", "q25", "q50", "q75", "q95")}}


@dataclass(frozen=True)
class Star:
    """One data source: ``fact`` joined to ``dims`` (dimension class, join column)."""

    name: str
    caption: str
    fact: type[dw.Base]
    dims: tuple[tuple[type[dw.Base], str], ...]
    calculations: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> caption, formula, type


def stars(settings: Settings) -> tuple[Star, ...]:
    """The data sources (the breaker's limit comes from trading_config.yaml)."""
    limit = settings.trading.risk.max_drawdown
    return (
        Star("backtest_equity", "Backtest equity", dw.FactBacktestEquity,
             ((dw.DimStrategy, "strategy_key"), (dw.DimDate, "date_key"), (dw.DimDataset, "dataset_key")),
             {"benchmark_equity": ("Benchmark equity (always-up)",
                                   "{ FIXED [date], [name (dim_dataset)] : MAX(IF [name] = 'always_up' "
                                   "THEN [equity] END) }", "real")}),
        Star("predictions", "Out-of-sample predictions", dw.FactPrediction,
             ((dw.DimModel, "model_key"), (dw.DimDate, "date_key"), (dw.DimSymbol, "symbol_key")),
             {"accuracy": ("Accuracy", "AVG([hit])", "real"),
              "ic": ("IC (Pearson, per period)", "CORR([expected_return], [fwd_return])", "real"),
              "is_baseline": ("Baseline", "[family] = 'always_up' OR [family] = 'momentum_sign'", "boolean")}),
        Star("montecarlo_fan", "Monte Carlo fan", dw.FactMontecarloFan,
             ((dw.DimStrategy, "strategy_key"), (dw.DimDataset, "dataset_key"))),
        Star("backtest_metrics", "Backtest metrics", dw.FactBacktestMetric,
             ((dw.DimStrategy, "strategy_key"), (dw.DimDataset, "dataset_key"))),
        Star("live_positions", "Live positions", dw.FactLivePosition,
             ((dw.DimSymbol, "symbol_key"), (dw.DimDate, "date_key")),
             {"total_pnl": ("Total P&L", "[realized_pnl] + [unrealized_pnl]", "real"),
              "is_latest": ("Latest snapshot", "[ts] = { FIXED [symbol] : MAX([ts]) }", "boolean")}),
        Star("live_equity", "Live equity and risk", dw.FactLiveEquity, ((dw.DimDate, "date_key"),),
             {"exposure_ratio": ("Exposure (gross / equity)", "[gross_exposure] / [equity]", "real"),
              "breaker_state": ("Breaker state", f"IF [drawdown] >= {limit} THEN 'TRIPPED' ELSE 'ARMED' END",
                                "string")}),
        Star("data_quality", "Data quality", dw.FactDataQuality, ((dw.DimDate, "date_key"),
                                                                  (dw.DimDataset, "dataset_key"))),
    )


@dataclass(frozen=True)
class Shelf:
    """A field on a shelf: ``column`` (local name), Tableau derivation and kind."""

    column: str
    derivation: str = "None"
    kind: str = "nominal"

    @property
    def instance(self) -> str:
        prefix = {"None": "none", "Sum": "sum", "Avg": "avg", "Day-Trunc": "tdy", "Month-Trunc": "tmn",
                  "User": "usr"}[self.derivation]
        return f"[{prefix}:{self.column}:{ {'quantitative': 'qk', 'nominal': 'nk', 'ordinal': 'ok'}[self.kind] }]"


@dataclass(frozen=True)
class Sheet:
    name: str
    source: str
    mark: str
    rows: tuple[Shelf, ...]
    cols: tuple[Shelf, ...]
    color: Shelf | None = None
    filters: tuple[Shelf, ...] = ()
    description: str = ""


Q = "quantitative"
SHEETS: tuple[Sheet, ...] = (
    Sheet("Equity vs benchmark", "backtest_equity", "Line",
          rows=(Shelf("equity", "Sum", Q), Shelf("benchmark_equity", "User", Q), Shelf("drawdown", "Sum", Q)),
          cols=(Shelf("date", "Day-Trunc", Q),), color=Shelf("name"), filters=(Shelf("name (dim_dataset)"),),
          description="Each strategy's daily equity (colour) against always-up's, with its drawdown below."),
    Sheet("Model accuracy and IC", "predictions", "Line",
          rows=(Shelf("accuracy", "User", Q), Shelf("ic", "User", Q)), cols=(Shelf("date", "Month-Trunc", Q),),
          color=Shelf("family"), filters=(Shelf("is_baseline"),),
          description="Monthly out-of-sample accuracy and IC per family; the baselines are families too."),
    Sheet("Monte Carlo fan", "montecarlo_fan", "Area",
          rows=(Shelf("q05", "Sum", Q), Shelf("q25", "Sum", Q), Shelf("q50", "Sum", Q), Shelf("q75", "Sum", Q),
                Shelf("q95", "Sum", Q)),
          cols=(Shelf("step", "Sum", Q),), filters=(Shelf("name"),),
          description="Quantiles of simulated equity at each bar of one strategy (pick it in the filter)."),
    Sheet("Live positions and P&L", "live_positions", "Text",
          rows=(Shelf("symbol"),), cols=(Shelf("qty", "Sum", Q), Shelf("avg_px_open", "Sum", Q),
                                          Shelf("last_px", "Sum", Q), Shelf("total_pnl", "User", Q)),
          filters=(Shelf("is_latest"),),
          description="The newest snapshot of each position: quantity, prices, realized + unrealized P&L."),
    Sheet("Live equity and risk", "live_equity", "Line",
          rows=(Shelf("equity", "Sum", Q), Shelf("exposure_ratio", "User", Q), Shelf("drawdown", "Sum", Q)),
          cols=(Shelf("ts", "None", Q),), color=Shelf("breaker_state"),
          description="Equity, gross exposure over equity and drawdown at each closed bar; red once the breaker trips."),
    Sheet("Backtest risk (VaR)", "backtest_metrics", "Bar",
          rows=(Shelf("name"),), cols=(Shelf("value", "Sum", Q),), filters=(Shelf("metric"),),
          description="Historical and parametric VaR / CVaR per strategy (filter metric to var_*/cvar_*)."),
    Sheet("Strategies compared", "backtest_metrics", "Bar",
          rows=(Shelf("strategy"), Shelf("family")), cols=(Shelf("value", "Sum", Q),), color=Shelf("strategy"),
          filters=(Shelf("metric"),),
          description="Each strategy (threshold, top-k dropout, a user's) on each model family: pick a figure "
                      "(sharpe, deflated_sharpe, max_drawdown, ...) in the metric filter; the parameters are the "
                      "params field of the strategy."),
    Sheet("Data quality", "data_quality", "Bar",
          rows=(Shelf("reason"),), cols=(Shelf("rows", "Sum", Q),), color=Shelf("stage"),
          filters=(Shelf("name"),),
          description="Rows set aside by reason: the research quarantine and the stream's dead letters."),
)


def _datatype(column) -> str:
    kind = column.type
    if isinstance(kind, (Integer, SmallInteger, BigInteger)):
        return "integer"
    if isinstance(kind, Double):
        return "real"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, DateTime):
        return "datetime"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, String):
        return "string"
    raise TypeError(f"no Tableau type for {column}")


def fields(star: Star) -> list[dict]:
    """Every physical column of the star: local name (unique), remote name, table, datatype."""
    out, seen = [], set()
    for table in (star.fact, *(d for d, _ in star.dims)):
        for column in table.__table__.columns:
            local = column.name if column.name not in seen else f"{column.name} ({table.__tablename__})"
            seen.add(column.name)
            out.append({"local": local, "remote": column.name, "table": table.__tablename__,
                        "datatype": _datatype(column), "key": column.name.endswith("_key")})
    return out


def _connection_name(settings: Settings, extract: bool) -> str:
    pg = settings.platform.postgres
    tag = hashlib.sha1(f"{extract}{pg.host}{pg.port}{pg.database}".encode()).hexdigest()[:20]
    return f"{'hyper' if extract else 'postgres'}.{tag}"


def _join(star: Star, conn: str) -> ET.Element:
    fact = star.fact.__tablename__

    def table(cls) -> ET.Element:
        return ET.Element("relation", connection=conn, name=cls.__tablename__,
                          table=f"[{dw.SCHEMA}].[{cls.__tablename__}]", type="table")

    relation = table(star.fact)
    for dim, key in star.dims:
        joined = ET.Element("relation", join="inner", type="join")
        clause = ET.SubElement(joined, "clause", type="join")
        eq = ET.SubElement(clause, "expression", op="=")
        ET.SubElement(eq, "expression", op=f"[{fact}].[{key}]")
        ET.SubElement(eq, "expression", op=f"[{dim.__tablename__}].[{key}]")
        joined.append(relation)
        joined.append(table(dim))
        relation = joined
    return relation


def datasource(settings: Settings, star: Star, extract: bool = False) -> ET.Element:
    """The ``<datasource>`` element of ``star`` on the warehouse (or on the extract)."""
    pg = settings.platform.postgres
    conn_name = _connection_name(settings, extract)
    root = ET.Element("datasource", {"caption": star.caption, "formatted-name": star.name, "inline": "true",
                                     "name": star.name, "version": VERSION})
    federated = ET.SubElement(root, "connection", {"class": "federated"})
    named = ET.SubElement(ET.SubElement(federated, "named-connections"), "named-connection",
                          caption=HYPER_FILE if extract else pg.host, name=conn_name)
    if extract:
        ET.SubElement(named, "connection", {"class": "hyper", "dbname": HYPER_FILE, "authentication": "auth-none",
                                            "default-settings": "yes", "sslmode": "", "username": "tableau_internal_user"})
    else:
        ET.SubElement(named, "connection", {"class": "postgres", "authentication": "username-password",
                                            "dbname": pg.database, "port": str(pg.port), "server": pg.host,
                                            "sslmode": "", "username": settings.platform.warehouse.reporting_role,
                                            "one-time-sql": ""})
    federated.append(_join(star, conn_name))
    records = ET.SubElement(federated, "metadata-records")
    for i, f in enumerate(fields(star)):
        rec = ET.SubElement(records, "metadata-record", {"class": "column"})
        for tag, value in (("remote-name", f["remote"]), ("remote-type", f["datatype"]),
                           ("local-name", f"[{f['local']}]"), ("parent-name", f"[{f['table']}]"),
                           ("remote-alias", f["remote"]), ("ordinal", str(i + 1)), ("local-type", f["datatype"]),
                           ("contains-null", "true")):
            ET.SubElement(rec, tag).text = value
    for f in fields(star):
        numeric = f["datatype"] in ("real", "integer") and not f["key"]
        attrs = {"caption": CAPTIONS.get(f["remote"], f["remote"].replace("_", " ").capitalize())
                 + ("" if f["local"] == f["remote"] else f" ({f['table'].removeprefix('dim_')})"),
                 "datatype": f["datatype"], "name": f"[{f['local']}]",
                 "role": "measure" if numeric else "dimension",
                 "type": "quantitative" if numeric or f["datatype"] in ("date", "datetime") else "nominal"}
        if f["key"]:
            attrs["hidden"] = "true"
        if f["remote"] in FORMATS and numeric:
            attrs["default-format"] = FORMATS[f["remote"]]
        ET.SubElement(root, "column", attrs)
    for name, (caption, formula, datatype) in star.calculations.items():
        col = ET.SubElement(root, "column", {"caption": caption, "datatype": datatype, "name": f"[{name}]",
                                             "role": "measure" if datatype == "real" else "dimension",
                                             "type": "quantitative" if datatype == "real" else "nominal"})
        ET.SubElement(col, "calculation", {"class": "tableau", "formula": formula})
    return root


def _worksheet(sheet: Sheet, source: ET.Element) -> ET.Element:
    columns = {c.get("name"): c for c in source.findall("column")}
    ws = ET.Element("worksheet", name=sheet.name)
    if sheet.description:
        ET.SubElement(ET.SubElement(ET.SubElement(ws, "layout-options"), "title"), "formatted-text").append(
            _run(sheet.description))
    table = ET.SubElement(ws, "table")
    view = ET.SubElement(table, "view")
    ET.SubElement(ET.SubElement(view, "datasources"), "datasource", caption=source.get("caption"),
                  name=sheet.source)
    deps = ET.SubElement(view, "datasource-dependencies", datasource=sheet.source)
    used = [*sheet.rows, *sheet.cols, *([sheet.color] if sheet.color else []), *sheet.filters]
    for shelf in dict.fromkeys(used):
        declared = columns[f"[{shelf.column}]"]
        copy = ET.SubElement(deps, "column", {k: v for k, v in declared.attrib.items()})
        for calc in declared.findall("calculation"):
            copy.append(calc)
        ET.SubElement(deps, "column-instance", column=f"[{shelf.column}]", derivation=shelf.derivation,
                      name=shelf.instance, pivot="key", type=shelf.kind)
    for shelf in sheet.filters:
        ET.SubElement(view, "filter", {"class": "categorical", "column": f"[{sheet.source}].{shelf.instance}"})
    ET.SubElement(view, "aggregation", value="true")
    pane = ET.SubElement(ET.SubElement(table, "panes"), "pane")
    ET.SubElement(pane, "mark", {"class": sheet.mark})
    if sheet.color:
        ET.SubElement(ET.SubElement(pane, "encodings"), "color", column=f"[{sheet.source}].{sheet.color.instance}")
    ET.SubElement(table, "rows").text = " / ".join(f"[{sheet.source}].{s.instance}" for s in sheet.rows)
    ET.SubElement(table, "cols").text = " / ".join(f"[{sheet.source}].{s.instance}" for s in sheet.cols)
    return ws


def _run(text: str) -> ET.Element:
    run = ET.Element("run")
    run.text = text
    return run


def workbook(settings: Settings, extract: bool = False) -> ET.Element:
    """The workbook: every data source, one worksheet per :data:`SHEETS`, and a dashboard of them."""
    root = ET.Element("workbook", {"source-build": "2024.2.0", "source-platform": "linux", "version": VERSION})
    sources = {s.name: datasource(settings, s, extract) for s in stars(settings)}
    holder = ET.SubElement(root, "datasources")
    for element in sources.values():
        holder.append(element)
    worksheets = ET.SubElement(root, "worksheets")
    for sheet in SHEETS:
        worksheets.append(_worksheet(sheet, sources[sheet.source]))
    dashboard = ET.SubElement(ET.SubElement(root, "dashboards"), "dashboard", name="Overview")
    ET.SubElement(dashboard, "size", maxheight="1200", maxwidth="1600", minheight="800", minwidth="1200")
    zones = ET.SubElement(dashboard, "zones")
    for i, sheet in enumerate(SHEETS):
        ET.SubElement(zones, "zone", {"name": sheet.name, "id": str(i + 2), "h": str(100000 // 4),
                                      "w": str(100000 // 2), "x": str((i % 2) * 50000), "y": str((i // 2) * 25000)})
    windows = ET.SubElement(root, "windows")
    for sheet in SHEETS:
        ET.SubElement(windows, "window", {"class": "worksheet", "name": sheet.name})
    ET.SubElement(windows, "window", {"class": "dashboard", "name": "Overview"})
    return root


def write(element: ET.Element, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(element)
    path.write_bytes(b"<?xml version='1.0' encoding='utf-8' ?>\n" + ET.tostring(element, encoding="utf-8"))
    return path


def build(settings: Settings, out: Path | None = None) -> list[Path]:
    """Write one .tds per data source (live warehouse), ``quantlake.twb`` (live warehouse) and
    ``quantlake_extract.twb`` (the .hyper extract beside it) into ``out``."""
    out = out or settings.platform.tableau_dir
    written = [write(datasource(settings, s), out / f"{s.name}.tds") for s in stars(settings)]
    written.append(write(workbook(settings), out / "quantlake.twb"))
    written.append(write(workbook(settings, extract=True), out / "quantlake_extract.twb"))
    return written
