"""What the live-path tests share: an isolated environment and a research period with a champion."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

import mlflow
import pandas as pd

from config import Settings
from config.settings import PROJECT_ROOT
from models.baselines import LinearModel, Tabular
from models.panel import Panel
from models.pyfunc import DirectionModel
from models.registry import promote
from models.tracking import configure_mlflow
from models.training import register_model
from pipelines import lake
from pipelines.features.build import write_features
from pipelines.features.labels import compute_labels
from pipelines.features.recipe import FeatureSpec
from pipelines.ingest.layers import write_bronze, write_silver
from pipelines.ingest.sources.synthetic import generate_market
from pipelines.lake.tables import FEATURES, SILVER_BARS
from streaming import live


class Services:
    """The venue and the portfolio as child processes, as ``make live`` runs them."""

    def __init__(self, env: dict, settings, logs) -> None:
        self.env, self.settings, self.logs = env, settings, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.client = live.redis_client(settings)

    def start(self, role: str, crash_at: str | None = None) -> None:
        """Start ``role`` (venue, portfolio, api, or stream: ``python -m streaming run``) and wait
        for its first heartbeat (the stream: its query started; the API: ``/healthz`` answers).
        ``crash_at``: armed at that crash point (:mod:`streaming.faults`), the process may be
        gone by then."""
        self.client.delete(live.key(self.settings, role, "heartbeat"))
        log = self.logs / f"{role}.log"
        started = log.read_text().count("stream started") if log.exists() else 0
        out = open(log, "ab")
        env = {**self.env, "QL_CRASH_AT": crash_at} if crash_at else self.env
        self.procs[role] = subprocess.Popen([sys.executable, "-m", "streaming", "run" if role == "stream" else role],
                                            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        if crash_at:
            return
        if role == "stream":
            up = lambda: log.read_text().count("stream started") > started  # noqa: E731
        elif role == "api":
            up = lambda: _answers(f"http://{self.settings.platform.api.host}:{self.settings.platform.api.port}/healthz")  # noqa: E731
        else:
            up = lambda: live.alive(self.client, self.settings, role)  # noqa: E731
        assert live.wait_for(lambda: up() or self.procs[role].poll() is not None, 180, 0.1) \
            and self.procs[role].poll() is None, self.log(role)

    def kill(self, role: str) -> None:
        self.procs[role].send_signal(signal.SIGKILL)
        self.procs[role].wait(30)

    def crash_at(self, point: str, timeout: float = 300) -> None:
        """Restart the service of ``point`` armed there, wait until it has killed itself at that
        point (SIGKILL, nothing flushed or closed), then start it again unarmed."""
        role = {"trader": "stream"}.get(point.split(".")[0], point.split(".")[0])
        self.kill(role)
        self.start(role, crash_at=point)
        self.procs[role].wait(timeout)
        assert self.procs[role].returncode == -signal.SIGKILL, (point, self.procs[role].returncode, self.log(role))
        self.start(role)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for role, proc in self.procs.items():
            assert proc.wait(60) == 0, self.log(role)
        self.client.close()

    def dead(self) -> str | None:
        """The log of a service that exited on its own, if one did."""
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                return f"{role} exited {proc.returncode}: {self.log(role)}"
        return None

    def log(self, role: str) -> str:
        return (self.logs / f"{role}.log").read_text()[-3000:]


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium():
    """Headless Chromium (Debian's chromium and chromium-driver) under Selenium, console logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1100"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))


def live_env(tmp_path, **extra: str) -> dict[str, str]:
    """An environment with its own dataset name (so its own live folder, tables and paper
    account) and its own topics, which each service's Kafka user may use as it may the
    configured ones."""
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"),
            "QL_DATA__SYNTHETIC__NAME": f"stream-{tag}", "QL_KAFKA__TOPICS__MARKET_DATA": f"md-{tag}",
            "QL_KAFKA__TOPICS__DEAD_LETTER": f"md-{tag}.dlq", "QL_KAFKA__TOPICS__PREDICTIONS": f"pred-{tag}",
            "QL_KAFKA__TOPICS__BARS": f"bars-{tag}", "QL_KAFKA__TOPICS__ORDERS": f"orders-{tag}",
            "QL_KAFKA__TOPICS__ORDERS_REJECTED": f"orders-{tag}.rejected", "QL_KAFKA__TOPICS__FILLS": f"fills-{tag}",
            "QL_KAFKA__STREAM__TRIGGER_SECONDS": "0.5", "QL_KAFKA__FEED__BATCH_TICKS": "2000", **extra}
    from config import load_settings
    from streaming.kafka_io import ensure_access

    ensure_access(load_settings(env=env))  # the broker's ACLs name topics: these are new to it
    return env


def research_with_champion(spark, settings: Settings, days: pd.DatetimeIndex, sequence_length: int = 3):
    """Silver bars and features of ``days`` and a linear champion trained on them, promoted:
    (version, model, feature spec, the gold feature rows). The labels come from the synthetic
    market's bars, or from the silver bars for another source."""
    cfg = settings.data.synthetic
    write_bronze(spark, settings, days[0].date(), days[-1].date())
    write_silver(spark, settings, days[0].date(), days[-1].date())
    write_features(spark, settings, days[0].date(), days[-1].date())
    spec = FeatureSpec(tuple(settings.data.features.windows), tuple(settings.data.features.rank_features),
                       sequence_length=sequence_length)
    gold = lake.read(spark, FEATURES.path(settings)).toPandas().sort_values(["symbol", "ts"])
    if settings.data.source == "synthetic":
        bars = generate_market(cfg).bars
        bars["ts"] = bars["ts"].dt.tz_localize(None)
    else:
        bars = lake.read(spark, SILVER_BARS.path(settings)).select("symbol", "ts", "open", "close").toPandas()
    labels = pd.concat([pd.concat([g[["symbol", "ts"]], compute_labels(g, 1)], axis=1)
                        for _, g in bars.sort_values("ts").groupby("symbol")])
    panel = Panel(gold.merge(labels, on=["symbol", "ts"])[["symbol", "ts", *spec.names, "fwd_return", "direction"]],
                  spec.names)
    model = Tabular(LinearModel()).fit(panel, panel.labelled(), None)
    configure_mlflow(settings)
    with mlflow.start_run():
        version = register_model(DirectionModel(model, spec, "linear"), gold[["symbol", "ts", *spec.names]].tail(3)
                                 .reset_index(drop=True), settings)
    promote(settings, version, "live test champion")
    return version, model, spec, gold


def private_server(kind: str, tmp_path, **ports: int):
    """A Redis or Kafka server of the test's own (``kind``: "redis" or "kafka"), on free ports,
    its data, pid and log under ``tmp_path``, for a test that kills or stops it while other
    tests use the shared one. Returns (the server, the settings that reach it): the state
    folder (secrets, jars) is the shared one, so the services' credentials are the same."""
    from config import load_settings
    from infra.services import all_services

    env = {**os.environ, **{f"QL_PLATFORM__{kind.upper()}__{k.upper()}": str(v) for k, v in ports.items()}}
    settings = load_settings(env=env)
    (server,) = all_services(settings, [kind])
    server.home = tmp_path / kind
    server.log_path = tmp_path / f"{kind}.log"
    server.pid_path = server.home / f"{kind}.pid"
    return server, env
