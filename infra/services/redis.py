"""Redis from Debian's package; append-only file on, since positions must survive a restart."""

from __future__ import annotations

import shutil

from infra.services.base import Service, ServiceError, run


class Redis(Service):
    name = "redis"

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
        run([binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.home),
             "--daemonize", "yes", "--pidfile", str(self.pid_path), "--logfile", str(self.log_path),
             "--appendonly", "yes", "--save", "60 1000"], "redis start")
        # the pid file is written by the daemonized child, a moment after the parent returns

    def stop(self, pid: int) -> None:
        import signal
        import os

        os.kill(pid, signal.SIGTERM)  # redis saves and exits on SIGTERM
