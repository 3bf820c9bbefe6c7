"""The ``Strategy`` interface: what a strategy sees at a decision time and what it returns.

A strategy is called **once per decision time** (a bar's close) with the whole cross-section as
arrays, never once per symbol, and returns the **target position of every symbol**, as signed
value in the account's currency (``+2_000``: long 2,000 worth at the close; ``0``: flat). To
leave a symbol as it is, return its current value, ``ctx.held_value``. The kernel turns targets
into orders (shares at the decision bar's close), the :class:`~pipelines.trading.risk.RiskGate`
checks each, and the venue (or the backtest) fills them at the next bar's open.

Two steps, each overridable, as the seed's ``BaseStrategy`` had them:

* :meth:`Strategy.signal`: what to hold (a direction or a weight per symbol);
* :meth:`Strategy.size`: how much (the signal times a size, in currency).

Two forms:

* :class:`Strategy` (plain numpy): override ``signal`` and ``size``, or ``targets`` whole. The
  backtest calls it from a Python loop over time, with the fills and the gate compiled.
* :class:`CompiledStrategy` (numba, which the built-ins use): ``signal_kernel`` and
  ``size_kernel`` are ``@njit`` functions of the arrays (see :data:`KERNEL_ARGS`); the backtest
  runs the whole loop compiled. Live, both forms are called the same way, through ``targets``.

Parameters are a pydantic model (``Params``) that validates the strategy's section of
``trading_config.yaml`` (``strategies: {<name>: {...}}``); an unknown or wrong key fails at
start-up, naming it. The drawdown breaker (``risk.max_drawdown``) and the trading state are the
kernel's: when trading is not ACTIVE the kernel flattens every position without asking the
strategy.

A strategy must be a function of its context and its parameters, keeping no state of its own
between calls: the live trader may restart at any bar, and the backtest and the live run must
decide the same. ``ctx.step`` (the decision's index since the run started) serves schedules
such as "rebalance every h bars".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from numba import njit
from pydantic import BaseModel, ConfigDict

# the order of the arrays a compiled kernel receives (after ``step``), and of ``account``
KERNEL_ARGS = ("close", "volume", "p_up", "expected_return", "shares", "entry_price", "working", "annual_vol")
ACCOUNT = ("cash", "equity", "peak", "initial_capital", "state")
STATES = ("ACTIVE", "REDUCING", "HALTED")


class Params(BaseModel):
    """Base of every strategy's parameters: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class Context:
    """The cross-section at one decision time; arrays are aligned on ``symbols``.

    Prices, predictions and volatility of a symbol without a bar or a prediction at this time
    are NaN (prices: its last close where it has one)."""

    ts: pd.Timestamp            # the decision time: the close of the bar (UTC)
    step: int                   # decisions since the run started (0, 1, ...)
    symbols: np.ndarray         # str
    close: np.ndarray           # the decision bar's close (the last known close where it has no bar)
    volume: np.ndarray          # the decision bar's volume
    p_up: np.ndarray            # the model's probability that the label's return is positive
    expected_return: np.ndarray  # the model's expected return (a rank score with ranked labels)
    shares: np.ndarray          # positions, in shares (signed)
    entry_price: np.ndarray     # average entry price of open positions (NaN when flat)
    working: np.ndarray         # accepted orders not yet filled, in shares (signed)
    annual_vol: np.ndarray      # trailing volatility of log returns, annualized
    cash: float
    equity: float               # marked at this close
    peak: float                 # the highest equity so far
    initial_capital: float
    state: str = "ACTIVE"       # the trading state: ACTIVE | REDUCING | HALTED
    model_version: str = ""

    @property
    def held_value(self) -> np.ndarray:
        """Each symbol's current position (plus working orders) valued at its close: the target
        that leaves it as it is."""
        held = self.shares + self.working
        return np.where(held != 0, held * np.nan_to_num(self.close), 0.0)

    def account(self) -> np.ndarray:
        """``ACCOUNT`` as the float array a compiled kernel receives."""
        return np.array([self.cash, self.equity, self.peak, self.initial_capital, float(STATES.index(self.state))])

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``KERNEL_ARGS`` in order, as float64 arrays."""
        return tuple(np.ascontiguousarray(getattr(self, name), dtype=np.float64) for name in KERNEL_ARGS)


class Strategy:
    """A strategy in plain numpy (see the module docstring). Subclasses set ``name`` and
    ``Params`` and override :meth:`signal` and :meth:`size` (or :meth:`targets`)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    compiled: ClassVar[bool] = False

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def signal(self, ctx: Context) -> np.ndarray:
        """What to hold, per symbol: a direction (+1 / -1 / 0) or a weight."""
        raise NotImplementedError(f"{type(self).__name__} implements neither signal() nor targets()")

    def size(self, ctx: Context, signal: np.ndarray) -> np.ndarray:
        """Target values (signed currency) for ``signal``; by default the signal times equity."""
        return signal * ctx.equity

    def targets(self, ctx: Context) -> np.ndarray:
        """Target value per symbol: :meth:`size` of :meth:`signal`."""
        return self.size(ctx, self.signal(ctx))

    def sweep_grid(self) -> list[dict]:
        """Parameter sets the backtest sweeps on Spark for the deflated Sharpe and PBO (each a
        partial update of the parameters); none by default."""
        return []

    def describe(self) -> dict:
        """The name and parameters, as stored with a backtest and in the warehouse."""
        return {"strategy": strategy_name(self), "params": self.params.model_dump(mode="json")}


