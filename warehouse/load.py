"""Loads from the Delta lake into the star schema, one slice at a time, through COPY.

A *slice* is one partition of a source table for one dataset: a month of bars, a model
family's predictions, a strategy's backtest, a live date. Loading a slice is one transaction
as the loader role:

1. the source table's schema is compared with the catalog (a column added, missing or retyped
   fails, naming the table and column);
2. the slice is read with delta-rs (no Spark) and turned into fact rows, the dimensions it
   needs upserted (``INSERT ... ON CONFLICT``);
3. the fact's rows of that slice are deleted and the new ones copied in with ``COPY FROM STDIN``.

Any error rolls the transaction back: the warehouse keeps its previous state. A slice the
source no longer has while the warehouse does (a lost partition) is an error, never a delete.
:func:`reconcile` recomputes each slice's figures (row count and column sums) from the Delta
source and compares them with the warehouse's; the Dagster asset checks call it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from deltalake import DeltaTable
from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert

from config import Settings
from config.errors import UserError
from config.schemas.model import ModelFamily
from pipelines.backtest.performance import round_trips
from pipelines.lake.tables import (
    BACKTEST_EQUITY,
    BACKTEST_METRICS,
    BACKTEST_REJECTIONS,
    BACKTEST_TRADES,
    LIVE_DEAD_LETTERS,
    LIVE_EQUITY,
    LIVE_FILLS,
    LIVE_ORDERS,
    LIVE_POSITIONS,
    MONTECARLO_FAN,
    MONTECARLO_SUMMARY,
    PREDICTIONS,
    QUARANTINE,
    SILVER_BARS,
    Table,
)
from warehouse import schema as dw

# slice kind -> the Delta partition column that holds it
PARTITION_COLUMN = {"month": "month", "date": "date", "strategy": "strategy", "family": "model"}
_DELTA_TYPES = {"int": "integer"}  # Spark DDL names that Delta spells differently
BASELINES = ("always_up", "momentum_sign")


class LoadError(UserError):
    """A load that cannot run; the message names the source table and column or partition."""


@dataclass(frozen=True)
class Slice:
    """One partition of one dataset: ``kind`` is month (``yyyy-mm``), date, strategy or family."""

    dataset: str
    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.dataset}/{self.kind}={self.value}"


@dataclass(frozen=True)
class Spec:
    """How one fact table is loaded from its Delta source and reconciled with it.

    ``build`` turns the source rows of a slice into fact rows (dimension keys resolved through
    :class:`Dims`); ``expect`` computes the reconciliation figures from the same source rows
    independently of ``build``; ``figures`` gives the SQL aggregate behind each figure.
    """

    fact: type[dw.Base]
    source: Table
    kind: str
    build: Callable[[pd.DataFrame, Dims, Slice], pd.DataFrame]
    figures: dict[str, str]
    expect: Callable[[pd.DataFrame], dict[str, float]]
    keep: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame  # the source rows this fact takes
    where: str = ""  # an extra condition on the fact's rows (facts sharing a table)

    @property
    def name(self) -> str:
        return self.fact.__tablename__


@dataclass
class SliceLoad:
    """What one slice's load did."""

    fact: str
    slice: Slice
    rows: int
    replaced: int
    seconds: float


# ---------------------------------------------------------------- reading the lake


def check_schema(table: Table, path: str) -> None:
    """Fail when the Delta table at ``path`` drifted from the catalog's declaration of ``table``.

    Raises:
        LoadError: a declared column is missing (renamed or dropped) or has another type, or
            the table has a column the catalog does not declare; the message names both.
    """
    declared = {name: kind for name, kind in (p.strip().split(None, 1) for p in table.schema.split(","))}
    actual = {f.name: getattr(f.type, "type", str(f.type)) for f in DeltaTable(path).schema().fields}
    label = f"{table.layer}/{table.name}"
    for name, kind in declared.items():
        if name not in actual:
            raise LoadError(f"source {label} ({path}): column {name!r} is missing (renamed or dropped?); "
                            f"the warehouse load expects {table.schema}")
        if actual[name] != _DELTA_TYPES.get(kind, kind):
            raise LoadError(f"source {label} ({path}): column {name!r} is {actual[name]}, expected {kind}")
    extra = sorted(set(actual) - set(declared) - set(table.partition_by) - {"month"})
    if extra:
        raise LoadError(f"source {label} ({path}): column {extra[0]!r} is not in the catalog (added?); "
                        f"declare it in pipelines/lake/tables.py and the warehouse schema first")


