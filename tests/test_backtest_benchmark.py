"""The backtest benchmark's short version: the same strategy in this engine, vectorbt and backtrader
ends at the same equity and fees to the cent, the plain-numpy user strategy equals the compiled
built-in exactly, and top-k dropout runs. A change of the engine's semantics that breaks the
agreement fails here, not only in ``make bench``."""

from __future__ import annotations

import json

from benchmarks import backtest_speed


def test_the_engine_vectorbt_and_backtrader_agree_to_the_cent(tmp_path) -> None:
    assert backtest_speed.main(["--short", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "backtest_speed_short.json").read_text())["figures"]
    assert figures["agrees"] == {"vectorbt": True, "numpy_user": True, "backtrader": True}
    ours, vbt, bt = figures["quantlake"], figures["vectorbt"], figures["backtrader"]
    assert figures["fills"] > 100 and figures["rejections"] == 0
    for peer in (vbt, bt):
        assert abs(peer["final_equity"] - ours["final_equity"]) < 0.01 and abs(peer["fees"] - ours["fees"]) < 0.01
    assert figures["topk_dropout"]["fills"] > 0 and figures["topk_dropout"]["max_names_held"] == 50
