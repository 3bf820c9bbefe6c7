"""Named crash points on the order path, armed by name (as FoundationDB's ``buggify``, by hand).

Every step boundary where a crash leaves a step half done has a name below. A service started
with ``QL_CRASH_AT=<point>`` (or ``<point>:<n>``: the n-th time it gets there) kills itself
with SIGKILL when it reaches that point, so a test can crash a process exactly between two
effects and check that the restart neither loses nor doubles anything. Unarmed, a crash point
costs one dictionary lookup.

Each service arms what ``QL_CRASH_AT`` names when it starts (:func:`arm_from_env`); an unknown
point name is refused then, naming the known ones.
"""

from __future__ import annotations

import os
import signal

from config.errors import ConfigError

POINTS: dict[str, str] = {
    "stream.after_bars": "a micro-batch's live bars appended to Delta; the rest of the batch not done, nor committed",
    "trader.after_pin": "the decision pinned in Redis; nothing sent",
    "trader.after_send": "the orders acknowledged by Kafka; the bar time not marked decided",
    "venue.after_claim": "an order claimed in Redis; the venue's read position not stored",
    "venue.after_fills": "a bar's fills and closes acknowledged by Kafka; no order marked filled in Redis",
    "venue.after_store": "a bar's order states stored in Redis; the read position not stored",
    "portfolio.after_apply": "a poll's fills and closes applied in Redis; the read position not stored",
    "portfolio.after_delta": "the journal appended to the Delta tables; the journal not trimmed",
}
ENV = "QL_CRASH_AT"

_armed: tuple[str, int] | None = None
_seen = 0


def arm(spec: str | None) -> None:
    """Arm ``<point>[:<n>]`` (``None`` or empty: disarm)."""
    global _armed, _seen
    _seen = 0
    if not spec:
        _armed = None
        return
    name, _, nth = spec.partition(":")
    if name not in POINTS:
        raise ConfigError(f"{ENV}={spec!r}: unknown crash point {name!r} (known: {', '.join(POINTS)})")
    try:
        n = int(nth or 1)
    except ValueError:
        raise ConfigError(f"{ENV}={spec!r}: the count after ':' must be a whole number") from None
    _armed = (name, max(1, n))


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is armed and reached for the n-th time."""
    global _seen
    if _armed is None or _armed[0] != name:
        return
    _seen += 1
    if _seen >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)



def arm_from_env() -> None:
    """Arm what ``QL_CRASH_AT`` names (each service does this when it starts)."""
    arm(os.environ.get(ENV))
