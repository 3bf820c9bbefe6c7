"""``threshold``: the directional rule on ``p_up``, with fixed, volatility-target or capped-Kelly sizing,
a stop-loss and a take-profit.

Signal: +1 above ``long_threshold``, -1 below ``short_threshold``, 0 between, without a
prediction, or when the position's return since entry reached the stop-loss or the
take-profit (it is flattened). Size: the configured fraction of equity (of the initial
capital for ``fixed_notional``), capped at ``max_position_size``.

Example (``trading_config.yaml``)::

    strategy: threshold
    strategies:
      threshold: {long_threshold: 0.55, short_threshold: 0.45, sizing: vol_target,
                  vol_target_annual: 0.10, max_position_size: 0.02, stop_loss: 0.02, take_profit: 0.04}
"""

from __future__ import annotations

from typing import Literal

from numba import njit
from pydantic import Field, model_validator

from pipelines.trading import rules as R
from pipelines.trading.strategy import CompiledStrategy, Params

SIZING = {"fixed_fraction": 0, "fixed_notional": 1, "vol_target": 2, "kelly": 3}


class ThresholdParams(Params):
    long_threshold: float = Field(0.55, ge=0, le=1)   # p_up above this goes long
    short_threshold: float = Field(0.45, ge=0, le=1)  # p_up below this goes short
    sizing: Literal["fixed_fraction", "fixed_notional", "vol_target", "kelly"] = "fixed_fraction"
    vol_target_annual: float = Field(0.10, gt=0)      # vol_target: each position's annualized volatility
    kelly_fraction: float = Field(0.25, gt=0, le=1)   # kelly: this share of the even-odds Kelly bet
    max_position_size: float = Field(0.02, gt=0, le=1)  # fraction of equity per position (the cap)
    stop_loss: float = Field(0.02, gt=0)              # flatten when the position lost this much since entry
    take_profit: float = Field(0.04, gt=0)            # ... or gained this much

    @model_validator(mode="after")
    def _ordered(self) -> "ThresholdParams":
        if self.short_threshold > self.long_threshold:
            raise ValueError(f"short_threshold ({self.short_threshold}) is above long_threshold ({self.long_threshold})")
        return self


@njit(cache=True)
def threshold_signal(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account,
                     params, out):
    long_t, short_t, _sizing, _vol_target, _kelly, _max_pos, stop_loss, take_profit = params
    for i in range(len(out)):
        if R.exit_hit(shares[i], entry_price[i], close[i], stop_loss, take_profit):
            out[i] = 0.0
        else:
            out[i] = R.signal(p_up[i], long_t, short_t)


@njit(cache=True)
def threshold_size(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account,
                   params, signal, out):
    _long_t, _short_t, sizing, vol_target, kelly, max_pos, _stop, _take = params
    base = R.sizing_base(account[1], account[3], sizing)
    for i in range(len(out)):
        size = R.position_size(p_up[i], annual_vol[i], sizing, vol_target, kelly, max_pos)
        out[i] = signal[i] * size * base


class Threshold(CompiledStrategy):
    """Long above ``long_threshold``, short below ``short_threshold`` (see the module docstring)."""

    name = "threshold"
    Params = ThresholdParams
    signal_kernel = threshold_signal
    size_kernel = threshold_size

    def sweep_grid(self) -> list[dict]:
        """Symmetric thresholds around 0.5 x the three sizing methods (12 configurations)."""
        return [{"long_threshold": 0.5 + width, "short_threshold": 0.5 - width, "sizing": method}
                for width in (0.0, 0.02, 0.05, 0.1) for method in ("fixed_fraction", "vol_target", "kelly")]

    def kernel_params(self) -> tuple[float, ...]:
        p = self.params
        return (float(p.long_threshold), float(p.short_threshold), float(SIZING[p.sizing]), float(p.vol_target_annual),
                float(p.kelly_fraction), float(p.max_position_size), float(p.stop_loss), float(p.take_profit))
