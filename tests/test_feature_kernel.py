"""The compiled feature kernel against the pandas library (the oracle), and its incremental form
against its batch form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.features import kernel
from pipelines.features.library import compute_features, feature_names

WINDOWS = (5, 10, 20, 30, 60)


def _assert_matches_oracle(bars: pd.DataFrame, windows=WINDOWS, label: str = "") -> None:
    got = kernel.compute({k: bars[k].to_numpy() for k in kernel.INPUTS if k in bars}, windows)
    want = compute_features(bars, windows).to_numpy()
    assert got.shape == want.shape
    for j, name in enumerate(feature_names(windows)):
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=1e-9, atol=1e-9, equal_nan=True,
                                   err_msg=f"{label} {name}")


def _random_bars(rng: np.random.Generator, n: int, level: float = 100.0) -> pd.DataFrame:
    """A random walk with the cases that break naive rolling code: flat runs, missing bars,
    zero and constant volume, a jump in price level, and a linearly interpolated run."""
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    close[n // 6:n // 6 + 90] = close[n // 6]                       # flat: constant prices
    close[n // 3:n // 3 + 40] = np.linspace(close[n // 3], close[n // 3] * 1.001, 40)  # interpolated
    close[n // 2:] *= 40.0                                          # level jump
    open_ = close * (1 + rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    flat = slice(n // 6, n // 6 + 90)
    open_[flat] = high[flat] = low[flat] = close[flat]
    volume = rng.lognormal(10, 1, n)
    volume[rng.random(n) < 0.05] = 0.0                              # no trades
    volume[100:180] = 0.0
    volume[2 * n // 3:2 * n // 3 + 70] = 5000.0                     # constant volume
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})
    bars.loc[n - 200:n - 190, ["open", "high", "low", "close"]] = np.nan  # a gap of missing bars
    bars["vwap"] = (bars["high"] + bars["low"] + bars["close"]) / 3
    return bars


@pytest.mark.parametrize("seed,level", [(1, 100.0), (2, 0.013), (3, 45_000.0)])
def test_kernel_equals_the_pandas_library_on_random_bars(seed: int, level: float) -> None:
    _assert_matches_oracle(_random_bars(np.random.default_rng(seed), 2500, level), label=f"seed {seed}")


def test_other_windows_and_no_vwap() -> None:
    """Window 20 not among the features (the Bollinger band keeps its own); vwap absent."""
    bars = _random_bars(np.random.default_rng(4), 800).drop(columns="vwap")
    _assert_matches_oracle(bars, windows=(3, 7, 25), label="(3, 7, 25)")


def test_short_series_are_all_nan_where_pandas_is() -> None:
    bars = _random_bars(np.random.default_rng(5), 300).head(4)
    _assert_matches_oracle(bars, label="4 bars")
    assert kernel.compute(bars.head(0)).shape == (0, 114)


def _series(frame: pd.DataFrame, by: str, key: str, ts: str) -> pd.DataFrame:
    return frame[frame[by] == key].sort_values(ts).reset_index(drop=True)


def test_kernel_equals_the_pandas_library_on_real_bars(shared_data: Path) -> None:
    """S&P 500 daily (incl. a four-digit price), CME and BTC one-minute bars (with linearly
    interpolated stretches), Binance hourly bars."""
    sp = pd.read_parquet(shared_data / "sp500_pooksoft_alphavantage_daily_1999_2021.parquet")
    for ticker in ["AAPL", "NVR", "A"]:
        _assert_matches_oracle(_series(sp, "ticker", ticker, "date"), label=ticker)
    minute = pd.read_parquet(shared_data / "intraday_1m_bars_nautilus_testdata.parquet")
    minute = minute[minute["price_side"] == "trade"]
    for instrument in ["BTC-PERP", "6EH4.XCME"]:
        _assert_matches_oracle(_series(minute, "instrument", instrument, "ts"), label=instrument)
    hourly = pd.read_parquet(shared_data / "crypto_binance_1h_cryptodatadownload_2017_2021.parquet")
    btc = _series(hourly, "symbol", "BTC/USDT", "ts").rename(columns={"volume_quote": "volume"})
    _assert_matches_oracle(btc, label="BTC/USDT hourly")


def test_incremental_form_equals_the_batch_rows() -> None:
    """Property over random bar sequences: symbols take bars in random interleavings (some skip
    steps), the state goes through bytes mid-way; every row equals the batch kernel's row."""
    rng = np.random.default_rng(11)
    for trial in range(20):
        n_symbols = int(rng.integers(1, 9))
        lengths = rng.integers(1, 400, n_symbols)
        series = [kernel.as_matrix(_random_bars(rng, 400, float(rng.uniform(0.01, 5000)))
                                   .head(int(n)).to_dict("series")) for n in lengths]
        expected = [kernel.compute(s) for s in series]
        state = kernel.FeatureState(WINDOWS, n_symbols)
        taken = np.zeros(n_symbols, int)
        got = [np.empty_like(e) for e in expected]
        step = 0
        while (taken < lengths).any():
            step += 1
            rows = np.flatnonzero((taken < lengths) & (rng.random(n_symbols) < 0.7))
            if step % 50 == 0:   # through a state store and back
                state = kernel.FeatureState.from_rows(WINDOWS, [state.row_bytes(i) for i in range(n_symbols)])
            bars = np.array([series[i][taken[i]] for i in rows]).reshape(len(rows), 6)
            out = state.update(rows, bars)
            for i, row in zip(rows, out):
                got[i][taken[i]] = row
                taken[i] += 1
        for i in range(n_symbols):
            np.testing.assert_array_equal(got[i], expected[i], err_msg=f"trial {trial} symbol {i}")
        assert (state.bars_seen() == lengths).all()


