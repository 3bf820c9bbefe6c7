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
    ["-m", "pipelines.backtest", "--strategy", "lstm"],
    ["-m", "pipelines.montecarlo", "--strategy", "lstm"],
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
