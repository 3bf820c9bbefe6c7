"""The Tableau data sources (.tds) and workbook (.twb) over the warehouse's star schema.

Each data source is one star: a fact joined to the dimensions its sheets need (inner joins on
the surrogate keys), with captions, number formats and calculated fields. The same data sources
are written twice: against the live PostgreSQL warehouse (server, port, database and the
reporting role from configuration; Tableau asks for the password) and against the ``.hyper``
extract (:mod:`tableau.hyper`), which holds the same tables under the same names.

The sheets are declared in :data:`SHEETS` (mark, rows, columns, colour, text, filters with their
members) and grouped into the four dashboards of :data:`DASHBOARDS`. The XML is written the way
Tableau Desktop writes it, and it validates against Tableau's published workbook schema
(:mod:`tableau.validate`):

- shelves nest dimensions with ``/`` and concatenate measures with ``+``, right-nested:
  ``([ds].[none:strategy:nk] / ([ds].[sum:a:qk] + [ds].[sum:b:qk]))``;
- the ``usr:`` derivation only for aggregate calculations; row-level ones are aggregated
  (``sum:``, ``avg:``) like a column;
- every filter names its members in a ``<groupfilter>`` and is listed in ``<slices>``;
- each worksheet's ``datasource-dependencies`` carry every column its calculations read;
- metadata records carry the OLE DB type codes and a default aggregation;
- a dashboard tiles its sheets inside one root layout zone; every window has its cards or
  viewpoints and a ``simple-id``.

Every calculation also carries the SQL it means (:class:`Calc`), so :mod:`tableau.sheets` can
compute what each sheet draws without Tableau.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, Integer, SmallInteger, String

from config import Settings
from warehouse import schema as dw

VERSION = "26.1"                      # the workbook version of Tableau's 2026.1 schema
SOURCE_BUILD = "2026.1.0 (20261.26.0211.1127)"
DATASOURCE_VERSION = "18.1"           # what Desktop writes on <datasource> since 2018.1
HYPER_FILE = "quantlake.hyper"
USER_NS = "http://www.tableausoftware.com/xml/user"
ET.register_namespace("user", USER_NS)

# captions and formats of columns by name (the rest get a capitalised caption)
CAPTIONS = {"name": "Name", "date": "Date", "p_up": "P(up)", "fwd_return": "Forward return", "q05": "5%", "q25": "25%",
            "q50": "Median", "q75": "75%", "q95": "95%", "oos_accuracy": "Out-of-sample accuracy",
            "oos_ic": "Out-of-sample rank IC", "avg_px_open": "Average open price", "last_px": "Last price",
            "realized_pnl": "Realized P&L", "unrealized_pnl": "Unrealized P&L", "pnl": "P&L",
            "decision_close": "Decision bar's close",
            "fact_backtest_equity.gross_exposure": "Gross exposure (share of equity)"}
FORMATS = {"equity": 'c"$"#,##0', "cash": 'c"$"#,##0', "peak_equity": 'c"$"#,##0', "gross_exposure": 'c"$"#,##0',
           "realized_pnl": 'c"$"#,##0.00', "unrealized_pnl": 'c"$"#,##0.00', "pnl": 'c"$"#,##0.00',
           "fees": 'c"$"#,##0.00', "cost": 'c"$"#,##0.00', "price": "n#,##0.00", "close": "n#,##0.00",
           "drawdown": "p0.00%", "daily_return": "p0.00%", "p_up": "p0.0%", "fwd_return": "p0.00%",
           "oos_accuracy": "p0.0%", "hit": "p0.0%", "trip_return": "p0.00%",
           **{q: 'c"$"#,##0' for q in ("q05", "q25", "q50", "q75", "q95")},
           "fact_backtest_equity.gross_exposure": "p0.0%"}  # table.column: where a table differs
# OLE DB type codes Desktop writes as <remote-type>, and the default aggregation of each type
REMOTE_TYPES = {"smallint": 2, "integer": 3, "bigint": 20, "real": 5, "boolean": 11, "date": 133, "datetime": 135,
                "string": 129}
DEFAULT_AGGREGATION = {"integer": "Sum", "real": "Sum", "boolean": "Count", "date": "Year", "datetime": "Year",
                       "string": "Count"}


@dataclass(frozen=True)
class Calc:
    """A calculated field: its Tableau ``formula`` and the same in SQL (``sql``) over the joined
    row, or over the group when ``aggregate`` (then it is used with the ``usr:`` derivation)."""

    caption: str
    formula: str
    sql: str
    datatype: str = "real"
    aggregate: bool = False


@dataclass(frozen=True)
class Star:
    """One data source: ``fact`` joined to ``dims`` (dimension class, join column)."""

    name: str
    caption: str
    fact: type[dw.Base]
    dims: tuple[tuple[type[dw.Base], str], ...]
    calculations: dict[str, Calc] = field(default_factory=dict)


DATASET = "name (dim_dataset)"  # the dataset's name in every star (each joins dim_dataset after a table with a name)


def stars(settings: Settings) -> tuple[Star, ...]:
    """The data sources (the breaker's limit comes from trading_config.yaml)."""
    limit = settings.trading.risk.max_drawdown
    strategy, dataset, date = (dw.DimStrategy, "strategy_key"), (dw.DimDataset, "dataset_key"), (dw.DimDate, "date_key")
    symbol = (dw.DimSymbol, "symbol_key")
    return (
        Star("backtest_equity", "Backtest equity", dw.FactBacktestEquity, (strategy, date, dataset), {
            "benchmark_equity": Calc(
                "Benchmark equity (always-up)",
                f"{{ FIXED [date], [{DATASET}], [strategy] : MAX(IF [family] = 'always_up' THEN [equity] END) }}",
                f"MAX(CASE WHEN \"family\" = 'always_up' THEN \"equity\" END) "
                f"OVER (PARTITION BY \"date\", \"{DATASET}\", \"strategy\")")}),
        Star("predictions", "Out-of-sample predictions", dw.FactPrediction,
             ((dw.DimModel, "model_key"), date, symbol, dataset), {
                 "accuracy": Calc("Accuracy", "AVG([hit])", 'AVG(CAST("hit" AS DOUBLE PRECISION))', aggregate=True),
                 "ic": Calc("IC (Pearson, per period)", "CORR([expected_return], [fwd_return])",
                            'CORR("expected_return", "fwd_return")', aggregate=True)}),
        Star("montecarlo_fan", "Monte Carlo fan", dw.FactMontecarloFan, (strategy, dataset)),
        Star("backtest_metrics", "Backtest metrics", dw.FactBacktestMetric, (strategy, dataset)),
        Star("round_trips", "Backtest round trips", dw.FactBacktestRoundTrip, (strategy, symbol, dataset)),
        Star("backtest_trades", "Backtest fills", dw.FactBacktestTrade, (strategy, symbol, dataset), {
            "slippage_bps": Calc(
                "Fill vs decision close (bps)",
                "10000 * (SIGN([quantity]) * ([price] - [decision_close]) + [cost] / ABS([quantity])) / [decision_close]",
                '10000 * (SIGN("quantity") * ("price" - "decision_close") + "cost" / ABS("quantity")) '
                '/ NULLIF("decision_close", 0)'),
            "cost_bps": Calc("Cost vs next open (bps)", "10000 * [cost] / (ABS([quantity]) * [price])",
                             '10000 * "cost" / NULLIF(ABS("quantity") * "price", 0)'),
            "size_bucket": Calc(
                "Order size",
                "IF ABS([quantity]) * [price] < 1000 THEN '1: under $1k' ELSEIF ABS([quantity]) * [price] < 10000 "
                "THEN '2: $1k-10k' ELSEIF ABS([quantity]) * [price] < 100000 THEN '3: $10k-100k' "
                "ELSE '4: $100k and over' END",
                "CASE WHEN ABS(\"quantity\") * \"price\" < 1000 THEN '1: under $1k' "
                "WHEN ABS(\"quantity\") * \"price\" < 10000 THEN '2: $1k-10k' "
                "WHEN ABS(\"quantity\") * \"price\" < 100000 THEN '3: $10k-100k' ELSE '4: $100k and over' END",
                "string")}),
        Star("live_fills", "Live fills and their orders", dw.FactLiveFill,
             ((dw.FactLiveOrder, "order_id"), symbol, dataset), {
                 "slippage_bps": Calc(
                     "Fill vs decision close (bps)",
                     "10000 * ((IF UPPER([side]) = 'BUY' THEN 1 ELSE -1 END) * ([price] - [price (fact_live_order)]) "
                     "+ [fee] / [qty]) / [price (fact_live_order)]",
                     '10000 * ((CASE WHEN UPPER("side") = \'BUY\' THEN 1 ELSE -1 END) * ("price" - '
                     '"price (fact_live_order)") + "fee" / NULLIF("qty", 0)) / NULLIF("price (fact_live_order)", 0)'),
                 "fee_bps": Calc("Fee vs fill price (bps)", "10000 * [fee] / ([qty] * [price])",
                                 '10000 * "fee" / NULLIF("qty" * "price", 0)')}),
        Star("live_positions", "Live positions", dw.FactLivePosition, (symbol, date, dataset), {
            "total_pnl": Calc("Total P&L", "[realized_pnl] + [unrealized_pnl]", '"realized_pnl" + "unrealized_pnl"'),
            "is_latest": Calc("Latest snapshot", f"[ts] = {{ FIXED [symbol], [{DATASET}] : MAX([ts]) }}",
                              f'"ts" = MAX("ts") OVER (PARTITION BY "symbol", "{DATASET}")', "boolean")}),
        Star("live_equity", "Live equity and risk", dw.FactLiveEquity, (date, dataset), {
            "exposure_ratio": Calc("Exposure (gross / equity)", "[gross_exposure] / [equity]",
                                   '"gross_exposure" / NULLIF("equity", 0)'),
            "breaker_state": Calc("Breaker state", f"IF [drawdown] >= {limit} THEN 'TRIPPED' ELSE 'ARMED' END",
                                  f"CASE WHEN \"drawdown\" >= {limit} THEN 'TRIPPED' ELSE 'ARMED' END", "string")}),
        Star("data_quality", "Data quality", dw.FactDataQuality, (date, dataset)),
    )


AGGREGATIONS = {"Sum": "sum", "Avg": "avg", "Max": "max", "Min": "min", "User": "usr"}
TRUNCATIONS = {"None": "none", "Day-Trunc": "tdy", "Month-Trunc": "tmn"}


@dataclass(frozen=True)
class Shelf:
    """A field on a shelf: ``column`` (local name), Tableau derivation and kind."""

    column: str
    derivation: str = "None"
    kind: str = "nominal"

    @property
    def instance(self) -> str:
        prefix = {**AGGREGATIONS, **TRUNCATIONS}[self.derivation]
        return f"[{prefix}:{self.column}:{ {'quantitative': 'qk', 'nominal': 'nk', 'ordinal': 'ok'}[self.kind] }]"

    @property
    def is_measure(self) -> bool:
        return self.derivation in AGGREGATIONS


@dataclass(frozen=True)
class Filter:
    """A categorical filter keeping ``members`` of ``column`` (strings, booleans or numbers)."""

    column: str
    members: tuple
    shelf: Shelf = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shelf", Shelf(self.column))


@dataclass(frozen=True)
class Sheet:
    name: str
    source: str
    mark: str
    rows: tuple[Shelf, ...]
    cols: tuple[Shelf, ...]
    color: Shelf | None = None
    text: Shelf | None = None
    filters: tuple[Filter, ...] = ()
    description: str = ""

    @property
    def shelves(self) -> tuple[Shelf, ...]:
        return (*self.rows, *self.cols, *(s for s in (self.color, self.text) if s))

    @property
    def dimensions(self) -> tuple[Shelf, ...]:
        """The fields that set the level of detail (one mark per combination)."""
        return tuple(dict.fromkeys(s for s in self.shelves if not s.is_measure))

    @property
    def measures(self) -> tuple[Shelf, ...]:
        return tuple(dict.fromkeys(s for s in self.shelves if s.is_measure))


Q = "quantitative"
VAR_METRICS = ("var_historical", "var_parametric", "cvar_historical", "cvar_parametric")
COMPARED_METRICS = ("sharpe", "deflated_sharpe", "annual_return", "max_drawdown", "turnover", "trades")


def sheets(settings: Settings) -> tuple[Sheet, ...]:
    """The worksheets; every one keeps the configured dataset (``data.dataset``; change the
    filter in Tableau for another)."""
    def ds(source: str) -> Filter:
        star = next(s for s in stars(settings) if s.name == source)
        return Filter(local_name(star, dw.DimDataset, "name"), (settings.data.dataset,))

    all_scope = Filter("scope", ("all",))
    return (
        Sheet("Equity vs benchmark", "backtest_equity", "Line",
              rows=(Shelf("equity", "Sum", Q), Shelf("benchmark_equity", "Avg", Q)),
              cols=(Shelf("date", "Day-Trunc", Q),), color=Shelf("name"), filters=(ds("backtest_equity"),),
              description="Each run's daily equity (colour) above the always-up run of the same strategy."),
        Sheet("Live equity and P&L", "live_equity", "Line",
              rows=(Shelf("equity", "Sum", Q), Shelf("realized_pnl", "Sum", Q)), cols=(Shelf("ts", "None", Q),),
              filters=(ds("live_equity"),), description="Equity and realized P&L of the live book at each closed bar."),
        Sheet("Live positions and P&L", "live_positions", "Bar",
              rows=(Shelf("symbol"),), cols=(Shelf("qty", "Sum", Q), Shelf("total_pnl", "Sum", Q)),
              filters=(Filter("is_latest", (True,)), ds("live_positions")),
              description="The newest snapshot of each position: shares held and realized + unrealized P&L."),
        Sheet("Drawdown and exposure", "backtest_equity", "Line",
              rows=(Shelf("drawdown", "Sum", Q), Shelf("gross_exposure", "Sum", Q)),
              cols=(Shelf("date", "Day-Trunc", Q),), color=Shelf("name"), filters=(ds("backtest_equity"),),
              description="Each run's drawdown from its running peak and its gross exposure, day by day."),
        Sheet("Backtest risk (VaR)", "backtest_metrics", "Bar",
              rows=(Shelf("name"),), cols=(Shelf("metric"), Shelf("value", "Sum", Q)),
              filters=(Filter("metric", VAR_METRICS), all_scope, ds("backtest_metrics")),
              description="Historical and parametric one-bar VaR and CVaR of each run (a fraction of equity)."),
        Sheet("Live equity and risk", "live_equity", "Line",
              rows=(Shelf("exposure_ratio", "Avg", Q), Shelf("drawdown", "Sum", Q)),
              cols=(Shelf("ts", "None", Q),), color=Shelf("breaker_state"), filters=(ds("live_equity"),),
              description="Gross exposure over equity and drawdown at each closed bar; TRIPPED once the breaker trips."),
        Sheet("Monte Carlo fan", "montecarlo_fan", "Line",
              rows=(Shelf("q05", "Sum", Q), Shelf("q50", "Sum", Q), Shelf("q95", "Sum", Q)),
              cols=(Shelf("step", "None", Q),), color=Shelf("name"), filters=(ds("montecarlo_fan"),),
              description="5%, median and 95% of simulated equity at each bar, per run (bootstrap of its returns)."),
        Sheet("Strategies compared", "backtest_metrics", "Text",
              rows=(Shelf("strategy"), Shelf("family")), cols=(Shelf("metric"),), text=Shelf("value", "Sum", Q),
              filters=(Filter("metric", COMPARED_METRICS), all_scope, ds("backtest_metrics")),
              description="Each strategy (threshold, top-k dropout, a user's) on each model family; the parameters "
                          "are the params field of the strategy."),
        Sheet("P&L by asset", "round_trips", "Bar",
              rows=(Shelf("strategy"), Shelf("symbol")), cols=(Shelf("family"), Shelf("pnl", "Sum", Q)),
              filters=(ds("round_trips"),), description="Round-trip P&L after costs by symbol, per strategy (rows) and model "
                                         "family (columns)."),
        Sheet("Model accuracy and IC", "predictions", "Line",
              rows=(Shelf("accuracy", "User", Q), Shelf("ic", "User", Q)), cols=(Shelf("date", "Month-Trunc", Q),),
              color=Shelf("family"), filters=(ds("predictions"),),
              description="Monthly out-of-sample accuracy and IC per family; the baselines are families too."),
        Sheet("Slippage by symbol", "backtest_trades", "Bar",
              rows=(Shelf("strategy"), Shelf("symbol")),
              cols=(Shelf("slippage_bps", "Avg", Q), Shelf("cost_bps", "Avg", Q)), filters=(ds("backtest_trades"),),
              description="Average fill against the decision bar's close (signed: positive is worse) and the costs "
                          "paid over the next open, where the order fills."),
        Sheet("Slippage by size", "backtest_trades", "Bar",
              rows=(Shelf("strategy"), Shelf("size_bucket")),
              cols=(Shelf("slippage_bps", "Avg", Q), Shelf("cost_bps", "Avg", Q)), filters=(ds("backtest_trades"),),
              description="The same by order notional: impact grows with the share of the bar's volume."),
        Sheet("Live fills vs decision", "live_fills", "Bar",
              rows=(Shelf("symbol"),), cols=(Shelf("slippage_bps", "Avg", Q), Shelf("fee_bps", "Avg", Q)),
              filters=(ds("live_fills"),),
              description="Each live fill against the close its order was decided at (the order's price; signed "
                          "bps, positive is worse) and the fee over the fill price."),
        Sheet("Data quality", "data_quality", "Bar",
              rows=(Shelf("reason"),), cols=(Shelf("rows", "Sum", Q),), color=Shelf("stage"), filters=(ds("data_quality"),),
              description="Rows set aside by reason: the research quarantine and the stream's dead letters."),
    )


# the seed's four dashboards: name -> sheets (tiled in a grid of two columns)
DASHBOARDS: dict[str, tuple[str, ...]] = {
    "P&L tracking": ("Equity vs benchmark", "Live equity and P&L", "Live positions and P&L"),
    "Risk": ("Drawdown and exposure", "Backtest risk (VaR)", "Live equity and risk", "Monte Carlo fan"),
    "Attribution": ("Strategies compared", "P&L by asset", "Model accuracy and IC"),
    "Trade analytics": ("Slippage by symbol", "Slippage by size", "Live fills vs decision", "Data quality"),
}
LIVE_SOURCES = ("live_fills", "live_positions", "live_equity")
# sources whose sheets may rightly draw nothing, and what an empty sheet means there
MAY_BE_EMPTY = {**{s: "no live run loaded yet: run `make live`" for s in LIVE_SOURCES},
                "data_quality": "nothing quarantined or dead-lettered"}


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


def _remote_type(column) -> int:
    kind = column.type
    if isinstance(kind, SmallInteger):
        return REMOTE_TYPES["smallint"]
    if isinstance(kind, BigInteger):
        return REMOTE_TYPES["bigint"]
    return REMOTE_TYPES[_datatype(column)]


def fields(star: Star) -> list[dict]:
    """Every physical column of the star: local name (unique), remote name, table, datatype."""
    out, seen = [], set()
    for table in (star.fact, *(d for d, _ in star.dims)):
        for column in table.__table__.columns:
            local = column.name if column.name not in seen else f"{column.name} ({table.__tablename__})"
            seen.add(column.name)
            out.append({"local": local, "remote": column.name, "table": table.__tablename__,
                        "datatype": _datatype(column), "remote_type": _remote_type(column),
                        "key": column.name.endswith("_key")})
    return out


def local_name(star: Star, table: type[dw.Base], column: str) -> str:
    """The local name of ``table.column`` in ``star`` (``name (dim_dataset)`` when an earlier
    table of the star has a ``name`` too)."""
    return next(f["local"] for f in fields(star) if f["table"] == table.__tablename__ and f["remote"] == column)


def referenced(formula: str) -> list[str]:
    """The field names a Tableau formula reads, in order."""
    return list(dict.fromkeys(re.findall(r"\[([^\]]+)\]", formula)))


def _connection_name(settings: Settings, extract: bool) -> str:
    pg = settings.platform.postgres
    tag = hashlib.sha1(f"{extract}{pg.host}{pg.port}{pg.database}".encode()).hexdigest()[:20]
    return f"{'hyper' if extract else 'postgres'}.{tag}"


def simple_id(*parts: str) -> str:
    """A stable ``{UUID}`` for a document element (the same on every build)."""
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "quantlake/" + "/".join(parts))).upper() + "}"


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


