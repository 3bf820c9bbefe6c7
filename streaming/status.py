"""Running figures of the live job, and the pid files of the feed and the stream.

The stream rewrites ``.state/live/<dataset>/status.json`` after every micro-batch: cumulative
ticks in, dead letters by reason, bars, feature rows, predictions, the last batch's time,
watermark and duration, and the model it served. Cumulative figures count each batch id once,
so a batch replayed after a restart does not count twice. ``python -m streaming status``, the
Dagster sensor and the freshness checks read this file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from config import Settings


def live_dir(settings: Settings, dataset: str | None = None) -> Path:
    """``<state>/live/<dataset>``: checkpoint, status, pid files and the feed's facts."""
    return settings.platform.state_dir / "live" / (dataset or settings.data.dataset)


@dataclass
class LiveFigures:
    """Cumulative figures of the stream, saved after every batch."""

    path: Path
    last_batch_id: int = -1
    ticks_in: int = 0
    ticks_valid: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    bars: int = 0
    warming_bars: int = 0
    feature_rows: int = 0
    predictions: int = 0
    last_batch_at: str | None = None
    last_batch_seconds: float = 0.0
    last_bar_ts: str | None = None
    watermark: str | None = None
    model: str | None = None
    note: str = ""
    batches: int = 0
    decisions: int = 0            # bar times the trader decided at
    orders_sent: int = 0          # orders the risk gate accepted (to the venue)
    orders_rejected: dict[str, int] = field(default_factory=dict)  # by the limit hit
    phase_seconds: dict[str, float] = field(default_factory=dict)  # summed over batches: where the time goes

    @classmethod
    def resume(cls, settings: Settings) -> "LiveFigures":
        path = live_dir(settings) / "status.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, **{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "path"})
        return cls(path)

    def add_batch(self, batch_id: int, started: datetime, counts: dict[str, int], bars: pd.DataFrame,
                  predictions: pd.DataFrame, scorer, watermark_ms: int, phases: dict[str, float] | None = None,
                  decisions: list | None = None, trading_note: str = "") -> None:
        """Count one micro-batch (once per batch id) and save."""
        if batch_id > self.last_batch_id:
            self.last_batch_id = batch_id
            self.batches += 1
            for name, seconds in (phases or {}).items():
                self.phase_seconds[name] = round(self.phase_seconds.get(name, 0.0) + seconds, 4)
            self.ticks_in += sum(counts.values())
            self.ticks_valid += counts.get("", 0)
            dead = Counter(self.dead_letters)
            for reason, n in counts.items():
                for part in reason.split("; ") if reason else []:
                    dead[part] += n
            self.dead_letters = dict(dead)
            if not bars.empty:
                self.bars += len(bars)
                self.warming_bars += int((~bars["complete"]).sum())
                self.feature_rows += int(bars["complete"].sum())
                self.last_bar_ts = pd.Timestamp(bars["ts"].max()).isoformat()
            self.predictions += len(predictions)
            rejected = Counter(self.orders_rejected)
            for decision in decisions or []:
                self.decisions += decision.skipped is None
                for _order, _volume, limit, _reason in decision.orders:
                    if limit is None:
                        self.orders_sent += 1
                    else:
                        rejected[limit] += 1
            self.orders_rejected = dict(rejected)
        now = datetime.now(timezone.utc)
        self.last_batch_at = now.isoformat()
        self.last_batch_seconds = round((now - started).total_seconds(), 3)
        self.watermark = datetime.fromtimestamp(watermark_ms / 1000, timezone.utc).isoformat() if watermark_ms else None
        champion = scorer.champion
        self.model = f"{champion.name} v{champion.version} ({champion.family})" if champion else None
        self.note = "; ".join(n for n in (scorer.note, trading_note) if n)
        self.save()

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("path")
        return data

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2))
        tmp.replace(self.path)


def read_status(settings: Settings) -> dict | None:
    path = live_dir(settings) / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


# pid files ----------------------------------------------------------------------------------

def pid_file(settings: Settings, role: str) -> Path:
    return live_dir(settings) / f"{role}.pid"


def write_pid(settings: Settings, role: str) -> Path:
    path = pid_file(settings, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
    return path


def running_pid(settings: Settings, role: str) -> int | None:
    """The pid of a live ``role`` process (``feed`` or ``stream``), or None."""
    path = pid_file(settings, role)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def stop(settings: Settings, role: str, timeout_s: float = 60.0) -> bool:
    """Ask a running ``role`` process to stop (SIGTERM) and wait; True if one was running."""
    pid = running_pid(settings, role)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(settings, role) == pid:
        time.sleep(0.2)
    if running_pid(settings, role) == pid:
        os.kill(pid, signal.SIGKILL)
    return True
