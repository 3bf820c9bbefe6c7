"""The built-in synthetic market: deterministic by seed, with a known best achievable accuracy.

Per symbol i and bar t the log return is

    r[i,t] = mu[i,t] + sigma[i,t] * u[i,t]

* ``u`` mixes ``n_factors`` common factors and an idiosyncratic shock, each a unit-variance
  Student-t (fat tails), so symbols co-move;
* ``sigma`` = GARCH(1,1) volatility (clustering) x a market-wide two-state regime
  (calm / stressed, Markov switching) x an intraday U-shaped seasonality;
* ``mu`` is the planted predictable part, a function of past prices only, so a model that
  sees recent returns can learn it:

  - ``planted``: ``strength * sigma * clip(z, -3, 3)`` where ``z`` is the sum of the last
    ``signal_lookback`` returns over ``sigma * sqrt(lookback)``. Its Bayes rule is the sign of
    the recent trend: exactly the ``momentum_sign`` baseline.
  - ``interaction``: ``strength * INTERACTION_SCALE * sigma * clip(x1 * x2, -3, 3)`` with
    ``x1, x2`` the last two returns over ``sigma``: two bars the same way are followed by an up
    move, two opposite ones by a down move (an XOR of the last two signs). No baseline owns it:
    the trend's sign is nearly a coin flip against it and a linear model cannot form the
    product; a model that sees the last bars' returns (the ``kmid`` feature of each bar in a
    window) can.

Because the generator knows ``mu`` and ``sigma`` it can say what no model can beat: the
Bayes bound on directional accuracy, ``E[F(|mu| / sigma)]`` with ``F`` the CDF of ``u``
(estimated from a large sample of the same shock mixture). In ``random_walk`` mode the
returns are i.i.d. Gaussian with constant volatility and the bound is exactly 0.5.

Ticks are drawn inside each bar on a Brownian bridge from the bar's open to its close;
trades print at the efficient price with the quote ``half_spread_bps`` either side, so bars
rebuilt from the ticks have exactly the closes above and the bound stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from config.schemas.data import SyntheticSettings
from pipelines.ingest.bars import interval_label
from pipelines.lake.tables import TICK_SCHEMA
from pipelines.progress import progress_bar

TRADING_DAYS = 252
# E|x1 * x2| of two unit shocks is smaller than E|clip(z)| of the trend: this scale puts the
# interaction's Bayes bound at the planted trend's (~0.62 at strength 0.25)
INTERACTION_SCALE = 1.8
SESSION_OPEN = pd.Timedelta(hours=14, minutes=30)  # 09:30 New York in UTC (winter)


@dataclass(frozen=True)
class GeneratorState:
    """Where the generator stands after its last bar: enough to continue the same market."""

    returns_tail: np.ndarray   # [signal_lookback, symbols] the last log returns (the planted signal reads them)
    h: np.ndarray              # GARCH variance per symbol
    prev_eps2: np.ndarray      # last squared de-seasonalised shock per symbol
    stressed: bool             # regime of the last bar
    log_close: np.ndarray      # last log close per symbol


@dataclass(frozen=True)
class SyntheticMarket:
    """Bars (one row per symbol and bar) plus the generator's own truth."""

    bars: pd.DataFrame         # symbol, ts, open, high, low, close, volume (efficient-price bars)
    mu: np.ndarray             # [bars, symbols] planted conditional mean of each bar's log return
    sigma: np.ndarray          # [bars, symbols] conditional std of each bar's log return
    bayes_accuracy: float      # E[F(|mu|/sigma)]: the best expected directional accuracy
    oracle_accuracy: float     # realized share of bars whose sign matched sign(mu) (mu != 0)
    timestamps: pd.DatetimeIndex
    symbols: list[str]
    end: GeneratorState | None = None  # the state after the last bar (see :func:`continue_market`)


def _unit_t(rng: np.random.Generator, df: float | None, size) -> np.ndarray:
    """Unit-variance Student-t draws (Gaussian when ``df`` is None)."""
    if df is None:
        return rng.standard_normal(size)
    return rng.standard_t(df, size) * np.sqrt((df - 2.0) / df)


def bar_timestamps(cfg: SyntheticSettings) -> pd.DatetimeIndex:
    """Bar start times: ``bars_per_day`` bars of ``bar_minutes`` from the session open, business days."""
    days = pd.bdate_range(cfg.start_date, periods=cfg.n_days, tz="UTC")
    offsets = SESSION_OPEN + pd.to_timedelta(np.arange(cfg.bars_per_day) * cfg.bar_minutes, unit="min")
    return pd.DatetimeIndex((days.values[:, None] + offsets.values[None, :]).ravel(), tz="UTC")


