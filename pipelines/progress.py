"""Progress for long work: a live bar on a terminal, a few plain lines in logs.

A tqdm bar redrawn into a log file or a Dagster run's captured output becomes hundreds of
lines; off a terminal the same bar is redrawn at most once every ``LOG_INTERVAL_S``
seconds, and once when it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str,
                 enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` (or of ``total`` steps), quiet when ``enabled`` is false."""
    on_terminal = sys.stderr.isatty()
    kwargs.setdefault("mininterval", kwargs.get("mininterval", 0.1) if on_terminal else LOG_INTERVAL_S)
    if not on_terminal:
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        kwargs.setdefault("position", 0)  # off a terminal nested bars are plain lines, not cursor moves
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=on_terminal,
                **kwargs)
