"""Redis from Debian's package; append-only file on, since positions must survive a restart."""

from __future__ import annotations

import os
import shutil
import signal

from infra.services.base import Service, ServiceError


class Redis(Service):
    name = "redis"
    protocol = "Redis"

    @property
    def host(self) -> str:
        return self.settings.platform.redis.host

    @property
    def port(self) -> int:
        return self.settings.platform.redis.port

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis: redis-server not found (install the Debian package 'redis-server')")
        # run in the foreground under our own spawn: the pid file is then written before the
        # port opens (a daemonized redis writes it a moment *after* listening, which made a
        # quick second `up` mistake our own server for an external one)
        self.spawn([binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.home),
                    "--daemonize", "no", "--logfile", "", "--appendonly", "yes", "--save", "60 1000"])

    def handshake(self) -> None:
        import redis

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)
        try:
            if client.ping() is not True:
                raise ConnectionError("PING was not answered with PONG")
        finally:
            client.close()

    def stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)  # redis saves and exits on SIGTERM
