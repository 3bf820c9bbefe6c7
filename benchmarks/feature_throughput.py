"""Feature rows per second in batch, and milliseconds per bar in the stream.

    python -m benchmarks.feature_throughput [--synthetic-rows 10000000] [--skip-sp500] [--short]

Batch, for the real S&P 500 panel and for synthetic bars (one run each):

* ``kernel_one_core``: the compiled kernel alone (:func:`pipelines.features.kernel.compute`),
  symbol by symbol on one core, its output allocated per symbol as the Spark driver does;
* ``kernel_all_cores``: :func:`~pipelines.features.kernel.compute_panel` over all symbols at
  once (one thread per core), into fresh memory and into a reused buffer;
* ``pandas_oracle``: the pandas library on one core (a sample of symbols), the reference;
* ``asset``: the Spark feature table (kernel through ``applyInArrow``, cross-sectional ranks)
  written to Delta exactly as the gold asset writes it, end to end from cached bars;
* ``asset_compute_only``: the same into Spark's ``noop`` sink (no storage);
* ``write_only``: an already computed frame of the same shape (the asset's output, cached in
  memory) written to Delta the same way: what the storage allows.

Stream: :meth:`~pipelines.features.kernel.FeatureState.update`, the feature rows of one new bar
for 50, 500 and 5,000 symbols, p50 / p99 over many bars (states warmed on the recipe's lookback),
next to the previous stream implementation (pandas over each symbol's 485 held bars).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmarks.common import Timer, write_result
from config import load_settings
from config.schemas.data import FileSourceSettings
from config.settings import PROJECT_ROOT
from pipelines import lake
from pipelines.features import kernel
from pipelines.features.driver import feature_table, time_series_features, windows_for, with_cross_sectional_ranks
from pipelines.features.library import compute_features, feature_names, max_lookback
from pipelines.ingest.bars import with_bar_defaults
from pipelines.ingest.quality import adjust_bars
from pipelines.ingest.sources.files import read_files
from pipelines.ingest.sources.synthetic import generate_market
from pipelines.lake.spark import get_spark
from pipelines.lake.tables import FEATURES

SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"


def _rate(rows: int, seconds: float) -> dict:
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _symbol_matrices(pdf: pd.DataFrame) -> list[np.ndarray]:
    return [g.sort_values("ts")[list(kernel.INPUTS)].to_numpy(float)
            for _, g in pdf.groupby("symbol", observed=True, sort=False)]


def _kernel_figures(series: list[np.ndarray], windows: list[int]) -> dict:
    kernel.compute(series[0][:100], windows)   # compile (or load the cache) outside the timing
    rows = sum(len(s) for s in series)
    with Timer() as one:
        for s in series:
            kernel.compute(s, windows)
    panel = np.vstack(series)
    bounds = np.concatenate([[0], np.cumsum([len(s) for s in series])])
    kernel.compute_panel(panel[:bounds[1]], bounds[:2], windows)
    with Timer() as fresh:
        out = kernel.compute_panel(panel, bounds, windows)
    with Timer() as reused:
        kernel.compute_panel(panel, bounds, windows, out=out)
    return {"kernel_one_core": _rate(rows, one.seconds),
            "kernel_all_cores": {"cores": os.cpu_count(), "fresh_output": _rate(rows, fresh.seconds),
                                 "reused_output": _rate(rows, reused.seconds)}}


def _pandas_oracle(pdf: pd.DataFrame, windows: list[int], max_symbols: int | None) -> dict:
    groups = list(pdf.groupby("symbol", observed=True, sort=False))[:max_symbols]
    rows = 0
    with Timer() as t:
        for _, g in tqdm(groups, desc="pandas oracle", unit="symbol", mininterval=2):
            compute_features(g.sort_values("ts"), windows)
            rows += len(g)
    return {**_rate(rows, t.seconds), "symbols": len(groups)}


def _write(df, path: Path) -> None:
    """Write a feature frame the way the gold asset does (month partitions, Delta)."""
    lake.replace_range(FEATURES.conform(df), path, "date", "0000-01-01", "9999-12-31")


def _asset_figures(spark, bars, windows: list[int], ranks: list[str], scratch: Path, label: str) -> dict:
    rows = bars.count()
    table = feature_table(bars, windows, ranks)
    with Timer() as compute_only:
        table.write.format("noop").mode("overwrite").save()
    with Timer() as end_to_end:
        _write(table, scratch / "asset")
    written = lake.read(spark, scratch / "asset").drop("month").cache()
    if written.count() != rows:
        raise RuntimeError(f"{label}: the asset wrote {written.count():,} rows of {rows:,}")
    with Timer() as write_only:
        _write(written, scratch / "write_only")
    written.unpersist()
    with Timer() as ranks_pass:   # the narrow first pass alone: rank sources, ranks, join
        sources = time_series_features(bars, windows_for(ranks, windows), keep=ranks)
        with_cross_sectional_ranks(sources, ranks).write.format("noop").mode("overwrite").save()
    figures = {"asset": _rate(rows, end_to_end.seconds), "asset_compute_only": _rate(rows, compute_only.seconds),
               "write_only": _rate(rows, write_only.seconds), "ranks_pass_seconds": round(ranks_pass.seconds, 2),
               "asset_over_write_only": round(end_to_end.seconds / write_only.seconds, 2),
               "spark_cores": spark.sparkContext.defaultParallelism}
    print(f"{label}: asset {figures['asset']['rows_per_second']:,} rows/s end to end, "
          f"{figures['asset_compute_only']['rows_per_second']:,} compute only, write-only limit "
          f"{figures['write_only']['rows_per_second']:,} rows/s (asset / write-only time "
          f"{figures['asset_over_write_only']}x); rank pass {figures['ranks_pass_seconds']} s")
    return figures


def _batch(spark, pdf: pd.DataFrame, sdf, windows, ranks, label: str, oracle_symbols: int | None) -> dict:
    figures = _kernel_figures(_symbol_matrices(pdf), windows)
    figures["pandas_oracle"] = _pandas_oracle(pdf, windows, oracle_symbols)
    print(f"{label}: kernel {figures['kernel_one_core']['rows_per_second']:,} rows/s on one core, "
          f"{figures['kernel_all_cores']['fresh_output']['rows_per_second']:,} on {os.cpu_count()} cores "
          f"({figures['kernel_all_cores']['reused_output']['rows_per_second']:,} into a reused buffer); "
          f"pandas oracle {figures['pandas_oracle']['rows_per_second']:,} rows/s on one core")
    with tempfile.TemporaryDirectory(prefix="feature-bench-") as tmp:
        figures.update(_asset_figures(spark, sdf, windows, ranks, Path(tmp), label))
    figures["kernel_share_of_asset"] = round(
        figures["kernel_one_core"]["seconds"] / os.cpu_count() / figures["asset"]["seconds"], 3)
    return figures


def _stream(settings, windows: list[int], sizes: list[int], bars: int, oracle_bars: int) -> dict:
    """ms to produce one bar's feature rows for ``n`` symbols, from warmed states."""
    keep = max_lookback(windows)
    cfg = settings.data.synthetic.model_copy(update={"n_symbols": 50, "n_days": 3 * (keep + bars) // 78 + 1})
    market = generate_market(cfg).bars
    base = np.stack([g.sort_values("ts")[["open", "high", "low", "close", "volume", "close"]].to_numpy(float)
                     for _, g in market.groupby("symbol")])   # (50, T, 6)
    figures = {}
    for n in sizes:
        panel = np.concatenate([base] * (n // len(base) + 1))[:n]   # n symbols (copies of 50 paths)
        state = kernel.FeatureState(windows, n)
        rows = np.arange(n)
        for t in range(keep):
            state.update(rows, panel[:, t])
        times = []
        for t in range(keep, keep + bars):
            start = time.perf_counter()
            state.update(rows, panel[:, t])
            times.append((time.perf_counter() - start) * 1e3)
        ms = np.array(times)
        figures[str(n)] = {"bars": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
                           "p99_ms": round(float(np.percentile(ms, 99)), 3),
                           "max_ms": round(float(ms.max()), 3),
                           "symbol_rows_per_second": round(n / (ms.mean() / 1e3))}
        print(f"stream, {n:,} symbols: one bar's features in p50 {figures[str(n)]['p50_ms']} ms, "
              f"p99 {figures[str(n)]['p99_ms']} ms over {len(ms)} bars")
    # the previous stream implementation: pandas over each symbol's last `keep` bars, per bar
    frames = [pd.DataFrame(base[i, :keep + oracle_bars], columns=list(kernel.INPUTS)) for i in range(len(base))]
    times = []
    for t in range(keep, keep + oracle_bars):
        start = time.perf_counter()
        for f in frames:
            compute_features(f.iloc[t - keep + 1:t + 1], windows)
        times.append((time.perf_counter() - start) * 1e3)
    figures["pandas_485_bar_window_50_symbols"] = {"bars": oracle_bars, "p50_ms": round(float(np.median(times)), 1)}
    print(f"stream, 50 symbols, previous pandas form: p50 {figures['pandas_485_bar_window_50_symbols']['p50_ms']} ms per bar")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-rows", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=100, help="synthetic symbols (rows are split among them)")
    parser.add_argument("--skip-sp500", action="store_true")
    parser.add_argument("--short", action="store_true",
                        help="a quick run (50k synthetic rows, no S&P, 50/500 symbols) written to --out")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.short:
        args.synthetic_rows, args.symbols, args.skip_sp500 = 50_000, 10, True

    settings = load_settings()
    spark = get_spark(settings)
    windows, ranks = settings.data.features.windows, settings.data.features.rank_features
    figures: dict = {"features": len(feature_names(windows, ranks)),
                     "goals": {"kernel_rows_per_second": 1_000_000, "asset_over_write_only": 2.0,
                               "stream_500_symbols_p99_ms": 5.0}}

    if not args.skip_sp500 and SP500.exists():
        cfg = FileSourceSettings(path=str(SP500), columns={"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"})
        bars = with_bar_defaults(adjust_bars(read_files(spark, cfg)), "1d").cache()
        pdf = bars.toPandas()
        figures["sp500"] = _batch(spark, pdf, bars, windows, ranks, "S&P 500 panel", oracle_symbols=50)
        bars.unpersist()

    n_days = max(1, args.synthetic_rows // (args.symbols * 78))
    syn = settings.data.synthetic.model_copy(update={"n_symbols": args.symbols, "n_days": n_days, "seed": 1})
    with Timer() as gen:
        market = generate_market(syn, progress=not args.short)
    pdf = market.bars.assign(vwap=market.bars["close"])
    sdf = spark.createDataFrame(pdf).repartition(spark.sparkContext.defaultParallelism * 4, "symbol").cache()
    sdf.count()
    print(f"synthetic: {len(pdf):,} bars of {args.symbols} symbols generated in {gen.seconds:.1f}s")
    figures["synthetic"] = {"symbols": args.symbols, **_batch(spark, pdf, sdf, windows, ranks, "synthetic bars",
                                                             oracle_symbols=max(1, args.symbols // 10))}
    sdf.unpersist()

    sizes, bars, oracle_bars = ([50, 500], 50, 2) if args.short else ([50, 500, 5000], 500, 5)
    figures["stream"] = _stream(settings, windows, sizes, bars, oracle_bars)
    name = "feature_throughput_short" if args.short else "feature_throughput"
    write_result(name, figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
