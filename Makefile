# The two commands a fresh machine needs are `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup up status down demo test clean

setup:            ## install system packages, the virtualenv and the JVM jars (idempotent)
	bash infra/setup.sh

up: setup         ## start PostgreSQL, Redis, Kafka, MLflow and Dagster (a second `up` is harmless)
	$(PY) -m infra up

status:
	$(PY) -m infra status

down:             ## stop the services that `up` started
	$(PY) -m infra down

demo: up          ## the main job on the built-in sample data
	$(PY) -m orchestration.main

test: up          ## the whole test suite against the real services (CI stops them afterwards)
	$(PY) -m pytest; status=$$?; \
	if [ -n "$$CI" ]; then $(PY) -m infra down; fi; \
	exit $$status


clean: down
	rm -rf .state
