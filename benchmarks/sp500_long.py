"""The figures of a ``make sp500-long`` run, from its lake: every family's out-of-sample IC,
rank IC and ICIR with 95% intervals, overall and per year, accuracy, the ensemble's IC
against the linear baseline's, and each decile long-short book; written to
``benchmarks/results/sp500_long.json``.

    QL_PROFILE=sp500-long QL_DATA__FILES__NAME=sp500 python -m benchmarks.sp500_long

It reads what the run wrote (gold ``predictions`` and ``long_short`` with delta-rs) and
scores it with the same functions the run used; nothing is refitted.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from benchmarks.common import write_result
from config import load_settings
from pipelines.trading.strategies import load_strategy
from models.scoring import score
from pipelines.backtest.engine import infer_periods_per_year
from pipelines.backtest.longshort import summarize
from pipelines.lake.tables import LONG_SHORT, PREDICTIONS

QLIB_RATIO = 1.37   # Qlib's best ensemble IC over its linear model's (Alpha158)


def figures(preds: pd.DataFrame) -> dict:
    """Pooled scores of one model's predictions with their 95% intervals."""
    s = score(preds["ts"], preds["p_up"].to_numpy(), preds["direction"].to_numpy(), preds["fwd_return"].to_numpy(),
              preds["expected_return"].to_numpy())
    out = {"rows": s.n, "days": int(preds["ts"].nunique())}
    for name in ("accuracy", "ic", "rank_ic", "ic_ir", "rank_ic_ir"):
        low, high = s.ci(name)
        out[name], out[f"{name}_ci95"] = round(getattr(s, name), 5), [round(low, 5), round(high, 5)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="sp500_long", help="results file name")
    args = parser.parse_args(argv)
    settings = load_settings()
    preds = DeltaTable(PREDICTIONS.path(settings)).to_pandas(
        columns=["model", "ts", "symbol", "direction", "fwd_return", "p_up", "expected_return", "fold"])
    books = DeltaTable(LONG_SHORT.path(settings)).to_pandas()
    preds["year"] = pd.DatetimeIndex(preds["ts"]).year
    models, per_year = {}, {}
    for model, frame in preds.groupby("model"):
        models[model] = figures(frame)
        per_year[model] = {int(y): round(figures(g)["ic"], 5) for y, g in frame.groupby("year")}
    long_short = {}
    for model, daily in books.groupby("strategy"):  # one row per bar: the engine's book (longshort.py)
        daily = daily.sort_values("ts")
        ppy = infer_periods_per_year(pd.Index(daily["ts"]))
        long_short[model] = {k: round(v, 5) for k, v in summarize(daily, ppy).items()}
    ensemble, linear = models.get("ensemble", {}), models.get("linear", {})
    ratio = ensemble.get("ic", np.nan) / linear["ic"] if linear.get("ic") else float("nan")
    goal = {"ensemble_ic_interval_excludes_zero": bool(ensemble and ensemble["ic_ci95"][0] > 0),
            "ensemble_over_linear_ic": round(float(ratio), 3), "target_ratio": QLIB_RATIO,
            "ratio_met": bool(ensemble and linear and linear["ic"] > 0 and ratio >= QLIB_RATIO)}
    m = settings.model
    result = {"dataset": settings.data.dataset, "label_price": m.label_price,
              "label_normalization": m.label_normalization, "training_start": str(m.training.start_date),
              "test_start": str(m.walk_forward.test_start), "n_folds": m.walk_forward.n_folds,
              "test_period": [str(preds["ts"].min()), str(preds["ts"].max())],
              "samples_per_epoch": m.training.samples_per_epoch, "models": models, "ic_per_year": per_year,
              "long_short": long_short, "quantile": load_strategy(settings.trading, "long_short").params.quantile,
              "goal": goal}
    table = pd.DataFrame([{"model": k, **{c: v[c] for c in ("ic", "ic_ci95", "rank_ic", "rank_ic_ci95", "ic_ir",
                                                              "ic_ir_ci95", "accuracy")}}
                          for k, v in models.items()])
    print(table.to_string(index=False))
    print(pd.DataFrame(long_short).T[["annual_gross", "annual_net", "sharpe_net", "sharpe_net_ci_low",
                                      "sharpe_net_ci_high", "max_drawdown", "turnover"]].to_string())
    print(goal)
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
