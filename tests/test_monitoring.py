"""The monitoring files: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``: each alert fires on its forced condition, and not before), a broken
rule makes those tests fail, the scrape configuration that ``infra up`` writes is valid, and
the Grafana dashboard queries only metrics the platform exports. (Prometheus scraping the real
services and firing an alert is in tests/test_api.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from infra.services.prometheus import RULES, scrape_config

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
DASHBOARD = PROJECT_ROOT / "docker" / "grafana" / "dashboards" / "quantlake-live.json"


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@needs_promtool
def test_the_alert_rules_load_and_fire_on_their_forced_conditions() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_a_broken_rule_fails_the_rule_tests(tmp_path) -> None:
    shutil.copy(RULES.parent / "alerts_test.yml", tmp_path)
    broken = RULES.read_text().replace('quantlake_trading_state{state="HALTED"}) == 1',
                                       'quantlake_trading_state{state="HALTED"}) == 2')
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "TradingHalted" in tested.stdout + tested.stderr


@needs_promtool
def test_the_scrape_configuration_is_valid(settings, tmp_path) -> None:
    config = scrape_config(settings)
    assert {j["job_name"] for j in config["scrape_configs"]} == {"api", "stream", "venue", "portfolio", "prometheus"}
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))
    checked = _promtool("check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_prometheus_scrapes_the_same_jobs(settings) -> None:
    import yaml

    compose = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())
    assert {j["job_name"] for j in compose["scrape_configs"]} == \
        {j["job_name"] for j in scrape_config(settings)["scrape_configs"]}
    assert compose["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_dashboard_queries_exported_metrics_only() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set()
    for source in (PROJECT_ROOT / "streaming" / "metrics.py", PROJECT_ROOT / "streaming" / "api" / "app.py",
                   PROJECT_ROOT / "streaming" / "api" / "hub.py"):
        for kind, name in re.findall(r'(Counter|Gauge|Histogram)\(\s*"(quantlake_\w+)"', source.read_text()):
            exported |= {name} if kind == "Gauge" else (
                {f"{name}_total"} if kind == "Counter" else {f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\bquantlake_\w+", e)}
    assert used and used <= exported, sorted(used - exported)
    assert {p["title"] for p in dashboard["panels"]} >= {"Equity", "Drawdown vs breaker", "Trading state",
                                                         "Ticks in / dead-lettered", "Kafka consumer lag",
                                                         "API latency p99 by route"}
