"""Bronze ingestion rows per second for the two shapes vendors ship daily bars in.

    python -m benchmarks.ingest_throughput [--symbols 88] [--skip-parquet] [--short]

* ``csv_folder``: one CSV per symbol, as a vendor's daily export (AlphaVantage's columns, three
  cells holding the literal ``null``), made from the real S&P 500 panel in ``../shared/data``:
  ``--symbols`` tickers from 2016 on. Timed through :func:`~pipelines.ingest.layers.write_bronze`
  (what the ``bronze_market_data`` asset runs), and the read alone next to the reference in the
  same process: the same files read one Spark read per file (the shape ingestion had before
  files of one layout were read together).
* ``parquet_panel``: the whole panel, 2.4M rows in one Parquet file, through the same asset code.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmarks.common import Timer, write_result
from config import load_settings
from config.settings import PROJECT_ROOT
from pipelines.ingest.layers import source_date_range, write_bronze
from pipelines.ingest.sources.files import read_files
from pipelines.lake.spark import get_spark

SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"
VENDOR_COLUMNS = ["timestamp", "open", "high", "low", "close", "adjusted_close", "volume", "dividend_amount",
                  "split_coefficient"]


def _rate(rows: int, seconds: float) -> dict:
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def write_vendor_folder(folder: Path, symbols: int) -> int:
    """One CSV per ticker (newest first, as the vendor exports), three ``null`` cells; returns rows."""
    panel = pd.read_parquet(SP500, filters=[("date", ">=", pd.Timestamp("2016-01-01"))])
    tickers = sorted(panel["ticker"].unique())[:symbols]
    rows = 0
    for i, ticker in enumerate(tqdm(tickers, desc="vendor CSVs", unit="file")):
        one = panel[panel["ticker"] == ticker].sort_values("date", ascending=False)
        out = one.rename(columns={"date": "timestamp"})[VENDOR_COLUMNS].astype(object)
        out["timestamp"] = one["date"].dt.strftime("%Y-%m-%d").to_numpy()
        if i < 3:  # the vendor's missing cells: the literal string null
            out.iloc[5 + i, VENDOR_COLUMNS.index("close")] = "null"
        out.to_csv(folder / f"{ticker}.csv", index=False)
        rows += len(out)
    return rows


def _bronze(spark, env: dict[str, str]) -> dict:
    settings = load_settings(env={**os.environ, **env})
    start, end = source_date_range(spark, settings)
    with Timer() as t:
        result = write_bronze(spark, settings, start, end)
    return _rate(result.rows, t.seconds)


def _read_rate(spark, settings, files: list[Path] | None) -> dict:
    """``read_files`` on the folder at once (``files`` None) or file by file, then one count."""
    with Timer() as t:
        if files is None:
            df = read_files(spark, settings.data.files)
        else:
            frames = [read_files(spark, settings.data.files, [f]) for f in tqdm(files, desc="per file", unit="file")]
            df = frames[0]
            for other in frames[1:]:
                df = df.unionByName(other)
        rows = df.count()
    return _rate(rows, t.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_throughput", description=__doc__)
    parser.add_argument("--symbols", type=int, default=88, help="CSV files in the vendor folder")
    parser.add_argument("--skip-parquet", action="store_true", help="leave out the 2.4M-row Parquet panel")
    parser.add_argument("--short", action="store_true", help="a quick run (12 files, no Parquet) written to --out")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.short:
        args.symbols, args.skip_parquet = 12, True
    if not SP500.exists():
        print(f"{SP500} is missing: the benchmark reads the real S&P 500 panel")
        return 1

    spark = get_spark(load_settings())
    figures: dict = {"reference": "the same files read one Spark read per file"}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        folder = Path(tmp) / "vendor"
        folder.mkdir()
        rows = write_vendor_folder(folder, args.symbols)
        env = {"QL_PLATFORM__LAKE__ROOT": str(Path(tmp) / "lake"), "QL_DATA__SOURCE": "files",
               "QL_DATA__FILES__NAME": "vendor", "QL_DATA__FILES__PATH": str(folder),
               "QL_DATA__FILES__SYMBOL_FROM_FILENAME": "true",
               "QL_DATA__FILES__COLUMNS": '{"ts": "timestamp", "adj_close": "adjusted_close"}'}
        settings = load_settings(env={**os.environ, **env})
        files = sorted(folder.glob("*.csv"))
        _read_rate(spark, settings, files[:2])  # JVM and Python warm-up, not measured
        one_read = _read_rate(spark, settings, None)
        per_file = _read_rate(spark, settings, files)
        bronze = _bronze(spark, env)
        figures["csv_folder"] = {"files": len(files), "rows": rows, "bronze": bronze, "read_one_read": one_read,
                                 "read_per_file_reference": per_file,
                                 "speedup_over_reference": round(per_file["seconds"] / one_read["seconds"], 2)}
        print(f"CSV folder ({len(files)} files, {rows:,} rows): bronze {bronze['rows_per_second']:,} rows/s "
              f"({bronze['seconds']} s); read {one_read['seconds']} s in one read vs {per_file['seconds']} s "
              f"file by file ({figures['csv_folder']['speedup_over_reference']}x)")
        if not args.skip_parquet:
            env = {"QL_PLATFORM__LAKE__ROOT": str(Path(tmp) / "lake"), "QL_DATA__SOURCE": "files",
                   "QL_DATA__FILES__NAME": "sp500", "QL_DATA__FILES__PATH": str(SP500),
                   "QL_DATA__FILES__COLUMNS": '{"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"}'}
            figures["parquet_panel"] = bronze = _bronze(spark, env)
            print(f"Parquet panel (1 file): bronze {bronze['rows_per_second']:,} rows/s "
                  f"({bronze['rows']:,} rows in {bronze['seconds']} s)")
    write_result("ingest_throughput_short" if args.short else "ingest_throughput", figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
