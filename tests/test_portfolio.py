"""The Redis portfolio: hand-computed P&L, exactly-once fills under replay and racing consumers,
the backtest's average-entry rule, published changes. Against the real local Redis."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pipelines.trading.rules import new_entry
from streaming import live
from streaming.portfolio import Fill, RedisPortfolio, change_message

pytestmark = pytest.mark.services
T0 = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def portfolio(services):
    client = live.redis_client(services)
    book = RedisPortfolio(client, f"test-{uuid.uuid4().hex[:8]}")
    assert book.open(100_000.0) and not book.open(5.0)  # a second open keeps the account
    yield book
    book.clear()
    client.close()


def _fill(n: int, side: str, qty: float, price: float, fee: float = 1.0, symbol: str = "A") -> Fill:
    return Fill(f"f{n}", f"o{n}", T0 + timedelta(minutes=n), symbol, side, qty, price, fee)


def test_hand_computed_position_pnl_cash_and_equity(portfolio: RedisPortfolio) -> None:
    sub = portfolio.changes()
    fills = [_fill(1, "buy", 10, 100.0), _fill(2, "buy", 10, 110.0), _fill(3, "sell", 25, 120.0, fee=2.0)]
    assert all(portfolio.apply_fill(f) for f in fills)
    assert portfolio.mark("A", 118.0, T0 + timedelta(minutes=5))
    assert not portfolio.mark("ZZZ", 1.0, T0)  # no position: nothing to mark
    acct = portfolio.snapshot()
    pos = acct.positions["A"]
    # 20 long at an average of 105; selling 25 at 120 closes 20 (+300) and opens 5 short at 120
    assert (pos.qty, pos.avg_px_open, pos.last_px) == (-5.0, 120.0, 118.0)
    assert pos.realized_pnl == pytest.approx(300 - 4) and pos.unrealized_pnl == pytest.approx(10.0)
    assert acct.cash == pytest.approx(100_000 - 1_001 - 1_101 + 2_998)
    assert acct.equity == pytest.approx(100_000 + 296 + 10) == acct.marked_equity()
    assert acct.fees == 4.0 and acct.realized_pnl == pytest.approx(296)
    assert acct.peak_equity == 100_000.0  # the high-water mark moves at closes only (the breaker's rule)
    kinds = []
    for _ in range(200):
        message = sub.get_message(timeout=0.05)
        if message:
            kinds.append(change_message(message)["kind"])
        if len(kinds) == 4:
            break
    assert kinds == ["fill", "fill", "fill", "mark"]
    sub.close()
    with pytest.raises(ValueError, match="is not a fill"):
        portfolio.apply_fill(_fill(9, "buy", 0, 100.0))


def test_a_replayed_fill_changes_nothing(portfolio: RedisPortfolio) -> None:
    fills = [_fill(i, "buy" if i % 3 else "sell", 5 + i, 100.0 + i) for i in range(10)]
    assert all(portfolio.apply_fill(f) for f in fills)
    once = portfolio.snapshot()
    assert not any(portfolio.apply_fill(f) for f in fills)  # the whole topic again
    assert portfolio.snapshot() == once


def test_random_fills_match_the_backtest_accounting(portfolio: RedisPortfolio) -> None:
    """Random buys and sells (adds, reductions, reversals) of three symbols, with marks: the
    script's positions, average entries, realized P&L, cash and equity equal a reference kept
    in Python with the backtest's own average-entry rule."""
    rng = np.random.default_rng(7)
    qty, entry, realized = {}, {}, {}
    cash, last = 100_000.0, {}
    for n in range(400):
        s = str(rng.choice(["A", "B", "C"]))
        price = float(np.round(rng.uniform(50, 150), 2))
        if rng.random() < 0.25 and s in qty:
            portfolio.mark(s, price, T0 + timedelta(seconds=n))
            last[s] = price
            continue
        side, q, fee = str(rng.choice(["buy", "sell"])), float(rng.integers(1, 60)), float(np.round(rng.uniform(0, 2), 2))
        assert portfolio.apply_fill(Fill(f"r{n}", f"o{n}", T0 + timedelta(seconds=n), s, side, q, price, fee))
        signed = q if side == "buy" else -q
        old, avg = qty.get(s, 0.0), entry.get(s, math.nan)
        if old != 0 and (old > 0) != (signed > 0):
            realized[s] = realized.get(s, 0.0) + (price - avg) * min(abs(signed), abs(old)) * np.sign(old)
        realized[s] = realized.get(s, 0.0) - fee
        entry[s] = new_entry(old, old + signed, avg, signed, price)
        qty[s], cash, last[s] = old + signed, cash - signed * price - fee, price
    acct = portfolio.snapshot()
    for s, q in qty.items():
        pos = acct.positions[s]
        assert pos.qty == pytest.approx(q, abs=1e-9)
        assert pos.realized_pnl == pytest.approx(realized[s], abs=1e-6)
        assert pos.avg_px_open == pytest.approx(0.0 if q == 0 else entry[s], rel=1e-12)
        assert pos.last_px == last[s]
    assert acct.cash == pytest.approx(cash, abs=1e-6)
    assert acct.equity == pytest.approx(cash + sum(q * last[s] for s, q in qty.items()), abs=1e-6)


