"""The Strategy interface and the built-in strategies: the threshold rule by hand, top-k dropout and
the decile long-short book on hand-made cross-sections, the plain-numpy form equal to the compiled
one, loading by name, import path and entry point, and bad strategies stopped with one line."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from numba import njit

from config.errors import ConfigError
from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, run_backtest
from pipelines.trading.strategies import load_strategy
from pipelines.trading.strategies.longshort import LongShort
from pipelines.trading.strategies.threshold import Threshold
from pipelines.trading.strategies.topk import TopkDropout
from pipelines.trading.strategy import CompiledStrategy, Context, Strategy, StrategyError
from tests.test_backtest_engine import LOOSE, random_market, random_settings


def ctx(p_up=None, er=None, shares=None, entry=None, close=None, equity=1e5, step=0, vol=0.2) -> Context:
    n = len(p_up if p_up is not None else er)
    full = lambda x, v: np.asarray(x if x is not None else [v] * n, dtype=float)  # noqa: E731
    return Context(pd.Timestamp("2024-01-02", tz="UTC"), step, np.array([f"S{i}" for i in range(n)], dtype=object),
                   full(close, 100.0), np.full(n, 1e6), full(p_up, np.nan), full(er, np.nan), full(shares, 0.0),
                   full(entry, np.nan), np.zeros(n), np.full(n, vol), equity, equity, equity, 1e5)


def test_threshold_follows_signal_and_size_until_an_exit() -> None:
    s = Threshold()  # 0.55 / 0.45, 2% fixed fraction, stop 2%, take 4%
    np.testing.assert_array_equal(s.targets(ctx([0.60, 0.40, 0.50, np.nan])), [2_000, -2_000, 0, 0])
    # a long bought at 100: -2% hits the stop, +4% the take-profit, both flatten despite a long signal
    exits = ctx([0.9, 0.9, 0.9], shares=[10, 10, 10], entry=[100, 100, 100], close=[98, 104, 101])
    np.testing.assert_array_equal(s.targets(exits), [0, 0, 2_000])
    kelly = Threshold(Threshold.Params(sizing="kelly", kelly_fraction=0.25))
    assert kelly.targets(ctx([0.56]))[0] == 0.02 * 1e5  # the cap wins
    looser = Threshold(Threshold.Params(sizing="kelly", kelly_fraction=0.25, max_position_size=0.1))
    assert np.isclose(looser.targets(ctx([0.56]))[0], 0.25 * 0.12 * 1e5)
    notional = Threshold(Threshold.Params(sizing="fixed_notional"))
    assert notional.targets(ctx([0.6], equity=50_000))[0] == 0.02 * 1e5  # of the initial capital, not equity
    assert s.targets(ctx([0.6], equity=50_000))[0] == 0.02 * 5e4


def _held(targets: np.ndarray, c: Context) -> np.ndarray:
    """Shares after filling ``targets`` at the context's closes."""
    return targets / c.close


def test_topk_dropout_buys_the_best_k_and_replaces_at_most_n_drop() -> None:
    s = TopkDropout(TopkDropout.Params(k=2, n_drop=1, gross=0.5))
    first = ctx(er=[0.5, 0.4, 0.3, 0.2, 0.1, np.nan])
    t0 = s.targets(first)
    np.testing.assert_allclose(t0, [25_000, 25_000, 0, 0, 0, 0])  # each name gross / k of equity
    # S0 falls to the bottom, S2 and S3 jump above S1: only one name is replaced, by the best newcomer
    after = ctx(er=[0.0, 0.3, 0.9, 0.8, 0.1, 0.2], shares=_held(t0, first), close=[100, 110, 100, 100, 100, 100])
    t1 = s.targets(after)
    assert t1[0] == 0 and t1[2] == 25_000 and t1[3] == 0
    assert t1[1] == pytest.approx(after.shares[1] * 110)  # kept as it is: its value, no trade
    # a buffer keeps a held name that is only just outside the top k
    buffered = TopkDropout(TopkDropout.Params(k=2, n_drop=1, gross=0.5, buffer=3)).targets(after)
    assert buffered[0] == 0  # rank 6 of 6: below k + buffer = 5, sold
    mild = ctx(er=[0.35, 0.3, 0.9, 0.8, 0.1, 0.2], shares=_held(t0, first))
    kept = TopkDropout(TopkDropout.Params(k=2, n_drop=1, gross=0.5, buffer=3)).targets(mild)
    assert kept[0] == pytest.approx(mild.held_value[0]) and kept[1] == pytest.approx(mild.held_value[1])
    # between rebalances everything is kept
    slow = TopkDropout(TopkDropout.Params(k=2, n_drop=1, gross=0.5, rebalance_every=5))
    np.testing.assert_allclose(slow.targets(ctx(er=after.expected_return, shares=after.shares, step=3)),
                               ctx(er=after.expected_return, shares=after.shares).held_value)