def table_path(settings: Settings, table: Table, dataset: str) -> str | None:
    """The Delta table's folder, or None when the table was never written."""
    path = table.path(settings, dataset)
    return path if (Path(path) / "_delta_log").exists() else None


def source_values(settings: Settings, table: Table, dataset: str, kind: str) -> list[str]:
    """The partition values (months, dates, strategies, families) the source holds."""
    path = table_path(settings, table, dataset)
    if path is None:
        return []
    column = PARTITION_COLUMN[kind]
    check_schema(table, path)
    values = DeltaTable(path).to_pyarrow_table(columns=[column]).column(column).unique().to_pylist()
    return sorted(v for v in values if v is not None)


def read_slices(settings: Settings, table: Table, pieces: Sequence[Slice]) -> dict[Slice, pd.DataFrame]:
    """The rows of each of ``pieces`` (one dataset, one kind) in ``table``, read in one scan
    (empty frames for partitions the table lacks)."""
    empty = pd.DataFrame(columns=table.columns)
    if not pieces:
        return {}
    path = table_path(settings, table, pieces[0].dataset)
    if path is None:
        return {p: empty for p in pieces}
    check_schema(table, path)
    column = PARTITION_COLUMN[pieces[0].kind]
    frame = DeltaTable(path).to_pyarrow_table(filters=[(column, "in", [p.value for p in pieces])]).to_pandas()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype) or name == "ts":
            frame[name] = pd.to_datetime(frame[name], utc=True)
    parts = dict(tuple(frame.groupby(column, sort=False))) if len(frame) else {}
    return {p: parts[p.value].reset_index(drop=True) if p.value in parts else empty for p in pieces}


def read_slice(settings: Settings, table: Table, piece: Slice) -> pd.DataFrame:
    """The rows of ``piece`` in ``table`` (empty when the table or the partition has none)."""
    return read_slices(settings, table, [piece])[piece]


# ---------------------------------------------------------------- dimensions


def date_key(day: date | pd.Timestamp | str) -> int:
    day = pd.Timestamp(day)
    return day.year * 10000 + day.month * 100 + day.day


def _keys(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts, utc=True)
    return ts.dt.year * 10000 + ts.dt.month * 100 + ts.dt.day


