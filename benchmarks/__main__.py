"""Run every benchmark: ``python -m benchmarks``."""

from benchmarks import feature_throughput

if __name__ == "__main__":
    raise SystemExit(feature_throughput.main([]))
