"""A self-contained HTML tear sheet: headline figures and six plots as embedded PNGs.

Equity against an equal-weight buy-and-hold of the same symbols, drawdown, monthly returns
heatmap, rolling Sharpe, a Monte Carlo fan chart (stationary bootstrap of the strategy's
returns) and the distribution of round-trip returns.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipelines.backtest.montecarlo import resample  # noqa: E402
from pipelines.backtest.performance import round_trips  # noqa: E402
from pipelines.backtest.run import Backtest  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def benchmark_equity(bt: Backtest) -> np.ndarray:
    """Equal-weight buy-and-hold of the backtest's symbols, rebalanced never, from the same capital."""
    close = pd.DataFrame(bt.result.market.close).ffill().bfill().to_numpy()
    growth = close / close[0]
    return bt.result.initial_capital * np.nanmean(growth, axis=1)


def plots(bt: Backtest, fan_paths: int = 500) -> dict[str, str]:
    r = bt.result
    ts = r.market.ts
    frame = r.equity_frame().set_index("ts")
    out = {}

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(ts, r.equity, label=bt.strategy)
    ax.plot(ts, benchmark_equity(bt), label="equal-weight buy & hold", alpha=0.7)
    ax.set_title("Equity")
    ax.legend()
    out["equity"] = _png(fig)

    full = np.r_[r.initial_capital, r.equity]
    dd = 1 - full / np.maximum.accumulate(full)
    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.fill_between(ts, -dd[1:], color="tab:red", alpha=0.5)
    ax.set_title("Drawdown")
    out["drawdown"] = _png(fig)

    monthly = (1 + frame["returns"]).groupby([frame.index.year, frame.index.month]).prod() - 1
    table = monthly.unstack()
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.35 * max(1, len(table))))
    lim = max(1e-6, float(np.nanmax(np.abs(table.to_numpy()))))
    im = ax.imshow(table.to_numpy(), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    ax.set_xticks(range(len(table.columns)), [str(m) for m in table.columns])
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title("Monthly returns")
    out["monthly"] = _png(fig)

    ppy = r.market.periods_per_year
    window = max(5, int(min(len(frame) // 4, ppy / 4)))
    roll = frame["returns"].rolling(window)
    rolling_sharpe = roll.mean() / roll.std() * math.sqrt(ppy)
    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.plot(frame.index, rolling_sharpe)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Rolling Sharpe ({window} bars)")
    out["rolling_sharpe"] = _png(fig)

    paths = resample(r.returns, fan_paths, "stationary", 20.0, np.random.default_rng(0))
    eq = r.initial_capital * np.cumprod(1 + paths, axis=1)
    bands = np.percentile(eq, [5, 25, 50, 75, 95], axis=0)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.fill_between(ts, bands[0], bands[4], alpha=0.2, label="5-95%")
    ax.fill_between(ts, bands[1], bands[3], alpha=0.35, label="25-75%")
    ax.plot(ts, bands[2], label="median")
    ax.plot(ts, r.equity, color="black", lw=0.8, label="realized")
    ax.set_title(f"Monte Carlo fan ({fan_paths} stationary-bootstrap paths)")
    ax.legend()
    out["fan"] = _png(fig)

    trips = round_trips(r.fills, r.last_marks())
    fig, ax = plt.subplots(figsize=(9, 2.6))
    if len(trips):
        ax.hist(trips["return"].dropna(), bins=40)
    ax.set_title(f"Round-trip returns ({len(trips)} trades)")
    out["trades"] = _png(fig)
    return out


def write_tearsheet(bt: Backtest, path: Path, extra: dict | None = None, montecarlo: dict | None = None) -> Path:
    """Write the tear sheet of ``bt`` to ``path`` (HTML with embedded images); return the path."""
    figures = {**bt.metrics, **(extra or {})}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,.4f}</td></tr>" if isinstance(v, float)
                   else f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in figures.items())
    folds = bt.per_fold.to_html(index=False, float_format=lambda v: f"{v:,.4f}") if len(bt.per_fold) else ""
    mc = ""
    if montecarlo:
        mc = "<h2>Monte Carlo</h2><table>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in montecarlo.items()) + "</table>"
    images = "".join(f'<h2>{name.replace("_", " ")}</h2><img src="data:image/png;base64,{data}">'
                     for name, data in plots(bt).items())
    market = bt.result.market
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(bt.strategy)} tear sheet</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:auto}}td{{padding:2px 10px}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(bt.strategy)}</h1>
<p>{len(market.symbols)} symbols, {market.ts[0]} .. {market.ts[-1]}, {len(market.ts):,} bars,
out-of-sample predictions only; fills at the next bar's open after costs.</p>
<h2>Figures</h2><table>{rows}</table><h2>Per fold</h2>{folds}{mc}{images}</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
