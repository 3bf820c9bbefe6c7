"""The warehouse's star schema (PostgreSQL schema ``dw``), as SQLAlchemy 2 declarative models.

Dimensions: :class:`DimDate`, :class:`DimSymbol`, :class:`DimDataset`, :class:`DimModel` (one
walk-forward run of one family, with its registry name, version and aliases when registered)
and :class:`DimStrategy`. Facts: daily bars, out-of-sample predictions, backtest equity (daily),
trades, round trips and metrics, Monte Carlo summaries and fan quantiles, data-quality counts,
and the live orders, rejections, fills, position and equity snapshots.

:class:`ApiKey` (PostgreSQL schema ``api``, its own metadata) holds the REST/WebSocket API's keys,
hashed: the API reads them as ``warehouse.api_role``.

Every fact carries ``dataset_key``: a load replaces one slice of one dataset (a month, a
strategy, a model family or a live date), and the dashboards filter by dataset first. The
Alembic migrations in ``warehouse/migrations`` create exactly these tables (a test compares them).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "dw"
API_SCHEMA = "api"
SCOPES = ("read", "trade", "admin")

NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING)


def _fk(target: str) -> ForeignKey:
    return ForeignKey(f"{SCHEMA}.{target}")


# ---------------------------------------------------------------- dimensions


class DimDate(Base):
    """One calendar day; ``date_key`` is ``yyyymmdd``."""

    __tablename__ = "dim_date"
    __table_args__ = (CheckConstraint("month BETWEEN 1 AND 12", name="month"),
                      CheckConstraint("quarter BETWEEN 1 AND 4", name="quarter"),
                      CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"))

    date_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    date: Mapped[dt.date] = mapped_column(Date, unique=True)
    year: Mapped[int] = mapped_column(SmallInteger)
    quarter: Mapped[int] = mapped_column(SmallInteger)
    month: Mapped[int] = mapped_column(SmallInteger)
    day: Mapped[int] = mapped_column(SmallInteger)
    weekday: Mapped[int] = mapped_column(SmallInteger, comment="Monday = 0")
    is_month_end: Mapped[bool] = mapped_column(Boolean)


class DimSymbol(Base):
    __tablename__ = "dim_symbol"

    symbol_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    sector: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))


class DimDataset(Base):
    __tablename__ = "dim_dataset"

    dataset_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str | None] = mapped_column(String(50))


class DimModel(Base):
    """One family's out-of-sample run: which MLflow run made the predictions and, when that run
    was registered, the registry's name, version and aliases at load time."""

    __tablename__ = "dim_model"
    __table_args__ = (UniqueConstraint("dataset_key", "family", "run_id"),
                      CheckConstraint("oos_accuracy BETWEEN 0 AND 1", name="accuracy"))

    model_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"))
    family: Mapped[str] = mapped_column(String(50))
    run_id: Mapped[str] = mapped_column(String(64))
    registered_name: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str | None] = mapped_column(String(20))
    aliases: Mapped[str | None] = mapped_column(String(200))
    train_start: Mapped[dt.datetime | None] = mapped_column(TS)
    train_end: Mapped[dt.datetime | None] = mapped_column(TS)
    oos_start: Mapped[dt.datetime] = mapped_column(TS)
    oos_end: Mapped[dt.datetime] = mapped_column(TS)
    oos_rows: Mapped[int] = mapped_column(BigInteger)
    oos_accuracy: Mapped[float | None] = mapped_column(Double)
    oos_ic: Mapped[float | None] = mapped_column(Double, comment="Spearman rank IC of expected_return vs fwd_return")


class DimStrategy(Base):
    """A backtest run (``<strategy>_<model>``) or a live account's strategy: the strategy's name
    and parameters (as the run used them), the model family it traded."""

    __tablename__ = "dim_strategy"

    strategy_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    family: Mapped[str | None] = mapped_column(String(50), comment="the model family whose predictions it trades")
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    strategy: Mapped[str | None] = mapped_column(String(100), comment="the strategy: threshold, topk_dropout, ...")
    params: Mapped[str | None] = mapped_column(String(2000), comment="the strategy's parameters (JSON)")


# ---------------------------------------------------------------- research facts


class FactDailyBar(Base):
    """Silver bars resampled to days (first open, max high, min low, last close, summed volume)."""

    __tablename__ = "fact_daily_bar"
    __table_args__ = (CheckConstraint("high >= low", name="high_low"), CheckConstraint("volume >= 0", name="volume"),
                      CheckConstraint("bars > 0", name="bars"),
                      Index(None, "symbol_key", "date_key"))

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"), primary_key=True)
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float] = mapped_column(Double)
    vwap: Mapped[float | None] = mapped_column(Double)
    bars: Mapped[int] = mapped_column(Integer, comment="source bars in the day")


