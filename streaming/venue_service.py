"""``python -m streaming venue``: the paper venue as a service.

Reads ``orders`` and ``bars`` (one partition each) and writes ``fills``:

* an order record is checked (fields, types, side, quantity, price, a symbol the venue has
  bars for); a bad one is rejected with the reason on ``orders.rejected`` and never stops the
  service. A good one is claimed by id (a Redis set: an id seen before is ignored) and waits;
* a cancel record (``{"kind": "cancel", "order_id": ...}``, from the API) cancels a working
  order; the answer (CANCELLED, or why not) is stored by order id for the API to read. Being on
  the same partition as the orders and read in order with the bars, a cancel is never raced by
  a fill: it is either before the bar (the order is cancelled) or after it (too late);
* a bar record (every symbol's bar at one time) is held until the orders the trader decided
  before it have arrived (their ids ride on the bar record), then fills the waiting orders at
  the bars' opens (:func:`streaming.venue.fill_at_open`: the backtest's timing, volume cap and
  costs; with ``trading.live.fill_at: next_tick``, at the first tick's ask for a buy and bid
  for a sell, the spread then paid in the price and not in the fee); an order whose symbol has
  no bar at that time lapses, as in the backtest. The fills,
  then the bar's closes, go to ``fills``; then the orders' new states and the bar time are
  stored in one Redis transaction. A bar at or before the last one stored is a replay and is
  skipped.

Killed between publishing and storing, the venue publishes the same fills again after a
restart: same fill ids, which the portfolio applies once.
"""

from __future__ import annotations

import json
from datetime import datetime
import logging
import math
import time
from collections import deque
from collections.abc import Callable

from config import Settings
from pipelines.trading.orders import Order
from pipelines.trading.rules import Costs
from streaming import faults, live, metrics
from streaming.faults import crash_point
from streaming.signing import Verifier
from streaming.venue import OrderState, OrderStatus, fill_at_open

log = logging.getLogger(__name__)

IN_FLIGHT = ("api", "in_flight")  # key parts: manual orders accepted by the API's gate, not yet claimed by the venue
REQUIRED = {"order_id": str, "ts": str, "symbol": str, "side": str, "qty": (int, float), "price": (int, float)}

