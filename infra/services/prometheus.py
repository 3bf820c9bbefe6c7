"""Prometheus from Debian's package, scraping the API and the live services, with the alert
rules of ``docker/prometheus/alerts.yml`` (the same file the compose deployment mounts)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from config.settings import PROJECT_ROOT
from infra.services.base import Service, ServiceError

RULES = PROJECT_ROOT / "docker" / "prometheus" / "alerts.yml"


def scrape_config(settings) -> dict:
    """``prometheus.yml`` for the local services: one job per process (the API, the stream job,
    the venue, the portfolio) and Prometheus itself; the alert rules beside it."""
    cfg = settings.platform
    m, api, prom = cfg.metrics, cfg.api, cfg.prometheus
    jobs = {"api": f"{api.host}:{api.port}", "stream": f"{m.host}:{m.stream_port}",
            "venue": f"{m.host}:{m.venue_port}", "portfolio": f"{m.host}:{m.portfolio_port}",
            "prometheus": f"{prom.host}:{prom.port}"}
    return {"global": {"scrape_interval": prom.scrape_interval, "evaluation_interval": prom.scrape_interval},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in jobs.items()]}


class Prometheus(Service):
    name = "prometheus"
    protocol = "Prometheus"

    @property
    def host(self) -> str:
        return self.settings.platform.prometheus.host

    @property
    def port(self) -> int:
        return self.settings.platform.prometheus.port

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        # JSON is YAML: no YAML writer needed; rewritten at every start, so config changes apply
        self.config_file.write_text(json.dumps(scrape_config(self.settings), indent=2))

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise ServiceError("prometheus: the binary is not installed (Debian package 'prometheus'; "
                               "`make setup` installs it)")
        self.spawn([binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.home / 'data'}",
                    f"--storage.tsdb.retention.time={self.settings.platform.prometheus.retention}",
                    f"--web.listen-address={self.address}", "--web.enable-lifecycle"])

    def handshake(self) -> None:
        with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as resp:
            body = resp.read(200).decode(errors="replace")
        if resp.status != 200 or "Prometheus" not in body:
            raise ConnectionError(f"/-/ready answered {resp.status} {body[:80]!r}, not Prometheus")