class Dims:
    """Dimension keys for one load's transaction, upserting the members it has not seen."""

    def __init__(self, conn: Connection, settings: Settings, registry: dict | None = None) -> None:
        self.conn, self.settings = conn, settings
        self.registry = registry or {}  # (run id, family) -> registry facts, from registry_info()
        self._symbols: dict[str, int] = {}
        self._strategies: dict[str, int] = {}
        self._datasets: dict[str, int] = {}
        self._sectors: dict[str, tuple[str, str]] | None = None

    def dates(self, keys: Iterable[int]) -> None:
        """Make sure every ``yyyymmdd`` key of ``keys`` is in ``dim_date``."""
        days = pd.to_datetime(pd.Series(sorted({int(k) for k in keys}), dtype="int64").astype(str), format="%Y%m%d")
        if days.empty:
            return
        rows = [{"date_key": date_key(d), "date": d.date(), "year": d.year, "quarter": d.quarter, "month": d.month,
                 "day": d.day, "weekday": d.weekday(), "is_month_end": bool(d.is_month_end)} for d in days]
        self.conn.execute(insert(dw.DimDate).on_conflict_do_nothing(), rows)

    def _sector_table(self) -> dict[str, tuple[str, str]]:
        if self._sectors is None:
            self._sectors = {}
            path = self.settings.platform.warehouse.symbols_file
            if path is not None:
                from config.settings import PROJECT_ROOT

                path = path if path.is_absolute() else PROJECT_ROOT / path
                if path.exists():
                    known = pd.read_csv(path)
                    self._sectors = {r.Symbol: (r.Name, r.Sector) for r in known.itertuples(index=False)}
        return self._sectors

    def symbols(self, names: Iterable[str]) -> dict[str, int]:
        """``symbol -> symbol_key`` for ``names`` (name and sector from ``warehouse.symbols_file``)."""
        wanted = sorted(set(names) - set(self._symbols))
        if wanted:
            known = self._sector_table()
            rows = [{"symbol": s, "name": known.get(s, (None, None))[0], "sector": known.get(s, (None, None))[1]}
                    for s in wanted]
            stmt = insert(dw.DimSymbol)
            self.conn.execute(stmt.on_conflict_do_update(index_elements=["symbol"],
                                                         set_={"name": stmt.excluded.name,
                                                               "sector": stmt.excluded.sector}), rows)
            found = self.conn.execute(text("SELECT symbol, symbol_key FROM dw.dim_symbol WHERE symbol = ANY(:s)"),
                                      {"s": wanted})
            self._symbols.update(dict(found.all()))
        return self._symbols

    def dataset(self, name: str) -> int:
        if name not in self._datasets:
            source = self.settings.data.source if name == self.settings.data.dataset else None
            stmt = insert(dw.DimDataset).values(name=name, source=source)
            self.conn.execute(stmt.on_conflict_do_nothing())
            self._datasets[name] = self.conn.execute(text("SELECT dataset_key FROM dw.dim_dataset WHERE name = :n"),
                                                     {"n": name}).scalar_one()
        return self._datasets[name]

    def strategy(self, name: str, strategy: str | None = None, params: str | None = None,
                 family: str | None = None) -> int:
        """The key of ``name`` (a backtest run ``<strategy>_<model>`` or a live strategy); with
        ``strategy`` and ``params`` (JSON), the row is brought up to date with what the run used."""
        family = family or _family(name)
        if name not in self._strategies or strategy is not None:
            stmt = insert(dw.DimStrategy).values(name=name, family=family, is_baseline=family in BASELINES,
                                                 strategy=strategy, params=params)
            if strategy is not None:
                stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={
                    "family": stmt.excluded.family, "is_baseline": stmt.excluded.is_baseline,
                    "strategy": stmt.excluded.strategy, "params": stmt.excluded.params})
            else:
                stmt = stmt.on_conflict_do_nothing()
            self.conn.execute(stmt)
            self._strategies[name] = self.conn.execute(
                text("SELECT strategy_key FROM dw.dim_strategy WHERE name = :n"), {"n": name}).scalar_one()
        return self._strategies[name]

    def model(self, dataset: str, family: str, run_id: str, oos: pd.DataFrame, registry: dict) -> int:
        """The ``dim_model`` row of one family's run, its out-of-sample figures from ``oos``."""
        labelled = oos.dropna(subset=["direction"])
        accuracy = float(((labelled["p_up"] > 0.5) == (labelled["direction"] > 0.5)).mean()) if len(labelled) else None
        ranked = oos.dropna(subset=["expected_return", "fwd_return"])
        ic = (float(ranked["expected_return"].rank().corr(ranked["fwd_return"].rank())) if len(ranked) > 2 else None)
        info = registry.get((run_id, family), {})
        values = {"dataset_key": self.dataset(dataset), "family": family, "run_id": run_id,
                  "registered_name": info.get("name"), "version": info.get("version"), "aliases": info.get("aliases"),
                  "train_start": info.get("data_start"), "train_end": info.get("data_end"),
                  "oos_start": oos["ts"].min().to_pydatetime(), "oos_end": oos["ts"].max().to_pydatetime(),
                  "oos_rows": len(oos), "oos_accuracy": accuracy, "oos_ic": None if ic is None or math.isnan(ic) else ic}
        stmt = insert(dw.DimModel).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["dataset_key", "family", "run_id"],
                                          set_={k: stmt.excluded[k] for k in values
                                                if k not in ("dataset_key", "family", "run_id")})
        self.conn.execute(stmt)
        return self.conn.execute(text("SELECT model_key FROM dw.dim_model WHERE dataset_key = :d AND family = :f "
                                      "AND run_id = :r"), {"d": values["dataset_key"], "f": family,
                                                           "r": run_id}).scalar_one()