CLAIM = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == 'ACCEPTED' then redis.call('SADD', KEYS[3], ARGV[1]) end
redis.call('ZADD', KEYS[4], 0, ARGV[4])
return 1
"""


def index_member(order: Order) -> str:
    """The order's member in the venue's order index (a sorted set read by lexicographic range:
    decision time in microseconds, zero-padded, then the id), so pages by time are stable."""
    return f"{live.micros(order.ts):020d}|{order.order_id}"


class OrderError(ValueError):
    """An order record the venue cannot accept; ``reason`` says why."""


def order_record(order: Order, decision_volume: float) -> dict:
    """The ``orders`` topic record of ``order`` (``decision_volume``: the decision bar's volume,
    which caps and prices the fill as in the backtest)."""
    return {"order_id": order.order_id, "ts": live.iso(order.ts), "symbol": order.symbol, "side": order.side,
            "qty": order.quantity, "order_type": order.order_type, "price": order.price,
            "decision_volume": decision_volume, "strategy": order.strategy, "model_version": order.model_version}


def parse_order(value: dict | None) -> tuple[Order, float]:
    """An order record -> (order, decision volume); :class:`OrderError` names what is wrong."""
    if not isinstance(value, dict) or "_malformed" in value:
        raise OrderError(f"malformed record: {(value or {}).get('_malformed', value)!r:.80}")
    if value.get("v") != live.RECORD_VERSION:
        raise OrderError(f"unknown record version {value.get('v')!r}")
    missing = [name for name in REQUIRED if value.get(name) is None]
    if missing:
        raise OrderError(f"missing {', '.join(missing)}")
    wrong = [f"{name}={value[name]!r}" for name, kind in REQUIRED.items()
             if not isinstance(value[name], kind) or isinstance(value[name], bool)]
    if wrong:
        raise OrderError(f"wrong type: {', '.join(wrong)}")
    qty, price = float(value["qty"]), float(value["price"])
    if not (math.isfinite(qty) and qty > 0):
        raise OrderError(f"quantity {value['qty']!r} is not positive")
    if not (math.isfinite(price) and price > 0):
        raise OrderError(f"price {value['price']!r} is not positive")
    if value["side"] not in ("buy", "sell"):
        raise OrderError(f"side {value['side']!r} is neither buy nor sell")
    if value.get("order_type", "market") != "market":
        raise OrderError(f"order type {value['order_type']!r}: the paper venue fills market orders only")
    try:
        ts = live.utc(value["ts"])
    except (ValueError, TypeError) as error:
        raise OrderError(f"ts {value['ts']!r} is not a time: {error}") from None
    volume = value.get("decision_volume")
    volume = float(volume) if isinstance(volume, (int, float)) and not isinstance(volume, bool) else math.nan
    order = Order(value["order_id"], ts, value["symbol"], value["side"], qty, price, "market",
                  str(value.get("strategy", "")), str(value.get("model_version", "")))
    return order, volume


def state_json(state: OrderState) -> str:
    o = state.order
    return json.dumps({**order_record(o, state.decision_volume), "status": state.status.value,
                       "filled_qty": state.filled_qty, "reason": state.reason,
                       "history": [[s.value, live.iso(t)] for s, t in state.history]})


def state_from_json(text: str) -> OrderState:
    data = json.loads(text)
    order, volume = parse_order({"v": live.RECORD_VERSION, **data})
    state = OrderState(order, volume, OrderStatus(data["status"]), data["filled_qty"], data["reason"])
    state.history = [(OrderStatus(s), live.utc(t)) for s, t in data["history"]]
    return state


class VenueService:
    """The loop of ``python -m streaming venue`` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        faults.arm_from_env()
        self.settings, self.rules = settings, Costs.from_settings(settings.trading)
        self.topics = settings.kafka.topics
        self.client = live.redis_client(settings)
        self.reader = live.TopicReader(settings, self.client, "venue", [self.topics.orders, self.topics.bars])
        self.outbox = live.Outbox(settings, "venue")
        self._claim = self.client.register_script(CLAIM)
        self.pending: deque[tuple[int, dict, float]] = deque()  # (offset, bar record, first seen)
        self.next_tick = settings.trading.live.fill_at == "next_tick"
        self.checks = settings.trading.live.venue
        self.verifier = Verifier(settings)

    def k(self, *parts: str) -> str:
        return live.key(self.settings, "venue", *parts)

    def run(self, should_stop: Callable[[], bool]) -> None:
        last_beat = 0.0
        while not should_stop():
            if time.monotonic() - last_beat > 1.0:
                live.beat(self.client, self.settings, "venue")
                last_beat = time.monotonic()
            try:
                self.step()
            except live.SendFailed as error:  # nothing was recorded: the same records go again
                metrics.SEND_FAILURES.labels("venue").inc()
                log.error("venue: %s; trying again in 1 s", error)
                time.sleep(1.0)

    def step(self, timeout_ms: int = 50) -> None:
        """One poll: take the orders, queue the bars, process the bars that are ready."""
        done: dict[str, int] = {}
        for topic, offset, value in self.reader.poll(timeout_ms):
            if topic == self.topics.orders and isinstance(value, dict) and value.get("kind") == "cancel":
                self.on_cancel(value)
                done[topic] = offset + 1
            elif topic == self.topics.orders:
                self.on_order(value, offset)
                done[topic] = offset + 1
            else:
                self.pending.append((offset, value, time.monotonic()))
        while self.pending and self._ready(*self.pending[0]):
            offset, value, _ = self.pending[0]
            self.on_bar(value, offset)  # SendFailed: the bar stays first in line, nothing was stored
            self.pending.popleft()
            done[self.topics.bars] = offset + 1
        self.reader.commit(done)

    # orders ----------------------------------------------------------------------------------
    def on_order(self, value, offset: int) -> None:
        try:
            order, _ = parse_order(value)
            self._check_signature(value)
            volume = self._check(order)
        except OrderError as error:
            self._reject(value, str(error), offset)
            return
        state = OrderState(order, volume)
        state.move(OrderStatus.NEW, order.ts)
        state.move(OrderStatus.ACCEPTED, order.ts)
        if not self._claim(keys=[self.k("claimed"), self.k("orders"), self.k("working"), self.k("order_index")],
                           args=[order.order_id, state_json(state), "ACCEPTED", index_member(order)]):
            log.info("order %s seen before: ignored", order.order_id)
        else:
            metrics.VENUE_ORDERS.labels("ACCEPTED").inc()
            crash_point("venue.after_claim")

    def _check_signature(self, value: dict) -> None:
        if self.checks.require_signature:
            problem = self.verifier.problem(value)
            if problem:
                raise OrderError(problem)

    def _check(self, order: Order) -> float:
        """The venue's own limits, whatever the producer's gate did (``trading.live.venue``): a
        symbol it has bars for, quantity and notional caps, the price within its band of the
        venue's last price. Returns the decision bar's volume as the venue saw it (the record's
        ``decision_volume`` is not trusted; :meth:`_seen_volumes` looks again when it fills)."""
        text = self.client.hget(self.k("last_bars"), order.symbol)
        if text is None:
            raise OrderError(f"unknown symbol {order.symbol!r}: the venue has no bars for it")
        last = json.loads(text)
        c = self.checks
        if order.quantity > c.max_order_quantity:
            raise OrderError(f"quantity {order.quantity:g} > the venue's max_order_quantity {c.max_order_quantity:g}")
        px = float(last.get("close") or math.nan)
        if not (px > 0):
            raise OrderError(f"no last price of {order.symbol} at the venue")
        if order.quantity * px > c.max_order_notional:
            raise OrderError(f"notional {order.quantity * px:,.2f} at the venue's last price {px:g} > the venue's "
                             f"max_order_notional {c.max_order_notional:,.2f}")
        if abs(order.price / px - 1.0) > c.price_band:
            raise OrderError(f"price {order.price:g} outside +/-{c.price_band:.0%} of the venue's last price {px:g}")
        seen = self.client.hget(self.k("volumes", str(live.micros(order.ts))), order.symbol)
        volume = seen if seen is not None else last.get("volume")  # its decision bar, else the last it saw
        return float(volume) if volume is not None else math.nan  # the decision bar's again at the fill

    def on_cancel(self, value: dict) -> None:
        """Cancel a working order; store the answer under ``cancels`` (a replayed cancel of an
        order cancelled before finds it no longer working and answers the same)."""
        order_id = str(value.get("order_id"))
        text = self.client.hget(self.k("orders"), order_id)
        problem = self.verifier.problem(value) if self.checks.require_signature else None
        if problem:
            answer = {"order_id": order_id, "cancelled": False, "reason": f"cancel refused: {problem}"}
        elif text is None:
            answer = {"order_id": order_id, "cancelled": False, "reason": "unknown order"}
        else:
            state = state_from_json(text)
            if self.client.sismember(self.k("working"), order_id):
                at = live.utc(value["ts"]) if isinstance(value.get("ts"), str) else state.order.ts
                state.move(OrderStatus.CANCELLED, at, f"cancelled by {value.get('by') or 'request'}")
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(self.k("orders"), order_id, state_json(state))
                pipe.srem(self.k("working"), order_id)
                pipe.execute()
                metrics.VENUE_ORDERS.labels("CANCELLED").inc()
                answer = {"order_id": order_id, "cancelled": True, "reason": state.reason}
            else:
                answer = {"order_id": order_id, "cancelled": state.status is OrderStatus.CANCELLED and
                          (state.reason or "").startswith("cancelled by"),
                          "reason": f"not working: {state.status.value}" + (f" ({state.reason})" if state.reason else "")}
        self.client.hset(self.k("cancels"), order_id, json.dumps({**answer, "request_id": value.get("request_id")}))

    def _reject(self, value, reason: str, offset: int) -> None:
        """Publish the rejection once per record (a replayed record is not rejected twice)."""
        if self.client.sismember(self.k("rejected_offsets"), offset):
            return
        order_id = value.get("order_id") if isinstance(value, dict) else None
        log.warning("order rejected (%s): %s", order_id or f"offset {offset}", reason)
        self.outbox.send_confirmed(self.topics.orders_rejected, str(order_id or f"offset-{offset}"),
                                   {"order": value, "order_id": order_id, "limit": "venue", "reason": reason,
                                    "rejected_by": "venue", "offset": offset})
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.k("rejected_offsets"), offset)
        if isinstance(order_id, str):
            pipe.sadd(self.k("claimed"), order_id)
        pipe.execute()
        metrics.VENUE_ORDERS.labels("REJECTED").inc()

    # bars ------------------------------------------------------------------------------------
    def _ready(self, offset: int, value: dict, seen: float) -> bool:
        """Whether the orders decided before this bar have all arrived (or waited too long)."""
        ids = (value.get("after_decision") or {}).get("order_ids") or []
        if not ids or all(self.client.smismember(self.k("claimed"), ids)):
            return True
        if time.monotonic() - seen > self.settings.trading.live.venue_wait_seconds:
            log.error("bar %s: %d order(s) decided before it never arrived; filling without them",
                      value.get("ts"), sum(not x for x in self.client.smismember(self.k("claimed"), ids)))
            return True
        return False

    def on_bar(self, value: dict, offset: int) -> None:
        try:
            ts = live.utc(value["ts"])
            bars = {b["symbol"]: b for b in value["bars"]}
        except (KeyError, TypeError, ValueError) as error:
            log.error("bar record at offset %d skipped: %s", offset, error)
            return
        at = live.micros(ts)
        if at <= int(self.client.get(self.k("last_bar_us")) or -1):
            return  # a replay
        if bars:
            self.client.sadd(self.k("symbols"), *bars)
        ids = sorted(self.client.smembers(self.k("working")))
        states = [state_from_json(text) for text in (self.client.hmget(self.k("orders"), ids) if ids else []) if text]
        changed, fills = [], []
        due = [state for state in sorted(states, key=lambda s: (s.order.symbol, s.order.ts)) if state.order.ts < ts]
        self._seen_volumes(due)
        for state in due:
            bar = bars.get(state.order.symbol)
            price, quoted = _fill_price(bar, state.order.side, self.next_tick)
            if math.isfinite(price) and price > 0:
                fill = fill_at_open(state, ts, price, self.rules, quoted)
                if fill is not None:
                    fills.append(fill)
            else:
                state.move(OrderStatus.CANCELLED, ts, f"no bar of {state.order.symbol} at {live.iso(ts)}: the order "
                                                      "lapses (the backtest drops it too)")
            changed.append(state)
        for fill in fills:
            self.outbox.send(self.topics.fills, fill.fill_id, {
                "kind": "fill", "fill_id": fill.fill_id, "order_id": fill.order_id, "ts": live.iso(fill.ts),
                "symbol": fill.symbol, "side": fill.side, "qty": fill.qty, "price": fill.price, "fee": fill.fee})
        closes = {s: b.get("close") for s, b in bars.items()}
        self.outbox.send(self.topics.fills, "bar", {"kind": "bar", "ts": live.iso(ts), "closes": closes})
        self.outbox.confirm()  # SendFailed: no order is marked filled, the bar is not stored as done
        crash_point("venue.after_fills")
        pipe = self.client.pipeline(transaction=True)
        for state in changed:
            pipe.hset(self.k("orders"), state.order.order_id, state_json(state))
        if changed:
            pipe.srem(self.k("working"), *[s.order.order_id for s in changed])
        pipe.set(self.k("last_bar_us"), at)
        if bars:  # each symbol's volume at this bar time, for orders decided on it (the last 32 bar times kept)
            volumes = {s: b.get("volume") for s, b in bars.items() if b.get("volume") is not None}
            if volumes:
                pipe.hset(self.k("volumes", str(at)), mapping=volumes)
                pipe.rpush(self.k("volume_times"), at)
        now_us = time.time_ns() // 1000  # when the bar record lacks its ticks' arrival: when the venue saw it
        if bars:  # every symbol's last bar (close, volume, time): manual orders are checked and sized on them
            pipe.hset(self.k("last_bars"), mapping={s: json.dumps({"close": b.get("close"), "volume": b.get("volume"),
                                                                   "ts": value["ts"], "arrived_us": b.get("arrived_us") or now_us})
                                                    for s, b in bars.items()})
        pipe.execute()
        for state in changed:
            metrics.VENUE_ORDERS.labels(state.status.value).inc()
        metrics.FILLS.inc(len(fills))
        crash_point("venue.after_store")
        self._trim_volumes()

    def _seen_volumes(self, states: list[OrderState]) -> None:
        """Each order's participation cap from the volume the venue saw at its decision bar (the
        record's ``decision_volume`` is not trusted). Looked up when it fills, since after a
        restart the venue may claim an order before it has processed the bar it was decided on."""
        if not states:
            return
        pipe = self.client.pipeline(transaction=False)
        for state in states:
            pipe.hget(self.k("volumes", str(live.micros(state.order.ts))), state.order.symbol)
        for state, seen in zip(states, pipe.execute()):
            if seen is not None:
                state.decision_volume = float(seen)

    def _trim_volumes(self, keep: int = 32) -> None:
        while self.client.llen(self.k("volume_times")) > keep:
            self.client.delete(self.k("volumes", str(self.client.lpop(self.k("volume_times")))))

    def close(self) -> None:
        self.reader.close()
        self.outbox.close()
        self.client.close()


