"""The REST and WebSocket API (FastAPI): ``create_app(settings)``; ``python -m streaming api`` serves it.

REST under ``/api/v1``: the portfolio, positions, orders (filters, cursor pages), one order,
fills, performance (live and backtest per strategy, with the deflated Sharpe), models
(champion, challenger); a manual order (``POST /orders``: the strategy's risk gate, 422 naming
the limit it hit), a cancel (``DELETE /orders/{id}``) and the trading state (``POST
/trading-state``: the kill switch). WebSockets ``/ws/market-data``, ``/ws/trades``,
``/ws/portfolio`` (:mod:`streaming.api.hub`). ``/metrics`` for Prometheus, ``/docs`` for the
OpenAPI page, ``/`` for the live trading page.

Every call but ``/``, ``/static``, ``/healthz`` and ``/metrics`` needs a key
(:mod:`streaming.api.keys`): header ``X-API-Key`` or ``Authorization: Bearer``; a WebSocket may
instead send ``{"type": "auth", "key": ...}`` first, within ``api.ws_auth_seconds``. No key or a
bad one: 401 (WebSocket close 4401); a key without the scope: 403 (4403); over the key's rate
(``api.rate_per_second``, ``api.burst``): 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from redis.exceptions import ConnectionError as RedisError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Match

from config import Settings
from pipelines.trading.strategies import load_strategy
from streaming import live
from streaming.api import schemas as S
from streaming.api.acks import AckWatch
from streaming.api.desk import Conflict, Desk, NotFound, Unavailable
from streaming.api.history import RegistryView, backtest_performance, live_performance
from streaming.api.hub import STREAMS, TOO_SLOW, WS_SENT, Feeds, Hub, heartbeat
from streaming.api.keys import FailedAuth, KeyStore, Principal
from warehouse import db

STATIC = Path(__file__).resolve().parent / "static"
DROP_CLOSE_SECONDS = 10.0

REQUEST_SECONDS = Histogram("quantlake_api_request_seconds", "API request latency by route", ["method", "route", "status"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RATE_LIMITED = Counter("quantlake_api_rate_limited", "Requests refused with 429, by key", ["key_id"])
AUTH_FAILED = Counter("quantlake_api_auth_failures", "Requests refused with 401 or 403", ["status"])

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: qlk_<id>_<secret>")
bearer = HTTPBearer(auto_error=False, description="the same API key as an OAuth2 bearer token")


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class Timed:
    """Request latency by route template, method and status, as a plain ASGI middleware (Starlette's
    ``@app.middleware("http")`` costs more than the endpoints it would time)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            REQUEST_SECONDS.labels(scope["method"], getattr(route, "path", "unmatched"),
                                   str(status[0])).observe(time.perf_counter() - started)


def _principal(request: Request, key: Annotated[str | None, Security(api_key_header)],
               token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Principal:
    state = request.app.state
    address = request.client.host if request.client else "unknown"
    wait = state.failures.blocked(address)
    if wait > 0:
        RATE_LIMITED.labels("failed-auth").inc()
        raise HTTPException(429, f"too many failed authentications from {address} (api.auth_failures_per_minute "
                                 f"{state.settings.platform.api.auth_failures_per_minute})",
                            headers={"Retry-After": f"{max(1, round(wait + 0.5))}"})
    principal = state.keys.check(key or (token.credentials if token else None))
    if principal is None:
        state.failures.record(address)
        AUTH_FAILED.labels("401").inc()
        raise HTTPException(401, "a valid API key is required (X-API-Key or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    wait = state.limiter.take(principal.key_id)
    if wait > 0:
        RATE_LIMITED.labels(principal.key_id).inc()
        raise HTTPException(429, f"rate limit of {state.settings.platform.api.rate_per_second:g} requests/s for key "
                                 f"{principal.key_id} exceeded", headers={"Retry-After": f"{max(1, round(wait + 0.5))}"})
    return principal


# what every authenticated route may answer besides its own codes (declared in the OpenAPI schema)
AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"model": S.Problem, "description": "no valid API key"},
    403: {"model": S.Problem, "description": "the key lacks the route's scope"},
    429: {"model": S.Problem, "description": "too many requests for the key, or failed authentications from "
                                            "the address (see Retry-After)"},
    400: {"model": S.Problem, "description": "a query parameter given more than once"},
}


CURSOR_RESPONSES: dict[int | str, dict] = {400: {"model": S.Problem, "description": "a cursor this API did not "
                                                                                 "return, or a parameter given twice"}}
BODY_RESPONSES: dict[int | str, dict] = {400: {"model": S.Problem, "description": "a body that is not JSON, or a "
                                                                               "parameter given twice"}}


