"""PostgreSQL from Debian's package, data folder inside the state folder.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the
``postgres.os_user`` account (created by the Debian package) through ``runuser``.
The cluster trusts the platform's own user on loopback only; the warehouse's loader, reporting
and API roles log in with scram-sha-256 passwords (their ``pg_hba.conf`` lines come first).
The warehouse, MLflow and Dagster each get a database of their own; ``up`` then runs
``python -m warehouse setup`` (Alembic migrations, roles, grants) in a child process.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra.services.base import Service, ServiceError, run


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if candidates:
        return Path(candidates[-1])
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise ServiceError("postgres: no PostgreSQL server binaries (install the Debian package 'postgresql')")


class Postgres(Service):
    name = "postgres"
    protocol = "PostgreSQL"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        if self._root() != self.home:  # the server's account must be able to write its log
            self.log_path = self._root() / "postgres.log"

    @property
    def host(self) -> str:
        return self.settings.platform.postgres.host

    @property
    def port(self) -> int:
        return self.settings.platform.postgres.port

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root() / "run"

    def _root(self) -> Path:
        """``<state>/postgres``, unless the server's account cannot reach it.

        As root, the server runs as ``os_user``, which needs o+x on every parent folder.
        A checkout under a private folder (``/root/...``) fails that, so the cluster then
        lives in a fixed folder under /var/tmp named after the state folder.
        """
        if os.geteuid() != 0 or self._reachable_by_owner(self.settings.platform.state_dir):
            return self.home
        tag = hashlib.sha1(str(self.settings.platform.state_dir).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"quantlake-postgres-{tag}"

    @functools.cache
    def _reachable_by_owner(self, folder: Path) -> bool:
        probe = folder
        while not probe.exists():
            probe = probe.parent
        check = subprocess.run(self._as_owner(["test", "-x", str(probe)]), capture_output=True)
        return check.returncode == 0

    def pid(self) -> int | None:
        # postgres writes its own pid file; its first line is the postmaster's pid
        self.pid_path = self.data_dir / "postmaster.pid"
        return super().pid()

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", self.settings.platform.postgres.os_user, "--", *argv]

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, user=self.settings.platform.postgres.os_user)

    def prepare(self) -> None:
        cfg = self.settings.platform.postgres
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            self._chown(folder)
        self.data_dir.chmod(0o700)
        self.log_path.touch()
        self._chown(self.log_path)
        if not (self.data_dir / "PG_VERSION").exists():
            run(self._as_owner([str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", cfg.user,
                                "--auth=trust", "-E", "UTF8", "--no-instructions"]), "postgres initdb")

    def start(self) -> None:
        cfg = self.settings.platform.postgres
        options = f"-p {cfg.port} -k {self.socket_dir} -c listen_addresses={cfg.host}"
        run(self._as_owner([str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                            "-w", "-t", "60", "-o", options, "start"]), "postgres start")

    def stop(self, pid: int) -> None:
        run(self._as_owner([str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
            "postgres stop")

    def handshake(self) -> None:
        conn = self._connect("postgres")  # fails while starting ("the database system is starting up")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()

    def _connect(self, database: str):
        import psycopg2

        cfg = self.settings.platform.postgres
        return psycopg2.connect(host=cfg.host, port=cfg.port, user=cfg.user, dbname=database, connect_timeout=3)

    def after_start(self) -> None:
        self.ensure_databases()

    def ensure_databases(self) -> None:
        """Create the warehouse, MLflow and Dagster databases if they are missing."""
        cfg = self.settings.platform.postgres
        conn = self._connect("postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for db in (cfg.database, cfg.mlflow_database, cfg.dagster_database):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{db}"')
        finally:
            conn.close()

    def hba_lines(self) -> list[str]:
        """The password lines for the warehouse's roles (before the trust lines)."""
        cfg = self.settings.platform
        return [f"host    all    {role}    {cfg.postgres.host}/32    scram-sha-256"
                for role in (cfg.warehouse.loader_role, cfg.warehouse.reporting_role, cfg.warehouse.api_role)]

    def ensure_role_auth(self) -> None:
        """Put :meth:`hba_lines` at the top of ``pg_hba.conf`` (first match wins) and reload."""
        hba = self.data_dir / "pg_hba.conf"
        if not hba.exists():  # an external server: its administrator owns pg_hba.conf
            return
        current = hba.read_text().splitlines()
        wanted = self.hba_lines()
        if current[:len(wanted)] == wanted:
            return
        rest = [line for line in current if line not in wanted]
        hba.write_text("\n".join([*wanted, *rest]) + "\n")
        conn = self._connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()

    def ensure_warehouse(self) -> None:
        """``python -m warehouse setup`` in a child process (infra does not import the warehouse)."""
        from config.settings import PROJECT_ROOT

        done = subprocess.run([sys.executable, "-m", "warehouse", "setup"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise ServiceError(f"postgres: `python -m warehouse setup` failed:\n{(done.stdout + done.stderr)[-2000:]}")

    def up(self, timeout: float = 120.0) -> str:
        result = super().up(timeout)
        self.ensure_databases()  # also on an external server or a second `up`
        self.ensure_role_auth()
        self.ensure_warehouse()
        return result
