"""LSTM and Transformer models on windows of past feature rows.

Training minimizes BCE on the direction plus a weighted Huber loss on the standardized
forward return (the panel's targets: raw or cross-sectionally ranked), stops early on the
validation loss and keeps the best weights. It is seeded (weights, shuffling, dropout) so the
same data and settings give the same model. ``training.samples_per_epoch`` makes an epoch a
random draw of that many training windows, which bounds the cost of a fit on a large panel.
With ``training.distributed`` the same loop runs under Spark's ``TorchDistributor``
(DDP over gloo): processes on the driver when Spark runs in local mode, barrier tasks on the
executors when it runs on a cluster.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from config.schemas.model import ModelSettings
from models.nets import build_net
from models.panel import Panel, window_index
from pipelines.progress import progress_bar

log = logging.getLogger(__name__)
CLIP = 5.0  # standardized features and returns are clipped to +-5 sd (fat tails, bad prints)


@dataclass
class Scaler:
    """Median fill, standardization and clipping, fitted on training rows only."""

    median: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "Scaler":
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (a short history)
            median = np.nan_to_num(np.nanmedian(X, axis=0))
            filled = np.where(np.isnan(X), median, X)
            mean, std = filled.mean(axis=0), filled.std(axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(median.astype(np.float32), np.nan_to_num(mean).astype(np.float32), std.astype(np.float32))

    def transform(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.median, X)
        return np.clip((filled - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)


@dataclass
class TrainResult:
    state: dict
    epochs: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    samples_per_second: float = 0.0


def batch_windows(Xpad: np.ndarray, first_of_symbol: np.ndarray, rows: np.ndarray,
                  length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows for ``rows`` from the padded matrix (its last row is the zero pad) and a pad mask."""
    idx = window_index(rows, length, first_of_symbol)
    pad = idx < 0
    return torch.from_numpy(Xpad[np.where(pad, len(Xpad) - 1, idx)]), torch.from_numpy(pad)


def _loss(out: torch.Tensor, y: torch.Tensor, r: torch.Tensor, w: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out[:, 0], y) + w * F.smooth_l1_loss(out[:, 1], r)


def train_loop(family: str, n_features: int, cfg: ModelSettings, Xpad: np.ndarray, first: np.ndarray,
               y: np.ndarray, r: np.ndarray, fit_rows: np.ndarray, valid_rows: np.ndarray,
               progress: bool = False, rank: int = 0, world: int = 1) -> TrainResult:
    """Train one network; with ``world > 1`` this is one DDP worker (rows sharded by rank).

    ``y`` and ``r`` are indexed by panel position; ``r`` is already standardized.
    """
    t = cfg.training
    torch.manual_seed(t.seed)
    net = build_net(family, n_features, cfg)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net)
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    rng = np.random.default_rng(t.seed)
    L = cfg.sequence_length
    yt, rt = torch.from_numpy(y.astype(np.float32)), torch.from_numpy(r.astype(np.float32))
    best, best_state, best_epoch, stale, history = math.inf, None, -1, 0, []
    bar = progress_bar(range(t.max_epochs), desc=f"train {family}", unit="epoch", enabled=progress and rank == 0,
                       leave=False)
    seen, busy = 0, 0.0
    for epoch in bar:
        model.train()
        drawn = rng.permutation(fit_rows)[:t.samples_per_epoch]  # samples_per_epoch None: all of them
        order = drawn[rank::world]
        total, count = 0.0, 0
        started = time.perf_counter()
        n_batches = max(1, math.ceil(len(drawn) / world / t.batch_size))  # same count on every rank
        for b in range(n_batches):
            rows = order[b * t.batch_size:(b + 1) * t.batch_size]
            if len(rows) == 0:
                rows = order[:1]
            x, pad = batch_windows(Xpad, first, rows, L)
            loss = _loss(model(x, pad), yt[rows], rt[rows], t.return_loss_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item() * len(rows)
            count += len(rows)
        busy += time.perf_counter() - started
        seen += count
        val = evaluate_loss(net, Xpad, first, yt, rt, valid_rows, L, t.return_loss_weight)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "valid_loss": val})
        bar.set_postfix(train=f"{total / max(count, 1):.4f}", valid=f"{val:.4f}", refresh=False)
        if val < best - 1e-5:
            best, best_state, best_epoch, stale = val, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= t.early_stopping_patience:
                break
    bar.close()
    return TrainResult(best_state or net.state_dict(), len(history), best_epoch, history,
                       seen * world / busy if busy else 0.0)


