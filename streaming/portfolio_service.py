"""``python -m streaming portfolio``: the Redis portfolio as a service.

Reads ``fills`` (one partition: each bar's fills, then its closes) and applies each record to
the account with the scripts of :mod:`streaming.portfolio`: a fill once per fill id, a bar's
closes once per bar time. Its read position is stored in Redis after the effects, so a
restart re-reads a few records and changes nothing twice.

Every ``trading.live.snapshot_seconds`` it moves the portfolio's journal (fills applied;
positions and equity at each close, written by the same scripts) into the Delta live tables
``live_fills``, ``live_positions`` and ``live_equity``, skipping rows the tables already hold.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import pandas as pd

from config import Settings
from pipelines.lake.rows import append_new, existing_keys
from pipelines.lake.tables import LIVE_EQUITY, LIVE_FILLS, LIVE_POSITIONS
from streaming import faults, live, metrics
from streaming.faults import crash_point
from streaming.portfolio import Fill, RedisPortfolio

log = logging.getLogger(__name__)

SINKS = ((LIVE_FILLS, "fill", ["fill_id"]), (LIVE_POSITIONS, "position", ["ts", "symbol"]),
         (LIVE_EQUITY, "equity", ["ts"]))


class PortfolioService:
    """The loop of ``python -m streaming portfolio`` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        faults.arm_from_env()
        self.settings = settings
        self.client = live.redis_client(settings)
        self.book = RedisPortfolio(self.client, live.account(settings))
        self.book.open(settings.trading.initial_capital)
        self.reader = live.TopicReader(settings, self.client, "portfolio", [settings.kafka.topics.fills])
        self.known = {table.name: existing_keys(table, settings, k) for table, _, k in SINKS}
        self.skipped = 0

    def run(self, should_stop: Callable[[], bool]) -> None:
        last_beat = last_flush = 0.0
        try:
            while not should_stop():
                if time.monotonic() - last_beat > 1.0:
                    live.beat(self.client, self.settings, "portfolio")
                    last_beat = time.monotonic()
                self.step()
                if time.monotonic() - last_flush > self.settings.trading.live.snapshot_seconds:
                    self.flush()
                    last_flush = time.monotonic()
        finally:
            self.flush()

    def step(self, timeout_ms: int = 50) -> int:
        """Apply one poll's records; return how many."""
        records = self.reader.poll(timeout_ms)
        done = {}
        for topic, offset, value in records:
            self.apply(value, offset)
            done[topic] = offset + 1
        if records:
            crash_point("portfolio.after_apply")
        self.reader.commit(done)
        return len(records)

    def apply(self, value: dict, offset: int) -> None:
        """One ``fills`` record: a fill or a bar's closes (anything else is logged and skipped)."""
        try:
            if value.get("kind") == "fill":
                fill = Fill(value["fill_id"], value["order_id"], live.utc(value["ts"]), value["symbol"],
                            value["side"], float(value["qty"]), float(value["price"]), float(value["fee"]))
                if self.book.apply_fill(fill):
                    metrics.FILLS_APPLIED.inc()
            elif value.get("kind") == "bar":
                closes = {s: float(p) for s, p in value["closes"].items() if p is not None and math.isfinite(float(p))}
                if self.book.mark_bar(live.utc(value["ts"]), closes):
                    self._observe(live.utc(value["ts"]).timestamp())
            else:
                raise ValueError(f"unknown record kind {value.get('kind')!r}")
        except (KeyError, TypeError, ValueError) as error:
            self.skipped += 1
            log.error("fills record at offset %d skipped: %s (%r)", offset, error, value)

    def _observe(self, bar_ts: float) -> None:
        """The account's figures after a close, for ``/metrics``."""
        acct = self.book.snapshot()
        gross = sum(abs(p.qty) * p.last_px for p in acct.positions.values())
        metrics.observe_account(acct.equity, acct.peak_equity, gross, bar_ts, self.settings.trading.risk.max_drawdown)
        metrics.set_trading_state(self.client.get(live.key(self.settings, "trader", "state")) or "ACTIVE")

    def flush(self) -> int:
        """Move the journal into the Delta tables; return the rows appended."""
        rows = self.book.journal()
        if not rows:
            return 0
        frame = pd.DataFrame(rows)
        written = 0
        for table, kind, key in SINKS:
            part = frame[frame["kind"] == kind]
            if part.empty:
                continue
            part = part[[c for c in table.columns if c in part.columns]].copy()
            for column in part.columns:
                if column == "applied_at":  # Redis server time, epoch seconds
                    part[column] = pd.to_datetime(part[column].astype(float), unit="s", utc=True)
                elif column not in ("fill_id", "order_id", "symbol", "side", "ts"):
                    part[column] = part[column].astype(float)
            written += append_new(table, self.settings, part, key, self.known[table.name])
        crash_point("portfolio.after_delta")
        self.book.trim_journal(len(rows))
        return written

    def close(self) -> None:
        self.reader.close()
        self.client.close()