class FactPrediction(Base):
    __tablename__ = "fact_prediction"
    __table_args__ = (CheckConstraint("p_up BETWEEN 0 AND 1", name="p_up"),
                      Index(None, "dataset_key", "model_key", "date_key"))

    model_key: Mapped[int] = mapped_column(_fk("dim_model.model_key"), primary_key=True)
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS, primary_key=True)
    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"))
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    fold: Mapped[int] = mapped_column(Integer)
    p_up: Mapped[float] = mapped_column(Double)
    expected_return: Mapped[float | None] = mapped_column(Double)
    direction: Mapped[float | None] = mapped_column(Double, comment="the realised label: 1 up, 0 down")
    fwd_return: Mapped[float | None] = mapped_column(Double)
    hit: Mapped[int | None] = mapped_column(SmallInteger, comment="1 when p_up > 0.5 called the direction")


class FactBacktestEquity(Base):
    """The backtest's per-bar equity resampled to days (the day's last bar)."""

    __tablename__ = "fact_backtest_equity"
    __table_args__ = (CheckConstraint("drawdown >= 0", name="drawdown"),)

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"), primary_key=True)
    equity: Mapped[float] = mapped_column(Double)
    daily_return: Mapped[float] = mapped_column(Double)
    gross_exposure: Mapped[float] = mapped_column(Double)
    drawdown: Mapped[float] = mapped_column(Double, comment="1 - equity / running peak")
    bars: Mapped[int] = mapped_column(Integer)


class FactBacktestTrade(Base):
    __tablename__ = "fact_backtest_trade"
    __table_args__ = (CheckConstraint("price > 0", name="price"), CheckConstraint("cost >= 0", name="cost"),
                      Index(None, "dataset_key", "strategy_key", "date_key"))

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    t: Mapped[int] = mapped_column(BigInteger, primary_key=True, comment="bar index of the fill")
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    quantity: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    cost: Mapped[float] = mapped_column(Double)
    decision_close: Mapped[float | None] = mapped_column(Double, comment="close of the bar the order was decided at")


class FactBacktestRejection(Base):
    """Orders the risk gate refused in a backtest, with the limit each hit (as live)."""

    __tablename__ = "fact_backtest_rejection"
    __table_args__ = (Index(None, "dataset_key", "strategy_key", "date_key"),)

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS, primary_key=True)
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    quantity: Mapped[float] = mapped_column(Double, comment="signed shares")
    price: Mapped[float] = mapped_column(Double)
    limit_hit: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(String(500))


class FactBacktestRoundTrip(Base):
    """Closed positions (flat to flat) per symbol, from :func:`pipelines.backtest.performance.round_trips`."""

    __tablename__ = "fact_backtest_round_trip"

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    trip: Mapped[int] = mapped_column(Integer, primary_key=True, comment="n-th trip of the symbol")
    pnl: Mapped[float] = mapped_column(Double, comment="after costs")
    trip_return: Mapped[float | None] = mapped_column(Double, comment="pnl / entry notional")


class FactBacktestMetric(Base):
    __tablename__ = "fact_backtest_metric"

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(50), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Double)


class FactMontecarloSummary(Base):
    __tablename__ = "fact_montecarlo_summary"
    __table_args__ = (CheckConstraint("low <= high", name="interval"),
                      CheckConstraint("risk_of_ruin BETWEEN 0 AND 1", name="ruin"))

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    statistic: Mapped[str] = mapped_column(String(50), primary_key=True)
    mean: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    median: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    simulations: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float] = mapped_column(Double)
    risk_of_ruin: Mapped[float] = mapped_column(Double)


class FactMontecarloFan(Base):
    """Quantiles of the simulated equity at each bar (the fan chart)."""

    __tablename__ = "fact_montecarlo_fan"
    __table_args__ = (CheckConstraint("q05 <= q50 AND q50 <= q95", name="ordered"),)

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    paths: Mapped[int] = mapped_column(Integer)
    q05: Mapped[float] = mapped_column(Double)
    q25: Mapped[float] = mapped_column(Double)
    q50: Mapped[float] = mapped_column(Double)
    q75: Mapped[float] = mapped_column(Double)
    q95: Mapped[float] = mapped_column(Double)


