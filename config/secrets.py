"""Secrets generated once per machine and kept in the state folder (mode 600, outside git).

A secret comes from its environment variable when that is set (a deployment's secret store),
else from ``<state_dir>/secrets/<file>.json``, where it is generated on first use. The
single-machine default therefore needs no manual step, and every process of one installation
reads the same values.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path

from config.settings import Settings


def secrets_path(settings: Settings, file: str) -> Path:
    return settings.platform.state_dir / "secrets" / f"{file}.json"


def stored_secret(settings: Settings, file: str, name: str, env: str | None = None) -> str:
    """Secret ``name`` of ``file``: ``$env`` when set, else the stored one (generated once)."""
    from_env = os.environ.get(env) if env else None
    if from_env:
        return from_env
    path = secrets_path(settings, file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    with open(path.with_suffix(".lock"), "a") as lock:  # processes starting together agree on one value
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored = json.loads(path.read_text()) if path.exists() else {}
        if name not in stored:
            stored[name] = secrets.token_urlsafe(24)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored))
            tmp.chmod(0o600)
            tmp.replace(path)
    return stored[name]


def redis_password(settings: Settings) -> str:
    """The password of the Redis user the services log in as (``platform.redis.user``)."""
    return stored_secret(settings, "redis", settings.platform.redis.user, "QL_REDIS_PASSWORD")


def kafka_password(settings: Settings, user: str) -> str:
    """The SCRAM password of Kafka user ``user`` (admin, feed, stream, venue, portfolio, api)."""
    return stored_secret(settings, "kafka", user, f"QL_KAFKA_PASSWORD_{user.upper()}")
