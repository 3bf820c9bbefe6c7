"""The live portfolio in Redis: cash, positions and equity, changed atomically and once per fill.

Each fill is applied by one Lua script, so its effects (position, average entry, realized
P&L, cash, equity, peak) land together or not at all, and a fill id seen before changes
nothing: a replayed ``fills`` topic, or two consumers racing, cannot count a fill twice.
Marks (the last trade of a symbol) move unrealized P&L and equity the same way. Every change
is published on the account's channel for the API.

Field names follow NautilusTrader: ``qty`` (signed), ``avg_px_open``, ``realized_pnl`` (fees
included, as Nautilus counts commissions), ``unrealized_pnl``, ``last_px``. The average entry
follows :func:`pipelines.trading.rules.new_entry`, the rule the backtest uses.

At a bar's close (:meth:`RedisPortfolio.mark_bar`, once per bar time, in time order) every
position is marked to the bar's closes, equity is recomputed as cash plus the positions at
their last prices (in symbol order, the backtest's sum), the high-water mark ``peak_equity``
moves (only here: the drawdown breaker compares closes, as in the backtest) and ``as_of``
becomes the bar's time. A bar time at or before ``as_of`` changes nothing, so a replay from an
older offset cannot set the marks back.

The scripts also append what they changed to a journal list (fills applied; equity and
positions at each close), in the same atomic step: the portfolio service drains it into the
Delta live tables, so a row is neither lost when the service dies between Redis and Delta
nor written twice (the writer skips rows the table already has).

Keys (``<prefix>`` is ``portfolio:<account>``): ``<prefix>:account`` (hash: cash, equity,
peak_equity, realized_pnl, fees, ts, as_of_us), ``<prefix>:pos:<symbol>`` (hash),
``<prefix>:symbols`` (set), ``<prefix>:fills`` (set of applied fill ids), ``<prefix>:journal``
(list of JSON rows, drained into Delta), ``<prefix>:fill_log`` (every fill applied, in order,
never trimmed: the API pages it), ``<prefix>:equity_log`` (the account at every close, never
trimmed: the API's equity curve); channel ``<prefix>:changes``. The bar script reads the position hashes
it finds in the symbol set, so the account lives on one Redis node (no cluster slots).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime

import redis


APPLY_FILL = """
local acct, seen, pos, symbols = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fill_id, symbol, signed = ARGV[1], ARGV[2], tonumber(ARGV[3])
local price, fee, ts, channel = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
if redis.call('EXISTS', acct) == 0 then return redis.error_reply('portfolio account not opened') end
if redis.call('SADD', seen, fill_id) == 0 then return 0 end
local old = tonumber(redis.call('HGET', pos, 'qty') or '0')
local avg = tonumber(redis.call('HGET', pos, 'avg_px_open') or '0')
local realized = tonumber(redis.call('HGET', pos, 'realized_pnl') or '0')
local last = tonumber(redis.call('HGET', pos, 'last_px') or ARGV[4])
local new = old + signed
local gained = -fee
if old ~= 0 and (old > 0) ~= (signed > 0) then
  local closed = math.min(math.abs(signed), math.abs(old))
  local dir = 1
  if old < 0 then dir = -1 end
  gained = gained + (price - avg) * closed * dir
end
if new == 0 then avg = 0
elseif old == 0 or (new > 0) ~= (old > 0) then avg = price
elseif math.abs(new) > math.abs(old) then avg = (old * avg + signed * price) / new
end
realized = realized + gained
local f = function(x) return string.format('%.17g', x) end
redis.call('HSET', pos, 'symbol', symbol, 'qty', f(new), 'avg_px_open', f(avg), 'realized_pnl', f(realized),
           'last_px', f(price), 'unrealized_pnl', f((price - avg) * new), 'ts', ts)
