"""Warehouse loads: rows per second into the star schema, against a plain COPY of the same rows.

    python -m benchmarks.warehouse_load [--short] [--predictions PATH] [--out DIR]

Bars: the full S&P 500 panel (``../shared/data``, 2.4M daily bars 1999-2021) written as a
silver bars Delta table, then loaded month by month (258 month slices, one transaction) into
``dw.fact_daily_bar``. Predictions: a walk-forward run's ``gold/predictions`` Delta table
(``--predictions``, default the local S&P run's when it exists), else prediction-shaped rows
made from the bars (said so in the JSON), loaded family by family into ``dw.fact_prediction``.

The reference is a plain ``COPY`` of the very rows the load wrote (read back from the
warehouse as CSV) into a table with the same columns and no keys, constraints or indexes, in the
same run: what the load adds on top is reading Delta, resampling, dimension keys, the slice's
DELETE and the table's keys and checks. Writes ``results/warehouse_load.json``
(``--short``: 30 symbols, 2 years, ``warehouse_load_short.json``).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text

from benchmarks.common import write_result
from config import load_settings
from config.settings import PROJECT_ROOT
from pipelines.lake.tables import PREDICTIONS, SILVER_BARS
from pipelines.lake.rows import write_frame
from warehouse import db
from warehouse import load as L

SP500 = PROJECT_ROOT.parent / "shared" / "data" / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet"


def sp500_bars(symbols: int | None, years: int | None) -> pd.DataFrame:
    panel = pd.read_parquet(SP500)
    panel["ticker"] = panel["ticker"].astype(str)
    if symbols:
        panel = panel[panel["ticker"].isin(sorted(panel["ticker"].unique())[:symbols])]
    if years:
        panel = panel[panel["date"] >= panel["date"].max() - pd.DateOffset(years=years)]
    ts = pd.to_datetime(panel["date"]).dt.tz_localize("UTC")
    return pd.DataFrame({"symbol": panel["ticker"].to_numpy(), "ts": ts.to_numpy(), "interval": "1d",
                         "open": panel["open"].to_numpy(float), "high": panel["high"].to_numpy(float),
                         "low": panel["low"].to_numpy(float), "close": panel["close"].to_numpy(float),
                         "volume": panel["volume"].to_numpy(float), "vwap": np.nan, "trades": 0,
                         "date": ts.dt.strftime("%Y-%m-%d").to_numpy()})


def predictions_like(bars: pd.DataFrame, families: int = 7) -> pd.DataFrame:
    """Prediction-shaped rows from the bars (when no walk-forward run is at hand)."""
    rng = np.random.default_rng(0)
    base = bars[["symbol", "ts", "date"]].reset_index(drop=True)
    fwd = bars.groupby("symbol")["close"].pct_change().shift(-1).to_numpy()
    frames = [base.assign(direction=(fwd > 0).astype(float), fwd_return=fwd, fold=0, p_up=rng.random(len(base)),
                          expected_return=rng.normal(0, 0.01, len(base)), model=f"family_{k}", run_id="bench")
              for k in range(families)]
    return pd.concat(frames, ignore_index=True)


def plain_copy(engine, fact: str, dataset_key: int) -> dict:
    """The reference: the fact's rows of the dataset as CSV, COPY'd into a bare table alike (no
    keys, indexes or constraints), and into one with the fact's keys, indexes and checks but
    not its foreign keys (which is where the rest of the load's time goes)."""
    raw = engine.raw_connection()
    out = {}
    try:
        with raw.cursor() as cur:
            buffer = io.StringIO()
            cur.copy_expert(f"COPY (SELECT * FROM dw.{fact} WHERE dataset_key = {dataset_key}) TO STDOUT "
                            f"WITH (FORMAT csv)", buffer)
            rows = buffer.getvalue().count("\n")
            for name, create in (("plain_copy", f"CREATE TEMP TABLE bench_ref AS SELECT * FROM dw.{fact} WITH NO DATA"),
                                 ("copy_keys_no_foreign_keys",
                                  f"CREATE TEMP TABLE bench_ref (LIKE dw.{fact} INCLUDING ALL)")):
                cur.execute(create)
                buffer.seek(0)
                started = time.perf_counter()
                cur.copy_expert("COPY bench_ref FROM STDIN WITH (FORMAT csv)", buffer)
                raw.commit()
                seconds = time.perf_counter() - started
                cur.execute("DROP TABLE bench_ref")
                raw.commit()
                out[name] = {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}
    finally:
        raw.close()
    return out


def measure(settings, engine, specs, pieces, fact: str) -> dict:
    started = time.perf_counter()
    done = L.load(settings, engine, specs, pieces)
    seconds = time.perf_counter() - started
    rows = sum(d.rows for d in done if d.fact == fact)
    with engine.connect() as conn:
        key = conn.execute(text("SELECT dataset_key FROM dw.dim_dataset WHERE name = :n"),
                           {"n": settings.data.dataset}).scalar_one()
    reference = plain_copy(engine, fact, key)
    problems = L.reconcile(settings, engine, specs, pieces)
    return {"rows": rows, "slices": len(pieces), "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            **reference, "ratio_to_plain_copy": round((rows / seconds) / reference["plain_copy"]["rows_per_second"], 4),
            "reconciled": not problems, "differences": problems[:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warehouse_load", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="30 symbols, 2 years (the test suite's version)")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="a gold/predictions Delta table (default: the sp500 dataset's, from make demo-sp500)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.predictions = args.predictions or Path(PREDICTIONS.path(load_settings(), "sp500"))
    if not SP500.exists():
        print(f"{SP500} is missing: the benchmark loads the real S&P 500 panel")
        return 1
    with tempfile.TemporaryDirectory(prefix="warehouse-bench-") as tmp:
        settings = load_settings(env={**os.environ, "QL_PLATFORM__LAKE__ROOT": str(Path(tmp) / "lake"),
                                      "QL_DATA__SYNTHETIC__NAME": f"bench-wh-{uuid.uuid4().hex[:6]}"})
        started = time.perf_counter()
        bars = sp500_bars(30 if args.short else None, 2 if args.short else None)
        write_frame(SILVER_BARS, settings, bars)
        print(f"silver bars: {len(bars):,} rows written to Delta in {time.perf_counter() - started:.1f}s", flush=True)
        use_run = not args.short and (args.predictions / "_delta_log").exists()
        if use_run:
            from deltalake import DeltaTable

            preds = DeltaTable(str(args.predictions)).to_pandas()
        else:
            preds = predictions_like(bars)
        write_frame(PREDICTIONS, settings, preds)
        engine = db.engine(settings, "loader")
        figures: dict = {"data": {"bars": len(bars), "symbols": int(bars["symbol"].nunique()),
                                  "first_day": str(bars["date"].min()), "last_day": str(bars["date"].max()),
                                  "predictions": len(preds), "families": int(preds["model"].nunique()),
                                  "predictions_source": str(args.predictions) if use_run else "made from the bars"}}
        try:
            months = L.slices(settings, L.RESEARCH_MONTHLY[:1])
            figures["bars"] = measure(settings, engine, L.RESEARCH_MONTHLY[:1], months, "fact_daily_bar")
            print(f"bars: {figures['bars']}", flush=True)
            families = L.slices(settings, L.PREDICTIONS_SPECS)
            figures["predictions"] = measure(settings, engine, L.PREDICTIONS_SPECS, families, "fact_prediction")
            print(f"predictions: {figures['predictions']}", flush=True)
        finally:
            with engine.begin() as conn:  # the benchmark's rows leave the warehouse
                key = conn.execute(text("SELECT dataset_key FROM dw.dim_dataset WHERE name = :n"),
                                   {"n": settings.data.dataset}).scalar()
                if key is not None:
                    for fact in ("fact_prediction", "fact_daily_bar"):
                        conn.execute(text(f"DELETE FROM dw.{fact} WHERE dataset_key = :k"), {"k": key})
                    conn.execute(text("DELETE FROM dw.dim_model WHERE dataset_key = :k"), {"k": key})
                    conn.execute(text("DELETE FROM dw.dim_dataset WHERE dataset_key = :k"), {"k": key})
            engine.dispose()
    write_result("warehouse_load_short" if args.short else "warehouse_load", figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