def seasonality(bars_per_day: int) -> np.ndarray:
    """Intraday U-shape with mean 1: busier and more volatile at the open and the close."""
    x = np.linspace(-1.0, 1.0, bars_per_day)
    shape = 0.6 + 0.8 * x**2
    return shape / shape.mean()


def generate_market(cfg: SyntheticSettings, progress: bool = False) -> SyntheticMarket:
    """Simulate the bar-level market described in the module docstring."""
    return _simulate(cfg, np.random.default_rng(cfg.seed), bar_timestamps(cfg), None, progress)


def continue_market(cfg: SyntheticSettings, market: SyntheticMarket, days: int,
                    progress: bool = False) -> SyntheticMarket:
    """The same market ``days`` trading days further: same symbols, factor loadings,
    volatility and regime state, planted signal and shocks law, fresh random draws.

    The live feed publishes it, so the champion scores bars it never saw while the Bayes bound
    of exactly those bars is known. ``market`` is :func:`generate_market`'s research period.
    """
    if market.end is None:
        raise ValueError("market has no generator state to continue from")
    first = (market.timestamps[-1].normalize() + pd.offsets.BDay(1)).date()
    ts = bar_timestamps(cfg.model_copy(update={"start_date": first, "n_days": days}))
    return _simulate(cfg, np.random.default_rng([cfg.seed, 1]), ts, market.end, progress)


