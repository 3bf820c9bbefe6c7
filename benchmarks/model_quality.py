"""Out-of-sample quality of every model family on the synthetic market, against its Bayes bound.

    python -m benchmarks.model_quality [--profile demo] [--symbols 8] [--days 20] [--seeds 42]

For each seed it generates the planted market (the generator reports the best accuracy any
model can reach) and the random walk (the leakage canary: 50%), builds the 118 features with
the shared library, runs walk-forward over every family and records pooled accuracy with
its 95% interval, log loss, IC, rank IC and the share of the gap from 50% to the bound that
each model closes. Model sizes come from ``config/model_config.yaml`` laid over by
``--profile`` (default ``demo``: the seed's sizes take hours here, see model_speed.json).
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import Timer, write_result
from config import load_settings
from models.evaluation import comparison_table, feature_frame, walk_forward_models
from models.panel import Panel
from pipelines.features.library import feature_names
from pipelines.ingest.sources.synthetic import generate_market


def run(mode: str, seed: int, symbols: int, days: int, settings) -> dict:
    synthetic = settings.data.synthetic.model_copy(update={"mode": mode, "seed": seed, "n_symbols": symbols,
                                                           "n_days": days})
    market = generate_market(synthetic, progress=True)
    f = settings.data.features
    panel = Panel(feature_frame(market.bars, f.windows, f.rank_features, settings.model.label_horizon),
                  feature_names(f.windows, f.rank_features))
    with Timer() as t:
        evaluations = walk_forward_models(panel, settings.model, progress=True)
    table = comparison_table(evaluations, market.bayes_accuracy)
    print(f"\n{mode}, seed {seed}: {symbols} symbols x {days} days, Bayes bound {market.bayes_accuracy:.4f}, "
          f"realized oracle {market.oracle_accuracy:.4f}, walk-forward {t.seconds:.0f}s")
    print(table.to_string(index=False))
    return {"mode": mode, "seed": seed, "symbols": symbols, "days": days, "rows": len(panel),
            "bayes_accuracy": market.bayes_accuracy, "oracle_accuracy": market.oracle_accuracy,
            "seconds": round(t.seconds, 1), "models": table.to_dict(orient="records"),
            "ensemble_weights_per_fold": evaluations["ensemble"].details.get("weights_per_fold")
            if "ensemble" in evaluations else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--symbols", type=int, default=None, help="default: data_config.yaml synthetic.n_symbols")
    parser.add_argument("--days", type=int, default=None, help="default: data_config.yaml synthetic.n_days")
    parser.add_argument("--seeds", default="42", help="comma-separated")
    parser.add_argument("--modes", default="planted,interaction,random_walk",
                        help="comma-separated synthetic modes (planted: momentum_sign is the Bayes rule; "
                             "interaction: no baseline owns it; random_walk: the leakage canary)")
    args = parser.parse_args(argv)
    settings = load_settings(env={**os.environ, "QL_PROFILE": args.profile})
    syn = settings.data.synthetic
    symbols, days = args.symbols or syn.n_symbols, args.days or syn.n_days
    runs = [run(mode, int(seed), symbols, days, settings)
            for seed in args.seeds.split(",") for mode in args.modes.split(",")]
    write_result("model_quality", {"profile": args.profile, "families": settings.model.families,
                                   "n_folds": settings.model.walk_forward.n_folds, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
