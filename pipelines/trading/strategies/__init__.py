"""The built-in strategies and how a strategy is found by name.

``trading_config.yaml`` names the strategy that trades (``strategy:``) and holds each strategy's
parameters under its name (``strategies: {<name>: {...}}``). A name is one of:

* a built-in: ``threshold``, ``topk_dropout``, ``long_short``;
* an import path ``package.module:Class`` of the user's own package (importable where the
  platform runs, e.g. installed with ``pip install -e``);
* the name of an entry point in the group ``quantlake.strategies`` (a package declares
  ``[project.entry-points."quantlake.strategies"] mean_reversion = "my_pkg.strategies:MeanReversion"``).

The class must subclass :class:`~pipelines.trading.strategy.Strategy`. An unknown name, an import
that fails, or parameters its ``Params`` rejects fail at start-up with a
:class:`~config.errors.ConfigError` that names the key.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from pydantic import ValidationError

from config.errors import ConfigError
from config.schemas.trading import TradingSettings
from pipelines.trading.strategies.longshort import LongShort
from pipelines.trading.strategies.threshold import Threshold
from pipelines.trading.strategies.topk import TopkDropout
from pipelines.trading.strategy import Strategy

BUILTIN: dict[str, type[Strategy]] = {cls.name: cls for cls in (Threshold, TopkDropout, LongShort)}
ENTRY_POINT_GROUP = "quantlake.strategies"


def strategy_class(name: str, key: str = "trading.strategy") -> type[Strategy]:
    """The class ``name`` stands for (see the module docstring); ``key`` is where it was
    configured, for the error."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"{key}: cannot load strategy {name!r}: {type(error).__name__}: {error}") from None
    else:
        points = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not points:
            known = sorted(BUILTIN) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise ConfigError(f"{key}: unknown strategy {name!r}; expected one of {known} or "
                              "'package.module:Class'")
        try:
            found = points[0].load()
        except Exception as error:  # noqa: BLE001 (a user's package: say which entry point failed)
            raise ConfigError(f"{key}: entry point {name!r} ({points[0].value}) failed to load: {error}") from None
    if not (isinstance(found, type) and issubclass(found, Strategy)):
        raise ConfigError(f"{key}: {name!r} is {found!r}, not a subclass of pipelines.trading.strategy.Strategy")
    return found


def load_strategy(trading: TradingSettings, name: str | None = None, key: str | None = None) -> Strategy:
    """The strategy ``name`` (default: ``trading.strategy``) with its parameters from
    ``trading.strategies[name]`` (the class's defaults where absent); ``key`` names where the
    name came from in an error (default: ``trading.strategy`` or ``trading.backtest.strategies``)."""
    name = name or trading.strategy
    cls = strategy_class(name, key or ("trading.strategy" if name == trading.strategy else "trading.backtest.strategies"))
    raw = trading.strategies.get(name) or {}
    try:
        params = cls.Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"trading.strategies.{name}.{'.'.join(str(p) for p in e['loc'])}: "
                             f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                             for e in error.errors())
        raise ConfigError(f"invalid strategy parameters: {problems}") from None
    strategy = cls(params)
    if not strategy.name:  # a user's class without a name: the entry point's, else the class's
        strategy.name = name if ":" not in name else cls.__name__
    return strategy
