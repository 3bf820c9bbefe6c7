"""``python -m pipelines.backtest``: see :mod:`pipelines.backtest.cli`."""

import sys

from pipelines.backtest.cli import backtest_main

if __name__ == "__main__":
    sys.exit(backtest_main())