def test_panel_equals_one_symbol_at_a_time() -> None:
    rng = np.random.default_rng(12)
    series = [kernel.as_matrix(_random_bars(rng, int(n)).to_dict("series")) for n in rng.integers(50, 600, 7)]
    bounds = np.concatenate([[0], np.cumsum([len(s) for s in series])])
    panel = kernel.compute_panel(np.vstack(series), bounds)
    for i, s in enumerate(series):
        np.testing.assert_array_equal(panel[bounds[i]:bounds[i + 1]], kernel.compute(s))


def test_bad_calls_say_what_is_wrong() -> None:
    state = kernel.FeatureState(WINDOWS, 3)
    with pytest.raises(ValueError, match="one bar per update"):
        state.update(np.array([1, 1]), np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"bars must be \(2, 6\)"):
        state.update(np.array([0, 1]), np.ones((2, 5)))
    with pytest.raises(ValueError, match="windows must be distinct"):
        kernel.FeatureState((5, 5), 1)
    with pytest.raises(ValueError, match="does not match windows"):
        kernel.FeatureState.from_rows((5, 10), [state.row_bytes(0)])
    with pytest.raises(ValueError, match="bounds"):
        kernel.compute_panel(np.ones((4, 6)), np.array([0, 3]))


def test_short_benchmark_reports_every_figure(spark, tmp_path) -> None:
    """``make bench-features`` in small: every path runs and reports (the figures are in
    benchmarks/results/feature_throughput.json from the full run)."""
    from benchmarks import feature_throughput

    assert feature_throughput.main(["--short", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "feature_throughput_short.json").read_text())["figures"]
    synthetic = figures["synthetic"]
    for key in ("kernel_one_core", "pandas_oracle", "asset", "asset_compute_only", "write_only"):
        assert synthetic[key]["rows_per_second"] > 0, key
    assert synthetic["asset"]["rows"] == synthetic["write_only"]["rows"] == synthetic["kernel_one_core"]["rows"]
    assert {"50", "500"} <= set(figures["stream"]) and figures["stream"]["500"]["p99_ms"] > 0
