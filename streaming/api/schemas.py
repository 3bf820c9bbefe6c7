"""The API's request and response models (they are also its OpenAPI schema at ``/docs``)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from pipelines.trading.risk import TradingState

EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2262, 4, 11, tzinfo=timezone.utc)


def _iso_text(value):
    """A time parameter must be ISO 8601 text: a bare number (which pydantic would take as epoch
    seconds) is refused, as the schema's ``date-time`` format says."""
    if not isinstance(value, str) or re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2024-03-13T15:00:00Z")
    return value


def _clamped(value: datetime) -> datetime:
    """Naive times are UTC; a time before 1970 or after 2262 means 'the beginning' / 'the end'."""
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return min(max(value, EARLIEST), LATEST)


IsoTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_clamped)]


class Portfolio(BaseModel):
    account: str
    cash: float
    equity: float
    peak_equity: float
    drawdown: float = Field(description="1 - equity / peak equity")
    gross_exposure: float
    net_exposure: float
    exposure_ratio: float | None = Field(description="gross exposure / equity")
    pnl: float = Field(description="equity - initial capital")
    return_: float = Field(alias="return")
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    initial_capital: float
    open_positions: int
    as_of: str | None = Field(description="the last bar closed (event time)")
    trading_state: TradingState
    breaker_drawdown: float = Field(description="the drawdown at which the breaker halts trading")

    model_config = ConfigDict(populate_by_name=True)


class Position(BaseModel):
    symbol: str
    qty: float = Field(description="signed shares")
    avg_px_open: float
    last_px: float
    market_value: float
    unrealized_pnl: float
    realized_pnl: float
    ts: str | None


class EquityPoint(BaseModel):
    ts: str = Field(description="the bar closed")
    equity: float
    cash: float
    peak_equity: float
    gross_exposure: float
    drawdown: float


class StatusChange(BaseModel):
    status: str
    ts: str


class Order(BaseModel):
    order_id: str
    ts: str = Field(description="decision time: the close of the bar it was decided at")
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    price: float = Field(description="reference price (the decision bar's close)")
    order_type: str
    strategy: str | None
    model_version: str | None
    status: str
    filled_qty: float
    reason: str | None
    history: list[StatusChange]


class OrderPage(BaseModel):
    orders: list[Order]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page; null on the last")


class Fill(BaseModel):
    fill_id: str
    order_id: str
    ts: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    price: float
    fee: float
    applied_at: str | None


class FillPage(BaseModel):
    fills: list[Fill]
    next_cursor: str | None


class OrderRequest(BaseModel):
    """A manual market order; it goes through the strategy's pre-trade risk gate."""

    symbol: str = Field(min_length=1, max_length=32)
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0, description="shares")
    price: float | None = Field(None, gt=0, description="reference price; default: the last bar's close")
    client_order_id: str | None = Field(None, max_length=64, description="idempotency key: a retry with the same "
                                        "id returns the same order")

    model_config = ConfigDict(extra="forbid")


class OrderSubmitted(BaseModel):
    order_id: str
    status: str = Field(description="the venue's status, or SUBMITTED when it has not answered yet")
    order: Order | None = Field(description="the venue's order, once it holds it")


class Rejection(BaseModel):
    limit: str = Field(description="the limit the order hit (a trading.limits key, or the check's name)")
    reason: str
    order: dict


class CancelResult(BaseModel):
    order_id: str
    cancelled: bool | None = Field(description="null: the venue has not answered yet")
    reason: str | None
    order: Order


class TradingStateRequest(BaseModel):
    state: TradingState
    reason: str | None = Field(None, max_length=200)

    model_config = ConfigDict(extra="forbid")


class TradingStateChange(BaseModel):
    state: TradingState
    previous: TradingState
    by: str
    reason: str | None
    at: str


class StrategyPerformance(BaseModel):
    strategy: str = Field(description="the backtest run: <strategy>_<model family>")
    family: str | None = Field(description="the model family whose predictions it traded")
    is_baseline: bool
    strategy_name: str | None = Field(None, description="the strategy (threshold, topk_dropout, a user's class)")
    params: dict | None = Field(None, description="the strategy's parameters in that run")
    metrics: dict[str, float | None] = Field(description="the backtest's figures over all folds, deflated Sharpe "
                                             "included")


class LivePerformance(BaseModel):
    equity: float | None
    pnl: float | None
    return_: float | None = Field(alias="return")
    max_drawdown: float | None
    sharpe: float | None = Field(description="annualized, from the equity at each close the warehouse holds")
    snapshots: int

    model_config = ConfigDict(populate_by_name=True)


class LiveStrategy(BaseModel):
    strategy: str = Field(description="the strategy the live trader runs (trading.strategy)")
    params: dict = Field(description="its parameters (trading.strategies[<strategy>], defaults filled in)")


class Performance(BaseModel):
    dataset: str
    strategy: LiveStrategy
    live: LivePerformance
    backtest: list[StrategyPerformance]


class ModelVersion(BaseModel):
    version: str
    family: str | None
    figures: dict[str, str | None]
    gate: dict[str, str | None] | None


class Models(BaseModel):
    model: str
    champion: ModelVersion | None
    challenger: ModelVersion | None


class Problem(BaseModel):
    # a sentence; the gate's rejection ({limit, reason, order}); or FastAPI's list of input errors (422)
    detail: str | dict | list[dict]