def _caption(f: dict) -> str:
    base = CAPTIONS.get(f"{f['table']}.{f['remote']}", CAPTIONS.get(f["remote"], f["remote"].replace("_", " ").capitalize()))
    return base if f["local"] == f["remote"] else f"{base} ({f['table'].removeprefix('dim_').removeprefix('fact_')})"


def captions(star: Star) -> dict[str, str]:
    """Local name -> caption of every field of ``star``, calculations included."""
    return {f["local"]: _caption(f) for f in fields(star)} | {n: c.caption for n, c in star.calculations.items()}


def datasource(settings: Settings, star: Star, extract: bool = False) -> ET.Element:
    """The ``<datasource>`` element of ``star`` on the warehouse (or on the extract)."""
    pg = settings.platform.postgres
    conn_name = _connection_name(settings, extract)
    root = ET.Element("datasource", {"caption": star.caption, "formatted-name": star.name, "inline": "true",
                                     "name": star.name, "version": DATASOURCE_VERSION})
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
        for tag, value in (("remote-name", f["remote"]), ("remote-type", str(f["remote_type"])),
                           ("local-name", f"[{f['local']}]"), ("parent-name", f"[{f['table']}]"),
                           ("remote-alias", f["remote"]), ("ordinal", str(i + 1)), ("local-type", f["datatype"]),
                           ("aggregation", DEFAULT_AGGREGATION[f["datatype"]]), ("contains-null", "true")):
            ET.SubElement(rec, tag).text = value
    for f in fields(star):
        numeric = f["datatype"] in ("real", "integer") and not f["key"]
        attrs = {"caption": _caption(f), "datatype": f["datatype"], "name": f"[{f['local']}]",
                 "role": "measure" if numeric else "dimension",
                 "type": "quantitative" if numeric or f["datatype"] in ("date", "datetime") else "nominal"}
        if f["key"]:
            attrs["hidden"] = "true"
        number_format = FORMATS.get(f"{f['table']}.{f['remote']}", FORMATS.get(f["remote"]))
        if number_format and numeric:
            attrs["default-format"] = number_format
        ET.SubElement(root, "column", attrs)
    for name, calc in star.calculations.items():
        measure = calc.datatype == "real"
        col = ET.SubElement(root, "column", {"caption": calc.caption, "datatype": calc.datatype, "name": f"[{name}]",
                                             "role": "measure" if measure else "dimension",
                                             "type": "quantitative" if measure else "nominal"})
        ET.SubElement(col, "calculation", {"class": "tableau", "formula": calc.formula})
    return root