class CompiledStrategy(Strategy):
    """A strategy whose two steps are numba kernels, so the backtest runs the loop compiled.

    ``signal_kernel(step, close, volume, p_up, expected_return, shares, entry_price, working,
    annual_vol, account, params, out)`` fills ``out`` with the signal;
    ``size_kernel(<the same>, signal, out)`` fills ``out`` with target values. ``params`` is
    :meth:`kernel_params`, a tuple of floats; ``account`` is ``ACCOUNT`` as floats."""

    compiled: ClassVar[bool] = True
    signal_kernel: ClassVar = None
    size_kernel: ClassVar = None

    def kernel_params(self) -> tuple[float, ...]:
        """The parameters as the flat float tuple the kernels take."""
        raise NotImplementedError

    def signal(self, ctx: Context) -> np.ndarray:
        out = np.zeros(len(ctx.symbols))
        type(self).signal_kernel(ctx.step, *ctx.arrays(), ctx.account(), self.kernel_params(), out)
        return out

    def size(self, ctx: Context, signal: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ctx.symbols))
        type(self).size_kernel(ctx.step, *ctx.arrays(), ctx.account(), self.kernel_params(),
                               np.ascontiguousarray(signal, dtype=np.float64), out)
        return out


class StrategyError(RuntimeError):
    """A strategy raised or returned something the kernel cannot trade; the message names the
    strategy, the decision time and what was wrong."""


def checked_targets(strategy: Strategy, ctx: Context) -> np.ndarray:
    """``strategy.targets(ctx)``, or :class:`StrategyError` when it raises or returns anything
    but one finite number per symbol."""
    try:
        out = strategy.targets(ctx)
    except Exception as error:  # noqa: BLE001 (a user's code: say whose and where)
        raise StrategyError(f"strategy {strategy_name(strategy)!r} at {ctx.ts}: raised {type(error).__name__}: "
                            f"{error}") from error
    return validate_targets(strategy, ctx.ts, ctx.symbols, out)


def strategy_name(strategy: Strategy) -> str:
    return strategy.name or type(strategy).__name__


def validate_targets(strategy: Strategy, ts, symbols, out) -> np.ndarray:
    """``out`` as float64 of one finite value per symbol, or :class:`StrategyError` saying why not."""
    name = strategy_name(strategy)
    try:
        values = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise StrategyError(f"strategy {name!r} at {ts}: returned {type(out).__name__}, not numbers ({error})") from None
    if values.shape != (len(symbols),):
        raise StrategyError(f"strategy {name!r} at {ts}: returned shape {values.shape}, expected ({len(symbols)},) "
                            "(one target per symbol)")
    if first_non_finite(values) >= 0:
        bad = np.flatnonzero(~np.isfinite(values))
        i = int(bad[0])
        raise StrategyError(f"strategy {name!r} at {ts}: target of {symbols[i]} is {values[i]} "
                            f"({len(bad)} non-finite of {len(values)}; return ctx.held_value to keep a position)")
    return values


@njit(cache=True)
def first_non_finite(values: np.ndarray) -> int:
    for i in range(len(values)):
        if not math.isfinite(values[i]):
            return i
    return -1
