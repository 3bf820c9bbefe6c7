"""The platform's REST/WebSocket API as a local service."""

from __future__ import annotations

import sys
import urllib.request

from config.settings import PROJECT_ROOT
from infra.services.base import Service


class Api(Service):
    """``python -m streaming api`` (a child process: infra does not import the live runtime)."""

    name = "api"
    protocol = "the platform's API"

    @property
    def host(self) -> str:
        return self.settings.platform.api.host

    @property
    def port(self) -> int:
        return self.settings.platform.api.port

    def start(self) -> None:
        self.spawn([sys.executable, "-m", "streaming", "api"], cwd=PROJECT_ROOT)

    def handshake(self) -> None:
        with urllib.request.urlopen(f"http://{self.address}/healthz", timeout=2) as resp:
            body = resp.read(100).decode(errors="replace")
        if resp.status != 200 or '"ok"' not in body:
            raise ConnectionError(f"/healthz answered {resp.status} {body[:80]!r}")
