"""Feature rows per second: the real S&P 500 panel and a large synthetic bar set.

    python -m benchmarks.feature_throughput [--synthetic-rows 10000000] [--skip-sp500]

For each data set it times (1) the Spark feature table (per-symbol features via
applyInPandas plus cross-sectional ranks, forced with the ``noop`` sink so no Delta I/O
is counted) and (2) the same library in plain pandas on one core, the reference.
"""

from __future__ import annotations

import argparse

import pandas as pd
from tqdm import tqdm

from benchmarks.common import Timer, write_result
from config import load_settings
from config.settings import PROJECT_ROOT
from config.schemas.data import FileSourceSettings
from pipelines.features.driver import feature_table
from pipelines.ingest.bars import with_bar_defaults
from pipelines.features.library import compute_features, feature_names
from pipelines.ingest.quality import adjust_bars
from pipelines.ingest.sources.files import read_files
from pipelines.ingest.sources.synthetic import generate_market
from pipelines.lake.spark import get_spark

SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"


def _pandas_reference(bars: pd.DataFrame, windows: list[int], max_symbols: int | None = None) -> tuple[int, float]:
    """Rows and seconds for compute_features over each symbol in plain pandas (one core)."""
    groups = list(bars.groupby("symbol", observed=True))[:max_symbols]
    rows = 0
    with Timer() as t:
        for _, g in tqdm(groups, desc="pandas reference", unit="symbol", mininterval=2):
            compute_features(g.sort_values("ts"), windows)
            rows += len(g)
    return rows, t.seconds


def _spark_rate(spark, bars_df, windows, ranks, label: str) -> dict:
    with Timer() as t:
        feature_table(bars_df, windows, ranks).write.format("noop").mode("overwrite").save()
    rows = bars_df.count()
    print(f"{label}: {rows:,} rows in {t.seconds:.1f}s = {rows / t.seconds:,.0f} rows/s (Spark, "
          f"{spark.sparkContext.defaultParallelism} cores)")
    return {"rows": rows, "seconds": round(t.seconds, 2), "rows_per_second": round(rows / t.seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-rows", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=100, help="synthetic symbols (rows are split among them)")
    parser.add_argument("--skip-sp500", action="store_true")
    args = parser.parse_args(argv)

    settings = load_settings()
    spark = get_spark(settings)
    windows, ranks = settings.data.features.windows, settings.data.features.rank_features
    figures: dict = {"features": len(feature_names(windows, ranks))}

    if not args.skip_sp500 and SP500.exists():
        cfg = FileSourceSettings(path=str(SP500), columns={"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"})
        bars = with_bar_defaults(adjust_bars(read_files(spark, cfg)), "1d").cache()
        spark_fig = _spark_rate(spark, bars, windows, ranks, "S&P 500 panel")
        pdf = bars.toPandas()
        rows, seconds = _pandas_reference(pdf, windows)
        print(f"S&P 500 panel: pandas reference {rows:,} rows in {seconds:.1f}s = {rows / seconds:,.0f} rows/s (1 core)")
        figures["sp500"] = {**spark_fig, "pandas_one_core_rows_per_second": round(rows / seconds),
                            "speedup_vs_pandas": round((spark_fig["rows_per_second"]) / (rows / seconds), 2)}


    bars_per_day = 78
    n_days = max(1, args.synthetic_rows // (args.symbols * bars_per_day))
    syn = settings.data.synthetic.model_copy(update={"n_symbols": args.symbols, "n_days": n_days, "seed": 1})
    with Timer() as gen:
        market = generate_market(syn, progress=True)
    pdf = market.bars.assign(vwap=market.bars["close"])
    print(f"synthetic: generated {len(pdf):,} bars in {gen.seconds:.1f}s")
    sdf = spark.createDataFrame(pdf).repartition(spark.sparkContext.defaultParallelism * 4, "symbol").cache()
    sdf.count()
    spark_fig = _spark_rate(spark, sdf, windows, ranks, "synthetic bars")
    sample = max(1, args.symbols // 10)
    rows, seconds = _pandas_reference(pdf, windows, max_symbols=sample)
    print(f"synthetic: pandas reference on {sample} symbols: {rows / seconds:,.0f} rows/s (1 core)")
    figures["synthetic"] = {**spark_fig, "symbols": args.symbols, "generate_seconds": round(gen.seconds, 2),
                            "pandas_one_core_rows_per_second": round(rows / seconds),
                            "speedup_vs_pandas": round(spark_fig["rows_per_second"] / (rows / seconds), 2)}
    write_result("feature_throughput", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