# ---------------------------------------------------------------- the facts


def _sum(frame: pd.DataFrame, column: str) -> float:
    """The column's sum as the warehouse holds it: NaN and inf load as NULL, which SUM skips."""
    if not len(frame):
        return 0.0
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return float(values[np.isfinite(values)].sum())


def _plain(columns: Sequence[str]) -> tuple[dict[str, str], Callable[[pd.DataFrame], dict[str, float]]]:
    """Figures of a one-row-per-source-row fact: the count and the sums of ``columns``."""
    return ({"rows": "count(*)", **{c: f"coalesce(sum({c}), 0)" for c in columns}},
            lambda src: {"rows": float(len(src)), **{c: _sum(src, c) for c in columns}})


def _with_keys(frame: pd.DataFrame, dims: Dims, piece: Slice, symbol: bool = True, day: bool = True,
               strategy: str | None = None) -> pd.DataFrame:
    out = frame.copy()
    out["dataset_key"] = dims.dataset(piece.dataset)
    if symbol:
        keys = dims.symbols(out["symbol"].unique())
        out["symbol_key"] = out["symbol"].map(keys)
    if day:
        out["date_key"] = _keys(out["ts"])
        dims.dates(out["date_key"].unique())
    if strategy is not None:
        out["strategy_key"] = dims.strategy(strategy)
    return out


def _daily_bars(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    bars = _with_keys(src.sort_values("ts"), dims, piece)
    bars["pv"] = bars["vwap"].fillna(bars["close"]) * bars["volume"]
    day = bars.groupby(["symbol_key", "date_key"], sort=True)
    out = day.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
                  volume=("volume", "sum"), pv=("pv", "sum"), bars=("ts", "size")).reset_index()
    out["vwap"] = np.where(out["volume"] > 0, out["pv"] / out["volume"].where(out["volume"] > 0, 1), np.nan)
    return out.assign(dataset_key=dims.dataset(piece.dataset))