def _simulate(cfg: SyntheticSettings, rng: np.random.Generator, ts: pd.DatetimeIndex,
              start: GeneratorState | None, progress: bool) -> SyntheticMarket:
    n_bars, n_sym = len(ts), cfg.n_symbols
    n_days = n_bars // cfg.bars_per_day
    symbols = [f"SYN{i:03d}" for i in range(n_sym)]
    base_var = cfg.annual_vol**2 / (TRADING_DAYS * cfg.bars_per_day)
    random_walk = cfg.mode == "random_walk"
    # the loadings are the seed's first draw: a continuation re-draws the same ones
    loadings = np.random.default_rng(cfg.seed).normal(0.6, 0.25, (n_sym, cfg.n_factors))
    if start is None and not random_walk:
        rng.normal(0.6, 0.25, (n_sym, cfg.n_factors))  # keep the research period's draw order

    if random_walk:
        shocks = rng.standard_normal((n_bars, n_sym))
        season = np.ones(n_bars)
        regime = np.ones(n_bars)
        stressed = np.zeros(n_bars, dtype=bool)
    else:
        factors = _unit_t(rng, cfg.df_tails, (n_bars, cfg.n_factors))
        idio = _unit_t(rng, cfg.df_tails, (n_bars, n_sym))
        shocks = (factors @ loadings.T + idio) / np.sqrt((loadings**2).sum(axis=1) + 1.0)
        season = np.tile(np.sqrt(seasonality(cfg.bars_per_day)), n_days)
        flips = rng.random(n_bars) < cfg.regime_switch_prob
        stressed = (np.cumsum(flips) + (start is not None and start.stressed)) % 2 == 1
        regime = np.where(stressed, cfg.regime_vol_mult, 1.0)

    alpha, beta = (0.0, 0.0) if random_walk else (cfg.garch_alpha, cfg.garch_beta)
    omega = base_var * (1.0 - alpha - beta)
    strength = 0.0 if random_walk else cfg.signal_strength
    lookback = cfg.signal_lookback

    # rows [0, lookback) hold the previous period's last returns (zeros for a new market)
    history = np.zeros((lookback + n_bars, n_sym))
    if start is not None:
        history[:lookback] = start.returns_tail
    returns = history[lookback:]
    mu = np.zeros((n_bars, n_sym))
    sigma = np.zeros((n_bars, n_sym))
    h = np.full(n_sym, base_var) if start is None else start.h.copy()
    prev_eps2 = np.full(n_sym, base_var) if start is None else start.prev_eps2.copy()
    steps = progress_bar(range(n_bars), desc="synthetic bars", unit="bar", enabled=progress)
    for t in steps:
        h = omega + alpha * prev_eps2 + beta * h if not random_walk else h
        sigma[t] = np.sqrt(h) * regime[t] * season[t]
        if strength and cfg.mode == "interaction" and (t >= 2 or start is not None):
            x1, x2 = history[t + lookback - 1] / sigma[t], history[t + lookback - 2] / sigma[t]
            mu[t] = strength * INTERACTION_SCALE * sigma[t] * np.clip(x1 * x2, -3.0, 3.0)
        elif strength and (t >= lookback or start is not None):
            z = history[t:t + lookback].sum(axis=0) / (sigma[t] * np.sqrt(lookback))
            mu[t] = strength * sigma[t] * np.clip(z, -3.0, 3.0)
        eps = sigma[t] * shocks[t]
        returns[t] = mu[t] + eps
        prev_eps2 = (eps / (regime[t] * season[t])) ** 2

    bayes = _bayes_accuracy(mu, sigma, rng, cfg.df_tails if not random_walk else None, cfg.n_factors, random_walk)
    moving = mu != 0
    oracle = float((np.sign(returns[moving]) == np.sign(mu[moving])).mean()) if moving.any() else 0.5
    oracle = oracle * moving.mean() + 0.5 * (1 - moving.mean())

    first_log = (np.log(100.0 * np.exp(rng.normal(0, 0.5, n_sym))) if start is None else start.log_close)
    log_close = first_log[None, :] + np.cumsum(returns, axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([close[:1] / np.exp(returns[:1]), close[:-1]])
    bar_range = sigma * np.abs(rng.standard_normal((n_bars, n_sym))) * 0.5
    high = np.maximum(open_, close) * np.exp(bar_range * rng.random((n_bars, n_sym)))
    low = np.minimum(open_, close) * np.exp(-bar_range * rng.random((n_bars, n_sym)))
    volume_shape = np.tile(seasonality(cfg.bars_per_day), n_days)[:, None]
    volume = np.round(rng.lognormal(np.log(1000.0), 0.5, (n_bars, n_sym)) * volume_shape * regime[:, None])

    bars = pd.DataFrame({
        "symbol": np.tile(symbols, n_bars),
        "ts": np.repeat(ts.values, n_sym),
        "open": open_.ravel(), "high": high.ravel(), "low": low.ravel(), "close": close.ravel(),
        "volume": volume.ravel(),
    })
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
    end = GeneratorState(history[-lookback:].copy(), h.copy(), prev_eps2.copy(), bool(stressed[-1]),
                         log_close[-1].copy())
    return SyntheticMarket(bars, mu, sigma, bayes, oracle, ts, symbols, end)


def _bayes_accuracy(mu: np.ndarray, sigma: np.ndarray, rng: np.random.Generator, df: float | None,
                    n_factors: int, random_walk: bool, n_draws: int = 400_000) -> float:
    """E[F(|mu|/sigma)] with F the CDF of the unit shock, from a large sample of that shock."""
    ratio = np.abs(mu[sigma > 0]) / sigma[sigma > 0]
    if not ratio.any():
        return 0.5
    if random_walk or df is None:
        sample = rng.standard_normal(n_draws)
    else:
        # same mixture as the bars: loadings drawn as in generate_market
        loadings = rng.normal(0.6, 0.25, (64, n_factors))
        which = rng.integers(0, 64, n_draws)
        f = _unit_t(rng, df, (n_draws, n_factors))
        e = _unit_t(rng, df, n_draws)
        load = loadings[which]
        sample = ((f * load).sum(axis=1) + e) / np.sqrt((load**2).sum(axis=1) + 1.0)
    sample.sort()
    # P(u > -ratio) = 1 - F(-ratio): the chance the shock does not flip the sign of mu
    below = np.searchsorted(sample, -ratio, side="right") / n_draws
    return float(np.mean(1.0 - below))


def generate_ticks(market: SyntheticMarket, cfg: SyntheticSettings, progress: bool = False,
                   seed: int | list[int] | None = None, first_seq: int = 0) -> pd.DataFrame:
    """Trades and quotes inside each bar whose OHLC rebuilds ``market.bars`` closes exactly.

    Columns follow the tick contract: symbol, ts, seq, price, size, bid, ask, side, source.
    ``seed`` (default: the config's seed + 1) and ``first_seq`` let a continuation of the
    market (:func:`continue_market`) draw fresh ticks whose sequence numbers carry on.
    """
    rng = np.random.default_rng(cfg.seed + 1 if seed is None else seed)
    bars = market.bars
    n = len(bars)
    season = np.tile(seasonality(cfg.bars_per_day), len(market.timestamps) // cfg.bars_per_day)
    season = np.repeat(season, len(market.symbols))
    counts = np.maximum(1, rng.poisson(cfg.ticks_per_bar * season))
    bar_idx = np.repeat(np.arange(n), counts)
    total = len(bar_idx)
    # position of each tick inside its bar, increasing in (0, 1]; the last tick closes the bar
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.arange(total) - starts
    per_tick_count = np.repeat(counts, counts)
    u = (rank + rng.random(total)) / per_tick_count
    last = rank == per_tick_count - 1
    u[last] = 1.0

    log_open = np.log(bars["open"].to_numpy())[bar_idx]
    log_close = np.log(bars["close"].to_numpy())[bar_idx]
    bar_sigma = market.sigma.ravel()[bar_idx]
    # Brownian bridge inside each bar: W(u) - u W(1), so it is pinned at the open and the close
    du = np.diff(u, prepend=0.0)
    du[rank == 0] = u[rank == 0]
    steps = rng.standard_normal(total) * np.sqrt(du)
    cums = np.cumsum(steps)
    walk = cums - np.repeat(cums[np.cumsum(counts) - counts] - steps[np.cumsum(counts) - counts], counts)
    bridge = walk - u * np.repeat(walk[last], counts)
    price = np.exp(log_open + (log_close - log_open) * u + 0.5 * bar_sigma * bridge)
    price[last] = bars["close"].to_numpy()[bar_idx[last]]

    half = price * cfg.half_spread_bps / 1e4
    size = np.maximum(1.0, np.round(rng.lognormal(np.log(50.0), 0.8, total)))
    side = np.where(rng.random(total) < 0.5, "buy", "sell")
    bar_ts = bars["ts"].dt.tz_convert(None).to_numpy()[bar_idx]
    offset = pd.to_timedelta(np.minimum(u, 0.999999) * cfg.bar_minutes * 60e6, unit="us").to_numpy()
    ticks = pd.DataFrame({
        "symbol": bars["symbol"].to_numpy()[bar_idx],
        "ts": bar_ts + offset,
        "price": price, "size": size, "bid": price - half, "ask": price + half,
        "side": side, "source": "synthetic",
    })
    ticks["ts"] = pd.to_datetime(ticks["ts"], utc=True).dt.floor("us")  # Spark keeps microseconds
    ticks = ticks.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    ticks["seq"] = ticks.groupby("symbol").cumcount().astype("int64") + first_seq
    ticks = ticks[["symbol", "ts", "seq", "price", "size", "bid", "ask", "side", "source"]]
    return _with_bad_ticks(ticks, cfg.bad_tick_rate, rng)


def _with_bad_ticks(ticks: pd.DataFrame, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """Append corrupted copies of ``rate`` of the ticks, as a real feed delivers them.

    Each copy repeats its original's seq and breaks one rule: a negative price, a crossed
    quote, a zero size, or nothing (an exact resend). The originals are untouched, so the
    clean feed (and the Bayes bound) is what is left after validation.
    """
    n = int(round(len(ticks) * rate))
    if n == 0:
        return ticks
    bad = ticks.iloc[rng.choice(len(ticks), n, replace=False)].copy()
    kind = np.arange(n) % 4
    bad.loc[kind == 0, "price"] = -bad.loc[kind == 0, "price"]
    bad.loc[kind == 1, ["bid", "ask"]] = bad.loc[kind == 1, ["ask", "bid"]].to_numpy()
    bad.loc[kind == 2, "size"] = 0.0
    out = pd.concat([ticks, bad], ignore_index=True)
    return out.sort_values(["symbol", "ts", "seq"], kind="stable").reset_index(drop=True)



class SyntheticSource:
    """The synthetic market as a :class:`~pipelines.ingest.sources.base.Source` of ticks,
    whose facts include the Bayes bound on directional accuracy."""

    kind = "ticks"

    def __init__(self, cfg: SyntheticSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.interval = interval_label(cfg.bar_minutes)
        self._market: SyntheticMarket | None = None

    def market(self, progress: bool = False) -> SyntheticMarket:
        if self._market is None:
            self._market = generate_market(self.cfg, progress=progress)
        return self._market

    def read(self, spark: SparkSession, start: date, end: date) -> DataFrame:
        ticks = generate_ticks(self.market(progress=True), self.cfg)
        days = ticks["ts"].dt.date
        return spark.createDataFrame(ticks[(days >= start) & (days <= end)].reset_index(drop=True), TICK_SCHEMA)

    def date_range(self, spark: SparkSession) -> tuple[date, date]:
        ts = bar_timestamps(self.cfg)
        return ts[0].date(), ts[-1].date()

    def facts(self) -> dict[str, float]:
        market = self.market()
        return {"bayes_accuracy": float(market.bayes_accuracy), "oracle_accuracy": float(market.oracle_accuracy),
                "random_walk": float(self.cfg.mode == "random_walk")}
