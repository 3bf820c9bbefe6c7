"""Redis from Debian's package: the append-only file on, since positions must survive a restart,
and ACL users instead of an open server.

Durability: ``appendfsync everysec`` (``platform.redis.appendfsync``). Redis writes each command
to the append-only file before it answers the client, so a killed server (SIGKILL, OOM) loses
nothing it acknowledged; only a lost machine can lose the last second of writes, and the live
services then re-read those records from Kafka (their stored offsets are in the same file, so
they roll back together). ``always`` fsyncs every write, at a large cost in latency.

Authentication: the default user is off; the services log in as ``platform.redis.user`` with
its password (``QL_REDIS_PASSWORD``, else generated once in ``<state_dir>/secrets/redis.json``),
allowed every key and channel but no administrative command except ``CONFIG GET``. The users
are in an ACL file of mode 600 in the server's folder, so the password never shows in ``ps``.
"""

from __future__ import annotations

import os
import shutil
import signal

from config.secrets import redis_password
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
        acl = self.home / "users.acl"
        acl.write_text("user default off\n"
                       f"user {self.settings.platform.redis.user} on >{redis_password(self.settings)} "
                       "~* &* +@all -@admin +config|get\n")
        acl.chmod(0o600)
        self.spawn([binary, "--port", str(self.port), "--bind", self.host, "--dir", str(self.home),
                    "--daemonize", "no", "--logfile", "", "--appendonly", "yes",
                    "--appendfsync", self.settings.platform.redis.appendfsync, "--save", "60 1000",
                    "--aclfile", str(acl)])

    def handshake(self) -> None:
        import redis

        client = redis.Redis(host=self.host, port=self.port, username=self.settings.platform.redis.user,
                             password=redis_password(self.settings), socket_timeout=2, socket_connect_timeout=2)
        try:
            if client.ping() is not True:
                raise ConnectionError("PING was not answered with PONG")
        finally:
            client.close()

    def stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)  # redis saves and exits on SIGTERM
