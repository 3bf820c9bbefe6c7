"""``python -m pipelines.montecarlo``: see :mod:`pipelines.backtest.cli` (the simulation itself
is :mod:`pipelines.backtest.montecarlo`)."""

import sys

from pipelines.backtest.cli import montecarlo_main

if __name__ == "__main__":
    sys.exit(montecarlo_main())
