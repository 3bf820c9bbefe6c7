"""Every command line reports a user's mistake in one line naming what to fix, with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config.settings import PROJECT_ROOT

COMMANDS = [
    ["-m", "orchestration.main", "--stages", "smoke"],
    ["-m", "models.registry", "status"],
    ["-m", "pipelines.backtest", "--model", "lstm"],
    ["-m", "pipelines.montecarlo", "--model", "lstm"],
    ["-m", "infra", "status"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[1])
def test_a_bad_config_value_is_one_line_naming_file_and_key(argv: list[str]) -> None:
    env = {**os.environ, "QL_PLATFORM__POSTGRES__PORT": "not-a-port"}
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=PROJECT_ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "platform.yaml: postgres.port" in lines[0] and "QL_PLATFORM__POSTGRES__PORT" in lines[0]


BAD_FLAGS = [
    ("backtest", ["--initial-capital", "-100000"], "trading_config.yaml: initial_capital: Input should be greater than 0"),
    ("backtest", ["--initial-capital", "0"], "(from --initial-capital)"),
    ("backtest", ["--seeds", "0"], "(from --seeds)"),
    ("backtest", ["--start-date", "2024-02-01", "--end-date", "2024-01-01"], "--end-date 2024-01-01 is before"),
    ("backtest", ["--strategy", "astrology"], "--strategy: unknown strategy 'astrology'"),
    ("backtest", ["--strategy", "lstm"], "--strategy 'lstm' is a model family"),
    ("backtest", ["--model", "astrology"], "model 'astrology' is no model family"),
    ("backtest", ["--strategy", "nowhere.strategies:MeanReversion"], "cannot load strategy"),
    ("montecarlo", ["--simulations", "0"], "backtest.montecarlo_simulations: Input should be greater than or equal"),
    ("montecarlo", ["--simulations", "-5"], "(from --simulations)"),
    ("montecarlo", ["--simulations", "10000000000"], "less than or equal to 1000000"),
    ("montecarlo", ["--confidence-interval", "1.5"], "(from --confidence-interval)"),
    ("montecarlo", ["--method", "bogus"], "(from --method)"),
    ("montecarlo", ["--ruin", "0"], "(from --ruin)"),
]


@pytest.mark.parametrize("command,flags,expected", BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_flags_fail_like_config_before_spark_starts(command, flags, expected, monkeypatch, capsys) -> None:
    from pipelines.backtest.cli import backtest_main, montecarlo_main
    from pipelines.lake import spark

    def no_spark(*_):
        raise AssertionError("Spark was started for a command that should have been refused")

    monkeypatch.setattr(spark, "get_spark", no_spark)
    main = backtest_main if command == "backtest" else montecarlo_main
    assert main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
