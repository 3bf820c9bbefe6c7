"""Monte Carlo of a strategy's returns: i.i.d. and stationary block bootstrap, on Spark.

Run from the command line as ``python -m pipelines.montecarlo`` (:mod:`pipelines.backtest.cli`).
Each simulated path resamples the backtest's per-bar returns (i.i.d., or in blocks of
geometric length with mean ``--block`` bars, which keeps volatility clustering) to the
length of the original, compounds them from the initial capital and records final equity,
maximum drawdown, annualized Sharpe and whether equity ever fell below the ruin level.
Paths are spread over Spark partitions, each with its own seed, so the result depends only
on ``--seed``, not on the partitioning.

The paths resample returns; they do not re-run the strategy, so the drawdown breaker is
not applied on them (:data:`BREAKER_NOTE`): a resampled path can fall further than
``max_drawdown`` where the live strategy would have flattened and halted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pipelines.progress import progress_bar

import numpy as np
import pandas as pd

BREAKER_NOTE = "paths resample the backtest's returns; the drawdown breaker is not re-applied on them"
PATH_COLUMNS = ["path", "final_equity", "total_return", "max_drawdown", "sharpe", "ruined"]


def resample(returns: np.ndarray, n_paths: int, method: str, block: float, rng: np.random.Generator) -> np.ndarray:
    """``(n_paths, len(returns))`` resampled returns: ``iid`` draws bars independently;
    ``stationary`` (Politis & Romano) continues the previous bar's successor with probability
    ``1 - 1/block`` and jumps to a random bar otherwise (wrapping around the end)."""
    r = np.asarray(returns, dtype=float)
    n = len(r)
    if method == "iid":
        return r[rng.integers(0, n, (n_paths, n))]
    if method != "stationary":
        raise ValueError(f"unknown bootstrap method {method!r}; expected 'iid' or 'stationary'")
    idx = np.empty((n_paths, n), dtype=np.int64)
    idx[:, 0] = rng.integers(0, n, n_paths)
    jump = rng.random((n_paths, n)) < 1.0 / block
    fresh = rng.integers(0, n, (n_paths, n))
    for t in range(1, n):
        idx[:, t] = np.where(jump[:, t], fresh[:, t], (idx[:, t - 1] + 1) % n)
    return r[idx]


def path_statistics(paths: np.ndarray, initial_capital: float, periods_per_year: float,
                    ruin_fraction: float) -> pd.DataFrame:
    """Final equity, total return, maximum drawdown, Sharpe and ruin of each resampled path."""
    equity = initial_capital * np.cumprod(1.0 + paths, axis=1)
    full = np.concatenate([np.full((len(paths), 1), initial_capital), equity], axis=1)
    peak = np.maximum.accumulate(full, axis=1)
    sd = paths.std(axis=1, ddof=1)
    sharpe = np.where(sd > 0, paths.mean(axis=1) / np.where(sd > 0, sd, 1) * math.sqrt(periods_per_year), 0.0)
    return pd.DataFrame({"final_equity": equity[:, -1], "total_return": equity[:, -1] / initial_capital - 1,
                         "max_drawdown": (1 - full / peak).max(axis=1), "sharpe": sharpe,
                         "ruined": (full <= ruin_fraction * initial_capital).any(axis=1)})


FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def fan(returns: np.ndarray, paths: int, method: str = "stationary", block: float = 20.0,
        initial_capital: float = 100_000.0, seed: int = 0, max_steps: int = 250) -> pd.DataFrame:
    """Equity quantiles (5/25/50/75/95%) at each bar of the first ``paths`` simulated paths.

    The paths come from the first chunk's generator ``(seed, 0)``: with ``paths`` equal to the
    simulation's chunk (1,000 by default) they are exactly the first 1,000 paths the summary
    counts. Long curves keep ``max_steps`` evenly spaced bars (always the last);
    ``step`` is the bar index, 0 being the initial capital before the first bar.
    """
    sim = resample(returns, paths, method, block, np.random.default_rng([seed, 0]))
    equity = np.concatenate([np.full((paths, 1), initial_capital), initial_capital * np.cumprod(1.0 + sim, axis=1)],
                            axis=1)
    steps = np.unique(np.linspace(0, equity.shape[1] - 1, min(max_steps, equity.shape[1])).round().astype(int))
    q = np.quantile(equity[:, steps], FAN_QUANTILES, axis=0)
    return pd.DataFrame({"step": steps, "paths": paths, **{f"q{round(p * 100):02d}": q[i]
                                                           for i, p in enumerate(FAN_QUANTILES)}})


@dataclass(frozen=True)
class Summary:
    simulations: int
    method: str
    confidence: float
    table: pd.DataFrame          # statistic x (mean, low, median, high)
    risk_of_ruin: float
    seconds: float


def summarize(stats_frame: pd.DataFrame, confidence: float, method: str, seconds: float) -> Summary:
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    rows = {}
    for stat in ("final_equity", "total_return", "max_drawdown", "sharpe"):
        s = stats_frame[stat]
        rows[stat] = {"mean": s.mean(), "low": s.quantile(lo), "median": s.median(), "high": s.quantile(hi)}
    return Summary(len(stats_frame), method, confidence, pd.DataFrame(rows).T,
                   float(stats_frame["ruined"].mean()), seconds)


def simulate_local(returns: np.ndarray, simulations: int, method: str = "stationary", block: float = 20.0,
                   initial_capital: float = 100_000.0, periods_per_year: float = 252.0, ruin_fraction: float = 0.5,
                   seed: int = 0, chunk: int = 1000, progress: bool = False) -> pd.DataFrame:
    """All paths in this process, in chunks of ``chunk`` paths seeded ``(seed, chunk number)``."""
    parts = []
    for k in progress_bar(range(math.ceil(simulations / chunk)), desc="Monte Carlo", unit="chunk", enabled=progress):
        n = min(chunk, simulations - k * chunk)
        rng = np.random.default_rng([seed, k])
        parts.append(path_statistics(resample(returns, n, method, block, rng), initial_capital, periods_per_year,
                                     ruin_fraction).assign(path=np.arange(k * chunk, k * chunk + n)))
    return pd.concat(parts, ignore_index=True)[PATH_COLUMNS]


def simulate_spark(spark, returns: np.ndarray, simulations: int, method: str = "stationary", block: float = 20.0,
                   initial_capital: float = 100_000.0, periods_per_year: float = 252.0, ruin_fraction: float = 0.5,
                   seed: int = 0, chunk: int = 1000, progress: bool = False) -> pd.DataFrame:
    """The same chunks as :func:`simulate_local`, spread over Spark tasks; with ``progress``
    they go in a few waves so a bar can advance between them."""
    r = [float(x) for x in np.asarray(returns, dtype=float)]
    n_chunks = math.ceil(simulations / chunk)
    slots = max(1, spark.sparkContext.defaultParallelism * 2)

    def run_chunks(rows):
        import numpy as np  # noqa: F811 (executed in the Python worker)

        arr = np.asarray(r)
        for row in rows:
            k = row.id
            n = min(chunk, simulations - k * chunk)
            stats_frame = path_statistics(resample(arr, n, method, block, np.random.default_rng([seed, k])),
                                          initial_capital, periods_per_year, ruin_fraction)
            stats_frame["path"] = np.arange(k * chunk, k * chunk + n)
            for rec in stats_frame[PATH_COLUMNS].itertuples(index=False):
                yield (int(rec.path), float(rec.final_equity), float(rec.total_return), float(rec.max_drawdown),
                       float(rec.sharpe), bool(rec.ruined))

    schema = "path long, final_equity double, total_return double, max_drawdown double, sharpe double, ruined boolean"
    wave = slots * 4 if progress else n_chunks
    parts = []
    with progress_bar(total=simulations, desc="Monte Carlo (Spark)", unit="path", enabled=progress) as bar:
        for first in range(0, n_chunks, wave):
            last = min(n_chunks, first + wave)
            chunks = spark.range(first, last, numPartitions=max(1, min(last - first, slots)))
            part = spark.createDataFrame(chunks.rdd.mapPartitions(run_chunks), schema).toPandas()
            parts.append(part)
            bar.update(len(part))
    return pd.concat(parts, ignore_index=True).sort_values("path").reset_index(drop=True)
