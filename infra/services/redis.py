"""Redis from Debian's package: the append-only file on, since positions must survive a restart,
and ACL users instead of an open server.

Durability: ``appendfsync always`` (``platform.redis.appendfsync``): every write is in the
append-only file, fsynced, before Redis answers it, so nothing acknowledged is lost, whether the
server is killed (SIGKILL, OOM) or the machine goes down. With ``everysec`` Redis may postpone
the file write while a background fsync runs and answer meanwhile: a SIGKILL then lost a write
it had acknowledged (``tests/test_redis_postgres.py`` caught it). The price, measured with the
short trading benchmark on this machine: the venue service 466 orders/s against 536 with
``everysec``, the portfolio service 1,286 fills/s against 1,392 (one run each).

Authentication: no anonymous client. The services log in as ``platform.redis.user`` with its
password (``QL_REDIS_PASSWORD``, else generated once in ``<state_dir>/secrets/redis.json``),
allowed every key and channel but no administrative command except ``CONFIG GET``. The default
user keeps its permissions behind a password of its own (generated the same way): Redis before
8 replays the append-only file as the default user and re-checks each MULTI/EXEC against its
ACL, so turning it off silently drops every transaction at a restart (redis/redis#14541). The
users are in an ACL file of mode 600 in the server's folder, so no password shows in ``ps``.
"""

from __future__ import annotations

import os
import shutil
import signal

from config.secrets import redis_password, stored_secret
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
        # the default user keeps every permission behind its own password: Redis replays the
        # append-only file as the default user and re-checks MULTI/EXEC against its ACL, so with
        # the default user off every transaction is silently dropped at a restart (redis/redis
        # #14541, fixed only in Redis 8); anonymous clients are still refused (NOAUTH)
        acl.write_text(f"user default on >{stored_secret(self.settings, 'redis', 'default')} ~* &* +@all\n"
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
