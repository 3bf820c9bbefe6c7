"""The compose files (no Docker engine here): every platform container's configuration loads
through the platform's own settings, every dependency names an enabled service, and the cluster
overlay's Kafka nodes, Spark master and Dagster run launcher agree with each other."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from config import load_settings
from config.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"


class _Tagged(yaml.SafeLoader):
    """Compose's ``!override`` / ``!reset`` tags: the value replaces the base file's."""


class Override(list):
    pass


_Tagged.add_constructor("!override", lambda loader, node: Override(loader.construct_sequence(node)))
_Tagged.add_constructor("!reset", lambda loader, node: Override(loader.construct_sequence(node)))


def _load(name: str) -> dict:
    return yaml.load((DOCKER / name).read_text(), Loader=_Tagged)


def _merge(base: dict, overlay: dict) -> dict:
    """Compose's merge of a second file: maps merged key by key, ``!override`` replaces, other
    sequences are appended."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Override):
            out[key] = list(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def _interpolate(value: str) -> str:
    """``${VAR:?message}`` / ``${VAR:-default}`` as a deployment with every variable set would see it."""
    return re.sub(r"\$\{(\w+)(:[?-][^}]*)?\}", lambda m: f"<{m.group(1)}>", value)


def _enabled(compose: dict) -> dict:
    return {name: svc for name, svc in compose["services"].items() if not svc.get("profiles")}


def _platform_env(svc: dict) -> dict[str, str]:
    return {k: _interpolate(str(v)) for k, v in (svc.get("environment") or {}).items()}


@pytest.fixture(params=["single", "cluster"])
def compose(request) -> dict:
    base = _load("docker-compose.yml")
    return base if request.param == "single" else _merge(base, _load("docker-compose.cluster.yml"))


def test_every_dependency_is_an_enabled_service(compose) -> None:
    services = _enabled(compose)
    for name, svc in services.items():
        depends = svc.get("depends_on") or []
        for target in depends if isinstance(depends, list) else depends.keys():
            assert target in services, f"{name} depends on {target}, which is not an enabled service"


def test_every_platform_container_s_configuration_loads(compose, tmp_path) -> None:
    """The variables each platform container gets are keys the platform knows, with valid values
    (a typo in a compose file would otherwise surface only in a deployment)."""
    from infra.services.dagster import dagster_home

    platform = {n: s for n, s in _enabled(compose).items() if s.get("image") == "quantlake:latest"
                and "spark-class" not in str(s.get("command"))}
    assert {"dagster-webserver", "dagster-daemon", "stream", "venue", "portfolio", "api"} <= set(platform)
    launchers = set()
    for name, svc in platform.items():
        env = _platform_env(svc)
        # (the containers share /data; here one temporary folder stands for it)
        settings = load_settings(env={**env, "QL_PLATFORM__STATE_DIR": str(tmp_path)})
        assert settings.kafka_bootstrap == env.get("QL_KAFKA__BOOTSTRAP_SERVERS", settings.kafka_bootstrap)
        if name.startswith("dagster"):
            text = (dagster_home(settings) / "dagster.yaml").read_text()
            launchers.add(text)
    assert len(launchers) == 1, "the webserver and the daemon would write different dagster.yaml files"


def test_the_cluster_overlay_agrees_with_itself() -> None:
    merged = _merge(_load("docker-compose.yml"), _load("docker-compose.cluster.yml"))
    services = _enabled(merged)
    assert "kafka" not in services  # the single broker is replaced, not kept beside the cluster
    nodes = sorted(n for n in services if re.fullmatch(r"kafka-\d", n))
    assert nodes == ["kafka-1", "kafka-2", "kafka-3"]
    envs = [services[n]["environment"] for n in nodes]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert voters == {",".join(f"{i}@kafka-{i}:9093" for i in (1, 2, 3))}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    assert [e["KAFKA_NODE_ID"] for e in envs] == [1, 2, 3]
    assert [e["KAFKA_ADVERTISED_LISTENERS"] for e in envs] == [f"PLAINTEXT://kafka-{i}:9092" for i in (1, 2, 3)]
    assert all(e["KAFKA_MIN_INSYNC_REPLICAS"] < e["KAFKA_DEFAULT_REPLICATION_FACTOR"] <= len(nodes) for e in envs)

    stream = _platform_env(services["stream"])
    settings = load_settings(env=stream)
    assert sorted(settings.kafka_bootstrap.split(",")) == [f"{n}:9092" for n in nodes]
    assert settings.kafka.replication_factor == 3 and settings.platform.spark.driver_host is None
    master = services["spark-master"]["command"]
    assert settings.platform.spark.master == f"spark://{master[master.index('--host') + 1]}:" \
                                             f"{master[master.index('--port') + 1]}"
    worker = services["spark-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale spark-worker=N
    assert settings.platform.spark.master in worker["command"]
    assert any(str(v).endswith(":/data") for v in worker["volumes"])  # the lake where the driver writes it

    daemon = _platform_env(services["dagster-daemon"])
    launcher = json.loads(daemon["QL_PLATFORM__DAGSTER__RUN_LAUNCHER"])
    assert launcher["class_name"] == "DockerRunLauncher"
    assert launcher["config"]["network"] == f"{merged['name']}_default"
    assert launcher["config"]["container_kwargs"]["volumes"] == [f"{merged['name']}_state:/data"]
    missing = [v for v in launcher["config"]["env_vars"] if v not in daemon]
    assert not missing, f"the run containers would lack {missing}"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["dagster-daemon"]["volumes"]


def test_the_image_carries_the_docker_run_launcher() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert '-e ".[docker]"' in dockerfile
    extras = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert re.search(r'^docker = \["dagster-docker', extras, re.M)
