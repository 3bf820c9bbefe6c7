"""API keys: created and revoked by the administrator, stored hashed in PostgreSQL (``api.api_key``).

A key reads ``qlk_<key_id>_<secret>``: the id finds the row, the secret's SHA-256 must equal
the stored one (compared in constant time). The full key is printed once, at creation, and
never stored. Scopes are ``read`` (every GET and the streams), ``trade`` (place and cancel
orders) and ``admin`` (the trading state, the kill switch); ``admin`` implies ``trade``,
``trade`` implies ``read``.

The API checks keys as ``warehouse.api_role`` (SELECT only) and trusts a checked key for
``api.key_cache_seconds``: a revoked key stops working within that time. The cache holds at
most ``api.key_cache_size`` keys, good or bad, so random keys cannot grow it. A client address
that fails ``api.auth_failures_per_minute`` authentications in a minute is refused (429) until
the oldest of them is a minute old (:class:`FailedAuth`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select, update

from config import Settings
from config.errors import UserError
from warehouse import db
from warehouse.schema import SCOPES, ApiKey

PREFIX = "qlk"
KEY_PATTERN = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")
IMPLIED = {"read": {"read"}, "trade": {"read", "trade"}, "admin": {"read", "trade", "admin"}}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and name, and every scope it grants (implied ones included)."""

    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def granted(scopes: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Every scope ``scopes`` grant, implied ones included."""
    return frozenset().union(*(IMPLIED[s] for s in scopes))


def create_key(settings: Settings, scopes: list[str], name: str, expires_days: float | None = None) -> str:
    """Store a new key with ``scopes`` (as the administrator) and return it, in full, once."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise UserError(f"scopes {unknown or scopes}: choose from {', '.join(SCOPES)}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    row = ApiKey(key_id=key_id, name=name, secret_sha256=_digest(secret), scopes=sorted(set(scopes)), created_at=now,
                 expires_at=now + timedelta(days=expires_days) if expires_days else None)
    engine = db.engine(settings, "admin")
    try:
        with engine.begin() as conn:
            conn.execute(ApiKey.__table__.insert().values(**{c.name: getattr(row, c.name) for c in ApiKey.__table__.columns}))
    finally:
        engine.dispose()
    return f"{PREFIX}_{key_id}_{secret}"


def revoke_key(settings: Settings, key_id: str) -> bool:
    """Revoke ``key_id`` (True when a live key was revoked)."""
    engine = db.engine(settings, "admin")
    try:
        with engine.begin() as conn:
            done = conn.execute(update(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                                .values(revoked_at=datetime.now(timezone.utc)))
            return done.rowcount == 1
    finally:
        engine.dispose()


def list_keys(settings: Settings) -> list[dict]:
    """Every key's id, name, scopes and dates (never a secret)."""
    engine = db.engine(settings, "admin")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ApiKey.key_id, ApiKey.name, ApiKey.scopes, ApiKey.created_at, ApiKey.expires_at,
                                       ApiKey.revoked_at).order_by(ApiKey.created_at)).all()
        return [row._asdict() for row in rows]
    finally:
        engine.dispose()


class KeyStore:
    """Checks presented keys against PostgreSQL, with a short, bounded cache (see the module docstring)."""

    def __init__(self, engine: Engine, cache_seconds: float, max_cached: int = 10_000) -> None:
        self.engine, self.cache_seconds, self.max_cached = engine, cache_seconds, max_cached
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, presented: object) -> Principal | None:
        """The principal behind ``presented``, or None (not a string, malformed, unknown, wrong
        secret, revoked or expired: the caller answers 401 without saying which)."""
        if not isinstance(presented, str) or not presented:
            return None
        match = KEY_PATTERN.match(presented.strip())
        if match is None:
            return None
        digest = _digest(match.group(2))
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        principal = self._lookup(match.group(1), digest)
        with self._lock:
            self._cache[digest] = (now, principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return principal

    def cached(self) -> int:
        """How many keys the cache holds."""
        return len(self._cache)

    def _lookup(self, key_id: str, digest: str) -> Principal | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ApiKey.key_id, ApiKey.name, ApiKey.secret_sha256, ApiKey.scopes, ApiKey.expires_at,
                                      ApiKey.revoked_at).where(ApiKey.key_id == key_id)).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            return None
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= datetime.now(timezone.utc)):
            return None
        return Principal(row.key_id, row.name, granted(row.scopes))


class FailedAuth:
    """Failed authentications per client address in a sliding minute; at most ``max_addresses``
    addresses are remembered (the least recently failing go first)."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, max_addresses: int = 10_000) -> None:
        self.per_minute, self.max_addresses = per_minute, max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, address: str) -> float:
        """0 when ``address`` may try to authenticate, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(address)
            if not times:
                return 0.0
            while times and now - times[0] >= self.WINDOW:
                times.popleft()
            return 0.0 if len(times) < self.per_minute else self.WINDOW - (now - times[0])

    def record(self, address: str) -> None:
        """One more failed authentication from ``address``."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while len(times) > self.per_minute:
                times.popleft()
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
