"""The API's view of the live account, and its three writes: a manual order, a cancel, the
trading state. Everything here is Redis and Kafka, never Spark.

Reads: the portfolio (:class:`~streaming.portfolio.RedisPortfolio`), the venue's orders (its
order hash and the time index it keeps, :func:`streaming.venue_service.index_member`), the
fill log, the trader's trading state.

Writes go the way the strategy's own do, so nothing downstream can tell them apart:

* a manual order is checked by the same :class:`~pipelines.trading.risk.RiskGate` with the
  same limits, on a :class:`~pipelines.trading.risk.Book` built from the same Redis state. It
  is stamped at the live clock (the newest bar the venue has seen, as the trader stamps its
  orders at the bar it decided on) and sized against that bar's volume, so it fills at the next
  bar's open like any order. Accepted, it goes to ``orders``; rejected, to ``orders.rejected``
  with the limit it hit;
* a cancel is a record on ``orders`` that the venue answers in order with the bars (see
  :mod:`streaming.venue_service`);
* the trading state is the trader's key: HALTED stops every order at the gate (the trader's
  and manual ones), REDUCING lets only orders that shrink a position through.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from config import Settings
from pipelines.trading.orders import ORDER_NAMESPACE, Order
from pipelines.trading.risk import Book, RiskGate, TradingState, Verdict
from streaming import live, metrics
from streaming.portfolio import RedisPortfolio
from streaming.venue_service import IN_FLIGHT, order_record, working_orders

MANUAL = "manual"


class NotFound(LookupError):
    """No such order (the API answers 404)."""


class Conflict(RuntimeError):
    """The request cannot apply to the order's state (the API answers 409)."""


class Unavailable(RuntimeError):
    """Kafka or the gate's lock did not answer in time; nothing was placed (the API answers 503)."""


@dataclass(frozen=True)
class Submitted:
    """A manual order after the gate: its record, the verdict, and the venue's state if it
    answered within ``api.order_ack_seconds``."""

    order: dict
    verdict: Verdict
    venue: dict | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, pattern: str) -> str:
    """The position a cursor stands for; ValueError when it is not one this API returned."""
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        value = ""
    if not re.fullmatch(pattern, value):
        raise ValueError(f"cursor {cursor!r} is not one this API returned")
    return value