def single_values(request: Request) -> None:
    """No query parameter of this API is a list: one given twice is refused (400), not silently
    read as its last value."""
    repeated = sorted({k for k, _ in request.query_params.multi_items()
                       if len(request.query_params.getlist(k)) > 1})
    if repeated:
        raise HTTPException(400, f"query parameter(s) given more than once: {', '.join(repeated)}")


def need(scope: Literal["read", "trade", "admin"]):
    """A dependency: the caller's key, which must grant ``scope`` (403 otherwise)."""

    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.allows(scope):
            AUTH_FAILED.labels("403").inc()
            raise HTTPException(403, f"key {principal.key_id} ({principal.name}) lacks scope {scope!r}")
        return principal

    return check


Read = Annotated[Principal, Depends(need("read"))]
Trade = Annotated[Principal, Depends(need("trade"))]
Admin = Annotated[Principal, Depends(need("admin"))]


def create_app(settings: Settings) -> FastAPI:
    """The API on ``settings`` (the services it reads are opened at start-up, closed at shutdown)."""
    cfg = settings.platform.api
    strategy = load_strategy(settings.trading)  # an unknown strategy fails at start-up, naming the key

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.strategy = strategy
        app.state.desk = Desk(settings)
        app.state.engine = db.engine(settings, "api")
        app.state.keys = KeyStore(app.state.engine, cfg.key_cache_seconds, cfg.key_cache_size)
        app.state.failures = FailedAuth(cfg.auth_failures_per_minute)
        app.state.limiter = RateLimiter(cfg.rate_per_second, cfg.burst)
        app.state.registry = RegistryView(settings)
        app.state.hub = Hub(cfg.ws_queue)
        app.state.ws_open = defaultdict(int)  # open WebSocket connections per key id (api.ws_per_key)
        # submits are serialized by the gate's lock anyway: queueing them here, not in threads
        # blocked on that lock, keeps the thread pool for everything else
        app.state.submitting = asyncio.Lock()
        app.state.aredis = live.async_redis_client(settings)
        app.state.acks = AckWatch(app.state.aredis)
        app.state.feeds = Feeds(settings, app.state.hub, asyncio.get_running_loop())
        app.state.feeds.start()
        try:
            yield
        finally:
            await app.state.feeds.stop()
            await app.state.acks.close()
            await app.state.aredis.aclose()
            app.state.desk.close()
            app.state.engine.dispose()

    app = FastAPI(title="quantlake live API", version="1", lifespan=lifespan,
                  description=__doc__.split("\n\n", 1)[1].replace("``", "`"))
    if "*" not in cfg.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(cfg.allowed_hosts))
    if cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])

    app.add_middleware(Timed)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Allow names every method of every route on this path, not only the first's
            scope = {**request.scope, "method": "__any__"}
            allowed = {m for route in request.app.router.routes if hasattr(route, "methods") and route.methods
                       and route.matches(scope)[0] is not Match.NONE for m in route.methods}
            headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound):
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict):
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, error: RedisError):
        return JSONResponse({"detail": f"Redis is unavailable ({type(error).__name__}); try again"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable):
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True}

    v1 = "/api/v1"

    api = APIRouter(responses=AUTH_RESPONSES, dependencies=[Depends(single_values)])  # the key-guarded routes

    @api.get(f"{v1}/me", tags=["live"])
    def me(principal: Read) -> dict:
        """The calling key: its id, name and scopes (implied ones included)."""
        return {"key_id": principal.key_id, "name": principal.name, "scopes": sorted(principal.scopes)}

    @api.get(f"{v1}/portfolio", response_model=S.Portfolio, response_model_by_alias=True, tags=["live"])
    def portfolio(_: Read, request: Request) -> dict:
        """Cash, equity, exposure, P&L and the trading state of the paper account (Redis)."""
        return request.app.state.desk.portfolio()

    @api.get(f"{v1}/positions", response_model=list[S.Position], tags=["live"])
    def positions(_: Read, request: Request, include_flat: bool = False) -> list[dict]:
        """Open positions (``include_flat``: closed ones too, with their realized P&L)."""
        return request.app.state.desk.positions(include_flat)

    @api.get(f"{v1}/equity", response_model=list[S.EquityPoint], tags=["live"])
    def equity(_: Read, request: Request, last: int = Query(2000, ge=1, le=100_000)) -> list[dict]:
        """The account at each of the newest ``last`` closes, oldest first (the equity curve)."""
        return request.app.state.desk.equity(last)

    @api.get(f"{v1}/orders", response_model=S.OrderPage, tags=["live"], responses=CURSOR_RESPONSES)
    def orders(_: Read, request: Request,
               status: Literal["NEW", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "REJECTED", "CANCELLED"] | None = None,
               symbol: str | None = None, since: S.IsoTime | None = Query(None, description="decision time >="),
               until: S.IsoTime | None = Query(None, description="decision time <="), cursor: str | None = None,
               limit: int = Query(cfg.page_size, ge=1, le=cfg.max_page_size)) -> dict:
        """The venue's orders, newest first; ``next_cursor`` pages on (stable while orders arrive)."""
        try:
            page, nxt = request.app.state.desk.orders(status, symbol, _aware(since), _aware(until), cursor, limit)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"orders": page, "next_cursor": nxt}

    @api.get(f"{v1}/orders/{{order_id}}", response_model=S.Order, tags=["live"],
             responses={404: {"model": S.Problem}})
    def order(order_id: str, _: Read, request: Request) -> dict:
        return request.app.state.desk.order(order_id)

    @api.post(f"{v1}/orders", response_model=S.OrderSubmitted, status_code=201, tags=["trading"],
              responses={**BODY_RESPONSES,
                         202: {"model": S.OrderSubmitted, "description": "sent; the venue has not answered yet"},
                         422: {"model": S.Problem, "description": "rejected by the risk gate: the limit it hit"},
                         503: {"model": S.Problem, "description": "Kafka did not confirm the order: not placed"}})
    async def place(body: S.OrderRequest, principal: Trade, request: Request):
        """A manual market order, checked by the strategy's own pre-trade risk gate."""
        desk = request.app.state.desk
        async with request.app.state.submitting:  # one submit in a thread at a time; the others wait here
            done = await run_in_threadpool(desk.submit, body.symbol, body.side, body.qty, body.price,
                                           body.client_order_id, f"{principal.name} ({principal.key_id})",
                                           principal.key_id, False)
        if not done.verdict.accepted:
            order = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in done.order.items()}
            return JSONResponse({"detail": {"limit": done.verdict.limit, "reason": done.verdict.reason,
                                            "order": order}}, status_code=422)
        if done.venue is None:  # wait for the venue's claim on the event loop, holding no thread
            text = await request.app.state.acks.wait(live.key(settings, "venue", "orders"), done.order["order_id"],
                                                     cfg.order_ack_seconds)
            done = replace(done, venue=desk.view(text) if text else None)
        if done.venue is None:
            return JSONResponse({"order_id": done.order["order_id"], "status": "SUBMITTED", "order": None},
                                status_code=202)
        return {"order_id": done.order["order_id"], "status": done.venue["status"], "order": done.venue}

    @api.delete(f"{v1}/orders/{{order_id}}", response_model=S.CancelResult, tags=["trading"],
                responses={202: {"description": "sent; the venue has not answered yet"}, 404: {"model": S.Problem},
                           409: {"model": S.Problem, "description": "the order is no longer working"}})
    async def cancel(order_id: str, principal: Trade, request: Request):
        """Cancel a working order (the venue answers in order with the bars: before the next
        bar it is cancelled, after it it has filled)."""
        desk = request.app.state.desk
        if not principal.allows("admin") and await run_in_threadpool(desk.owner, order_id) != principal.key_id:
            await run_in_threadpool(desk.order, order_id)  # 404 for an unknown order
            raise HTTPException(403, f"order {order_id} was not placed by key {principal.key_id}: only the key that "
                                     f"placed it, or an admin key, may cancel it")
        current, request_id = await run_in_threadpool(desk.request_cancel, order_id,
                                                      f"{principal.name} ({principal.key_id})")
        await request.app.state.acks.wait(live.key(settings, "venue", "cancels"), order_id, cfg.order_ack_seconds,
                                          accept=lambda text: json.loads(text).get("request_id") == request_id)
        answer = await run_in_threadpool(desk.cancel_result, order_id, request_id, current)
        if answer["cancelled"] is None:
            return JSONResponse(answer, status_code=202)
        if not answer["cancelled"]:
            return JSONResponse({"detail": answer["reason"]}, status_code=409)
        return answer

    @api.get(f"{v1}/fills", response_model=S.FillPage, tags=["live"], responses=CURSOR_RESPONSES)
    def fills(_: Read, request: Request, symbol: str | None = None, cursor: str | None = None,
              limit: int = Query(cfg.page_size, ge=1, le=cfg.max_page_size)) -> dict:
        """Fills applied to the account, newest first."""
        try:
            page, nxt = request.app.state.desk.fills(symbol, cursor, limit)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"fills": page, "next_cursor": nxt}

    @api.post(f"{v1}/trading-state", response_model=S.TradingStateChange, tags=["trading"], responses=BODY_RESPONSES)
    def trading_state(body: S.TradingStateRequest, principal: Admin, request: Request) -> dict:
        """The kill switch: HALTED stops every order at the risk gate, REDUCING lets only
        orders that shrink a position through, ACTIVE trades."""
        return request.app.state.desk.set_trading_state(body.state, f"{principal.name} ({principal.key_id})",
                                                        body.reason)

    @api.get(f"{v1}/performance", response_model=S.Performance, response_model_by_alias=True, tags=["history"])
    def performance(_: Read, request: Request, dataset: str | None = None) -> dict:
        """Live figures (the warehouse's equity at each close) and every strategy's backtest
        figures, deflated Sharpe included, for ``dataset`` (default: the configured one)."""
        name = dataset or settings.data.dataset
        engine = request.app.state.engine
        described = request.app.state.strategy.describe()
        return {"dataset": name, "strategy": {"strategy": described["strategy"], "params": described["params"]},
                "live": live_performance(engine, name, settings.trading.initial_capital),
                "backtest": backtest_performance(engine, name)}

    @api.get(f"{v1}/models", response_model=S.Models, tags=["history"])
    def models(_: Read, request: Request) -> dict:
        """The registry's @champion and @challenger, their out-of-sample figures and the gate's decision."""
        return request.app.state.registry.get()

    app.include_router(api)

    async def websocket(ws: WebSocket, stream: str) -> None:
        await ws.accept()
        state = ws.app.state
        address = ws.client.host if ws.client else "unknown"
        if state.failures.blocked(address) > 0:
            RATE_LIMITED.labels("failed-auth").inc()
            await ws.close(4429, "too many failed authentications from this address")
            return
        principal = await _ws_principal(ws, state.keys, cfg.ws_auth_seconds)
        if principal is None:
            state.failures.record(address)
            AUTH_FAILED.labels("401").inc()
            await ws.close(4401, "a valid API key is required")
            return
        if not principal.allows("read"):
            AUTH_FAILED.labels("403").inc()
            await ws.close(4403, f"key {principal.key_id} lacks scope 'read'")
            return
        if state.ws_open[principal.key_id] >= cfg.ws_per_key:
            RATE_LIMITED.labels("ws-per-key").inc()
            await ws.close(4429, f"key {principal.key_id} already has {cfg.ws_per_key} WebSocket connections open "
                                 "(api.ws_per_key)")
            return
        state.ws_open[principal.key_id] += 1
        ws.state.key_id = principal.key_id
        try:
            await _serve_socket(ws, state, stream)
        finally:
            state.ws_open[principal.key_id] -= 1

    async def _serve_socket(ws: WebSocket, state, stream: str) -> None:
        wanted = ws.query_params.get("symbols")
        symbols = frozenset(s for s in wanted.split(",") if s) if wanted else None
        client = state.hub.join(stream, symbols)
        await ws.send_text(json.dumps({"type": "welcome", "stream": stream, "key": ws.state.key_id,
                                       "symbols": sorted(symbols) if symbols else None}))
        tasks = {asyncio.create_task(_send(ws, client, cfg.ws_heartbeat_seconds)),
                 asyncio.create_task(_drain(ws)), asyncio.create_task(client.dropped.wait())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            state.hub.leave(client)
        if client.dropped.is_set():
            # the close frame queues behind what the socket already holds: a client that is slow,
            # not dead, reads it within DROP_CLOSE_SECONDS; one that does not is cut off
            try:
                await asyncio.wait_for(ws.close(TOO_SLOW, f"too slow: {cfg.ws_queue} messages behind"),
                                       DROP_CLOSE_SECONDS)
            except Exception:  # the socket is gone, or still full: the connection ends without a close frame
                pass

    def route(stream: str):
        async def endpoint(ws: WebSocket) -> None:
            await websocket(ws, stream)
        return endpoint

    for name in STREAMS:
        app.add_api_websocket_route(f"/ws/{name}", route(name), name=f"ws-{name}")
    return app


async def _ws_principal(ws: WebSocket, keys: KeyStore, timeout: float) -> Principal | None:
    """The key from the headers, else from a first ``{"type": "auth", "key": ...}`` message."""
    presented = ws.headers.get("x-api-key")
    auth = ws.headers.get("authorization", "")
    if not presented and auth.lower().startswith("bearer "):
        presented = auth[7:]
    if not presented:
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), timeout))
            presented = first.get("key") if isinstance(first, dict) and first.get("type") == "auth" else None
        except (asyncio.TimeoutError, ValueError, WebSocketDisconnect, RuntimeError, KeyError):
            return None
    if not isinstance(presented, str):  # a number, a list, null: not a key
        return None
    return await asyncio.to_thread(keys.check, presented)


async def _send(ws: WebSocket, client, heartbeat_seconds: float) -> None:
    while True:
        try:
            text = await asyncio.wait_for(client.queue.get(), heartbeat_seconds)
        except asyncio.TimeoutError:
            text = heartbeat()
        await ws.send_text(text)
        WS_SENT.labels(client.stream).inc()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    try:
        while True:
            await ws.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


def _aware(ts: datetime | None) -> datetime | None:
    from datetime import timezone

    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))
