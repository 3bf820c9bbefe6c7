"""Run every benchmark: ``python -m benchmarks``."""

from benchmarks import (api_load, backtest_speed, feature_throughput, ingest_throughput, model_quality, model_speed,
                        stream_throughput, trading_latency, warehouse_load)

if __name__ == "__main__":
    status = ingest_throughput.main([])
    status |= feature_throughput.main([])
    status |= model_speed.main([])
    status |= model_speed.main(["--profile", "demo"])
    status |= model_quality.main([])
    status |= backtest_speed.main([])
    status |= stream_throughput.main([])
    status |= trading_latency.main([])
    status |= warehouse_load.main([])
    status |= api_load.main([])
    raise SystemExit(status)
