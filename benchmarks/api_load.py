"""The API under load on loopback: REST latency and throughput, WebSocket fan-out to 100 clients.

    python -m benchmarks.api_load [--short] [--out DIR]

Set-up: the venue, the portfolio and the API as child processes (as ``make live`` and ``infra
up`` run them) on a paper account of their own; 100 symbols get a bar, 500 manual orders go
through the API and the risk gate, and fill at the next bar, so ``/positions`` holds 100 rows
and ``/orders`` pages through 500.

REST: ``concurrency`` clients (asyncio + httpx, keep-alive, in this process; then the same from
wrk, a C load generator, when Debian's ``wrk`` is installed) call one endpoint as fast as it
answers for ``seconds``: requests/s and p50/p99 latency of ``/api/v1/positions`` and
``/api/v1/orders?limit=100``. The reference, in the same run, is ``/healthz`` on the same
server: FastAPI and uvicorn with no key check and no Redis, so the difference is the endpoint's
own work. The load generator shares the 2 cores with the API process: the figures are a lower
bound for the server (less so with wrk), and say so.

WebSockets: 100 clients on ``/ws/portfolio`` while messages stamped with their send time are
published on the portfolio's Redis channel at ``rate``/s for ``duration`` s (the issue's 30 s;
``--short``: 5 s). Fan-out latency is Redis PUBLISH -> each client's receive, over every
delivery; every client must get every message (none starving). Writes
``results/api_load.json`` (``--short``: ``api_load_short.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import websockets

from benchmarks.common import free_port, write_result
from config import load_settings
from config.settings import PROJECT_ROOT
from streaming import live
from streaming.api import keys as K

START = datetime(2024, 3, 13, 14, 30, tzinfo=timezone.utc)


def _env(state: Path) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {**os.environ, "QL_PLATFORM__LAKE__ROOT": str(state / "lake"), "QL_DATA__SYNTHETIC__NAME": f"api-bench-{tag}",
            "QL_KAFKA__TOPICS__BARS": f"bars-{tag}", "QL_KAFKA__TOPICS__ORDERS": f"orders-{tag}",
            "QL_KAFKA__TOPICS__ORDERS_REJECTED": f"orders-{tag}.rejected", "QL_KAFKA__TOPICS__FILLS": f"fills-{tag}",
            "QL_KAFKA__TOPICS__PREDICTIONS": f"pred-{tag}",
            "QL_PLATFORM__API__PORT": str(free_port()), "QL_PLATFORM__METRICS__VENUE_PORT": str(free_port()),
            "QL_PLATFORM__METRICS__PORTFOLIO_PORT": str(free_port()),
            "QL_PLATFORM__API__RATE_PER_SECOND": "1000000", "QL_PLATFORM__API__BURST": "1000000", "QL_PLATFORM__API__WS_PER_KEY": "100000",
            # every manual order is stamped at the same bar time: the submit-rate limit would stop them
            "QL_TRADING__LIMITS__MAX_ORDERS_PER_SECOND": "100000"}


class Children:
    def __init__(self, env: dict, logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, {}

    def start(self, role: str, ready) -> None:
        out = open(self.logs / f"{role}.log", "ab")
        self.procs[role] = subprocess.Popen([sys.executable, "-m", "streaming", role], cwd=PROJECT_ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
        if not live.wait_for(lambda: ready() or self.procs[role].poll() is not None, 120, 0.1) \
                or self.procs[role].poll() is not None:
            raise RuntimeError(f"{role} did not start: {(self.logs / f'{role}.log').read_text()[-2000:]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _populate(settings, base: str, key: str, symbols: int, orders: int) -> dict:
    """A bar for every symbol, ``orders`` manual orders through the API, the next bar fills them."""
    outbox = live.Outbox(settings, "stream")  # it stands in for the trader: bars
    client = live.redis_client(settings)
    names = [f"SYM{i:03d}" for i in range(symbols)]

    def bar(i: int) -> None:
        ts = START + timedelta(minutes=5 * i)
        rows = [{"symbol": s, "open": 100.0 + j % 7, "high": 101.0 + j % 7, "low": 99.0 + j % 7,
                 "close": 100.0 + j % 7 + 0.01 * i, "volume": 1e7} for j, s in enumerate(names)]
        outbox.send_confirmed(settings.kafka.topics.bars, live.iso(ts), {"ts": live.iso(ts), "bars": rows,
                                                                         "after_decision": {}})
        key_ = f"portfolio:{live.account(settings)}:account"
        if not live.wait_for(lambda: int(client.hget(key_, "as_of_us") or -1) >= live.micros(ts), 60, 0.02):
            raise RuntimeError("the portfolio did not close the bar")

    bar(0)
    started = time.perf_counter()
    accepted = 0
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as c:
        for i in range(orders):
            r = c.post("/api/v1/orders", json={"symbol": names[i % symbols], "side": "buy", "qty": 2})
            accepted += r.status_code in (201, 202)
    placing = time.perf_counter() - started
    bar(1)
    outbox.close()
    client.close()
    return {"symbols": symbols, "orders_placed": orders, "orders_accepted": accepted,
            "manual_order_seconds_each": round(placing / orders, 5)}


async def _rest(base: str, key: str, path: str, concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await client.get(path)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=30) as client:
        await client.get(path)  # warm
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "errors": errors, "requests_per_s": round(len(ms) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def _wrk(base: str, key: str, path: str, concurrency: int, seconds: float) -> dict:
    """The same load from wrk (C, epoll; Debian's package): what the server does when the load
    generator costs little."""
    out = subprocess.run(["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds:g}s", "--latency",
                          "-H", f"X-API-Key: {key}", base + path], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout

    def ms(label: str) -> float:
        value = next(line.split()[1] for line in text.splitlines() if line.strip().startswith(label))
        unit = 1e-3 if value.endswith("us") else 1000.0 if value.endswith("s") and not value.endswith("ms") else 1.0
        return round(float(value.rstrip("mus")) * unit, 2)

    rps = float(next(line.split()[1] for line in text.splitlines() if line.startswith("Requests/sec")))
    non2xx = next((int(line.split()[-1]) for line in text.splitlines() if "Non-2xx" in line), 0)
    return {"requests_per_s": round(rps, 1), "p50_ms": ms("50%"), "p99_ms": ms("99%"), "errors": non2xx}


async def _fanout(settings, ws_url: str, key: str, clients: int, rate: float, duration: float) -> dict:
    channel = f"portfolio:{live.account(settings)}:changes"
    total = int(rate * duration)
    received: list[list[float]] = [[] for _ in range(clients)]

    async def client(i: int, ready: asyncio.Event, done: asyncio.Event) -> None:
        async with websockets.connect(ws_url, additional_headers={"X-API-Key": key}, max_queue=None) as ws:
            await ws.recv()  # welcome
            ready.set()
            while len(received[i]) < total and not done.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                except asyncio.TimeoutError:
                    continue
                if message.get("type") == "bench":
                    received[i].append(time.time() - message["sent_at"])

    readies = [asyncio.Event() for _ in range(clients)]
    done = asyncio.Event()
    tasks = [asyncio.create_task(client(i, readies[i], done)) for i in range(clients)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)

    def publish() -> None:
        r = live.redis_client(settings)
        t0 = time.perf_counter()
        for n in range(total):
            r.publish(channel, json.dumps({"kind": "bench", "n": n, "sent_at": time.time()}))
            pause = t0 + (n + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        r.close()

    await asyncio.to_thread(publish)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    except asyncio.TimeoutError:
        done.set()
    counts = [len(r) for r in received]
    ms = np.concatenate([np.array(r) for r in received if r]) * 1000
    return {"clients": clients, "messages": total, "rate_per_s": rate, "seconds": duration,
            "deliveries": int(sum(counts)), "min_per_client": min(counts), "max_per_client": max(counts),
            "none_starving": min(counts) == total,
            "latency_p50_ms": round(float(np.percentile(ms, 50)), 2), "latency_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "latency_max_ms": round(float(ms.max()), 2)}


def run(short: bool) -> dict:
    state = Path(tempfile.mkdtemp(prefix="api-bench-"))
    env = _env(state)
    settings = load_settings(env=env)
    live.fresh_run(settings)
    logs = state / "logs"
    logs.mkdir()
    children = Children(env, logs)
    api = settings.platform.api
    base = f"http://{api.host}:{api.port}"
    client = live.redis_client(settings)
    try:
        for role in ("venue", "portfolio"):
            children.start(role, lambda role=role: live.alive(client, settings, role))
        children.start("api", lambda: _answers(f"{base}/healthz"))
        key = K.create_key(settings, ["trade"], "api-benchmark")
        setup = _populate(settings, base, key, 100, 100 if short else 500)
        seconds, concurrency = (3.0, 8) if short else (10.0, 16)
        rest = {}
        for label, path in (("healthz (reference)", "/healthz"), ("positions", "/api/v1/positions"),
                            ("orders", "/api/v1/orders?limit=100")):
            rest[label] = {"httpx": asyncio.run(_rest(base, key, path, concurrency, seconds))}
            if shutil.which("wrk"):
                rest[label]["wrk"] = _wrk(base, key, path, concurrency, seconds)
            for tool, r in rest[label].items():
                print(f"  {label:22s} {tool:6s} {r['requests_per_s']:8,.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                      f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}", flush=True)
        fan = asyncio.run(_fanout(settings, f"ws://{api.host}:{api.port}/ws/portfolio", key, 100, 20.0,
                                  5.0 if short else 30.0))
        print(f"  fan-out to {fan['clients']} clients: {fan['messages']} messages at {fan['rate_per_s']:g}/s, "
              f"p50 {fan['latency_p50_ms']} ms, p99 {fan['latency_p99_ms']} ms, max {fan['latency_max_ms']} ms; "
              f"per client {fan['min_per_client']}..{fan['max_per_client']} (none starving: {fan['none_starving']})",
              flush=True)
    finally:
        client.close()
        children.stop()
    return {"setup": setup, "rest": {"concurrency": concurrency, "seconds": seconds, **rest}, "websocket_fanout": fan,
            "note": "load generator (asyncio + httpx / websockets) in the same 2-core machine as the API process: "
                    "server figures are a lower bound"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    figures = run(args.short)
    write_result("api_load_short" if args.short else "api_load", figures, args.out)
    return 0 if figures["websocket_fanout"]["none_starving"] and not any(
        r["errors"] for k, tools in figures["rest"].items() if isinstance(tools, dict) for r in tools.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
