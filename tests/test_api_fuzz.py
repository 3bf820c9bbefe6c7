"""The API fuzzed from its own OpenAPI schema (Schemathesis on Hypothesis): every route, with
generated valid and invalid inputs, called with an admin key, a read key and a key that does not
exist. No answer is a 5xx, and every answer (status, headers, body) is one the schema declares
for that route; inputs the schema forbids are refused.

``QL_FUZZ_EXAMPLES`` sets the examples per route (the suite's short version: 15, each called
with the three keys; ``make fuzz``: 1,000)."""

from __future__ import annotations

import os
import secrets

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from config import load_settings
from streaming import live
from streaming.api import keys as K
from streaming.api.app import create_app
from tests.livekit import live_env

EXAMPLES = int(os.environ.get("QL_FUZZ_EXAMPLES", "15"))
# routes whose documented refusals rest on rules a schema cannot state: an order must pass the risk
# gate (422 naming the limit), a cursor must be one the API returned (400). For them the fuzzer
# does not demand that schema-valid input succeed; every other check still applies.
BUSINESS_RULES = {"POST /api/v1/orders", "GET /api/v1/orders", "GET /api/v1/fills"}
CALLS: dict[str, int] = {}


@pytest.fixture(scope="module")
def api(services, tmp_path_factory):
    """The API in this process (its lifespan run), on its own paper account and topics, with
    rate limits out of the way (the fuzzer is one client sending as fast as it can)."""
    env = live_env(tmp_path_factory.mktemp("fuzz"), QL_PLATFORM__API__RATE_PER_SECOND="1000000",
                   QL_PLATFORM__API__BURST="1000000", QL_PLATFORM__API__AUTH_FAILURES_PER_MINUTE="1000000",
                   QL_PLATFORM__API__ORDER_ACK_SECONDS="0.05", QL_TRADING__LIMITS__MAX_ORDERS_PER_SECOND="1000000",
                   QL_PLATFORM__API__ALLOWED_HOSTS='["testserver"]')  # the in-process client's host
    settings = load_settings(env=env)
    live.fresh_run(settings)
    keys = {scope: K.create_key(settings, [scope], f"fuzz-{scope}") for scope in ("admin", "read")}
    keys["unknown"] = f"qlk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    app = create_app(settings)
    with TestClient(app):  # startup: the desk, the key store, the feeds
        yield app, keys
    print(f"\nfuzzed: {sum(CALLS.values()):,} requests over {len(CALLS)} routes")


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_asgi("/openapi.json", api[0])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                     derandomize=True)
def test_every_route_answers_as_its_schema_declares(case, api) -> None:
    _, keys = api
    excluded = [positive_data_acceptance] if case.operation.label in BUSINESS_RULES else []
    for key in keys.values():
        case.call_and_validate(headers={**(case.headers or {}), "X-API-Key": key}, excluded_checks=excluded)
        CALLS[case.operation.label] = CALLS.get(case.operation.label, 0) + 1