def _predictions(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    out = _with_keys(src, dims, piece)
    out["model_key"] = 0
    for run_id, part in out.groupby("run_id"):
        out.loc[part.index, "model_key"] = dims.model(piece.dataset, piece.value, run_id, part, dims.registry)
    labelled = out["direction"].notna()
    out["hit"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out.loc[labelled, "hit"] = ((out.loc[labelled, "p_up"] > 0.5) == (out.loc[labelled, "direction"] > 0.5)).astype(int)
    return out


def _equity_days(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    bars = _with_keys(src.sort_values("ts"), dims, piece, symbol=False, strategy=piece.value)
    bars["growth"] = 1.0 + bars["returns"]
    day = bars.groupby("date_key", sort=True)
    out = day.agg(equity=("equity", "last"), gross_exposure=("gross_exposure", "last"), growth=("growth", "prod"),
                  bars=("ts", "size")).reset_index()
    out["daily_return"] = out["growth"] - 1.0
    peak = out["equity"].cummax()
    out["drawdown"] = (1.0 - out["equity"] / peak).clip(lower=0.0)
    return out.assign(dataset_key=dims.dataset(piece.dataset), strategy_key=dims.strategy(piece.value))


def _trips(src: pd.DataFrame) -> pd.DataFrame:
    trips = round_trips(src[["t", "symbol", "quantity", "price", "cost"]]) if len(src) else \
        pd.DataFrame(columns=["symbol", "pnl", "return"])
    return trips.assign(trip=trips.groupby("symbol").cumcount()).rename(columns={"return": "trip_return"})


def _round_trips(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    return _with_keys(_trips(src), dims, piece, day=False, strategy=piece.value)


def _fan(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    return _with_keys(src, dims, piece, symbol=False, strategy=piece.value)


def _per_strategy(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    return _with_keys(src, dims, piece, symbol=False, day=False, strategy=piece.value)


def _metrics(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    """A run's figures; its strategy's name and parameters go to ``dim_strategy``."""
    if "strategy_name" in src and src["strategy_name"].notna().any():
        first = src.iloc[0]
        dims.strategy(piece.value, str(first["strategy_name"]), str(first["params"]), str(first["model"]))
    return _per_strategy(src, dims, piece)


def _family(name: str) -> str:
    """The model family a strategy name ends with (``threshold_lstm``: ``lstm``), else the name."""
    families = sorted(ModelFamily.__args__, key=len, reverse=True)
    return next((f for f in families if name == f or name.endswith(f"_{f}")), name)


def _trades(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    return _with_keys(src, dims, piece, strategy=piece.value)


def _live(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    out = _with_keys(src, dims, piece)
    if "limit_hit" in out:
        out["limit_hit"] = out["limit_hit"].fillna("unspecified")
    if "strategy" in out:
        out["strategy_key"] = out["strategy"].map({s: dims.strategy(s) for s in out["strategy"].unique()})
    return out


def _live_equity(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
    out = _with_keys(src, dims, piece, symbol=False)
    out["drawdown"] = (1.0 - out["equity"] / out["peak_equity"].where(out["peak_equity"] > 0)).clip(lower=0.0)
    return out


def _quality(stage: str) -> Callable[[pd.DataFrame, Dims, Slice], pd.DataFrame]:
    def build(src: pd.DataFrame, dims: Dims, piece: Slice) -> pd.DataFrame:
        frame = src.assign(source_table=src["table"] if "table" in src else src["topic"],
                           reason=src["reason"].fillna("unknown").str.slice(0, 300))
        day = frame["date"].fillna(pd.to_datetime(frame["ts"], utc=True).dt.strftime("%Y-%m-%d"))
        frame["date_key"] = day.fillna(piece.value if piece.kind == "date" else f"{piece.value}-01") \
            .str.replace("-", "").astype(int)
        dims.dates(frame["date_key"].unique())
        out = frame.groupby(["date_key", "source_table", "reason"]).size().rename("rows").reset_index()
        return out.assign(dataset_key=dims.dataset(piece.dataset), stage=stage)
    return build


def _quality_expect(src: pd.DataFrame) -> dict[str, float]:
    table = src["table"] if "table" in src else src["topic"]
    groups = src.assign(t=table, r=src["reason"].fillna("unknown").str.slice(0, 300)).groupby(["date", "t", "r"])
    return {"rows": float(groups.ngroups), "records": float(len(src))}


def _bars_expect(src: pd.DataFrame) -> dict[str, float]:
    days = pd.to_datetime(src["ts"], utc=True).dt.date
    return {"rows": float(len(src.assign(d=days)[["symbol", "d"]].drop_duplicates())),
            "volume": _sum(src, "volume"), "bars": float(len(src))}


def _equity_expect(src: pd.DataFrame) -> dict[str, float]:
    days = pd.to_datetime(src["ts"], utc=True).dt.date
    return {"rows": float(days.nunique()), "log_growth": float(np.log1p(src["returns"].to_numpy(dtype=float)).sum())}


_rejected = lambda frame: frame[frame["status"] == "REJECTED"]  # noqa: E731
_pred_f, _pred_e = _plain(["p_up", "fwd_return"])
_trade_f, _trade_e = _plain(["quantity", "cost"])
_metric_f, _metric_e = _plain(["value"])
_mc_f, _mc_e = _plain(["median"])
_fan_f, _fan_e = _plain(["q50"])
_order_f, _order_e = _plain(["qty"])
_rej_f, _rej_e = _plain([])
_fill_f, _fill_e = _plain(["qty", "fee"])
_pos_f, _pos_e = _plain(["qty"])
_eq_f, _eq_e = _plain(["equity"])

RESEARCH_MONTHLY = (
    Spec(dw.FactDailyBar, SILVER_BARS, "month", _daily_bars,
         {"rows": "count(*)", "volume": "coalesce(sum(volume), 0)", "bars": "coalesce(sum(bars), 0)"}, _bars_expect),
    Spec(dw.FactDataQuality, QUARANTINE, "month", _quality("quarantine"),
         {"rows": "count(*)", "records": "coalesce(sum(rows), 0)"}, _quality_expect, where="stage = 'quarantine'"),
)
PREDICTIONS_SPECS = (Spec(dw.FactPrediction, PREDICTIONS, "family", _predictions, _pred_f, _pred_e),)
BACKTEST_SPECS = (
    Spec(dw.FactBacktestEquity, BACKTEST_EQUITY, "strategy", _equity_days,
         {"rows": "count(*)", "log_growth": "coalesce(sum(ln(1 + daily_return)), 0)"}, _equity_expect),
    Spec(dw.FactBacktestTrade, BACKTEST_TRADES, "strategy", _trades, _trade_f, _trade_e),
    Spec(dw.FactBacktestRoundTrip, BACKTEST_TRADES, "strategy", _round_trips,
         {"rows": "count(*)", "pnl": "coalesce(sum(pnl), 0)"},
         lambda src: {"rows": float(len(_trips(src))), "pnl": _sum(_trips(src), "pnl")}),
    Spec(dw.FactBacktestMetric, BACKTEST_METRICS, "strategy", _metrics, _metric_f, _metric_e),
    Spec(dw.FactBacktestRejection, BACKTEST_REJECTIONS, "strategy", _trades, *_plain(["quantity"])),
    Spec(dw.FactMontecarloSummary, MONTECARLO_SUMMARY, "strategy", _per_strategy, _mc_f, _mc_e),
    Spec(dw.FactMontecarloFan, MONTECARLO_FAN, "strategy", _fan, _fan_f, _fan_e),
)
LIVE_SPECS = (
    Spec(dw.FactLiveOrder, LIVE_ORDERS, "date", _live, _order_f, _order_e),
    Spec(dw.FactLiveRejection, LIVE_ORDERS, "date", _live, _rej_f, _rej_e, keep=_rejected),
    Spec(dw.FactLiveFill, LIVE_FILLS, "date", _live, _fill_f, _fill_e),
    Spec(dw.FactLivePosition, LIVE_POSITIONS, "date", _live, _pos_f, _pos_e),
    Spec(dw.FactLiveEquity, LIVE_EQUITY, "date", _live_equity, _eq_f, _eq_e),
    Spec(dw.FactDataQuality, LIVE_DEAD_LETTERS, "date", _quality("dead_letter"),
         {"rows": "count(*)", "records": "coalesce(sum(rows), 0)"}, _quality_expect, where="stage = 'dead_letter'"),
)
GROUPS: dict[str, tuple[Spec, ...]] = {"bars": RESEARCH_MONTHLY, "predictions": PREDICTIONS_SPECS,
                                       "backtests": BACKTEST_SPECS, "live": LIVE_SPECS}


# ---------------------------------------------------------------- writing


def slice_where(conn: Connection, spec: Spec, piece: Slice) -> tuple[str, dict]:
    """The SQL condition selecting ``piece``'s rows of ``spec``'s fact, with its parameters."""
    dataset = conn.execute(text("SELECT dataset_key FROM dw.dim_dataset WHERE name = :n"),
                           {"n": piece.dataset}).scalar()
    params: dict = {"d": -1 if dataset is None else dataset}
    clauses = ["dataset_key = :d"]
    if piece.kind == "month":
        start = int(piece.value.replace("-", "")) * 100
        clauses.append("date_key BETWEEN :lo AND :hi")
        params.update(lo=start + 1, hi=start + 31)
    elif piece.kind == "date":
        clauses.append("date_key = :day")
        params["day"] = date_key(piece.value)
    elif piece.kind == "strategy":
        clauses.append("strategy_key = (SELECT strategy_key FROM dw.dim_strategy WHERE name = :v)")
        params["v"] = piece.value
    elif piece.kind == "family":
        clauses.append("model_key IN (SELECT model_key FROM dw.dim_model WHERE dataset_key = :d AND family = :v)")
        params["v"] = piece.value
    if spec.where:
        clauses.append(spec.where)
    return " AND ".join(clauses), params


def copy_rows(conn: Connection, fact: type[dw.Base], frame: pd.DataFrame) -> int:
    """``COPY`` the fact's columns of ``frame`` into its table (NaN and inf become NULL).

    The CSV is written by Arrow's C++ writer (timestamps as ISO-8601 in UTC, nulls as empty
    fields), several times faster than pandas' for timestamp columns."""
    columns = [c.name for c in fact.__table__.columns]
    out = frame[columns].replace([np.inf, -np.inf], np.nan)
    for column in fact.__table__.columns:  # an integer column with a gap must not print as "3.0"
        if column.type.python_type is int and not pd.api.types.is_integer_dtype(out[column.name]):
            out[column.name] = pd.to_numeric(out[column.name]).round().astype("Int64")
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(out, preserve_index=False), buffer,
                    pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {dw.SCHEMA}.{fact.__tablename__} ({', '.join(columns)}) FROM STDIN "
                           f"WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()
    return len(out)


def load_slice(conn: Connection, spec: Spec, piece: Slice, source: pd.DataFrame, dims: Dims) -> SliceLoad:
    """Replace ``piece``'s rows of ``spec``'s fact by those built from ``source`` (in ``conn``'s
    transaction). A slice the source lacks while the warehouse has it fails (lost partition)."""
    started = time.monotonic()
    kept = spec.keep(source)
    where, params = slice_where(conn, spec, piece)
    held = conn.execute(text(f"SELECT count(*) FROM dw.{spec.name} WHERE {where}"), params).scalar_one()
    if source.empty and held:
        raise LoadError(f"source {spec.source.layer}/{spec.source.name}: partition "
                        f"{PARTITION_COLUMN[piece.kind]}={piece.value} of dataset {piece.dataset} is missing, "
                        f"but dw.{spec.name} holds {held} rows of it; the warehouse is left as it was")
    rows = spec.build(kept, dims, piece) if len(kept) else None
    where, params = slice_where(conn, spec, piece)  # the dimension keys may be new
    replaced = conn.execute(text(f"DELETE FROM dw.{spec.name} WHERE {where}"), params).rowcount
    copied = copy_rows(conn, spec.fact, rows) if rows is not None else 0
    return SliceLoad(spec.name, piece, copied, replaced, time.monotonic() - started)


def load(settings: Settings, engine: Engine, specs: Sequence[Spec], pieces: Sequence[Slice],
         registry: dict | None = None, progress: Callable[[str], None] | None = None) -> list[SliceLoad]:
    """Load every slice in ``pieces`` of every fact in ``specs`` (of that slice kind), all in
    one transaction: either every slice lands or the warehouse keeps its previous state."""
    done: list[SliceLoad] = []
    with engine.begin() as conn:
        dims = Dims(conn, settings, registry)
        for kind in dict.fromkeys(p.kind for p in pieces):
            batch = [p for p in pieces if p.kind == kind]
            kind_specs = [s for s in specs if s.kind == kind]
            sources = {t.name: read_slices(settings, t, batch) for t in {s.source for s in kind_specs}}
            for piece in batch:
                for spec in kind_specs:
                    done.append(load_slice(conn, spec, piece, sources[spec.source.name][piece], dims))
                    _report(progress, done[-1])
                for frames in sources.values():
                    frames.pop(piece)  # a slice's rows are freed once loaded
    return done


def _report(progress: Callable[[str], None] | None, last: SliceLoad) -> None:
    if progress:
        progress(f"{last.fact:<26} {str(last.slice):<40} {last.rows:>9,} rows ({last.replaced:,} replaced) "
                 f"{last.seconds:.2f}s")


def reconcile(settings: Settings, engine: Engine, specs: Sequence[Spec], pieces: Sequence[Slice],
              rel_tol: float = 1e-9) -> list[str]:
    """Compare each slice's figures in the warehouse with those recomputed from the Delta source;
    return one line per difference (empty when every figure agrees)."""
    problems = []
    with engine.connect() as conn:
        for spec in specs:
            batch = [p for p in pieces if p.kind == spec.kind]
            for piece, source in read_slices(settings, spec.source, batch).items():
                expected = spec.expect(spec.keep(source))
                where, params = slice_where(conn, spec, piece)
                sql = ", ".join(f"{expr} AS {name}" for name, expr in spec.figures.items())
                found = conn.execute(text(f"SELECT {sql} FROM dw.{spec.name} WHERE {where}"), params).one()._asdict()
                for name, want in expected.items():
                    got = float(found[name] or 0.0)
                    if not math.isclose(got, want, rel_tol=rel_tol, abs_tol=1e-6):
                        problems.append(f"dw.{spec.name} {piece}: {name} is {got!r} in the warehouse, "
                                        f"{want!r} in {spec.source.layer}/{spec.source.name}")
    return problems


def slices(settings: Settings, specs: Sequence[Spec], dataset: str | None = None,
           values: Iterable[str] | None = None) -> list[Slice]:
    """The slices to load: ``values`` when given, else every partition the sources hold."""
    dataset = dataset or settings.data.dataset
    kinds = sorted({s.kind for s in specs})
    out = []
    for kind in kinds:
        found = sorted(set(values)) if values is not None else sorted(
            {v for spec in specs if spec.kind == kind for v in source_values(settings, spec.source, dataset, kind)})
        out += [Slice(dataset, kind, v) for v in found]
    return out


def live_slices(settings: Settings, engine: Engine, dataset: str | None = None) -> list[Slice]:
    """The live dates to load: those the warehouse has not loaded yet, its newest (still
    growing while the account trades), and any whose equity at the closes differs from the
    lake's (a fresh paper run replayed the same dates); other loaded dates are final and left
    alone."""
    dataset = dataset or settings.data.dataset
    found = slices(settings, LIVE_SPECS, dataset)
    with engine.connect() as conn:
        loaded = set(conn.execute(text(
            "SELECT DISTINCT f.date_key FROM dw.fact_live_equity f JOIN dw.dim_dataset d USING (dataset_key) "
            "WHERE d.name = :n UNION SELECT DISTINCT f.date_key FROM dw.fact_live_order f JOIN dw.dim_dataset d "
            "USING (dataset_key) WHERE d.name = :n"), {"n": dataset}).scalars())
        warehouse = {k: (n, total) for k, n, total in conn.execute(text(
            "SELECT f.date_key, count(*), sum(f.equity) FROM dw.fact_live_equity f JOIN dw.dim_dataset d "
            "USING (dataset_key) WHERE d.name = :n GROUP BY f.date_key"), {"n": dataset})}
    newest = max(loaded, default=0)
    lake = _equity_by_date(settings, dataset)
    changed = {k for k, (n, total) in lake.items()
               if k in warehouse and (warehouse[k][0] != n or not math.isclose(warehouse[k][1], total, rel_tol=1e-12))}
    return [p for p in found if date_key(p.value) not in loaded or date_key(p.value) >= newest
            or date_key(p.value) in changed]


def _equity_by_date(settings: Settings, dataset: str) -> dict[int, tuple[int, float]]:
    """Per date key, the lake's live equity rows: how many, and their equities summed."""
    path = table_path(settings, LIVE_EQUITY, dataset)
    if path is None:
        return {}
    frame = DeltaTable(path).to_pandas(columns=["date", "equity"])
    return {date_key(d): (len(g), float(g["equity"].sum())) for d, g in frame.groupby("date")}


def months_between(start: date, end: date) -> list[str]:
    """The ``yyyy-mm`` month partitions from ``start`` to ``end``."""
    return [p.strftime("%Y-%m") for p in pd.period_range(start, end, freq="M")]


def registry_info(settings: Settings) -> dict[tuple[str, str], dict]:
    """``(training run id, family) -> registry name, version, aliases, data span`` from MLflow
    (empty when MLflow cannot be reached: the model dimension then names only run and family)."""
    try:
        from mlflow import MlflowClient

        from models.tracking import configure_mlflow

        configure_mlflow(settings)
        client = MlflowClient()
        name = settings.platform.mlflow.registered_model
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        out, spans = {}, {}
        for mv in client.search_model_versions(f"name = '{name}'", max_results=1000):
            parent = mv.tags.get("parent_run_id")
            if not parent or "family" not in mv.tags:
                continue
            if parent not in spans:
                params = client.get_run(parent).data.params
                spans[parent] = {"data_start": params.get("data_start"), "data_end": params.get("data_end")}
            out[(parent, mv.tags["family"])] = {"name": name, "version": str(mv.version),
                                                "aliases": ",".join(sorted(aliases.get(str(mv.version), []))) or None,
                                                **spans[parent]}
        return out
    except Exception:  # noqa: BLE001 (MLflow down or no registered model yet)
        return {}
