"""Monte Carlo: bootstraps, ruin, and Spark giving the same paths as one process."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.backtest.montecarlo import path_statistics, resample, simulate_local, simulate_spark, summarize


def test_iid_draws_from_the_returns_and_long_blocks_keep_them_in_order() -> None:
    r = np.random.default_rng(0).normal(0.001, 0.01, 250)
    iid = resample(r, 200, "iid", 20, np.random.default_rng(1))
    assert iid.shape == (200, 250) and np.isin(iid, r).all()
    # a mean block longer than the series never jumps: every path is the series rotated,
    # and compounding does not care where a rotation starts
    rotated = resample(r, 50, "stationary", 1e12, np.random.default_rng(2))
    stats = path_statistics(rotated, 100.0, 252, 0.5)
    np.testing.assert_allclose(stats["final_equity"], 100 * np.prod(1 + r), rtol=1e-10)
    short = resample(r, 2000, "stationary", 5, np.random.default_rng(3))
    position = {v: i for i, v in enumerate(r)}  # the draws are distinct floats: map back to bars
    idx = np.vectorize(position.get)(short)
    continued = (idx[:, 1:] == (idx[:, :-1] + 1) % len(r)).mean()
    assert continued == pytest.approx(1 - 1 / 5 + 1 / 5 / 250, abs=0.01)  # blocks of mean length 5
    with pytest.raises(ValueError, match="unknown bootstrap method"):
        resample(r, 1, "wild", 5, np.random.default_rng(0))


def test_ruin_drawdown_and_summary_by_hand() -> None:
    paths = np.array([[-0.5, 0.1], [0.1, 0.1]])
    s = path_statistics(paths, 100.0, 252, ruin_fraction=0.5)
    assert s["ruined"].tolist() == [True, False]
    assert s["final_equity"].tolist() == pytest.approx([55.0, 121.0])
    assert s["max_drawdown"].tolist() == pytest.approx([0.5, 0.0])
    summary = summarize(s.assign(path=[0, 1]), 0.5, "iid", 0.0)
    assert summary.risk_of_ruin == 0.5
    assert summary.table.loc["final_equity", "median"] == pytest.approx(88.0)


def test_spark_partitions_reproduce_the_local_paths(spark) -> None:
    r = np.random.default_rng(4).normal(0.0005, 0.01, 300)
    local100 = simulate_local(r, 2500, "stationary", 10, seed=9, chunk=100)
    for progress in (False, True):  # one Spark job, or waves of tasks behind a progress bar
        distributed = simulate_spark(spark, r, 2500, "stationary", 10, seed=9, chunk=100, progress=progress)
        assert len(distributed) == 2500 and distributed["path"].tolist() == list(range(2500))
        np.testing.assert_allclose(distributed["final_equity"], local100["final_equity"], rtol=1e-12)
        assert distributed["ruined"].tolist() == local100["ruined"].tolist()