def _fill_price(bar: dict | None, side: str, next_tick: bool) -> tuple[float, bool]:
    """Where an order fills in the bar after its decision: the bar's open (the backtest's rule),
    or in next-tick mode the first tick's ask for a buy and bid for a sell (the open when that
    tick had no quote). Returns (price, whether it is a quote)."""
    if not bar:
        return math.nan, False
    if next_tick:
        quote = bar.get("open_ask" if side == "buy" else "open_bid")
        if quote is not None and math.isfinite(float(quote)) and float(quote) > 0:
            return float(quote), True
    return (float(bar["open"]) if bar.get("open") is not None else math.nan), False


def order_states(settings: Settings) -> list[OrderState]:
    """Every order the venue holds, in any state."""
    client = live.redis_client(settings)
    try:
        return [state_from_json(t) for t in client.hvals(live.key(settings, "venue", "orders"))]
    finally:
        client.close()


def working_orders(client, settings: Settings, since: datetime | None = None) -> dict[str, float]:
    """Per symbol, the signed shares of the venue's working orders (accepted, not yet filled),
    and of the API's orders sent but not yet claimed by the venue (:data:`IN_FLIGHT`): the part
    of the book the risk gate counts beside the positions. With ``since``, only orders decided at
    or after it: the trader deciding at a bar the portfolio has closed knows every order decided
    before that bar filled or lapsed at its open, even while a restarted venue has not yet stored
    that."""
    ids = sorted(client.smembers(live.key(settings, "venue", "working")))
    out: dict[str, float] = {}
    for text in (client.hmget(live.key(settings, "venue", "orders"), ids) if ids else []):
        if text:
            state = state_from_json(text)
            if since is not None and state.order.ts < since:
                continue
            out[state.order.symbol] = out.get(state.order.symbol, 0.0) + state.order.signed - (
                state.filled_qty if state.order.side == "buy" else -state.filled_qty)
    flying = client.hgetall(live.key(settings, *IN_FLIGHT))
    if flying:
        claimed = client.smismember(live.key(settings, "venue", "claimed"), list(flying))
        for (order_id, text), done in zip(flying.items(), claimed):
            if done:  # the venue has it now (working above, or already ended)
                client.hdel(live.key(settings, *IN_FLIGHT), order_id)
                continue
            data = json.loads(text)
            if since is None or live.utc(data["ts"]) >= since:
                out[data["symbol"]] = out.get(data["symbol"], 0.0) + float(data["signed"])
    return {s: q for s, q in out.items() if q}
