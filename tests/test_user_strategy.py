"""README "Write a strategy": its example, written to a package in a temporary folder outside the
repo, named by import path in a copy of the configuration, backtested, and traded on the live path
(the S&P 500 replay) with fills and equity equal to the backtest's."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from config import load_settings
from config.settings import CONFIG_DIR, PROJECT_ROOT
from pipelines.backtest.engine import Market, run_backtest
from pipelines.trading.strategies import load_strategy
from tests.test_live_strategies import assert_live_equals_backtest, replay_sp500, sp500_env

NAME = "my_strategies.conviction:Conviction"


def readme_example() -> str:
    """The README's strategy: the code block after the marker comment."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"tests/test_user_strategy\.py's.*?```python\n(.*?)```", text, re.S)
    assert block, "the README's example is gone"
    return block.group(1)


@pytest.fixture
def user_package(tmp_path, monkeypatch) -> dict[str, str]:
    """The example as ``my_strategies.conviction`` under a folder outside the repo, and a copy of
    ``config/`` whose trading_config.yaml names it; returns the environment that points at both."""
    outside = tmp_path / "user_code"
    package = outside / "my_strategies"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "conviction.py").write_text(readme_example())
    assert PROJECT_ROOT not in outside.parents
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config, ignore=shutil.ignore_patterns("*.py", "__pycache__", "schemas"))
    trading = config / "trading_config.yaml"
    text = trading.read_text().replace("\nstrategy: threshold\n", f"\nstrategy: {NAME}\n")
    text = text.replace("\nstrategies:\n", f"\nstrategies:\n  {NAME}: {{min_edge: 0.0, gross: 0.3, max_weight: 0.1}}\n")
    trading.write_text(text)
    monkeypatch.syspath_prepend(str(outside))
    yield {"QL_CONFIG_DIR": str(config), "PYTHONPATH": str(outside)}
    import sys

    for module in ("my_strategies.conviction", "my_strategies"):
        sys.modules.pop(module, None)


def test_the_readme_strategy_backtests_from_its_own_package(user_package) -> None:
    settings = load_settings(env=user_package)
    strategy = load_strategy(settings.trading)
    assert type(strategy).__module__ == "my_strategies.conviction" and strategy.params.gross == 0.3
    rng = np.random.default_rng(0)
    T, N = 200, 6
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    market = Market(pd.date_range("2024-01-01", periods=T, freq="D"), [f"S{i}" for i in range(N)], close, close,
                    np.full((T, N), 1e9), rng.uniform(0.4, 0.6, (T, N)), np.full((T, N), 0.2), 252.0)
    trading = settings.trading.model_copy(update={"limits": settings.trading.limits.model_copy(
        update={"max_position_notional": 0.12, "max_order_notional": 1e9})})
    result = run_backtest(market, strategy, trading)
    assert len(result.fills) > 100 and (result.positions < 0).any() and (result.positions > 0).any()
    value = np.abs(result.positions * close)
    assert (value.sum(axis=1) <= 0.3 * result.equity * 1.05 + 1e-6).all()  # the book's gross, drift aside


def test_the_readme_strategy_trades_live_as_it_backtests(spark, services, tmp_path, sqlite_registry,
                                                           user_package) -> None:
    env = sp500_env(tmp_path, **user_package, QL_TRADING__LIMITS__MAX_POSITION_NOTIONAL="0.12",
                    QL_TRADING__LIMITS__MAX_ORDER_NOTIONAL="1e9", QL_TRADING__RISK__MAX_DRAWDOWN="0.5")
    run = replay_sp500(spark, tmp_path, env)
    assert run["result"].strategy["strategy"] == "conviction"
    assert set(run["orders"]["strategy"]) == {"conviction"}
    assert_live_equals_backtest(run)