class FactDataQuality(Base):
    """Rows set aside per day and reason: the research quarantine and the stream's dead letters."""

    __tablename__ = "fact_data_quality"
    __table_args__ = (CheckConstraint("rows > 0", name="rows"),)

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(30), primary_key=True, comment="quarantine or dead_letter")
    source_table: Mapped[str] = mapped_column(String(100), primary_key=True)
    reason: Mapped[str] = mapped_column(String(300), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- live facts


class FactLiveOrder(Base):
    __tablename__ = "fact_live_order"
    __table_args__ = (CheckConstraint("qty > 0", name="qty"), Index(None, "dataset_key", "date_key"),
                      Index(None, "status"))

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"))
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"))
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"))
    ts: Mapped[dt.datetime] = mapped_column(TS)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Double)
    order_type: Mapped[str] = mapped_column(String(20))
    price: Mapped[float | None] = mapped_column(Double)
    decision_volume: Mapped[float | None] = mapped_column(Double)
    model_version: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    batch_id: Mapped[int | None] = mapped_column(BigInteger)


class FactLiveRejection(Base):
    """The orders the pre-trade risk gate refused, with the limit each hit."""

    __tablename__ = "fact_live_rejection"
    __table_args__ = (Index(None, "dataset_key", "date_key"),)

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"))
    strategy_key: Mapped[int] = mapped_column(_fk("dim_strategy.strategy_key"))
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"))
    ts: Mapped[dt.datetime] = mapped_column(TS)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    limit_hit: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(String(500))


class FactLiveFill(Base):
    __tablename__ = "fact_live_fill"
    __table_args__ = (CheckConstraint("qty > 0", name="qty"), CheckConstraint("price > 0", name="price"),
                      Index(None, "dataset_key", "date_key"), Index(None, "order_id"))

    fill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64))
    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"))
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"))
    ts: Mapped[dt.datetime] = mapped_column(TS)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    fee: Mapped[float] = mapped_column(Double)
    applied_at: Mapped[dt.datetime | None] = mapped_column(TS)


class FactLivePosition(Base):
    """Position snapshots: one row per symbol each time the portfolio changed it."""

    __tablename__ = "fact_live_position"

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    symbol_key: Mapped[int] = mapped_column(_fk("dim_symbol.symbol_key"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS, primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    qty: Mapped[float] = mapped_column(Double)
    avg_px_open: Mapped[float | None] = mapped_column(Double)
    realized_pnl: Mapped[float] = mapped_column(Double)
    unrealized_pnl: Mapped[float] = mapped_column(Double)
    last_px: Mapped[float | None] = mapped_column(Double)


class FactLiveEquity(Base):
    """Account snapshots at each closed bar."""

    __tablename__ = "fact_live_equity"

    dataset_key: Mapped[int] = mapped_column(_fk("dim_dataset.dataset_key"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(TS, primary_key=True)
    date_key: Mapped[int] = mapped_column(_fk("dim_date.date_key"))
    cash: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    peak_equity: Mapped[float] = mapped_column(Double)
    drawdown: Mapped[float] = mapped_column(Double, comment="1 - equity / peak_equity")
    gross_exposure: Mapped[float] = mapped_column(Double)
    realized_pnl: Mapped[float] = mapped_column(Double)
    fees: Mapped[float] = mapped_column(Double)


FACTS: tuple[type[Base], ...] = (FactDailyBar, FactPrediction, FactBacktestEquity, FactBacktestTrade,
                                 FactBacktestRoundTrip, FactBacktestMetric, FactMontecarloSummary, FactMontecarloFan,
                                 FactDataQuality, FactLiveOrder, FactLiveRejection, FactLiveFill, FactLivePosition,
                                 FactLiveEquity)


# ---------------------------------------------------------------- the API's keys


class ApiBase(DeclarativeBase):
    metadata = MetaData(schema=API_SCHEMA, naming_convention=NAMING)


class ApiKey(ApiBase):
    """One API key. The key itself (``qlk_<key_id>_<secret>``) is shown once, at creation; only
    the SHA-256 of its secret is stored (the secret is 256 random bits, so a fast hash is the
    right one, as for GitHub's tokens: there is nothing to brute-force)."""

    __tablename__ = "api_key"
    __table_args__ = (CheckConstraint("scopes <@ ARRAY['read', 'trade', 'admin']::varchar[] "
                                      "AND cardinality(scopes) > 0", name="scopes"),
                      CheckConstraint("length(secret_sha256) = 64", name="hash"))

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_sha256: Mapped[str] = mapped_column(String(64), comment="hex SHA-256 of the key's secret part")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    expires_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
