"""Training samples per second and inference latency of the LSTM and the Transformer on this CPU.

    python -m benchmarks.model_speed [--train-samples 4096] [--repeats 20] [--profile NAME]

Sizes come from ``config/model_config.yaml`` (the seed's: sequence 60; LSTM 128 x 2;
Transformer 256 wide, 8 heads, 6 layers, feed-forward 1024) with the 118-feature input of
the default feature set, unless ``--profile`` picks ``config/profiles/<NAME>.yaml``.
Training is timed through the real loop (window gathering, forward, backward, AdamW,
gradient clipping) over ``--train-samples`` rows for one epoch after a warm-up epoch;
inference is the wrapper's path (window gathering + forward, no gradients) for batches of
1, 64 and 4096 rows, median of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from benchmarks.common import Timer, write_result
from config import load_settings
from models.nets import build_net
from models.sequence import batch_windows, train_loop
from pipelines.features.library import feature_names

BATCHES = (1, 64, 4096)


def _fake_panel(n_rows: int, n_features: int, n_symbols: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Xpad = np.vstack([rng.normal(size=(n_rows, n_features)).astype(np.float32), np.zeros((1, n_features), np.float32)])
    per = n_rows // n_symbols
    first = np.repeat(np.arange(n_symbols) * per, per)
    first = np.r_[first, np.full(n_rows - len(first), first[-1] if len(first) else 0)]
    y = rng.integers(0, 2, n_rows).astype(float)
    r = rng.normal(size=n_rows)
    return Xpad, first, y, r


def bench_family(family: str, cfg, n_features: int, train_samples: int, repeats: int) -> dict:
    """Training throughput and inference latency for one family."""
    L = cfg.sequence_length
    n_rows = train_samples + 8192
    Xpad, first, y, r = _fake_panel(n_rows, n_features, n_symbols=16)
    fit_rows = np.arange(L, L + train_samples)
    valid_rows = np.arange(n_rows - 512, n_rows)
    one_epoch = cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_epochs": 1})})
    train_loop(family, n_features, one_epoch, Xpad, first, y, r, fit_rows[: cfg.training.batch_size * 2],
               valid_rows)  # warm-up
    with Timer() as t:
        result = train_loop(family, n_features, one_epoch, Xpad, first, y, r, fit_rows, valid_rows)
    net = build_net(family, n_features, cfg)
    net.load_state_dict(result.state)
    net.eval()
    params = sum(p.numel() for p in net.parameters())
    latency = {}
    for batch in BATCHES:
        rows = np.arange(n_rows - batch, n_rows)
        times = []
        with torch.inference_mode():
            for _ in range(repeats if batch < 4096 else max(3, repeats // 4)):
                started = time.perf_counter()
                x, pad = batch_windows(Xpad, first, rows, L)
                net(x, pad)
                times.append(time.perf_counter() - started)
        median = statistics.median(times)
        latency[str(batch)] = {"median_ms": round(median * 1000, 3), "rows_per_second": round(batch / median, 1)}
        print(f"  {family:<12} inference batch {batch:>5}: {median * 1000:9.2f} ms  ({batch / median:,.0f} rows/s)")
    out = {"parameters": params, "train_samples": len(fit_rows),
           "train_samples_per_second": round(result.samples_per_second, 1),
           "train_epoch_seconds_incl_validation": round(t.seconds, 2), "inference": latency}
    print(f"  {family:<12} training: {result.samples_per_second:,.0f} samples/s ({params:,} parameters)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-samples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", default="")
    args = parser.parse_args(argv)
    env = {**os.environ, "QL_PROFILE": args.profile} if args.profile else {k: v for k, v in os.environ.items()
                                                                          if k != "QL_PROFILE"}
    settings = load_settings(env=env)
    cfg = settings.model
    f = settings.data.features
    n_features = len(feature_names(f.windows, f.rank_features))
    print(f"model speed: {n_features} features, sequence {cfg.sequence_length}, batch {cfg.training.batch_size}, "
          f"{torch.get_num_threads()} torch threads")
    figures = {"profile": args.profile or "model_config.yaml", "n_features": n_features,
               "sequence_length": cfg.sequence_length, "batch_size": cfg.training.batch_size,
               "torch_threads": torch.get_num_threads(),
               "sizes": {"lstm": cfg.lstm.model_dump(), "transformer": cfg.transformer.model_dump()}}
    for family in ("lstm", "transformer"):
        figures[family] = bench_family(family, cfg, n_features, args.train_samples, args.repeats)
    write_result("model_speed" + (f"_{args.profile}" if args.profile else ""), figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
