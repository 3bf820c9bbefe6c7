# The two commands a fresh machine needs are `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup up status down demo demo-sp500 sp500-long live fuzz bench bench-features bench-ingest bench-stream bench-trading bench-warehouse bench-api bench-cluster bench-short tableau chaos live-page cluster test clean

setup:            ## install system packages, the virtualenv and the JVM jars (idempotent)
	bash infra/setup.sh

up: setup         ## start PostgreSQL, Redis, Kafka, MLflow and Dagster (a second `up` is harmless)
	$(PY) -m infra up

status:
	$(PY) -m infra status

down:             ## stop the services that `up` started
	$(PY) -m infra down

# the main job (and the services `up` starts for it) use the model sizes of
# config/profiles/demo.yaml; `make demo QL_PROFILE=` runs the seed's sizes instead
demo: export QL_PROFILE ?= demo
demo: up          ## the main job on the built-in sample data
	$(PY) -m orchestration.main

# the research pipeline on the real S&P 500 panel in ../shared/data (2.4M daily bars, 504 symbols)
SP500 := $(abspath ../shared/data/sp500_pooksoft_alphavantage_daily_1999_2021.parquet)
SP500_SOURCE := QL_DATA__SOURCE=files QL_DATA__FILES__NAME=sp500 QL_DATA__FILES__PATH=$(SP500) \
	QL_DATA__FILES__COLUMNS='{"symbol": "ticker", "ts": "date", "adj_close": "adjusted_close"}'
demo-sp500: export QL_PROFILE ?= sp500
demo-sp500: up    ## the main job on the real S&P 500 panel instead of the synthetic market
	$(SP500_SOURCE) QL_PLATFORM__MLFLOW__REGISTERED_MODEL=quantlake-direction-sp500 \
	$(PY) -m orchestration.main $(STAGES)

# the S&P 500 panel as Qlib's Alpha158 benchmarks use daily equities (profiles/sp500-long.yaml):
# ranked labels, training from 2000, walk-forward tests over 2016-2021, decile long-short books;
# about 33 minutes on 2 cores (benchmarks/results/sp500_long.json: the figures it reports)
sp500-long: export QL_PROFILE ?= sp500-long
sp500-long: up    ## the long S&P 500 research run: every family's IC and decile long-short, 2016-2021
	$(SP500_SOURCE) QL_PLATFORM__MLFLOW__REGISTERED_MODEL=quantlake-direction-sp500-long \
	$(PY) -m orchestration.main --stages research,training,backtest
	$(SP500_SOURCE) $(PY) -m benchmarks.sp500_long

# the live path for a few minutes: the synthetic market continued past `make demo`'s research
# period -> Kafka -> the Structured Streaming job -> the champion's predictions -> the trader and
# the risk gate -> orders -> the paper venue -> fills -> the Redis portfolio (a fresh paper account);
# then ticks, predictions, orders (sent / rejected by limit), fills, positions, equity and P&L, and
# the live accuracy against the Bayes bound (Ctrl-C stops cleanly)
MINUTES ?= 3
live: export QL_PROFILE ?= demo
live: up          ## the live market-data path for $(MINUTES) minutes (after `make demo`)
	$(PY) -m streaming live --minutes $(MINUTES)
	$(PY) -m warehouse load live && $(PY) -m warehouse reconcile live
	$(PY) -m tableau build  # the live sheets of the extract and their previews

live-page: export QL_PROFILE ?= demo
live-page: up     ## the live page in headless Chromium following a 2-minute `make live` (after `make demo`)
	$(PY) -m pytest -m live_page tests/test_live_page.py -p no:cacheprovider

cluster: up       ## on the cluster vs local mode: research, training (TorchDistributor) and backtest; the live path with a broker and a worker killed (~25 min)
	$(PY) -m infra up --cluster
	$(PY) -m pytest -m cluster tests/test_cluster.py -p no:cacheprovider

bench-features: up  ## the feature benchmark alone (kernel, pandas oracle, Spark asset vs Delta write-only, stream per bar)
	$(PY) -m benchmarks.feature_throughput

bench-ingest: up    ## bronze ingestion rows/s: a vendor folder of one CSV per symbol vs one Parquet panel
	$(PY) -m benchmarks.ingest_throughput

bench-stream: up  ## the stream benchmark alone (Kafka/Spark limits, stage throughput, latency, memory)
	$(PY) -m benchmarks.stream_throughput

bench-cluster: up  ## scaling on one host: local vs 1 and 2 Spark workers (feature build, stream stages), paper estimate for N hosts
	$(PY) -m benchmarks.cluster_scaling

bench-short: up    ## the benchmarks' short versions that take minutes (the suite runs the quick ones)
	$(PY) -m pytest -m slow_bench tests/

bench-warehouse: up  ## warehouse loads (full S&P 500 bars, a walk-forward run's predictions) vs a plain COPY
	$(PY) -m benchmarks.warehouse_load

tableau: up       ## the Tableau data sources, workbooks and .hyper extract into .state/tableau
	$(PY) -m tableau build

bench-api: up      ## REST p50/p99 and req/s (httpx and wrk) vs /healthz; WebSocket fan-out to 100 clients for 30 s
	$(PY) -m benchmarks.api_load

bench-trading: up  ## the trading path alone (risk gate vs backtest kernel, venue and portfolio services, latency)
	$(PY) -m benchmarks.trading_latency

# each fault twice in one live run (stream, Kafka broker, Redis, venue, portfolio), compared with the
# backtest on the same bars and predictions, and the stream's own SIGKILL / SIGTERM test with dead
# letters; the suite kills the venue and the portfolio once each
chaos: up         ## the fault runs: every fault and named crash point on the live path, Redis SIGKILL, the daemon after a killed main job (~35 min)
	$(PY) -m pytest -m chaos tests/test_live_trading.py tests/test_stream.py tests/test_dagster_daemon.py

fuzz: up          ## the API fuzzed from its OpenAPI schema, 1,000 examples per route with three keys (~10 min)
	QL_FUZZ_EXAMPLES=1000 $(PY) -m pytest -s tests/test_api_fuzz.py

bench: up         ## benchmarks (writes benchmarks/results/*.json; installs vectorbt and backtrader to compare)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks

test: up          ## the whole test suite against the real services (CI stops them afterwards)
	$(PY) -m pytest -n 2 --dist loadgroup; status=$$?; \
	if [ -n "$$CI" ]; then $(PY) -m infra down; fi; \
	exit $$status


clean: down
	rm -rf .state
