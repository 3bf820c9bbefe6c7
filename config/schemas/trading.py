"""Schema of ``trading_config.yaml``: the strategy and its parameters, costs, risk limits, live and backtest settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from config.schemas.base import Frozen
from config.schemas.model import ModelFamily


class CostSettings(Frozen):
    commission_bps: float = Field(1.0, ge=0)
    half_spread_bps: float = Field(2.0, ge=0)
    slippage_bps_per_pct_volume: float = Field(5.0, ge=0)
    max_participation: float = Field(0.05, gt=0, le=1)


class RiskSettings(Frozen):
    """The kernel's own risk rule, whatever the strategy: the drawdown circuit breaker."""

    max_drawdown: float = Field(0.05, gt=0, lt=1)


class LimitSettings(Frozen):
    """The pre-trade risk gate's hard limits (``pipelines/trading/risk.py``)."""

    max_order_quantity: float = Field(1_000_000, gt=0)     # shares per order
    max_order_notional: float = Field(25_000, gt=0)        # currency per order
    max_position_notional: float = Field(0.025, gt=0)      # one symbol's position after the order, over equity
    max_gross_exposure: float = Field(1.0, gt=0)           # sum of |position| value after the order, over equity
    price_band: float = Field(0.05, gt=0, lt=1)            # order price within this fraction of the last trade
    max_orders_per_second: int = Field(100, ge=1)          # accepted orders per second of event time
    max_data_age_seconds: float = Field(900, gt=0)         # the symbol's last trade at most this old at the order's time
    symbols: list[str] | None = None                       # tradable symbols (None: any with market data)


class VenueSettings(Frozen):
    """The paper venue's own checks (``python -m streaming venue``), as an exchange or broker
    applies its own whatever the client's gate did: on every order record, from any producer."""

    max_order_quantity: float = Field(1_000_000, gt=0)     # shares per order
    max_order_notional: float = Field(100_000, gt=0)       # currency per order, at the venue's last price
    price_band: float = Field(0.10, gt=0, lt=1)            # the order's price within this fraction of the venue's last
    require_signature: bool = True                         # only the trader's and the desk's signed orders


class LiveTradingSettings(Frozen):
    """The live trading path: the stream's trader, ``python -m streaming venue`` and
    ``python -m streaming portfolio`` (``streaming/trader.py``)."""

    enabled: bool = True                                   # the stream decides and sends orders when a portfolio runs
    account: str | None = None                             # the Redis portfolio's account (None: the dataset's name)
    # where the venue fills: the next bar's open (the backtest's rule; parity holds), or the
    # next tick's ask / bid (the first tick after the decision; the spread is paid in the price)
    fill_at: Literal["bar_open", "next_tick"] = "bar_open"
    portfolio_wait_seconds: float = Field(60.0, gt=0)      # how long a decision waits for the portfolio to reach its bar
    venue_wait_seconds: float = Field(30.0, gt=0)          # how long the venue holds a bar for the orders decided before it
    heartbeat_seconds: float = Field(10.0, gt=0)           # a service missing its heartbeat this long counts as down
    snapshot_seconds: float = Field(2.0, gt=0)             # how often the portfolio writes its Delta tables
    venue: VenueSettings = VenueSettings()
    # how long the stream keeps re-sending a step Kafka did not confirm before its micro-batch
    # fails (it is then replayed on restart); the venue and the portfolio retry without end
    send_retry_seconds: float = Field(600.0, gt=0)


class BacktestSettings(Frozen):
    strategies: list[str] | None = None          # strategies to backtest (None: trading.strategy alone)
    models: list[ModelFamily] | None = None      # model families they trade (None: every one with predictions)
    sweep: bool = True
    sweep_seeds: int = Field(1, ge=1)
    # at ~5,600 paths/s on this machine's two cores, a million paths is ~3 minutes and its
    # per-path statistics ~50 MB on the driver; more needs a bigger machine, not a flag
    montecarlo_simulations: int = Field(10_000, ge=100, le=1_000_000)
    montecarlo_method: Literal["iid", "stationary"] = "stationary"
    montecarlo_block: float = Field(20.0, ge=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    ruin_fraction: float = Field(0.5, gt=0, lt=1)


class TradingSettings(Frozen):
    initial_capital: float = Field(100_000, gt=0)
    # the strategy that trades: a built-in (threshold | topk_dropout | long_short), a user's
    # "package.module:Class", or an entry point of group quantlake.strategies
    # (pipelines/trading/strategies/__init__.py); its parameters are strategies[<name>]
    strategy: str = "threshold"
    strategies: dict[str, dict[str, Any]] = {}   # each strategy's parameters under its name
    backtest: BacktestSettings = BacktestSettings()
    live: LiveTradingSettings = LiveTradingSettings()
    costs: CostSettings = CostSettings()
    risk: RiskSettings = RiskSettings()
    limits: LimitSettings = LimitSettings()
