"""The feature library: coverage, known values, and the point-in-time proof."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from config.schemas.data import SyntheticSettings
from pipelines.features.library import add_cross_sectional_ranks, compute_features, feature_names
from pipelines.features.labels import compute_labels
from pipelines.ingest.sources.synthetic import generate_market

WINDOWS = [5, 10, 20, 30, 60]
RANKS = ["roc_5", "roc_20", "volat_20", "vma_5"]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    m = generate_market(SyntheticSettings(n_symbols=4, n_days=6, seed=3))
    b = m.bars.copy()
    b["vwap"] = (b["high"] + b["low"] + b["close"]) / 3
    return b


def _all_features(bars: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for _, g in bars.groupby("symbol"):
        g = g.sort_values("ts").reset_index(drop=True)
        parts.append(pd.concat([g[["symbol", "ts"]], compute_features(g, WINDOWS)], axis=1))
    ts_feats = pd.concat(parts, ignore_index=True)
    ranked = [add_cross_sectional_ranks(rows, RANKS) for _, rows in ts_feats.groupby("ts")]
    return pd.concat(ranked).sort_values(["symbol", "ts"]).reset_index(drop=True)


def test_at_least_sixty_named_features(bars: pd.DataFrame) -> None:
    names = feature_names(WINDOWS, RANKS)
    assert len(names) >= 60 and len(set(names)) == len(names)
    feats = _all_features(bars)
    assert list(feats.columns[2:]) == names
    warm = feats.groupby("symbol").tail(200)
    assert warm[names].notna().all().all(), warm[names].isna().sum()[lambda s: s > 0]


def test_known_values() -> None:
    bars = pd.DataFrame({"open": [10.0, 11, 12, 13, 14, 15], "high": [11.0, 12, 13, 14, 15, 16],
                         "low": [9.0, 10, 11, 12, 13, 14], "close": [10.5, 11.5, 12.5, 13.5, 14.5, 15.5],
                         "volume": [100.0] * 6, "vwap": [10.5, 11.5, 12.5, 13.5, 14.5, 15.5]})
    f = compute_features(bars, [5])
    assert f["kmid"].iloc[0] == pytest.approx(0.05)
    assert f["klen"].iloc[0] == pytest.approx(0.2)
    assert f["roc_5"].iloc[5] == pytest.approx(10.5 / 15.5)
    assert f["ma_5"].iloc[5] == pytest.approx(np.mean([11.5, 12.5, 13.5, 14.5, 15.5]) / 15.5)
    assert f["cntp_5"].iloc[5] == 1.0 and f["cntd_5"].iloc[5] == 1.0 and f["sump_5"].iloc[5] == pytest.approx(1.0)
    assert f["rsqr_5"].iloc[5] == pytest.approx(1.0) and f["resi_5"].iloc[5] == pytest.approx(0.0, abs=1e-12)
    assert f["beta_5"].iloc[5] == pytest.approx(1.0 / 15.5)
    assert np.isnan(f["roc_5"].iloc[4])  # not enough history yet


def test_point_in_time_no_feature_sees_the_future(bars: pd.DataFrame) -> None:
    before = _all_features(bars)
    cut = bars["ts"].sort_values().unique()[len(bars["ts"].unique()) // 2]
    later = bars["ts"] > cut
    rng = np.random.default_rng(0)
    changed = bars.copy()
    for col in ["open", "high", "low", "close", "volume", "vwap"]:
        changed.loc[later, col] = changed.loc[later, col] * rng.uniform(0.5, 2.0, later.sum())
    after = _all_features(changed)
    past = before["ts"] <= cut
    pd.testing.assert_frame_equal(before[past], after[past])
    assert not before[~past].drop(columns=["symbol", "ts"]).equals(after[~past].drop(columns=["symbol", "ts"]))


def test_labels_look_forward_only() -> None:
    bars = pd.DataFrame({"open": [99.0, 100.5, 101.5, 98.0, 102.5], "close": [100.0, 101.0, 99.0, 102.0, 103.0]})
    lab = compute_labels(bars, 2)
    assert lab["fwd_return"].iloc[0] == pytest.approx(np.log(99.0 / 100.0))
    assert lab["direction"].tolist()[:3] == [0.0, 1.0, 1.0]
    assert lab.iloc[3:].isna().all().all()
    changed = bars.copy()
    changed.loc[:1, "close"] = [1.0, 2.0]  # the past of t=2 does not move its label
    assert compute_labels(changed, 2)["fwd_return"].iloc[2] == lab["fwd_return"].iloc[2]


def test_the_tradable_label_runs_from_the_next_open_as_the_backtest_trades() -> None:
    """open(t+1) -> open(t+1+h): a gap between t's close and the next open earns nothing, since an
    order decided at t's close fills at that open."""
    bars = pd.DataFrame({"open": [99.0, 110.0, 108.0, 111.0, 120.0], "close": [100.0, 109.0, 109.5, 112.0, 121.0]})
    close = compute_labels(bars, 1, "close")
    tradable = compute_labels(bars, 1, "open")
    assert close["direction"].iloc[0] == 1.0  # the overnight jump 100 -> 110 credited to t=0 ...
    assert tradable["fwd_return"].iloc[0] == pytest.approx(np.log(108.0 / 110.0))  # ... but not tradable
    assert tradable["direction"].tolist()[:3] == [0.0, 1.0, 1.0]
    assert tradable["fwd_return"].iloc[3:].isna().all()  # needs the open two bars ahead
    with pytest.raises(ValueError, match="label price 'mid'"):
        compute_labels(bars, 1, "mid")


