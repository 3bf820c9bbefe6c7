"""The same strategy in this engine, vectorbt and backtrader: P&L must agree; speed ratios; Monte Carlo time.

    python -m benchmarks.backtest_speed [--bars 2520] [--symbols 50] [--simulations 10000]

Needs the ``bench`` extra (``pip install -e .[bench]``: vectorbt, backtrader).

Data: a random market (geometric random walk closes, opens near the previous close) with
random predictions, ``--bars`` x ``--symbols``. Strategy, expressible in all three: long
above ``p_up`` 0.55, short below 0.45, flat between; each position worth 1% of the initial
capital (``fixed_notional``), decided at a bar's close and filled at the next bar's open;
fees of 3 bps of notional (commission 1 + half-spread 2). Stops, the drawdown breaker,
participation slippage and the volume cap are switched off, since the other two engines
have no exact equivalent; the unit tests cover those against the event-by-event reference.

vectorbt gets the target shares per bar (``targetamount`` orders at the open price, cash
shared across symbols); backtrader gets the same targets through ``order_target_size`` in
``next_open`` (cheat-on-open: filled at that bar's open). The figures compared are final
equity and total fees; times are wall clock for the simulation alone (this engine's time
includes turning predictions into targets), best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from benchmarks.common import Timer, write_result
from config.schemas.trading import TradingSettings
from pipelines.backtest.engine import Market, run_backtest
from pipelines.trading.rules import Rules
from pipelines.backtest.montecarlo import simulate_local

FEE = 3e-4


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
                  p_up, np.full((bars, symbols), 0.2), 252.0)


def rules() -> Rules:
    return Rules.from_settings(TradingSettings(
        sizing={"method": "fixed_notional"},
        costs={"commission_bps": 1, "half_spread_bps": 2, "slippage_bps_per_pct_volume": 0, "max_participation": 1},
        risk={"max_position_size": 0.01, "stop_loss": 100, "take_profit": 100, "max_drawdown": 0.99}))


def target_shares(market: Market, r: Rules, capital: float) -> np.ndarray:
    """Shares wanted at each bar's open: the signal of the previous close at a fixed notional."""
    sig = np.where(market.p_up > r.long_threshold, 1.0, np.where(market.p_up < r.short_threshold, -1.0, 0.0))
    value = sig * r.max_position_size * capital
    targets = np.full(market.open.shape, np.nan)
    targets[1:] = value[:-1] / market.open[1:]
    return targets


def run_vectorbt(market: Market, capital: float, targets: np.ndarray):
    import vectorbt as vbt

    close = pd.DataFrame(market.close, index=market.ts, columns=market.symbols)
    return vbt.Portfolio.from_orders(
        close=close, price=pd.DataFrame(market.open, index=market.ts, columns=market.symbols),
        size=pd.DataFrame(targets, index=market.ts, columns=market.symbols), size_type="targetamount",
        direction="both", fees=FEE, init_cash=capital, cash_sharing=True, group_by=True, freq="1D")


def run_backtrader(market: Market, capital: float, targets: np.ndarray) -> tuple[float, float]:
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
    cerebro.broker.setcash(capital)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-backtrader", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    capital = 1_000_000.0
    market, r = make_market(args.bars, args.symbols), rules()
    print(f"backtest speed: {args.bars:,} bars x {args.symbols} symbols")

    ours_s, ours = best_of(args.repeats, lambda: run_backtest(market, r, capital))
    ours_final, ours_fees = float(ours.equity[-1]), float(ours.fills["cost"].sum())
    targets = target_shares(market, r, capital)
    run_vectorbt(make_market(50, 3), capital, target_shares(make_market(50, 3), r, capital))  # numba compile
    vbt_s, pf = best_of(args.repeats, lambda: run_vectorbt(market, capital, targets))
    vbt_final, vbt_fees = float(pf.final_value()), float(pf.orders.fees.sum())
    figures = {"bars": args.bars, "symbols": args.symbols, "fills": len(ours.fills),
               "quantlake": {"seconds": round(ours_s, 4), "final_equity": ours_final, "fees": ours_fees},
               "vectorbt": {"seconds": round(vbt_s, 4), "final_equity": vbt_final, "fees": vbt_fees,
                            "version": __import__("vectorbt").__version__}}
    print(f"  quantlake   {ours_s:8.3f}s  final equity {ours_final:,.2f}  fees {ours_fees:,.2f}")
    print(f"  vectorbt    {vbt_s:8.3f}s  final equity {vbt_final:,.2f}  fees {vbt_fees:,.2f}")
    agree = [abs(vbt_final - ours_final) / capital < 1e-9, abs(vbt_fees - ours_fees) < 1e-6 * max(1, ours_fees)]
    if not args.skip_backtrader:
        bt_s, (bt_final, bt_fees) = best_of(1, lambda: run_backtrader(market, capital, targets))
        figures["backtrader"] = {"seconds": round(bt_s, 3), "final_equity": bt_final, "fees": bt_fees,
                                 "version": __import__("backtrader").__version__}
        print(f"  backtrader  {bt_s:8.3f}s  final equity {bt_final:,.2f}  fees {bt_fees:,.2f}")
        agree += [abs(bt_final - ours_final) / capital < 1e-9, abs(bt_fees - ours_fees) < 1e-6 * max(1, ours_fees)]
        figures["speedup_vs_backtrader"] = round(bt_s / ours_s, 1)
    figures["speedup_vs_vectorbt"] = round(vbt_s / ours_s, 2)
    figures["pnl_agrees"] = all(agree)

    returns = ours.returns
    with Timer() as t_local:
        simulate_local(returns, args.simulations, "stationary", 20.0, capital, 252.0, 0.5, seed=0)
    figures["montecarlo_local_seconds"] = round(t_local.seconds, 2)
    try:
        from config import load_settings
        from pipelines.backtest.montecarlo import simulate_spark
        from pipelines.lake.spark import get_spark

        spark = get_spark(load_settings())
        simulate_spark(spark, returns[:100], 100, "iid", seed=1)  # warm the Python workers
        with Timer() as t_spark:
            simulate_spark(spark, returns, args.simulations, "stationary", 20.0, capital, 252.0, 0.5, seed=0)
        figures["montecarlo_spark_seconds"] = round(t_spark.seconds, 2)
    except Exception as exc:  # noqa: BLE001 (report, keep the other figures)
        figures["montecarlo_spark_error"] = str(exc)[:300]
    figures["montecarlo_simulations"] = args.simulations
    print(f"  speed: {figures['speedup_vs_vectorbt']}x vectorbt"
          + (f", {figures.get('speedup_vs_backtrader')}x backtrader" if "backtrader" in figures else "")
          + f"; P&L agrees: {figures['pnl_agrees']}")
    print(f"  Monte Carlo {args.simulations:,} paths x {len(returns):,} bars: local {figures['montecarlo_local_seconds']}s, "
          f"Spark {figures.get('montecarlo_spark_seconds', 'n/a')}s")
    write_result("backtest_speed", figures)
    return 0 if figures["pnl_agrees"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
