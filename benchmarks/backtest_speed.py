"""Strategies in this engine next to vectorbt and backtrader: the P&L must agree to the cent;
speed ratios; top-k dropout over 500 symbols; Monte Carlo time.

    python -m benchmarks.backtest_speed [--bars 2520] [--symbols 50] [--topk-symbols 500] [--short]

Needs the ``bench`` packages (vectorbt, backtrader; in the ``dev`` extra).

Data: a random market (geometric random walk closes, opens near the previous close) with
persistent random predictions, ``--bars`` x ``--symbols``. The strategy compared, expressible
in all three: long above ``p_up`` 0.55, short below 0.45, flat between; each position worth
1% of the initial capital (``fixed_notional``). Decided at a bar's close, as **shares at that
close** (target value / close: the order a live trader sends), filled at the next bar's open;
fees 3 bps of notional (commission 1 + half-spread 2). Stops, the drawdown breaker,
participation slippage and the volume cap are switched off, and the gate's limits do not bind,
since the other two engines have no exact equivalent; the unit tests cover those against the
event-by-event reference.

Three runs of this engine, on the same market:

* ``threshold``: the built-in compiled strategy (the whole loop in numba);
* ``numpy_user``: the same rule as a user writes it in plain numpy (:class:`NumpyThreshold`),
  called once per bar from the Python loop; its P&L must equal the built-in's exactly;
* ``topk_dropout``: the built-in top-k dropout (k 50, n_drop 5, daily) over ``--topk-symbols``.

vectorbt gets the target shares per bar (``targetamount`` orders at the open price, cash shared
across symbols); backtrader gets the same targets through ``order_target_size`` in
``next_open`` (cheat-on-open: filled at that bar's open). The figures compared are final
equity and total fees; times are wall clock for the simulation alone, best of ``--repeats``
(this engine's time includes the decisions and the gate).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Timer, write_result
from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, run_backtest
from pipelines.backtest.montecarlo import simulate_local
from pipelines.trading.strategies import load_strategy
from pipelines.trading.strategy import Context, Strategy

FEE = 3e-4
CAPITAL = 1_000_000.0
LONG, SHORT, SIZE = 0.55, 0.45, 0.01


def make_market(bars: int, symbols: int, seed: int = 0) -> Market:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, (bars, symbols)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0, 0.003, (bars, symbols)))
    ts = pd.bdate_range("2010-01-01", periods=bars)
    # predictions that persist (AR(1), phi 0.9) like a model's, so positions are held a while
    z = np.zeros((bars, symbols))
    shocks = rng.normal(0, np.sqrt(1 - 0.9**2), (bars, symbols))
    for t in range(1, bars):
        z[t] = 0.9 * z[t - 1] + shocks[t]
    p_up = 0.5 + 0.08 * z
    return Market(ts, [f"S{i:03d}" for i in range(symbols)], open_, close, np.full((bars, symbols), 1e12),
                  p_up, np.full((bars, symbols), 0.2), 252.0, expected_return=0.02 * z)


def trading(symbols: int) -> TradingSettings:
    """Costs of 3 bps, no slippage or volume cap, no stops or breaker; limits that do not bind."""
    return TradingSettings(
        initial_capital=CAPITAL,
        strategies={"threshold": {"long_threshold": LONG, "short_threshold": SHORT, "sizing": "fixed_notional",
                                  "max_position_size": SIZE, "stop_loss": 100, "take_profit": 100},
                    "topk_dropout": {"k": 50, "n_drop": 5, "gross": 1.0}},
        costs={"commission_bps": 1, "half_spread_bps": 2, "slippage_bps_per_pct_volume": 0, "max_participation": 1},
        risk={"max_drawdown": 0.99},
        limits={"max_order_notional": 1e12, "max_position_notional": 1.0, "max_gross_exposure": 100.0,
                "max_orders_per_second": 2 * symbols, "max_data_age_seconds": 1e9})


class NumpyThreshold(Strategy):
    """The threshold rule as a user writes it: plain numpy, one call per bar."""

    name = "numpy_threshold"

    def signal(self, ctx: Context) -> np.ndarray:
        return np.where(ctx.p_up > LONG, 1.0, np.where(ctx.p_up < SHORT, -1.0, 0.0))

    def size(self, ctx: Context, signal: np.ndarray) -> np.ndarray:
        return signal * (SIZE * ctx.initial_capital)


def target_shares(market: Market) -> np.ndarray:
    """Shares held after each bar's open: those decided at the previous close, at that close's
    price (the engine's orders are shares at the decision bar's close)."""
    sig = np.where(market.p_up > LONG, 1.0, np.where(market.p_up < SHORT, -1.0, 0.0))
    shares = sig * SIZE * CAPITAL / market.close
    targets = np.full(market.open.shape, np.nan)
    targets[1:] = shares[:-1]
    return targets


def run_vectorbt(market: Market, targets: np.ndarray):
    import vectorbt as vbt

    close = pd.DataFrame(market.close, index=market.ts, columns=market.symbols)
    return vbt.Portfolio.from_orders(
        close=close, price=pd.DataFrame(market.open, index=market.ts, columns=market.symbols),
        size=pd.DataFrame(targets, index=market.ts, columns=market.symbols), size_type="targetamount",
        direction="both", fees=FEE, init_cash=CAPITAL, cash_sharing=True, group_by=True, freq="1D")


def run_backtrader(market: Market, targets: np.ndarray) -> tuple[float, float]:
    import backtrader as bt

    class Targets(bt.Strategy):
        def start(self):
            self.paid = 0.0

        def next_open(self):
            row = targets[len(self)]  # in next_open the strategy has not advanced to this bar yet
            for j, data in enumerate(self.datas):
                if np.isfinite(row[j]) and abs(row[j] - self.getposition(data).size) > 1e-9:
                    self.order_target_size(data=data, target=float(row[j]))

        def notify_order(self, order):
            if order.status == order.Completed:
                self.paid += order.executed.comm

    cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
    cerebro.broker.setcash(CAPITAL)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_coo(True)  # orders from next_open fill at this bar's open
    cerebro.broker.set_checksubmit(False)  # allow leverage/shorts like the other two engines
    for j, sym in enumerate(market.symbols):
        frame = pd.DataFrame({"open": market.open[:, j], "high": np.maximum(market.open[:, j], market.close[:, j]),
                              "low": np.minimum(market.open[:, j], market.close[:, j]), "close": market.close[:, j],
                              "volume": 1e12}, index=market.ts)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=sym)
    cerebro.addstrategy(Targets)
    [strategy] = cerebro.run()
    return cerebro.broker.getvalue(), strategy.paid


def best_of(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def agrees(final: float, fees: float, ref_final: float, ref_fees: float) -> bool:
    """To the cent: the final equity within 1e-9 of the capital, the fees within 1e-6 relative."""
    return abs(final - ref_final) / CAPITAL < 1e-9 and abs(fees - ref_fees) < 1e-6 * max(1.0, ref_fees)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--topk-symbols", type=int, default=500)
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-backtrader", action="store_true")
    parser.add_argument("--short", action="store_true",
                        help="the suite's version: 300 bars x 8 symbols, top-k over 60, no Spark Monte Carlo")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.short:
        args.bars, args.symbols, args.topk_symbols, args.simulations, args.repeats = 300, 8, 60, 500, 2
    warnings.filterwarnings("ignore")
    market = make_market(args.bars, args.symbols)
    settings = trading(args.symbols)
    threshold = load_strategy(settings, "threshold")
    print(f"backtest speed: {args.bars:,} bars x {args.symbols} symbols")

    run_backtest(make_market(30, 3), threshold, settings)                       # numba compile
    run_backtest(make_market(30, 3), NumpyThreshold(), settings)
    ours_s, ours = best_of(args.repeats, lambda: run_backtest(market, threshold, settings))
    numpy_s, numpy_run = best_of(args.repeats, lambda: run_backtest(market, NumpyThreshold(), settings))
    ours_final, ours_fees = float(ours.equity[-1]), float(ours.fills["cost"].sum())
    numpy_final, numpy_fees = float(numpy_run.equity[-1]), float(numpy_run.fills["cost"].sum())
    targets = target_shares(market)
    run_vectorbt(make_market(50, 3), target_shares(make_market(50, 3)))           # numba compile
    vbt_s, pf = best_of(args.repeats, lambda: run_vectorbt(market, targets))
    vbt_final, vbt_fees = float(pf.final_value()), float(pf.orders.fees.sum())
    figures = {"bars": args.bars, "symbols": args.symbols, "fills": len(ours.fills),
               "rejections": len(ours.rejections),
               "quantlake": {"seconds": round(ours_s, 4), "final_equity": ours_final, "fees": ours_fees},
               "numpy_user": {"seconds": round(numpy_s, 4), "final_equity": numpy_final, "fees": numpy_fees},
               "vectorbt": {"seconds": round(vbt_s, 4), "final_equity": vbt_final, "fees": vbt_fees,
                            "version": __import__("vectorbt").__version__}}
    print(f"  threshold (compiled)  {ours_s:8.4f}s  final equity {ours_final:,.2f}  fees {ours_fees:,.2f}")
    print(f"  threshold (numpy)     {numpy_s:8.4f}s  final equity {numpy_final:,.2f}  fees {numpy_fees:,.2f}")
    print(f"  vectorbt              {vbt_s:8.4f}s  final equity {vbt_final:,.2f}  fees {vbt_fees:,.2f}")
    agree = {"vectorbt": agrees(vbt_final, vbt_fees, ours_final, ours_fees),
             "numpy_user": numpy_final == ours_final and numpy_fees == ours_fees}
    if not args.skip_backtrader:
        bt_s, (bt_final, bt_fees) = best_of(1, lambda: run_backtrader(market, targets))
        figures["backtrader"] = {"seconds": round(bt_s, 3), "final_equity": bt_final, "fees": bt_fees,
                                 "version": __import__("backtrader").__version__}
        print(f"  backtrader            {bt_s:8.3f}s  final equity {bt_final:,.2f}  fees {bt_fees:,.2f}")
        agree["backtrader"] = agrees(bt_final, bt_fees, ours_final, ours_fees)
        figures["speedup_vs_backtrader"] = round(bt_s / ours_s, 1)
    figures["speedup_vs_vectorbt"] = round(vbt_s / ours_s, 2)
    figures["numpy_user_speedup_vs_vectorbt"] = round(vbt_s / numpy_s, 2)
    figures["agrees"] = agree
    figures["pnl_agrees"] = all(agree.values())

    wide = make_market(args.bars, args.topk_symbols, seed=1)
    wide_settings = trading(args.topk_symbols)
    topk = load_strategy(wide_settings, "topk_dropout")
    run_backtest(make_market(30, 60), topk, trading(60))                        # numba compile
    topk_s, topk_run = best_of(args.repeats, lambda: run_backtest(wide, topk, wide_settings))
    held = (topk_run.positions > 0).sum(axis=1)
    figures["topk_dropout"] = {"seconds": round(topk_s, 4), "bars": args.bars, "symbols": args.topk_symbols,
                               "k": topk.params.k, "n_drop": topk.params.n_drop, "fills": len(topk_run.fills),
                               "final_equity": float(topk_run.equity[-1]), "max_names_held": int(held.max()),
                               "bar_decisions_per_second": round(args.bars / topk_s)}
    print(f"  top-k dropout         {topk_s:8.4f}s  {args.bars:,} bars x {args.topk_symbols} symbols, "
          f"{len(topk_run.fills):,} fills, at most {held.max()} names held")

    returns = ours.returns
    with Timer() as t_local:
        simulate_local(returns, args.simulations, "stationary", 20.0, CAPITAL, 252.0, 0.5, seed=0)
    figures["montecarlo_local_seconds"] = round(t_local.seconds, 2)
    if not args.short:
        try:
            from config import load_settings
            from pipelines.backtest.montecarlo import simulate_spark
            from pipelines.lake.spark import get_spark

            spark = get_spark(load_settings())
            simulate_spark(spark, returns[:100], 100, "iid", seed=1)  # warm the Python workers
            with Timer() as t_spark:
                simulate_spark(spark, returns, args.simulations, "stationary", 20.0, CAPITAL, 252.0, 0.5, seed=0)
            figures["montecarlo_spark_seconds"] = round(t_spark.seconds, 2)
        except Exception as exc:  # noqa: BLE001 (report, keep the other figures)
            figures["montecarlo_spark_error"] = str(exc)[:300]
    figures["montecarlo_simulations"] = args.simulations
    print(f"  speed: threshold {figures['speedup_vs_vectorbt']}x vectorbt, numpy user strategy "
          f"{figures['numpy_user_speedup_vs_vectorbt']}x vectorbt"
          + (f", threshold {figures.get('speedup_vs_backtrader')}x backtrader" if "backtrader" in figures else "")
          + f"; P&L agrees: {agree}")
    print(f"  Monte Carlo {args.simulations:,} paths x {len(returns):,} bars: local {figures['montecarlo_local_seconds']}s, "
          f"Spark {figures.get('montecarlo_spark_seconds', 'n/a')}s")
    write_result("backtest_speed_short" if args.short else "backtest_speed", figures, args.out)
    return 0 if figures["pnl_agrees"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