redis.call('SADD', symbols, symbol)
local cash = tonumber(redis.call('HGET', acct, 'cash')) - (signed * price + fee)
local equity = tonumber(redis.call('HGET', acct, 'equity')) - (signed * price + fee) + new * price - old * last
redis.call('HSET', acct, 'cash', f(cash), 'equity', f(equity), 'ts', ts,
           'realized_pnl', f(tonumber(redis.call('HGET', acct, 'realized_pnl')) + gained),
           'fees', f(tonumber(redis.call('HGET', acct, 'fees')) + fee))
local now = redis.call('TIME')
local row = cjson.encode({kind='fill', fill_id=fill_id, order_id=ARGV[8], ts=ts, symbol=symbol,
           side=ARGV[9], qty=f(math.abs(signed)), price=f(price), fee=f(fee),
           applied_at=string.format('%d.%06d', now[1], now[2])})
redis.call('RPUSH', KEYS[5], row)
redis.call('RPUSH', KEYS[6], row)
redis.call('PUBLISH', channel, cjson.encode({kind='fill', fill_id=fill_id, symbol=symbol, qty=f(new),
           avg_px_open=f(avg), cash=f(cash), equity=f(equity), ts=ts}))
return 1
"""

MARK_BAR = """
local acct, symbols, journal = KEYS[1], KEYS[2], KEYS[3]
local at, ts, channel, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', acct) == 0 then return redis.error_reply('portfolio account not opened') end
local as_of = tonumber(redis.call('HGET', acct, 'as_of_us') or '-1')
if at <= as_of then return 0 end
local f = function(x) return string.format('%.17g', x) end
for i = 5, #ARGV, 2 do
  local pos = prefix .. ':pos:' .. ARGV[i]
  if redis.call('EXISTS', pos) == 1 then
    local price = tonumber(ARGV[i + 1])
    local qty = tonumber(redis.call('HGET', pos, 'qty'))
    local avg = tonumber(redis.call('HGET', pos, 'avg_px_open'))
    redis.call('HSET', pos, 'last_px', f(price), 'unrealized_pnl', f((price - avg) * qty), 'ts', ts)
  end
end
local names = redis.call('SMEMBERS', symbols)
table.sort(names)
local cash = tonumber(redis.call('HGET', acct, 'cash'))
local equity, gross = cash, 0
for _, name in ipairs(names) do
  local pos = prefix .. ':pos:' .. name
  local qty = tonumber(redis.call('HGET', pos, 'qty'))
  local last = tonumber(redis.call('HGET', pos, 'last_px'))
  if qty ~= 0 then
    equity = equity + qty * last
    gross = gross + math.abs(qty) * last
  end
  redis.call('RPUSH', journal, cjson.encode({kind='position', ts=ts, symbol=name, qty=f(qty),
             avg_px_open=redis.call('HGET', pos, 'avg_px_open'), realized_pnl=redis.call('HGET', pos, 'realized_pnl'),
             unrealized_pnl=redis.call('HGET', pos, 'unrealized_pnl'), last_px=f(last)}))
end
local peak = math.max(tonumber(redis.call('HGET', acct, 'peak_equity')), equity)
redis.call('HSET', acct, 'equity', f(equity), 'peak_equity', f(peak), 'ts', ts, 'as_of_us', ARGV[1])
local row = {kind='equity', ts=ts, cash=f(cash), equity=f(equity), peak_equity=f(peak), gross_exposure=f(gross),
             realized_pnl=redis.call('HGET', acct, 'realized_pnl'), fees=redis.call('HGET', acct, 'fees')}