class Desk:
    """Reads and writes of the live account for the API (one per API process; thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # a request must not hold a thread through a Redis outage: a few quick retries, then 503
        self.client = live.redis_client(settings, retries=3)
        self.book = RedisPortfolio(self.client, live.account(settings))
        self.gate = RiskGate(settings.trading.limits, count_rate=False)  # the rate: SubmitRate, wall time
        self.rate = live.SubmitRate(self.client, settings)
        self._gate_lock = threading.Lock()
        self._outbox = live.Outbox(settings, "api", signer="desk")

    def k(self, role: str, *parts: str) -> str:
        return live.key(self.settings, role, *parts)

    # reads -------------------------------------------------------------------------------------
    def trading_state(self) -> TradingState:
        return TradingState(self.client.get(self.k("trader", "state")) or TradingState.ACTIVE.value)

    def portfolio(self) -> dict:
        """Cash, equity, exposure, P&L and the trading state."""
        try:
            acct = self.book.snapshot()
        except KeyError:
            raise NotFound(f"no paper account {live.account(self.settings)!r} yet (start `make live`)") from None
        initial = self.settings.trading.initial_capital
        gross = sum(abs(p.qty) * p.last_px for p in acct.positions.values())
        net = sum(p.qty * p.last_px for p in acct.positions.values())
        unrealized = sum(p.unrealized_pnl for p in acct.positions.values())
        return {"account": live.account(self.settings), "cash": acct.cash, "equity": acct.equity,
                "peak_equity": acct.peak_equity,
                "drawdown": 1.0 - acct.equity / acct.peak_equity if acct.peak_equity > 0 else 0.0,
                "gross_exposure": gross, "net_exposure": net,
                "exposure_ratio": gross / acct.equity if acct.equity > 0 else None,
                "pnl": acct.equity - initial, "return": acct.equity / initial - 1.0,
                "realized_pnl": acct.realized_pnl, "unrealized_pnl": unrealized, "fees": acct.fees,
                "initial_capital": initial, "open_positions": sum(1 for p in acct.positions.values() if p.qty),
                "as_of": live.iso(datetime.fromtimestamp(acct.as_of_us / 1e6, timezone.utc)) if acct.as_of_us >= 0
                else None, "trading_state": self.trading_state().value,
                "breaker_drawdown": self.settings.trading.risk.max_drawdown}

    def positions(self, include_flat: bool = False) -> list[dict]:
        try:
            acct = self.book.snapshot()
        except KeyError:
            return []
        return [{"symbol": p.symbol, "qty": p.qty, "avg_px_open": p.avg_px_open, "last_px": p.last_px,
                 "market_value": p.qty * p.last_px, "unrealized_pnl": p.unrealized_pnl,
                 "realized_pnl": p.realized_pnl, "ts": p.ts or None}
                for p in sorted(acct.positions.values(), key=lambda p: p.symbol) if include_flat or p.qty]

    def equity(self, last: int) -> list[dict]:
        """The account at the newest ``last`` closes, oldest first (the equity curve)."""
        return [{"ts": r["ts"], "equity": float(r["equity"]), "cash": float(r["cash"]),
                 "peak_equity": float(r["peak_equity"]), "gross_exposure": float(r["gross_exposure"]),
                 "drawdown": 1.0 - float(r["equity"]) / float(r["peak_equity"]) if float(r["peak_equity"]) > 0 else 0.0}
                for r in self.book.equity_log(last)]

    def order(self, order_id: str) -> dict:
        text = self.client.hget(self.k("venue", "orders"), order_id)
        if text is None:
            raise NotFound(f"no order {order_id!r} at the venue")
        return _order_view(json.loads(text))

    def orders(self, status: str | None, symbol: str | None, since: datetime | None, until: datetime | None,
               cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Orders newest first (by decision time, then id), filtered; a page and the cursor of
        the next. Keyset pages: orders arriving meanwhile never shift or repeat a page."""
        index = self.k("venue", "order_index")
        high = "(" + decode_cursor(cursor, r"\d{20}\|.+") if cursor else "+"
        if until is not None:
            bound = "(" + f"{live.micros(until) + 1:020d}"
            high = bound if high == "+" or bound < high else high
        low = "[" + f"{live.micros(since):020d}" if since is not None else "-"
        out: list[dict] = []
        last_member = None
        chunk = max(limit * 2, 100)
        while len(out) < limit:
            members = self.client.zrevrangebylex(index, high, low, start=0, num=chunk)
            if not members:
                last_member = None
                break
            texts = self.client.hmget(self.k("venue", "orders"), [m.split("|", 1)[1] for m in members])
            for member, text in zip(members, texts):
                last_member = member
                if text is None:
                    continue
                data = json.loads(text)
                if (status is None or data["status"] == status) and (symbol is None or data["symbol"] == symbol):
                    out.append(_order_view(data))
                    if len(out) == limit:
                        break
            if len(out) == limit:
                break
            if len(members) < chunk:
                last_member = None
                break
            high = "(" + members[-1]
        more = last_member is not None and bool(self.client.zrevrangebylex(index, "(" + last_member, low, start=0, num=1))
        return out, (encode_cursor(last_member) if more else None)

    def fills(self, symbol: str | None, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Fills applied to the account, newest first; the cursor is a position in the
        append-only fill log, so pages stay put while fills arrive."""
        end = int(decode_cursor(cursor, r"\d+")) if cursor else self.book.fill_count()
        out: list[dict] = []
        while end > 0 and len(out) < limit:
            start = max(0, end - max(limit, 200))
            rows = self.book.fill_log(start, end - 1)
            for position in range(len(rows) - 1, -1, -1):
                row = rows[position]
                if symbol is None or row["symbol"] == symbol:
                    out.append(_fill_view(row))
                    if len(out) == limit:
                        end = start + position
                        break
            else:
                end = start
        return out, (encode_cursor(str(end)) if end > 0 and len(out) == limit else None)

    # writes ------------------------------------------------------------------------------------
    def set_trading_state(self, state: TradingState, by: str, reason: str | None) -> dict:
        """Set the trading state (the kill switch); the change is logged and published."""
        now = datetime.now(timezone.utc)
        before = self.trading_state()
        entry = {"kind": "trading_state", "state": state.value, "previous": before.value, "by": by,
                 "reason": reason, "at": live.iso(now)}
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.k("trader", "state"), state.value)
        pipe.rpush(self.k("trader", "state_log"), json.dumps(entry))
        pipe.publish(self.book.channel, json.dumps(entry))
        pipe.execute()
        metrics.set_trading_state(state.value)
        return entry

    def submit(self, symbol: str, side: str, qty: float, price: float | None, client_order_id: str | None,
               by: str, key_id: str | None = None, wait: bool = True) -> Submitted:
        """Check a manual market order (at least ``api.min_order_notional``) with the strategy's
        risk gate; send it or reject it. ``key_id`` is remembered as the order's owner, the only
        key besides an admin key that may cancel it.

        The gate's check and the order joining the book are one step under a Redis lock shared by
        every API process: an order accepted here counts as working (in flight until the venue
        claims it) before the next one is checked. :class:`Unavailable` when Kafka did not
        confirm the order: then nothing was recorded and the order was not placed. ``wait``: wait
        up to ``api.order_ack_seconds`` for the venue's state here (the API waits without holding
        a thread instead, :meth:`acked`)."""
        bar = self._last_bar(symbol)
        clock_us = int(self.client.get(self.k("venue", "last_bar_us")) or -1)
        ts = datetime.fromtimestamp(clock_us / 1e6, timezone.utc) if clock_us >= 0 else datetime.now(timezone.utc)
        reference = price if price is not None else (bar["close"] if bar else math.nan)
        key = f"{MANUAL}|{by}|{client_order_id}" if client_order_id else f"{MANUAL}|{uuid.uuid4()}"
        order = Order(str(uuid.uuid5(ORDER_NAMESPACE, key)), ts, symbol, side, float(qty), float(reference),
                      "market", MANUAL, "")
        volume = float(bar["volume"]) if bar and bar.get("volume") is not None else math.nan
        record = {**order_record(order, volume), "submitted_by": by}
        if client_order_id and self.client.hexists(self.k("venue", "orders"), order.order_id):
            return Submitted(record, Verdict(True), self.order(order.order_id))  # a retried request: the same order
        minimum = self.settings.platform.api.min_order_notional
        if not float(qty) * reference >= minimum:  # NaN (no price known) is refused too
            return Submitted(record, Verdict(False, "min_order_notional",
                                             f"order notional {float(qty) * reference:,.6g} is below "
                                             f"api.min_order_notional {minimum:,.2f}"), None)
        topics = self.settings.kafka.topics
        lock = self.client.lock(self.k("api", "gate_lock"), timeout=30, blocking_timeout=10)
        if not lock.acquire():
            raise Unavailable("the risk gate is busy (its lock was not free within 10 s); the order was not placed")
        try:
            with self._gate_lock:
                verdict = self._check(order)
                if verdict.accepted:
                    self.client.hset(self.k(*IN_FLIGHT), order.order_id, json.dumps(
                        {"symbol": symbol, "signed": order.signed, "ts": live.iso(ts)}))
                try:
                    if verdict.accepted:
                        self._outbox.send_confirmed(topics.orders, order.order_id, record)
                    else:
                        self._outbox.send_confirmed(topics.orders_rejected, order.order_id,
                                                    {**record, "limit": verdict.limit, "reason": verdict.reason,
                                                     "rejected_by": "risk_gate"})
                except live.SendFailed as error:
                    self.client.hdel(self.k(*IN_FLIGHT), order.order_id)
                    raise Unavailable(f"Kafka did not confirm the order, so it was not placed: {error}") from None
        finally:
            lock.release()
        if not verdict.accepted:
            return Submitted(record, verdict, None)
        if key_id is not None:
            self.client.hset(self.k("api", "owners"), order.order_id, key_id)
        venue = None
        if wait and live.wait_for(lambda: self.acked(order.order_id) is not None,
                                  self.settings.platform.api.order_ack_seconds, 0.02):
            venue = self.order(order.order_id)
        return Submitted(record, verdict, venue)

    def acked(self, order_id: str) -> dict | None:
        """The venue's state of ``order_id`` once it has claimed it (None before)."""
        text = self.client.hget(self.k("venue", "orders"), order_id)
        return self.view(text) if text else None

    @staticmethod
    def view(text: str) -> dict:
        """The API's view of an order as the venue stores it."""
        return _order_view(json.loads(text))

    def _check(self, order: Order) -> Verdict:
        """The gate on the book (:meth:`_gate_book`), then the submit rate shared with the trader."""
        verdict = self.gate.check(order, self._gate_book(order.symbol), at=datetime.now(timezone.utc))
        if verdict.accepted:
            taken, count = self.rate.take([order.order_id])
            if not taken:
                return Verdict(False, "max_orders_per_second",
                               f"{count} orders accepted in the last second (limit "
                               f"{self.settings.trading.limits.max_orders_per_second})")
        return verdict

    def owner(self, order_id: str) -> str | None:
        """The key that placed manual order ``order_id`` (None: the trader's, or unknown)."""
        return self.client.hget(self.k("api", "owners"), order_id)

    def cancel(self, order_id: str, by: str) -> dict:
        """Ask the venue to cancel ``order_id``; its answer, or ``pending`` if it has not answered
        within ``api.order_ack_seconds``."""
        current, request_id = self.request_cancel(order_id, by)
        live.wait_for(lambda: self.cancel_answer(order_id, request_id) is not None,
                      self.settings.platform.api.order_ack_seconds, 0.02)
        return self.cancel_result(order_id, request_id, current)

    def request_cancel(self, order_id: str, by: str) -> tuple[dict, str]:
        """Send the cancel of a working order; (the order now, the request's id)."""
        current = self.order(order_id)
        if current["status"] not in ("NEW", "ACCEPTED"):
            raise Conflict(f"order {order_id} is {current['status']}: nothing to cancel")
        request_id = uuid.uuid4().hex
        try:
            with self._gate_lock:
                self._outbox.send_confirmed(self.settings.kafka.topics.orders, order_id,
                                            {"kind": "cancel", "order_id": order_id, "by": by,
                                             "request_id": request_id, "ts": live.iso(datetime.now(timezone.utc))})
        except live.SendFailed as error:
            raise Unavailable(f"Kafka did not confirm the cancel, so it was not sent: {error}") from None
        return current, request_id

    def cancel_answer(self, order_id: str, request_id: str) -> dict | None:
        """The venue's answer to cancel request ``request_id`` (None: not yet)."""
        text = self.client.hget(self.k("venue", "cancels"), order_id)
        data = json.loads(text) if text else None
        return data if data and data.get("request_id") == request_id else None

    def cancel_result(self, order_id: str, request_id: str, current: dict) -> dict:
        answer = self.cancel_answer(order_id, request_id)
        if answer is None:
            return {"order_id": order_id, "cancelled": None, "reason": "pending: the venue has not answered yet",
                    "order": current}
        answer.pop("request_id", None)
        return {**answer, "order": self.order(order_id)}

    def _last_bar(self, symbol: str) -> dict | None:
        text = self.client.hget(self.k("venue", "last_bars"), symbol)
        return json.loads(text) if text else None

    def _gate_book(self, symbol: str) -> Book:
        """What the gate knows: the account as the portfolio holds it, the working orders (the
        venue's and the API's in flight), the venue's last price of every symbol in the book, and
        the trading state. Orders are judged at the wall clock: a symbol's data is as old as the
        time since its last tick arrived, however recent the bar times."""
        acct = self.book.snapshot()
        working = working_orders(self.client, self.settings)
        symbols = sorted({symbol} | {s for s, p in acct.positions.items() if p.qty} | set(working))
        last = {}
        for s, text in zip(symbols, self.client.hmget(self.k("venue", "last_bars"), symbols)):
            bar = json.loads(text) if text else None
            if bar and bar.get("close"):
                arrived = bar.get("arrived_us")
                seen = (datetime.fromtimestamp(arrived / 1e6, timezone.utc) if arrived is not None
                        else live.utc(bar["ts"]))
                last[s] = (float(bar["close"]), seen)
            elif s in acct.positions and acct.positions[s].ts:
                last[s] = (acct.positions[s].last_px, live.utc(acct.positions[s].ts))
        return Book(acct.equity, {s: p.qty for s, p in acct.positions.items()}, last, self.trading_state(), working)

    def close(self) -> None:
        self._outbox.close()
        self.client.close()


def _order_view(data: dict) -> dict:
    return {"order_id": data["order_id"], "ts": data["ts"], "symbol": data["symbol"], "side": data["side"],
            "qty": data["qty"], "price": data["price"], "order_type": data.get("order_type", "market"),
            "strategy": data.get("strategy") or None, "model_version": data.get("model_version") or None,
            "status": data["status"], "filled_qty": data["filled_qty"], "reason": data.get("reason"),
            "history": [{"status": s, "ts": t} for s, t in data.get("history", [])]}


def _fill_view(row: dict) -> dict:
    applied = row.get("applied_at")
    return {"fill_id": row["fill_id"], "order_id": row["order_id"], "ts": live.iso(live.utc(row["ts"])), "symbol": row["symbol"],
            "side": row["side"], "qty": float(row["qty"]), "price": float(row["price"]), "fee": float(row["fee"]),
            "applied_at": live.iso(datetime.fromtimestamp(float(applied), timezone.utc)) if applied else None}
