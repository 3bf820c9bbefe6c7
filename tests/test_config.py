"""The typed configuration loader: defaults, overrides, and errors that name file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.settings import CONFIG_DIR, PROJECT_ROOT


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    for f in CONFIG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_shipped_files_load_with_their_values() -> None:
    s = load_settings(env={})
    assert s.model.sequence_length == 60
    assert s.model.lstm.hidden_size == 128 and s.model.transformer.n_heads == 8
    assert s.trading.strategy == "threshold" and s.trading.risk.max_drawdown == 0.05
    assert s.trading.strategies["threshold"]["max_position_size"] == 0.02
    assert s.platform.state_dir == PROJECT_ROOT / ".state"
    assert s.platform.lake_root == PROJECT_ROOT / ".state" / "lake"
    assert s.kafka_bootstrap == f"{s.platform.kafka.host}:{s.platform.kafka.port}"
    assert s.platform.spark.line == "4.2"


def test_environment_overrides_are_typed() -> None:
    s = load_settings(env={"QL_PLATFORM__POSTGRES__PORT": "6001", "QL_TRADING__STRATEGIES__THRESHOLD__STOP_LOSS": "0.03",
                           "QL_PLATFORM__SPARK__UI_ENABLED": "true", "QL_KAFKA__BOOTSTRAP_SERVERS": "b1:9092,b2:9092"})
    assert s.platform.postgres.port == 6001
    assert s.trading.strategies["threshold"]["stop_loss"] == 0.03
    assert s.platform.spark.ui_enabled is True
    assert s.kafka_bootstrap == "b1:9092,b2:9092"


def test_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(Exception):
        s.platform.postgres.port = 1  # type: ignore[misc]


def test_wrong_type_names_file_and_key(config_copy: Path) -> None:
    path = config_copy / "platform.yaml"
    path.write_text(path.read_text().replace("port: 5544", "port: not-a-port"))
    with pytest.raises(ConfigError) as err:
        load_settings(config_copy, env={})
    message = str(err.value)
    assert "platform.yaml: postgres.port:" in message
    assert "'not-a-port'" in message


def test_unknown_key_names_file_and_key(config_copy: Path) -> None:
    path = config_copy / "trading_config.yaml"
    path.write_text(path.read_text().replace("  max_drawdown: 0.05", "  max_drawdon: 0.05"))
    with pytest.raises(ConfigError, match=r"trading_config\.yaml: risk\.max_drawdon: unknown key"):
        load_settings(config_copy, env={})


def test_bad_override_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"QL_MODEL__LSTM__HIDDEN_SIZE": "-3"})
    assert "model_config.yaml: lstm.hidden_size" in str(err.value)
    assert "$QL_MODEL__LSTM__HIDDEN_SIZE" in str(err.value)


def test_unknown_override_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"platform\.yaml: redis\.prot: unknown key"):
        load_settings(env={"QL_PLATFORM__REDIS__PROT": "1"})


def test_out_of_range_and_cross_field(config_copy: Path) -> None:
    with pytest.raises(ConfigError, match=r"risk\.max_drawdown"):
        load_settings(env={"QL_TRADING__RISK__MAX_DRAWDOWN": "1.5"})
    from pipelines.trading.strategies import load_strategy

    # a strategy's parameters are validated by the strategy, at every start-up that loads it
    with pytest.raises(ConfigError, match=r"trading\.strategies\.threshold\.: .*short_threshold \(0\.7\) is above"):
        load_strategy(load_settings(env={"QL_TRADING__STRATEGIES__THRESHOLD__SHORT_THRESHOLD": "0.7"}).trading)


def test_invalid_yaml_names_file(config_copy: Path) -> None:
    (config_copy / "kafka_config.yaml").write_text("topics: [unclosed\n")
    with pytest.raises(ConfigError, match=r"kafka_config\.yaml: not valid YAML"):
        load_settings(config_copy, env={})


def test_config_dir_from_environment(config_copy: Path) -> None:
    path = config_copy / "model_config.yaml"
    path.write_text(path.read_text().replace("sequence_length: 60", "sequence_length: 30"))
    assert load_settings(env={"QL_CONFIG_DIR": str(config_copy)}).model.sequence_length == 30


def test_profile_lays_its_values_over_the_files_and_env_wins() -> None:
    s = load_settings(env={"QL_PROFILE": "demo", "QL_MODEL__LSTM__NUM_LAYERS": "3"})
    assert s.model.sequence_length == 20 and s.model.transformer.d_model == 32  # from profiles/demo.yaml
    assert s.model.transformer.dropout == 0.2  # untouched keys keep the file's value
    assert s.model.lstm.num_layers == 3  # the environment wins over the profile
    with pytest.raises(ConfigError, match=r"no such profile.*known: demo"):
        load_settings(env={"QL_PROFILE": "nosuch"})


def test_bad_profile_value_names_profile_and_key(config_copy: Path) -> None:
    (config_copy / "profiles").mkdir()
    (config_copy / "profiles" / "p.yaml").write_text("model:\n  transformer: {d_model: 30, n_heads: 8}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_copy, env={"QL_PROFILE": "p"})
    assert "profiles/p.yaml" in str(err.value) and "transformer" in str(err.value)
    assert "multiple of n_heads" in str(err.value)
    (config_copy / "profiles" / "q.yaml").write_text("modle: {}\n")
    with pytest.raises(ConfigError, match=r"q\.yaml: unknown section"):
        load_settings(config_copy, env={"QL_PROFILE": "q"})


def test_a_missing_folder_or_file_is_an_error_not_silent_defaults(tmp_path: Path, config_copy: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere: no such configuration folder \(from \$QL_CONFIG_DIR\)"):
        load_settings(env={"QL_CONFIG_DIR": str(tmp_path / "nowhere")})
    (config_copy / "trading_config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"missing trading_config\.yaml"):
        load_settings(config_copy, env={})


def test_spark_conf_from_the_configuration_reaches_the_session(tmp_path) -> None:
    """``platform.yaml`` ``spark.conf`` (here from the environment) is applied to the session last,
    over the platform's own properties: what a real cluster needs, set by configuration alone."""
    import os
    import subprocess
    import sys

    from config.settings import PROJECT_ROOT

    env = {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(tmp_path),
           "QL_PLATFORM__SPARK__CONF": '{"spark.sql.shuffle.partitions": "7", "spark.quantlake.probe": "yes"}'}
    code = ("from config import load_settings; from pipelines.lake.spark import get_spark; "
            "s = get_spark(load_settings()); print(s.conf.get('spark.sql.shuffle.partitions'), "
            "s.conf.get('spark.quantlake.probe'), s.conf.get('spark.driver.bindAddress', 'unset'), "
            "s.range(3).count())")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == ["7", "yes", "127.0.0.1", "3"]
    # driver_host null (a driver in a container): Spark's own default address, nothing bound to loopback
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env={**env, "QL_PLATFORM__SPARK__DRIVER_HOST": "null"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["unset", "3"]


def test_a_run_launcher_from_the_configuration_reaches_dagster_yaml(tmp_path) -> None:
    """``dagster.run_launcher`` (the compose cluster's DockerRunLauncher) is written into
    ``dagster.yaml``, which Dagster's own schema accepts and from which the launcher is built;
    a launcher without a class fails at start-up naming the key."""
    import json

    import yaml
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData

    from infra.services.dagster import dagster_home

    launcher = {"module": "dagster_docker", "class_name": "DockerRunLauncher",
                "config": {"image": "quantlake:latest", "network": "quantlake_default", "env_vars": ["QL_PROFILE"],
                           "container_kwargs": {"volumes": ["quantlake_state:/data"]}}}
    settings = load_settings(env={"QL_PLATFORM__STATE_DIR": str(tmp_path), "QL_PLATFORM__DAGSTER__MAX_CONCURRENT_RUNS": "4",
                                  "QL_PLATFORM__DAGSTER__RUN_LAUNCHER": json.dumps(launcher)})
    home = dagster_home(settings)
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    assert written["run_launcher"] == {"module": "dagster_docker", "class": "DockerRunLauncher",
                                       "config": launcher["config"]}
    assert written["run_coordinator"]["config"]["max_concurrent_runs"] == 4
    config, _ = dagster_instance_config(str(home))  # Dagster's schema check
    data = config["run_launcher"]
    built = ConfigurableClassData(data["module"], data["class"], yaml.safe_dump(data["config"])).rehydrate(object)
    assert type(built).__name__ == "DockerRunLauncher" and built.image == "quantlake:latest"
    # the default: no launcher key, runs as processes beside the daemon
    assert "run_launcher" not in yaml.safe_load((dagster_home(load_settings(env={"QL_PLATFORM__STATE_DIR": str(tmp_path / "d")}))
                                                  / "dagster.yaml").read_text())
    with pytest.raises(ConfigError, match="run_launcher.class_name"):
        load_settings(env={"QL_PLATFORM__DAGSTER__RUN_LAUNCHER": '{"module": "dagster_docker"}'})
