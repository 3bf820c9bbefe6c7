"""The stream's trader: each closed bar's predictions become orders, through the risk gate.

Called by the live job once per micro-batch with the batch's complete bars and predictions.
For each bar time ``t`` in order:

1. publish the bar record (every symbol's open/close/volume at ``t``, and the ids of the orders
   decided before it) to ``bars``; the venue fills those orders at these opens;
2. wait until the portfolio has closed bar ``t`` (its fills at ``t``'s open applied, every
   position marked at ``t``'s close): the decision sees what the backtest sees at a close;
3. decide with the shared rules (:func:`pipelines.trading.decision.decide_targets`: breaker,
   stops, signal x size), turn targets into orders (:func:`pipelines.trading.orders.orders_for_targets`,
   deterministic ids), check each with the :class:`~pipelines.trading.risk.RiskGate` and publish
   accepted ones to ``orders`` and rejected ones, with the limit they hit, to ``orders.rejected``;
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
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from config import Settings
from pipelines.trading.decision import decide_targets
from pipelines.trading.orders import Order, orders_for_targets
from pipelines.trading.risk import Book, RiskGate, TradingState
from pipelines.trading.rules import Rules
from streaming import live
from streaming.portfolio import Account, RedisPortfolio
from streaming.venue_service import order_record, parse_order

log = logging.getLogger(__name__)

VOL_WINDOW = 20  # the backtest's trailing-volatility window (Market.from_frames)


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
        self.rules = Rules.from_settings(settings.trading)
        self.params = self.rules.params()
        self.gate = RiskGate(settings.trading.limits)
        self.client = live.redis_client(settings)
        self.book = RedisPortfolio(self.client, live.account(settings))
        self.producer = live.ordered_producer(settings)
        self.topics = settings.kafka.topics
        self.periods_per_year = periods_per_year
        self.closes: dict[str, deque] = {}
        if history is not None and not history.empty:
            for symbol, rows in history.sort_values("ts").groupby("symbol"):
                self.closes[symbol] = deque(rows["close"].astype(float).tolist()[-(VOL_WINDOW + 1):],
                                            maxlen=VOL_WINDOW + 1)
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
            self._publish_bar(ts, slice_)
            for row in slice_.itertuples(index=False):
                self.closes.setdefault(row.symbol, deque(maxlen=VOL_WINDOW + 1)).append(float(row.close))
            p = scored.xs(ts, level="ts") if scored is not None and ts in scored.index.get_level_values("ts") else None
            decisions.append(self._decide(ts, slice_, p))
        return decisions

    def _publish_bar(self, ts: pd.Timestamp, slice_: pd.DataFrame) -> None:
        after = json.loads(self.client.get(self.k("last")) or "{}")
        quotes = {"open_bid", "open_ask"} <= set(slice_.columns)
        rows = [{"symbol": r.symbol, "open": _num(r.open), "high": _num(r.high), "low": _num(r.low),
                 "close": _num(r.close), "volume": _num(r.volume),
                 **({"open_bid": _num(r.open_bid), "open_ask": _num(r.open_ask)} if quotes else {})}
                for r in slice_.itertuples(index=False)]
        live.send(self.producer, self.topics.bars, live.iso(ts), {"ts": live.iso(ts), "bars": rows,
                                                                   "after_decision": after})
        self.producer.flush()

    def _decide(self, ts: pd.Timestamp, slice_: pd.DataFrame, predictions: pd.DataFrame | None) -> Decision:
        at = live.micros(ts)
        if at <= int(self.client.get(self.k("decided_us")) or -1):
            return self._stored(ts, at)
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
        if predictions is None and not any(p.qty for p in acct.positions.values()):
            self._mark_decided(at, [], state)
            return decision
        bars = slice_.set_index("symbol")
        held = [s for s, p in acct.positions.items() if p.qty != 0]
        symbols = sorted(set(bars.index) | set(held))
        closes = {s: float(bars.at[s, "close"]) if s in bars.index else acct.positions[s].last_px for s in symbols}
        shares = np.array([acct.positions[s].qty if s in acct.positions else 0.0 for s in symbols])
        entry = np.array([acct.positions[s].avg_px_open if s in acct.positions and acct.positions[s].qty else math.nan
                          for s in symbols])
        p_up = np.array([float(predictions.at[s, "p_up"]) if predictions is not None and s in predictions.index
                         else math.nan for s in symbols])
        vol = np.array([self._annual_vol(s) for s in symbols])
        target = np.zeros(len(symbols))
        halted = state is not TradingState.ACTIVE
        halted = decide_targets(acct.equity, acct.peak_equity, halted, self.settings.trading.initial_capital, shares,
                                entry, np.array([closes[s] for s in symbols]), p_up, vol, self.params, target)
        if halted and state is TradingState.ACTIVE:
            state = TradingState.REDUCING
            log.warning("drawdown breaker at %s: equity %.2f, peak %.2f; flattening, then HALTED", live.iso(ts),
                        acct.equity, acct.peak_equity)
        positions = dict(zip(symbols, shares.tolist()))
        orders = orders_for_targets(dict(zip(symbols, target.tolist())), positions, closes, live.utc(ts),
                                    self.cfg.strategy, model_version)
        gate_book = self._gate_book(acct, bars, ts, state)
        volume = {s: float(bars.at[s, "volume"]) if s in bars.index else math.nan for s in symbols}
        accepted = []
        for order in orders:
            verdict = self.gate.check(order, gate_book)
            decision.orders.append((order, volume[order.symbol], verdict.limit, verdict.reason))
            topic = self.topics.orders if verdict.accepted else self.topics.orders_rejected
            record = order_record(order, volume[order.symbol])
            if not verdict.accepted:
                record.update(limit=verdict.limit, reason=verdict.reason, rejected_by="risk_gate")
            live.send(self.producer, topic, order.order_id, record)
            if verdict.accepted:
                accepted.append(order.order_id)
        self.producer.flush()
        if state is TradingState.REDUCING and not any(q for q in positions.values() if abs(q) > 1e-9) and not orders:
            state = TradingState.HALTED
        changed = state is not decision.state
        decision.state = state
        self._mark_decided(at, accepted, state, decision, changed)
        return decision

    def _stored(self, ts: pd.Timestamp, at: int) -> Decision:
        """The decision made at ``ts`` before a crash (its orders were sent then; they are
        returned, not sent again, so the replayed micro-batch still lands them in the table)."""
        stored = self.client.hget(self.k("decisions"), str(at))
        if stored is None:
            return Decision(ts, skipped="decided before (a replayed micro-batch)")
        data = json.loads(stored)
        orders = []
        for record in data["orders"]:
            order, volume = parse_order({"v": live.RECORD_VERSION, **record})
            orders.append((order, volume, record.get("limit"), record.get("reason")))
        return Decision(ts, orders, TradingState(data["state"]), replayed=True)

    def _as_of(self) -> int:
        return self.book.as_of_us()

    def _mark_decided(self, at: int, accepted: list[str], state: TradingState,
                      decision: Decision | None = None, changed: bool = False) -> None:
        """Store the decision at ``at``; the trading state only when this decision moved it (the
        breaker), so a state set meanwhile through the API (the kill switch) is not overwritten."""
        pipe = self.client.pipeline(transaction=True)
        orders = [{**order_record(o, volume), "limit": limit, "reason": reason}
                  for o, volume, limit, reason in (decision.orders if decision else [])]
        pipe.hset(self.k("decisions"), str(at), json.dumps({"state": state.value, "orders": orders}))
        pipe.set(self.k("last"), json.dumps({"ts_us": at, "order_ids": accepted}))
        pipe.set(self.k("decided_us"), at)
        if changed:
            pipe.set(self.k("state"), state.value)
        pipe.execute()

    def _gate_book(self, acct: Account, bars: pd.DataFrame, ts: pd.Timestamp, state: TradingState) -> Book:
        last = {s: (p.last_px, live.utc(p.ts) if p.ts else live.utc(ts)) for s, p in acct.positions.items()}
        last.update({s: (float(bars.at[s, "close"]), live.utc(ts)) for s in bars.index})
        return Book(acct.equity, {s: p.qty for s, p in acct.positions.items()}, last, state)

    def _annual_vol(self, symbol: str) -> float:
        """The backtest's trailing volatility: the std of the last ``VOL_WINDOW`` log returns
        (at least half of them), annualized."""
        closes = np.asarray(self.closes.get(symbol, ()), dtype=float)
        if len(closes) < 2:
            return math.nan
        returns = np.diff(np.log(closes))[-VOL_WINDOW:]
        if len(returns) < max(2, VOL_WINDOW // 2):
            return math.nan
        return float(np.std(returns, ddof=1) * math.sqrt(self.periods_per_year))

    def close(self) -> None:
        self.producer.close()
        self.client.close()


def _num(x) -> float | None:
    x = float(x) if x is not None else math.nan
    return x if math.isfinite(x) else None