redis.call('RPUSH', journal, cjson.encode(row))
redis.call('RPUSH', KEYS[4], cjson.encode(row))
redis.call('PUBLISH', channel, cjson.encode(row))
return 1
"""

MARK = """
local acct, pos = KEYS[1], KEYS[2]
local price, ts, channel = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if redis.call('EXISTS', pos) == 0 then return 0 end
local qty = tonumber(redis.call('HGET', pos, 'qty'))
local last = tonumber(redis.call('HGET', pos, 'last_px'))
local avg = tonumber(redis.call('HGET', pos, 'avg_px_open'))
local f = function(x) return string.format('%.17g', x) end
redis.call('HSET', pos, 'last_px', f(price), 'unrealized_pnl', f((price - avg) * qty), 'ts', ts)
local equity = tonumber(redis.call('HGET', acct, 'equity')) + qty * (price - last)
redis.call('HSET', acct, 'equity', f(equity), 'ts', ts)
redis.call('PUBLISH', channel, cjson.encode({kind='mark', symbol=redis.call('HGET', pos, 'symbol'),
           last_px=f(price), equity=f(equity), ts=ts}))
return 1
"""


@dataclass(frozen=True)
class Fill:
    """A fill as the venue publishes it (the data contract's fill record)."""

    fill_id: str
    order_id: str
    ts: datetime
    symbol: str
    side: str        # "buy" | "sell"
    qty: float       # > 0
    price: float
    fee: float
    slippage: float = 0.0

    @property
    def signed(self) -> float:
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: float
    avg_px_open: float
    realized_pnl: float
    unrealized_pnl: float
    last_px: float
    ts: str


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float
    peak_equity: float
    realized_pnl: float
    fees: float
    ts: str
    positions: dict[str, Position]
    as_of_us: int = -1   # the last bar time marked (:meth:`RedisPortfolio.mark_bar`), epoch microseconds

    def marked_equity(self) -> float:
        """Cash plus every position at its last price, recomputed from the positions (the
        ``equity`` field is kept incrementally by the scripts; the two agree to rounding)."""
        return self.cash + sum(p.qty * p.last_px for p in self.positions.values())


class RedisPortfolio:
    """One account's portfolio in Redis (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis, account: str) -> None:
        self.client, self.prefix = client, f"portfolio:{account}"
        self.channel = f"{self.prefix}:changes"
        self._apply = client.register_script(APPLY_FILL)
        self._mark = client.register_script(MARK)
        self._mark_bar = client.register_script(MARK_BAR)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def open(self, initial_cash: float) -> bool:
        """Create the account with ``initial_cash`` unless it exists; True when created."""
        created = self.client.hsetnx(self._key("account"), "cash", repr(float(initial_cash)))
        if created:
            zero = repr(0.0)
            self.client.hset(self._key("account"), mapping={
                "equity": repr(float(initial_cash)), "peak_equity": repr(float(initial_cash)), "realized_pnl": zero,
                "fees": zero, "ts": ""})
        return bool(created)

    def apply_fill(self, fill: Fill) -> bool:
        """Apply ``fill`` atomically; False when its id was applied before (nothing changes)."""
        if not (fill.qty > 0 and math.isfinite(fill.price) and fill.price > 0) or fill.side not in ("buy", "sell"):
            raise ValueError(f"fill {fill.fill_id}: side {fill.side!r}, qty {fill.qty}, price {fill.price} "
                             "is not a fill (side buy/sell, qty > 0, price > 0)")
        keys = [self._key("account"), self._key("fills"), self._key("pos", fill.symbol), self._key("symbols"),
                self._key("journal"), self._key("fill_log")]
        args = [fill.fill_id, fill.symbol, repr(fill.signed), repr(float(fill.price)), repr(float(fill.fee)),
                fill.ts.isoformat(), self.channel, fill.order_id, fill.side]
        return bool(self._apply(keys=keys, args=args))

    def mark(self, symbol: str, price: float, ts: datetime) -> bool:
        """Move ``symbol``'s last price (unrealized P&L, equity) between closes; False when there
        is no position. The high-water mark moves only at closes (:meth:`mark_bar`)."""
        return bool(self._mark(keys=[self._key("account"), self._key("pos", symbol)],
                               args=[repr(float(price)), ts.isoformat(), self.channel]))

    def mark_bar(self, ts: datetime, closes: dict[str, float]) -> bool:
        """Close the bar at ``ts``: mark positions at ``closes`` (symbols without a close keep their
        last price), recompute equity, move the peak and ``as_of``; journal equity and positions.
        False (nothing changes) when a bar at or after ``ts`` was marked before."""
        at = _micros(ts)
        args = [str(at), ts.isoformat(), self.channel, self.prefix]
        for symbol, price in closes.items():
            if math.isfinite(price) and price > 0:
                args += [symbol, repr(float(price))]
        return bool(self._mark_bar(keys=[self._key("account"), self._key("symbols"), self._key("journal"),
                                         self._key("equity_log")], args=args))

    def as_of_us(self) -> int:
        """The last bar time closed (:meth:`mark_bar`), epoch microseconds; -1 before the first."""
        return int(self.client.hget(self._key("account"), "as_of_us") or -1)

    def fill_log(self, start: int, stop: int) -> list[dict]:
        """Fills applied, oldest first, positions ``start`` .. ``stop`` (inclusive, as LRANGE)."""
        return [json.loads(r) for r in self.client.lrange(self._key("fill_log"), start, stop)]

    def equity_log(self, last: int) -> list[dict]:
        """The account at the newest ``last`` closes, oldest first."""
        return [json.loads(r) for r in self.client.lrange(self._key("equity_log"), -last, -1)]

    def fill_count(self) -> int:
        return int(self.client.llen(self._key("fill_log")))

    def journal(self, limit: int = 10_000) -> list[dict]:
        """The oldest ``limit`` journal rows (fills applied; equity and positions at closes),
        without removing them: :meth:`trim_journal` does, once they are stored."""
        return [json.loads(r) for r in self.client.lrange(self._key("journal"), 0, limit - 1)]

    def trim_journal(self, n: int) -> None:
        """Drop the oldest ``n`` journal rows (stored elsewhere now)."""
        self.client.ltrim(self._key("journal"), n, -1)

    def snapshot(self) -> Account:
        """The account and its positions as they are now (one round trip, MULTI/EXEC)."""
        symbols = sorted(s if isinstance(s, str) else s.decode() for s in self.client.smembers(self._key("symbols")))
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self._key("account"))
        for s in symbols:
            pipe.hgetall(self._key("pos", s))
        account, *rows = [{(k if isinstance(k, str) else k.decode()): (v if isinstance(v, str) else v.decode())
                           for k, v in h.items()} for h in pipe.execute()]
        if not account:
            raise KeyError(f"{self.prefix}: no such portfolio (open it first)")
        positions = {s: Position(s, float(r["qty"]), float(r["avg_px_open"]), float(r["realized_pnl"]),
                                 float(r["unrealized_pnl"]), float(r["last_px"]), r["ts"]) for s, r in zip(symbols, rows)}
        return Account(float(account["cash"]), float(account["equity"]), float(account["peak_equity"]),
                       float(account["realized_pnl"]), float(account["fees"]), account["ts"], positions,
                       int(account.get("as_of_us", -1)))

    def changes(self) -> redis.client.PubSub:
        """A subscription to this account's change messages (JSON, one per fill or mark)."""
        sub = self.client.pubsub(ignore_subscribe_messages=True)
        sub.subscribe(self.channel)
        return sub

    def clear(self) -> None:
        """Delete the account, its positions and its fill ids (tests, a fresh paper account)."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            self.client.delete(*keys)


def _micros(ts: datetime) -> int:
    """Epoch microseconds of an aware timestamp (the bar clock's integer form)."""
    if ts.tzinfo is None:
        raise ValueError(f"{ts!r} has no time zone (bar times are UTC)")
    return round(ts.timestamp() * 1_000_000)


def change_message(raw: dict) -> dict:
    """A published change as a dict (numbers parsed)."""
    data = json.loads(raw["data"])
    return {k: (float(v) if k in {"qty", "avg_px_open", "cash", "equity", "last_px"} else v) for k, v in data.items()}