def test_daily_data_gets_the_tradable_label_and_intraday_keeps_close_to_close() -> None:
    from config import load_settings

    assert load_settings(env={}).model.label_price == "close"  # the synthetic 5-minute market
    daily = load_settings(env={"QL_DATA__SOURCE": "arch"}).model
    assert daily.label_price == "open" and daily.label_span == 2
    files = {"QL_DATA__SOURCE": "files", "QL_DATA__FILES__PATH": "x.csv", "QL_DATA__FILES__INTERVAL": "1d"}
    assert load_settings(env=files).model.label_price == "open"
    assert load_settings(env={**files, "QL_MODEL__LABEL_PRICE": "close"}).model.label_span == 1


def test_a_bar_without_volume_gives_missing_volume_features_not_huge_ones() -> None:
    """Zero volume used to divide by 1e-12 (features of 1e14); those features are NaN now."""
    bars = generate_market(SyntheticSettings(n_symbols=1, n_days=3, seed=3)).bars.reset_index(drop=True)
    bars["vwap"] = (bars["high"] + bars["low"] + bars["close"]) / 3
    bars.loc[100, "volume"] = 0.0
    feats = compute_features(bars, [5, 10])
    assert np.isnan(feats.loc[100, "vma_5"]) and np.isnan(feats.loc[100, "vstd_10"])
    assert np.isnan(feats.loc[101:105, "cord_5"]).all()  # the volume change out of a no-volume bar
    assert np.nanmax(np.abs(feats.to_numpy())) < 1e6
    clean = compute_features(bars.assign(volume=bars["volume"].replace(0.0, 1.0)), [5, 10])
    untouched = [c for c in feats.columns if not c.startswith(("vma", "vstd", "cord", "corr"))]
    pd.testing.assert_frame_equal(feats[untouched], clean[untouched])


def test_a_month_built_on_spark_equals_the_full_history_build(spark, tmp_path) -> None:
    """The same (symbol, ts) row has the same features however the ranges were built: a Spark
    build of February alone equals a pandas build over all history, smoothed indicators included."""
    from datetime import date

    from config import load_settings
    from pipelines import lake
    from pipelines.features.build import write_features
    from pipelines.features.recipe import FeatureSpec
    from pipelines.ingest.layers import write_bronze, write_silver
    from pipelines.lake.tables import FEATURES, SILVER_BARS

    settings = load_settings(env={"QL_PLATFORM__LAKE__ROOT": str(tmp_path / "lake"), "QL_DATA__SYNTHETIC__N_SYMBOLS": "3",
                                  "QL_DATA__SYNTHETIC__N_DAYS": "16", "QL_DATA__SYNTHETIC__START_DATE": "2024-01-22"})
    write_bronze(spark, settings, date(2024, 1, 1), date(2024, 2, 29))
    write_silver(spark, settings, date(2024, 1, 1), date(2024, 2, 29))
    write_features(spark, settings, date(2024, 2, 1), date(2024, 2, 29))  # February only, on its own

    spec = FeatureSpec.from_settings(settings)
    bars = lake.read(spark, SILVER_BARS.path(settings)).toPandas()
    assert (bars["ts"] < pd.Timestamp("2024-02-01")).groupby(bars["symbol"]).sum().min() > spec.lookback_bars
    full = spec.compute(bars)  # every bar since the first one
    full = full[full["ts"] >= pd.Timestamp("2024-02-01")].reset_index(drop=True)
    built = (lake.read(spark, FEATURES.path(settings)).toPandas().sort_values(["symbol", "ts"])
             .reset_index(drop=True))
    assert len(built) == len(full) > 0
    assert (built[["symbol", "ts"]].to_numpy() == full[["symbol", "ts"]].to_numpy()).all()
    for name in spec.names:
        np.testing.assert_allclose(built[name].to_numpy(float), full[name].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   err_msg=name)