def test_racing_consumers_apply_each_fill_once(portfolio: RedisPortfolio, services) -> None:
    """Two consumers that both read the whole fills topic, in different orders: each fill counts
    once and the result equals one consumer applying each fill once in time order."""
    cfg = services.platform.redis
    fills = [_fill(i, "buy" if i % 4 else "sell", 3, 100.0 + (i % 7), symbol="AB"[i % 2]) for i in range(120)]
    applied = []

    def consume(order: list[Fill]) -> None:
        client = live.redis_client(services)
        mine = RedisPortfolio(client, portfolio.prefix.split(":", 1)[1])
        applied.append(sum(mine.apply_fill(f) for f in order))
        client.close()

    threads = [threading.Thread(target=consume, args=(fills,)), threading.Thread(target=consume, args=(fills[::-1],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(applied) == len(fills)
    raced = portfolio.snapshot()
    portfolio.clear()
    portfolio.open(100_000.0)
    for f in fills:
        portfolio.apply_fill(f)
    serial = portfolio.snapshot()
    assert raced.cash == pytest.approx(serial.cash) and raced.fees == serial.fees
    assert {s: p.qty for s, p in raced.positions.items()} == {s: p.qty for s, p in serial.positions.items()}


def test_a_bar_close_marks_every_position_moves_the_peak_once_and_journals_it(portfolio: RedisPortfolio) -> None:
    assert portfolio.apply_fill(Fill("b1", "o1", T0, "A", "buy", 10, 100.0, 1.0))
    assert portfolio.apply_fill(Fill("b2", "o2", T0, "B", "sell", 4, 50.0, 0.5))
    close = T0 + timedelta(minutes=5)
    assert portfolio.mark_bar(close, {"A": 103.0, "B": 49.0, "C": 7.0})  # C: no position, nothing to mark
    acct = portfolio.snapshot()
    cash = 100_000.0 - (10 * 100.0 + 1.0) - (-4 * 50.0 + 0.5)
    assert acct.cash == cash and acct.equity == cash + 10 * 103.0 - 4 * 49.0 == acct.marked_equity()
    assert acct.peak_equity == acct.equity and acct.as_of_us == round(close.timestamp() * 1e6)
    assert acct.positions["B"].unrealized_pnl == pytest.approx(4.0)
    # a replayed or older bar changes nothing: the marks cannot go back in time
    assert not portfolio.mark_bar(close, {"A": 1.0}) and not portfolio.mark_bar(T0, {"A": 1.0})
    assert portfolio.snapshot() == acct
    # lower closes: equity falls, the peak stays
    assert portfolio.mark_bar(close + timedelta(minutes=5), {"A": 90.0})
    later = portfolio.snapshot()
    assert later.equity == cash + 10 * 90.0 - 4 * 49.0 and later.peak_equity == acct.peak_equity
    rows = portfolio.journal()
    assert [r["kind"] for r in rows] == ["fill", "fill", "position", "position", "equity", "position", "position",
                                         "equity"]
    assert rows[0]["fill_id"] == "b1" and rows[0]["side"] == "buy" and float(rows[1]["qty"]) == 4.0
    assert float(rows[-1]["equity"]) == later.equity
    portfolio.trim_journal(5)
    assert [r["kind"] for r in portfolio.journal()] == ["position", "position", "equity"]