@torch.inference_mode()
def evaluate_loss(net: torch.nn.Module, Xpad: np.ndarray, first: np.ndarray, yt: torch.Tensor, rt: torch.Tensor,
                  rows: np.ndarray, length: int, w: float, batch: int = 4096) -> float:
    net.eval()
    total = 0.0
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        x, pad = batch_windows(Xpad, first, part, length)
        total += float(_loss(net(x, pad), yt[part], rt[part], w)) * len(part)
    return total / max(len(rows), 1)


def _distributed_entry(family, n_features, cfg, Xpad, first, y, r, fit_rows, valid_rows):
    """Body of one TorchDistributor worker: join the gloo group and train its shard.

    Every rank returns its result: TorchDistributor's local mode has each process write the
    same output file, so whichever finishes last is what the driver reads. DDP keeps the
    weights identical on all ranks and the validation loss is computed on all validation
    rows everywhere, so every rank's best state is the same model.
    """
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        return train_loop(family, n_features, cfg, Xpad, first, y, r, fit_rows, valid_rows,
                          rank=dist.get_rank(), world=dist.get_world_size())
    finally:
        dist.destroy_process_group()


class SequenceModel:
    """An LSTM or Transformer on the last ``sequence_length`` bars of each symbol's features."""

    def __init__(self, family: str, cfg: ModelSettings, progress: bool = False) -> None:
        self.name = family
        self.cfg = cfg
        self.progress = progress

    def fit(self, panel: Panel, train: np.ndarray, valid: np.ndarray) -> "SequenceModel":
        self.features = list(panel.features)
        self.scaler = Scaler.fit(panel.X[train])
        Xpad = self._padded(panel)
        fwd = panel.target_return
        sd = float(np.nanstd(fwd[train])) or 1.0
        self.return_scale = sd
        y = np.nan_to_num(panel.target_direction)
        r = np.clip(np.nan_to_num(fwd / sd), -CLIP, CLIP)
        args = (self.name, len(self.features), self.cfg, Xpad, panel.first_of_symbol, y, r,
                np.asarray(train), np.asarray(valid))
        t = self.cfg.training
        if t.distributed:
            from pyspark import SparkContext
            from pyspark.ml.torch.distributor import TorchDistributor

            # on a cluster the processes are barrier tasks on the executors; in local mode, on the driver
            context = SparkContext._active_spark_context
            on_cluster = context is not None and not context.master.startswith("local")
            log.info("training %s with TorchDistributor (%d processes, %s)", self.name, t.num_processes,
                     f"on the executors of {context.master}" if on_cluster else "local mode")
            result = TorchDistributor(num_processes=t.num_processes, local_mode=not on_cluster, use_gpu=False).run(
                _distributed_entry, *args)
        else:
            result = train_loop(*args, progress=self.progress)
        self.net = build_net(self.name, len(self.features), self.cfg)
        self.net.load_state_dict(result.state)
        self.net.eval()
        self.epochs, self.best_epoch, self.history = result.epochs, result.best_epoch, result.history
        self.train_samples_per_second = result.samples_per_second
        return self

    def _padded(self, panel: Panel, chunk: int = 262_144) -> np.ndarray:
        """The scaled feature matrix with a zero row appended (the pad), scaled a chunk of rows
        at a time so a panel of millions of rows needs one copy, not several."""
        n = len(panel.X)
        out = np.zeros((n + 1, panel.X.shape[1]), dtype=np.float32)
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            out[start:end] = self.scaler.transform(panel.X[start:end])
        return out

    @torch.inference_mode()
    def predict(self, panel: Panel, rows: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        if list(panel.features) != self.features:
            raise ValueError(f"{self.name}: trained on {len(self.features)} features, got a different list")
        self.net.eval()
        Xpad = self._padded(panel)
        rows = np.asarray(rows)
        outs = []
        for i in range(0, len(rows), batch):
            x, pad = batch_windows(Xpad, panel.first_of_symbol, rows[i:i + batch], self.cfg.sequence_length)
            outs.append(self.net(x, pad).numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, 2), dtype=np.float32)
        return 1 / (1 + np.exp(-out[:, 0].astype(float))), out[:, 1].astype(float) * self.return_scale