def test_topk_long_short_and_long_short_deciles() -> None:
    ls = TopkDropout(TopkDropout.Params(k=2, n_drop=2, long_short=True, gross=1.0))
    t = ls.targets(ctx(er=[0.5, 0.4, 0.0, -0.1, -0.4, -0.5]))
    np.testing.assert_allclose(t, [25_000, 25_000, 0, 0, -25_000, -25_000])
    book = LongShort(LongShort.Params(quantile=0.2, gross=1.0))
    scores = np.linspace(-1, 1, 10)
    t = book.targets(ctx(er=scores))
    np.testing.assert_allclose(t, [-25_000, -25_000] + [0] * 6 + [25_000, 25_000])
    # equal scores: a seeded random book, two names a leg, none in both
    flat = book.targets(ctx(er=np.zeros(10)))
    assert (flat > 0).sum() == 2 and (flat < 0).sum() == 2
    again = LongShort(LongShort.Params(quantile=0.2, seed=1)).targets(ctx(er=np.zeros(10)))
    np.testing.assert_array_equal(flat, book.targets(ctx(er=np.zeros(10))))  # the same seed, the same book
    assert not np.array_equal(flat, again)


class NumpyThreshold(Strategy):
    """The threshold rule in plain numpy (no stops: they are the compiled built-in's)."""

    name = "np_threshold"

    def __init__(self, size: float, long_t: float, short_t: float) -> None:
        super().__init__()
        self.size_, self.long_t, self.short_t = size, long_t, short_t

    def signal(self, ctx: Context) -> np.ndarray:
        return np.where(ctx.p_up > self.long_t, 1.0, np.where(ctx.p_up < self.short_t, -1.0, 0.0))

    def size(self, ctx: Context, signal: np.ndarray) -> np.ndarray:
        return signal * self.size_ * ctx.equity


@pytest.mark.parametrize("seed", range(6))
def test_a_plain_numpy_strategy_equals_the_compiled_one(seed: int) -> None:
    market, trading = random_market(seed), random_settings(seed)
    params = {**trading.strategies["threshold"], "sizing": "fixed_fraction", "stop_loss": 100.0, "take_profit": 100.0}
    compiled = Threshold(Threshold.Params(**params))
    plain = NumpyThreshold(params["max_position_size"], params["long_threshold"], params["short_threshold"])
    a, b = run_backtest(market, compiled, trading), run_backtest(market, plain, trading)
    pd.testing.assert_frame_equal(a.fills, b.fills)
    pd.testing.assert_frame_equal(a.rejections, b.rejections)
    np.testing.assert_array_equal(a.equity, b.equity)
    assert a.halted_at == b.halted_at


def _market(n: int = 3, T: int = 5) -> Market:
    rng = np.random.default_rng(0)
    close = 100 + rng.normal(0, 1, (T, n))
    return Market(pd.date_range("2024-01-01", periods=T, freq="D"), [f"S{i}" for i in range(n)], close, close,
                  np.full((T, n), 1e9), np.full((T, n), 0.6), np.full((T, n), 0.2), 252.0)


class Broken(Strategy):
    name = "broken"

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def targets(self, ctx: Context):
        if ctx.step < 2:
            return np.zeros(len(ctx.symbols))
        if self.what == "raise":
            raise KeyError("no such column")
        if self.what == "shape":
            return np.zeros(len(ctx.symbols) + 1)
        if self.what == "text":
            return ["a"] * len(ctx.symbols)
        return np.where(np.arange(len(ctx.symbols)) == 1, np.nan if self.what == "nan" else np.inf, 0.0)


