"""The stream's trader: each closed bar's predictions become orders, through the risk gate.

Called by the live job once per micro-batch with the batch's complete bars and predictions.
For each bar time ``t`` in order:

1. publish the bar record (every symbol's open/close/volume at ``t``, and the ids of the orders
   decided before it) to ``bars``; the venue fills those orders at these opens;
2. wait until the portfolio has closed bar ``t`` (its fills at ``t``'s open applied, every
   position marked at ``t``'s close): the decision sees what the backtest sees at a close;
3. decide with the one trading kernel (:mod:`pipelines.trading.decision`): the drawdown breaker,
   then the configured strategy (``trading.strategy``, :mod:`pipelines.trading.strategies`) on the
   cross-section of this bar time, then :func:`~pipelines.trading.decision.orders_and_verdicts`:
   orders for the targets, each judged by the risk gate against positions plus working orders,
   exactly as the backtest engine does. Accepted orders go to ``orders`` (deterministic ids) and
   rejected ones, with the limit they hit, to ``orders.rejected``. A strategy that raises or
   returns something untradable skips this bar's decision: the reason goes to the status note,
   a metric and an alert, and the stream keeps running;
4. remember ``t`` as decided, with its orders (Redis), so a micro-batch replayed after a crash
   neither decides nor sends again, and still lands the orders it had sent in ``live_orders``.

When the drawdown breaker trips the trading state becomes REDUCING (only the flattening orders
pass the gate, as the backtest flattens), then HALTED once every position is flat.

Until a portfolio service has served the account (no heartbeat, no bar closed) the bars are still
published but nothing is decided: a stream started on its own keeps streaming, and says so in its
status note. Once one has, a decision waits for it (``trading.live.portfolio_wait_seconds``)
through its restarts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config import Settings
from pipelines.trading.decision import halted_now, orders_and_verdicts
from pipelines.trading.orders import Order, order_id
from pipelines.trading.risk import LIMITS, MAX_RATE, STATE_CODE, TradingState, limit_params, new_rate_window, reason
from pipelines.trading.strategies import load_strategy
from pipelines.trading.strategy import Context, StrategyError, checked_targets, strategy_name
from pipelines.trading.volatility import VolWindow
from streaming import faults, live, metrics
from streaming.faults import crash_point
from streaming.portfolio import RedisPortfolio
from streaming.venue_service import order_record, parse_order, working_orders

log = logging.getLogger(__name__)

@dataclass
class Decision:
    """What one bar time produced: orders with their verdicts, and the trading state after."""

    ts: pd.Timestamp
    orders: list[tuple[Order, float, str | None, str | None]] = field(default_factory=list)  # order, volume, limit, reason
    state: TradingState = TradingState.ACTIVE
    skipped: str | None = None
    replayed: bool = False  # decided before, in a micro-batch that did not finish: the stored orders


class Trader:
    """Decisions for the live job (see the module docstring)."""

    def __init__(self, settings: Settings, periods_per_year: float, history: pd.DataFrame | None = None) -> None:
        self.settings, self.cfg = settings, settings.trading.live
        faults.arm_from_env()
        self.strategy = load_strategy(settings.trading)  # an unknown strategy or parameter fails here, naming it
        self.name = strategy_name(self.strategy)
        self.limits = settings.trading.limits
        # the submit rate is counted in wall time across processes (SubmitRate), not in the kernel
        self.limit_params, self.window = limit_params(self.limits, count_rate=False), new_rate_window(self.limits)
        self.client = live.redis_client(settings)
        self.rate = live.SubmitRate(self.client, settings)
        self.book = RedisPortfolio(self.client, live.account(settings))
        self.outbox = live.Outbox(settings, "stream", signer="trader")
        self.topics = settings.kafka.topics
        self.periods_per_year = periods_per_year
        self.vol = VolWindow(periods_per_year)
        if history is not None and not history.empty:
            self.vol.seed(history)
        self.note = ""

    def k(self, *parts: str) -> str:
        return live.key(self.settings, "trader", *parts)

    # the batch -------------------------------------------------------------------------------
    def on_batch(self, bars: pd.DataFrame, predictions: pd.DataFrame) -> list[Decision]:
        """Publish, wait, decide and send for every bar time of the batch, in order."""
        if bars.empty or not self.cfg.enabled:
            return []
        decisions = []
        scored = predictions.set_index(["symbol", "ts"]) if not predictions.empty else None
        for ts, slice_ in bars.sort_values(["ts", "symbol"]).groupby("ts", sort=True):
            give_up = self.cfg.send_retry_seconds
            step = live.until_sent(lambda: self._publish_bar(ts, slice_), "trader: bar", give_up)
            for row in slice_.itertuples(index=False):
                self.vol.add(row.symbol, ts, float(row.close))
            p = scored.xs(ts, level="ts") if scored is not None and ts in scored.index.get_level_values("ts") else None
            decisions.append(live.until_sent(lambda: self._decide(ts, step, slice_, p), "trader: orders", give_up))
        return decisions

    def _publish_bar(self, ts: pd.Timestamp, slice_: pd.DataFrame) -> int:
        """Publish the bar record; return the bar time's step (bar times published before it),
        counted once however often a micro-batch is replayed."""
        at = live.micros(ts)
        if at > int(self.client.get(self.k("published_us")) or -1):
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(self.k("steps"))
            pipe.set(self.k("published_us"), at)
            pipe.hset(self.k("step_of"), str(at), int(self.client.get(self.k("steps")) or 0))
            pipe.execute()
        step = int(self.client.hget(self.k("step_of"), str(at)) or 0)
        after = json.loads(self.client.get(self.k("last")) or "{}")
        quotes = {"open_bid", "open_ask"} <= set(slice_.columns)
        arrived = _arrivals(slice_)
        rows = [{"symbol": r.symbol, "open": _num(r.open), "high": _num(r.high), "low": _num(r.low),
                 "close": _num(r.close), "volume": _num(r.volume), "arrived_us": arrived[r.symbol],
                 **({"open_bid": _num(r.open_bid), "open_ask": _num(r.open_ask)} if quotes else {})}
                for r in slice_.itertuples(index=False)]
        self.client.hset(self.k("arrived_us"), mapping=arrived)
        self.outbox.send_confirmed(self.topics.bars, live.iso(ts), {"ts": live.iso(ts), "bars": rows,
                                                                    "after_decision": after})
        return step

    def _decide(self, ts: pd.Timestamp, step: int, slice_: pd.DataFrame,
                predictions: pd.DataFrame | None) -> Decision:
        at = live.micros(ts)
        if at <= int(self.client.get(self.k("decided_us")) or -1):
            return self._stored(ts, at)
        pinned = self.client.hget(self.k("intents"), str(at))
        if pinned is not None:  # decided before a crash or a failed send: the same orders, sent again
            return self._send(self._from_record(ts, json.loads(pinned)), pinned)
        if self._as_of() < 0 and not live.alive(self.client, self.settings, "portfolio"):
            # no portfolio has served this account yet: a stream on its own streams, it does not trade
            self.note = "no portfolio service running: bars published, nothing decided"
            return Decision(ts, skipped=self.note)
        if not live.wait_for(lambda: self._as_of() >= at, self.cfg.portfolio_wait_seconds):
            self.note = (f"the portfolio did not close bar {live.iso(ts)} within "
                         f"{self.cfg.portfolio_wait_seconds:g} s: no decision at it")
            log.error(self.note)
            return Decision(ts, skipped=self.note)
        self.note = ""
        acct = self.book.snapshot()
        state = TradingState(self.client.get(self.k("state")) or TradingState.ACTIVE.value)
        decision = Decision(ts, state=state)
        model_version = str(predictions["model_version"].iloc[0]) if predictions is not None and len(predictions) else ""
        working = working_orders(self.client, self.settings, since=live.utc(ts))
        if predictions is None and not any(p.qty for p in acct.positions.values()) and not working:
            self._mark_decided(at, [], state)
            return decision
        ctx, last_ts = self._context(ts, step, slice_, predictions, acct, working, state, model_version)
        halted = state is not TradingState.ACTIVE or halted_now(False, acct.equity, acct.peak_equity,
                                                                 self.settings.trading.risk.max_drawdown)
        if halted and state is TradingState.ACTIVE:
            state = TradingState.REDUCING
            log.warning("drawdown breaker at %s: equity %.2f, peak %.2f; flattening, then HALTED", live.iso(ts),
                        acct.equity, acct.peak_equity)
        if halted:
            target = np.zeros(len(ctx.symbols))
        else:
            try:
                target = checked_targets(self.strategy, ctx)
            except StrategyError as error:  # skip this bar's decision; the stream keeps running
                self.note = f"{error}: no decision at this bar"
                log.error(self.note)
                metrics.STRATEGY_ERRORS.labels(self.name).inc()
                self._mark_decided(at, [], state)
                return Decision(ts, state=state, skipped=self.note)
        n = len(ctx.symbols)
        qty, code, value = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
        tradable = np.isin(ctx.symbols, slice_["symbol"].to_numpy()) | (ctx.shares != 0) | (ctx.working != 0)
        listed = np.array([self.limits.symbols is None or s in self.limits.symbols for s in ctx.symbols])
        last_px = self._venue_prices(ctx.symbols, ctx.close)
        orders_and_verdicts(live.micros(ts) * 1000, ctx.close, last_px, tradable, ctx.shares, ctx.working.copy(),
                            target, last_ts, listed, acct.equity, STATE_CODE[state], self.limit_params, self.window,
                            qty, code, value)
        self._limit_rate(ctx, qty, code, value)
        decided_at = live.utc(ts)
        for i in np.flatnonzero(qty):
            symbol, q, price = str(ctx.symbols[i]), float(qty[i]), float(ctx.close[i])
            side = "buy" if q > 0 else "sell"
            order = Order(order_id(self.name, symbol, decided_at, model_version), decided_at, symbol, side, abs(q),
                          price, "market", self.name, model_version)
            limit = None if code[i] == 0 else LIMITS[code[i]]
            why = None if limit is None else (
                f"{value[i]:g} orders accepted in the last second of wall time by the trader and the API "
                f"(limit {self.limits.max_orders_per_second})" if code[i] == MAX_RATE else
                reason(int(code[i]), float(value[i]), symbol, side, abs(q), price, decided_at, float(last_px[i]),
                       acct.equity, self.limits))
            decision.orders.append((order, float(ctx.volume[i]), limit, why))
        if state is TradingState.REDUCING and not (ctx.shares != 0).any() and not decision.orders:
            state = TradingState.HALTED
        changed = state is not decision.state
        decision.state = state
        # pin the decision before anything is sent (model version, closes, ids, verdicts): a
        # replay after a crash, or after the champion moved, sends exactly these orders again
        pinned = json.dumps({**self._record(decision), "changed": changed,
                             "closes": {str(s): float(c) for s, c in zip(ctx.symbols, ctx.close)}})
        self.client.hset(self.k("intents"), str(at), pinned)
        crash_point("trader.after_pin")
        return self._send(decision, pinned)

    def _send(self, decision: Decision, pinned: str) -> Decision:
        """Send a pinned decision's orders (accepted to ``orders``, rejected ones with their
        limit to ``orders.rejected``), wait for every acknowledgement, then mark it decided.
        :class:`~streaming.live.SendFailed` leaves the pin: the next attempt sends the same."""
        accepted = []
        for order, volume, limit, why in decision.orders:
            record = order_record(order, volume)
            if limit is not None:
                record.update(limit=limit, reason=why, rejected_by="risk_gate")
            self.outbox.send(self.topics.orders if limit is None else self.topics.orders_rejected, order.order_id,
                             record)
            if limit is None:
                accepted.append(order.order_id)
        self.outbox.confirm()  # SendFailed: nothing is marked decided
        crash_point("trader.after_send")
        self._mark_decided(live.micros(decision.ts), accepted, decision.state, decision,
                           json.loads(pinned).get("changed", False))
        return decision

    @staticmethod
    def _record(decision: Decision) -> dict:
        return {"state": decision.state.value, "orders": [{**order_record(o, volume), "limit": limit, "reason": why}
                                                          for o, volume, limit, why in decision.orders]}

    def _from_record(self, ts: pd.Timestamp, data: dict) -> Decision:
        orders = []
        for record in data["orders"]:
            order, volume = parse_order({"v": live.RECORD_VERSION, **record})
            orders.append((order, volume, record.get("limit"), record.get("reason")))
        return Decision(ts, orders, TradingState(data["state"]))

    def _context(self, ts: pd.Timestamp, step: int, slice_: pd.DataFrame, predictions: pd.DataFrame | None, acct,
                 working: dict[str, float], state: TradingState, model_version: str) -> tuple[Context, np.ndarray]:
        """The cross-section the strategy sees (symbols with a bar at ``ts``, a position or a working
        order, in symbol order), as the backtest builds it; and each symbol's last trade time (ns)."""
        bars = slice_.set_index("symbol")
        held = [s for s, p in acct.positions.items() if p.qty != 0]
        symbols = np.array(sorted(set(bars.index) | set(held) | set(working)), dtype=object)
        pos = acct.positions

        def column(frame, name, s):
            return float(frame.at[s, name]) if frame is not None and s in frame.index and name in frame.columns \
                else math.nan

        close = np.array([float(bars.at[s, "close"]) if s in bars.index else pos[s].last_px if s in pos else math.nan
                          for s in symbols])
        bar_ns = live.micros(ts) * 1000
        event_ts = np.array([bar_ns if s in bars.index else live.micros(pos[s].ts) * 1000 if s in pos and pos[s].ts
                             else np.iinfo(np.int64).min // 2 for s in symbols], dtype=np.int64)
        # the data's age is the larger of its age in bar time and its age by the wall clock since
        # the symbol's last tick arrived: a feed that stopped looks stale even if bars were replayed
        arrived = self.client.hmget(self.k("arrived_us"), list(symbols)) if len(symbols) else []
        now_ns = time.time_ns()
        wall_age = np.array([max(0, now_ns - int(a) * 1000) if a is not None else 0 for a in arrived], dtype=np.int64)
        last_ts = np.minimum(event_ts, bar_ns - wall_age)
        ctx = Context(
            ts=pd.Timestamp(live.utc(ts)), step=step, symbols=symbols, close=close,
            volume=np.array([column(bars, "volume", s) for s in symbols]),
            p_up=np.array([column(predictions, "p_up", s) for s in symbols]),
            expected_return=np.array([column(predictions, "expected_return", s) for s in symbols]),
            shares=np.array([pos[s].qty if s in pos else 0.0 for s in symbols]),
            entry_price=np.array([pos[s].avg_px_open if s in pos and pos[s].qty else math.nan for s in symbols]),
            working=np.array([working.get(s, 0.0) for s in symbols]),
            annual_vol=np.array([self.vol.annual_vol(s) for s in symbols]),
            cash=float(acct.cash), equity=float(acct.equity), peak=float(acct.peak_equity),
            initial_capital=float(self.settings.trading.initial_capital), state=state.value,
            model_version=model_version)
        return ctx, last_ts

    def _venue_prices(self, symbols: np.ndarray, close: np.ndarray) -> np.ndarray:
        """The venue's last price per symbol (the band's reference; the decision's close where the
        venue has none yet)."""
        stored = self.client.hmget(live.key(self.settings, "venue", "last_bars"), list(symbols)) if len(symbols) else []
        out = close.copy()
        for i, text in enumerate(stored):
            price = json.loads(text).get("close") if text else None
            if price is not None and math.isfinite(float(price)) and float(price) > 0:
                out[i] = float(price)
        return out

    def _limit_rate(self, ctx: Context, qty: np.ndarray, code: np.ndarray, value: np.ndarray) -> None:
        """The wall-clock submit rate, shared with the API's orders: accepted orders beyond what
        this second allows are rejected (``max_orders_per_second``), the last ones first."""
        ids = [f"{ctx.ts.value}|{ctx.symbols[i]}" for i in np.flatnonzero(qty) if code[i] == 0]
        taken, count = self.rate.take(ids)
        for i in [i for i in np.flatnonzero(qty) if code[i] == 0][taken:]:
            code[i], value[i] = MAX_RATE, float(count)

    def _stored(self, ts: pd.Timestamp, at: int) -> Decision:
        """The decision made at ``at`` before a crash (its orders were sent then; they are
        returned, not sent again, so the replayed micro-batch still lands them in the table)."""
        stored = self.client.hget(self.k("decisions"), str(at))
        if stored is None:
            return Decision(ts, skipped="decided before (a replayed micro-batch)")
        decision = self._from_record(ts, json.loads(stored))
        decision.replayed = True
        return decision

    def _as_of(self) -> int:
        return self.book.as_of_us()

    def _mark_decided(self, at: int, accepted: list[str], state: TradingState,
                      decision: Decision | None = None, changed: bool = False) -> None:
        """Store the decision at ``at`` (and drop its pin); the trading state only when this
        decision moved it (the breaker), so a state set meanwhile through the API (the kill
        switch) is not overwritten."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.k("decisions"), str(at), json.dumps(self._record(decision) if decision else
                                                           {"state": state.value, "orders": []}))
        pipe.hdel(self.k("intents"), str(at))
        pipe.set(self.k("last"), json.dumps({"ts_us": at, "order_ids": accepted}))
        pipe.set(self.k("decided_us"), at)
        if changed:
            pipe.set(self.k("state"), state.value)
        pipe.execute()

    def close(self) -> None:
        self.outbox.close()
        self.client.close()


def _arrivals(slice_: pd.DataFrame) -> dict[str, int]:
    """Per symbol, when its bar's last tick arrived (epoch microseconds, the broker's append time;
    now, when the job did not record one)."""
    now = time.time_ns() // 1000
    if "last_append" in slice_.columns:
        return {r.symbol: live.micros(r.last_append) if pd.notna(r.last_append) else now
                for r in slice_.itertuples(index=False)}
    return {symbol: now for symbol in slice_["symbol"]}


def _num(x) -> float | None:
    x = float(x) if x is not None else math.nan
    return x if math.isfinite(x) else None
