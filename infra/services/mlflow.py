"""MLflow tracking server: PostgreSQL backend store, local artifact store served over HTTP."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from infra.services.base import Service, ServiceError


def venv_script(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        raise ServiceError(f"{name} is not installed in {script.parent} (run the setup first)")
    return str(script)


class Mlflow(Service):
    name = "mlflow"
    protocol = "MLflow"

    @property
    def host(self) -> str:
        return self.settings.platform.mlflow.host

    @property
    def port(self) -> int:
        return self.settings.platform.mlflow.port

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    def prepare(self) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        pg = self.settings.platform.postgres
        self.spawn([venv_script("mlflow"), "server",
                    "--backend-store-uri", pg.url(pg.mlflow_database),
                    "--artifacts-destination", str(self.artifacts),
                    "--host", self.host, "--port", str(self.port), "--workers", "1"],
                   env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                        # the job runner (7 huey consumers, for GenAI scorers) is not used here; it
                        # costs ~1 GB of memory and holds up shutdown for a minute
                        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

    def handshake(self) -> None:
        with urllib.request.urlopen(f"http://{self.address}/health", timeout=2) as resp:
            body = resp.read(64).decode(errors="replace").strip()
        if resp.status != 200 or body != "OK":
            raise ConnectionError(f"/health answered {resp.status} {body!r}, not MLflow's 'OK'")