@pytest.mark.parametrize("what, words", [
    ("raise", "raised KeyError: 'no such column'"), ("nan", "target of S1 is nan"), ("inf", "target of S1 is inf"),
    ("shape", "returned shape (4,), expected (3,)"), ("text", "not numbers"),
])
def test_a_bad_strategy_stops_the_backtest_naming_itself_the_bar_and_the_problem(what: str, words: str) -> None:
    with pytest.raises(StrategyError, match=r"strategy 'broken' at 2024-01-03 .*") as error:
        run_backtest(_market(), Broken(what), TradingSettings(limits=LOOSE))
    assert words in str(error.value)


@njit
def _ones(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account, params, out):
    out[:] = 1.0


@njit
def _nan_at_step_two(step, close, volume, p_up, expected_return, shares, entry_price, working, annual_vol, account,
                     params, signal, out):
    for i in range(len(out)):
        out[i] = np.nan if step == 2 and i == 1 else 0.0


class CompiledBroken(CompiledStrategy):
    name = "compiled_broken"
    signal_kernel = _ones
    size_kernel = _nan_at_step_two

    def kernel_params(self):
        return (0.0,)


def test_a_compiled_strategy_returning_nan_is_stopped_too() -> None:
    with pytest.raises(StrategyError, match=r"strategy 'compiled_broken' at 2024-01-03 .*target of S1 is nan"):
        run_backtest(_market(), CompiledBroken(), TradingSettings(limits=LOOSE))


def test_strategies_load_by_name_import_path_and_entry_point(tmp_path, monkeypatch) -> None:
    assert isinstance(load_strategy(TradingSettings()), Threshold)
    topk = load_strategy(TradingSettings(strategy="topk_dropout", strategies={"topk_dropout": {"k": 7}}))
    assert isinstance(topk, TopkDropout) and topk.params.k == 7 and topk.params.n_drop == 5
    with pytest.raises(ConfigError, match=r"trading.strategy: unknown strategy 'astrology'"):
        load_strategy(TradingSettings(strategy="astrology"))
    with pytest.raises(ConfigError, match=r"trading.strategies.topk_dropout.k: .*greater than or equal to 1"):
        load_strategy(TradingSettings(strategy="topk_dropout", strategies={"topk_dropout": {"k": 0}}))
    with pytest.raises(ConfigError, match=r"trading.strategies.threshold.treshold: unknown key"):
        load_strategy(TradingSettings(strategies={"threshold": {"treshold": 0.6}}))
    with pytest.raises(ConfigError, match=r"trading.strategy: cannot load strategy 'nowhere.mod:X': "
                                          r"ModuleNotFoundError"):
        load_strategy(TradingSettings(strategy="nowhere.mod:X"))
    package = tmp_path / "user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "strategies.py").write_text(textwrap.dedent('''
        import numpy as np
        from pipelines.trading.strategy import Params, Strategy

        class HalfParams(Params):
            fraction: float = 0.5

        class Half(Strategy):
            Params = HalfParams

            def signal(self, ctx):
                return np.ones(len(ctx.symbols))

            def size(self, ctx, signal):
                return signal * self.params.fraction * ctx.equity / len(ctx.symbols)

        class NotAStrategy:
            pass
    '''))
    dist = tmp_path / "user_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[quantlake.strategies]\nhalf = user_pkg.strategies:Half\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_path = load_strategy(TradingSettings(strategy="user_pkg.strategies:Half",
                                            strategies={"user_pkg.strategies:Half": {"fraction": 0.25}}))
    assert by_path.params.fraction == 0.25 and by_path.name == "Half"
    by_entry = load_strategy(TradingSettings(strategy="half"))
    assert type(by_entry).__name__ == "Half" and by_entry.name == "half"
    with pytest.raises(ConfigError, match="not a subclass of pipelines.trading.strategy.Strategy"):
        load_strategy(TradingSettings(strategy="user_pkg.strategies:NotAStrategy"))
    sys.modules.pop("user_pkg.strategies", None)
    sys.modules.pop("user_pkg", None)