def shelf_expression(source: str, shelves: tuple[Shelf, ...]) -> str:
    """A rows or columns shelf as Desktop writes it: dimensions nested with ``/``, then the
    measures concatenated with ``+`` (right-nested), e.g. ``([ds].[none:a:nk] / ([ds].[sum:b:qk]
    + [ds].[sum:c:qk]))``."""
    def ref(shelf: Shelf) -> str:
        return f"[{source}].{shelf.instance}"

    measures = [ref(s) for s in shelves if s.is_measure]
    blended = ""
    for m in reversed(measures):
        blended = m if not blended else f"({m} + {blended})"
    parts = [ref(s) for s in shelves if not s.is_measure] + ([blended] if blended else [])
    return parts[0] if len(parts) == 1 else "(" + " / ".join(parts) + ")" if parts else ""


def _member(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return f'"{value}"'


def _groupfilter(filt: Filter) -> ET.Element:
    ui = {f"{{{USER_NS}}}ui-domain": "database", f"{{{USER_NS}}}ui-enumeration": "inclusive",
          f"{{{USER_NS}}}ui-marker": "enumerate"}
    level = filt.shelf.instance
    if len(filt.members) == 1:
        return ET.Element("groupfilter", {"function": "member", "level": level, "member": _member(filt.members[0]),
                                          **ui})
    union = ET.Element("groupfilter", {"function": "union", **ui})
    for value in filt.members:
        ET.SubElement(union, "groupfilter", {"function": "member", "level": level, "member": _member(value)})
    return union


def _dependency_columns(sheet: Sheet, source: ET.Element) -> list[ET.Element]:
    """The ``<column>`` of every field the sheet uses, and of every field their calculations read."""
    columns = {c.get("name"): c for c in source.findall("column")}
    wanted: list[str] = []

    def add(name: str) -> None:
        if name in wanted:
            return
        wanted.append(name)
        for calc in columns[f"[{name}]"].findall("calculation"):
            for inner in referenced(calc.get("formula")):
                add(inner)

    for shelf in (*sheet.shelves, *(f.shelf for f in sheet.filters)):
        add(shelf.column)
    out = []
    for name in sorted(wanted):
        declared = columns[f"[{name}]"]
        copy = ET.Element("column", dict(declared.attrib))
        for calc in declared.findall("calculation"):
            copy.append(ET.Element("calculation", dict(calc.attrib)))
        out.append(copy)
    return out


def _worksheet(sheet: Sheet, source: ET.Element) -> ET.Element:
    ref = f"[{sheet.source}]."
    ws = ET.Element("worksheet", name=sheet.name)
    if sheet.description:
        ET.SubElement(ET.SubElement(ET.SubElement(ws, "layout-options"), "title"), "formatted-text").append(
            _run(sheet.description))
    table = ET.SubElement(ws, "table")
    view = ET.SubElement(table, "view")
    ET.SubElement(ET.SubElement(view, "datasources"), "datasource", caption=source.get("caption"),
                  name=sheet.source)
    deps = ET.SubElement(view, "datasource-dependencies", datasource=sheet.source)
    deps.extend(_dependency_columns(sheet, source))
    instances = {s.instance: s for s in (*sheet.shelves, *(f.shelf for f in sheet.filters))}
    for name in sorted(instances):
        shelf = instances[name]
        ET.SubElement(deps, "column-instance", column=f"[{shelf.column}]", derivation=shelf.derivation,
                      name=name, pivot="key", type=shelf.kind)
    for filt in sheet.filters:
        ET.SubElement(view, "filter", {"class": "categorical", "column": ref + filt.shelf.instance}).append(
            _groupfilter(filt))
    if sheet.filters:
        slices = ET.SubElement(view, "slices")
        for filt in sheet.filters:
            ET.SubElement(slices, "column").text = ref + filt.shelf.instance
    ET.SubElement(view, "aggregation", value="true")
    ET.SubElement(table, "style")
    pane = ET.SubElement(ET.SubElement(table, "panes"), "pane", {"selection-relaxation-option":
                                                                  "selection-relaxation-allow"})
    ET.SubElement(ET.SubElement(pane, "view"), "breakdown", value="auto")
    ET.SubElement(pane, "mark", {"class": sheet.mark})
    if sheet.color or sheet.text:
        encodings = ET.SubElement(pane, "encodings")
        if sheet.color:
            ET.SubElement(encodings, "color", column=ref + sheet.color.instance)
        if sheet.text:
            ET.SubElement(encodings, "text", column=ref + sheet.text.instance)
    ET.SubElement(table, "rows").text = shelf_expression(sheet.source, sheet.rows) or None
    ET.SubElement(table, "cols").text = shelf_expression(sheet.source, sheet.cols) or None
    ET.SubElement(ws, "simple-id", uuid=simple_id("worksheet", sheet.name))
    return ws


def _run(text: str) -> ET.Element:
    run = ET.Element("run")
    run.text = text
    return run


def _dashboard(name: str, members: tuple[str, ...]) -> ET.Element:
    """One dashboard: its sheets tiled two per row inside one root layout zone."""
    board = ET.Element("dashboard", name=name)
    ET.SubElement(board, "style")
    ET.SubElement(board, "size", maxheight="1200", maxwidth="1600", minheight="800", minwidth="1200")
    zones = ET.SubElement(board, "zones")
    root = ET.SubElement(zones, "zone", {"h": "100000", "id": "1", "type-v2": "layout-basic", "w": "100000",
                                         "x": "0", "y": "0"})
    rows = (len(members) + 1) // 2
    for i, sheet in enumerate(members):
        last_alone = i == len(members) - 1 and len(members) % 2 == 1
        w = 100000 if last_alone else 50000
        ET.SubElement(root, "zone", {"h": str(100000 // rows), "id": str(i + 2), "name": sheet, "w": str(w),
                                     "x": str((i % 2) * 50000), "y": str((i // 2) * (100000 // rows))})
    ET.SubElement(board, "simple-id", uuid=simple_id("dashboard", name))
    return board


def _worksheet_window(sheet: Sheet) -> ET.Element:
    window = ET.Element("window", {"class": "worksheet", "name": sheet.name})
    cards = ET.SubElement(window, "cards")
    left = ET.SubElement(ET.SubElement(cards, "edge", name="left"), "strip", size="160")
    for card in ("pages", "filters", "marks"):
        ET.SubElement(left, "card", type=card)
    top = ET.SubElement(cards, "edge", name="top")
    for card, size in (("columns", "2147483647"), ("rows", "2147483647"), ("title", "31")):
        ET.SubElement(ET.SubElement(top, "strip", size=size), "card", type=card)
    if sheet.color:
        right = ET.SubElement(ET.SubElement(cards, "edge", name="right"), "strip", size="160")
        ET.SubElement(right, "card", {"pane-specification-id": "0", "param": f"[{sheet.source}]."
                                      f"{sheet.color.instance}", "type": "color"})
    ET.SubElement(window, "simple-id", uuid=simple_id("window", sheet.name))
    return window


def _dashboard_window(name: str, members: tuple[str, ...]) -> ET.Element:
    window = ET.Element("window", {"class": "dashboard", "name": name})
    viewpoints = ET.SubElement(window, "viewpoints")
    for sheet in members:
        ET.SubElement(viewpoints, "viewpoint", name=sheet)
    ET.SubElement(window, "active", id="-1")
    ET.SubElement(window, "simple-id", uuid=simple_id("window", "dashboard", name))
    return window


def workbook(settings: Settings, extract: bool = False) -> ET.Element:
    """The workbook: every data source, one worksheet per :func:`sheets` and the dashboards of
    :data:`DASHBOARDS`."""
    root = ET.Element("workbook", {"original-version": VERSION, "source-build": SOURCE_BUILD,
                                   "source-platform": "linux", "version": VERSION})
    sources = {s.name: datasource(settings, s, extract) for s in stars(settings)}
    holder = ET.SubElement(root, "datasources")
    for element in sources.values():
        holder.append(element)
    worksheets = ET.SubElement(root, "worksheets")
    all_sheets = sheets(settings)
    for sheet in all_sheets:
        worksheets.append(_worksheet(sheet, sources[sheet.source]))
    boards = ET.SubElement(root, "dashboards")
    for name, members in DASHBOARDS.items():
        boards.append(_dashboard(name, members))
    windows = ET.SubElement(root, "windows", {"source-height": "30"})
    for sheet in all_sheets:
        windows.append(_worksheet_window(sheet))
    for name, members in DASHBOARDS.items():
        windows.append(_dashboard_window(name, members))
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
