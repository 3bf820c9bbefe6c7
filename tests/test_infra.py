"""The service manager: idempotent up, clean down, external services left alone, jars."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import load_settings
from config.settings import PROJECT_ROOT
from infra.services import ServiceError, all_services
from infra.services.base import port_open
from infra.services.redis import Redis

pytestmark = pytest.mark.services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path: Path, redis_port: int):
    return load_settings(env={**os.environ, "QL_PLATFORM__STATE_DIR": str(tmp_path / "state"),
                              "QL_PLATFORM__REDIS__PORT": str(redis_port)})


def test_up_twice_then_down(tmp_path: Path) -> None:
    svc = Redis(_settings(tmp_path, _free_port()))
    assert svc.status().reachable is False
    try:
        assert svc.up() == "started"
        assert svc.up() == "running"  # a second up is harmless
        status = svc.status()
        assert status.reachable and status.managed and status.pid
        assert "up" in status.line()
    finally:
        assert svc.down() == "stopped"
    assert not port_open(svc.host, svc.port)
    assert svc.down() == "not running"


def test_external_service_is_used_not_started(tmp_path: Path) -> None:
    """A real Redis that someone else runs is used as it is and left running."""
    import shutil

    from config.secrets import redis_password

    port = _free_port()
    settings = _settings(tmp_path, port)
    user = f"{settings.platform.redis.user} on >{redis_password(settings)} ~* &* +@all"  # the services' login
    external = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--user", *user.split()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        svc = Redis(settings)
        deadline = time.monotonic() + 10
        while not svc.reachable() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.up() == "external, used as is"
        assert svc.status().managed is False and svc.status().reachable
        assert svc.down() == "external, left running"
        assert external.poll() is None
    finally:
        external.terminate()
        external.wait(10)


class _Http(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("service", ["redis", "postgres", "kafka", "mlflow", "dagster-webserver"])
def test_something_else_on_a_service_port_is_named_not_used(tmp_path: Path, service: str) -> None:
    """An HTTP server on the service's port: `up` refuses with one line, `status` says WRONG and exits 1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    key = {"redis": "REDIS", "postgres": "POSTGRES", "kafka": "KAFKA", "mlflow": "MLFLOW",
           "dagster-webserver": "DAGSTER"}[service]
    env = {**os.environ, "QL_PLATFORM__STATE_DIR": str(tmp_path / "state"), f"QL_PLATFORM__{key}__PORT": str(port)}
    try:
        [svc] = all_services(load_settings(env=env), [service])
        with pytest.raises(ServiceError, match=rf"something answers at 127.0.0.1:{port}, but not as"):
            svc.up()
        up = subprocess.run([sys.executable, "-m", "infra", "up", service], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, env=env, timeout=120)
        assert up.returncode == 2 and len(up.stderr.strip().splitlines()) == 1, up.stdout + up.stderr
        assert f"{service}: something answers" in up.stderr
        status = subprocess.run([sys.executable, "-m", "infra", "status", service], capture_output=True, text=True,
                                cwd=PROJECT_ROOT, env=env, timeout=120)
        assert status.returncode == 1 and "WRONG" in status.stdout and "but not as" in status.stdout
    finally:
        server.shutdown()


def test_unknown_service_is_named(settings) -> None:
    with pytest.raises(ServiceError, match="unknown service.*nosuch"):
        all_services(settings, ["redis", "nosuch"])


def test_status_cli_reports_running_services(services) -> None:
    proc = subprocess.run([sys.executable, "-m", "infra", "status", "postgres", "redis", "kafka", "mlflow"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["postgres", "redis", "kafka", "mlflow"]
    assert all(line.split()[1] == "up" for line in lines)


def test_bad_config_fails_cli_naming_the_key() -> None:
    env = {**os.environ, "QL_PLATFORM__KAFKA__PORT": "ninety"}
    proc = subprocess.run([sys.executable, "-m", "infra", "status"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=60)
    assert proc.returncode == 2
    assert "platform.yaml: kafka.port" in proc.stderr and "QL_PLATFORM__KAFKA__PORT" in proc.stderr


def test_spark_jars_are_local_and_not_duplicated(settings) -> None:
    import pyspark

    from pipelines.lake.spark import _artifact, extra_jars

    jars = extra_jars(settings)
    names = {_artifact(j) for j in jars}
    assert {"delta-spark_4.2_2.13", "delta-storage", "spark-sql-kafka-0-10_2.13", "kafka-clients"} <= names
    shipped = {_artifact(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    assert not names & shipped
    assert all(j.is_file() and j.is_relative_to(settings.platform.state_dir) for j in jars)
    assert not any("_2.12" in j.name for j in jars)


def test_spark_start_never_fetches_jars_it_names_the_command(tmp_path: Path) -> None:
    from pipelines.lake.spark import MissingJarsError, extra_jars

    empty = load_settings(env={"QL_PLATFORM__STATE_DIR": str(tmp_path)})
    with pytest.raises(MissingJarsError, match=r"run `python -m infra fetch-jars`"):
        extra_jars(empty)
    assert not (tmp_path / "jars").exists()  # nothing was fetched or created
