"""demo-shop: a small workload instrumented with prometheus-client whose behaviour can be
changed at run time, for ``make demo``.

It serves its own traffic (a steady stream of simulated checkout requests, so no load
generator is needed) and exposes on ``/metrics``:

* ``demo_requests_total{code}`` and ``demo_request_duration_seconds`` (histogram),
* ``demo_latency_p99_seconds`` and ``demo_error_ratio``: the last 15 s, as gauges,
* ``demo_memory_bytes``: the process's (simulated) working set.

Admin endpoints: ``POST /admin/fault`` with ``{"latency_s": 2.0}``,
``{"error_ratio": 0.3}`` or ``{"memory_growth_bytes_per_s": 5e6}`` injects a fault;
``POST /admin/restart`` clears every fault and the memory, as a restart would (the demo
playbook calls it); ``GET /admin/state`` shows the faults.

``python -m deploy.local.shop --listen 127.0.0.1:8080``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

REQUESTS_PER_S = 20
WINDOW_S = 15.0
BASE_LATENCY_S = 0.12
LATENCY_SD_S = 0.02
BASE_ERROR_RATIO = 0.002
BASE_MEMORY = 180e6


def normal_gauges(rng: random.Random) -> dict[str, float]:
    """One healthy reading of the gauges, as the live shop produces them (the demo's
    backfilled history is drawn from this, so history and live traffic agree)."""
    n = int(REQUESTS_PER_S * WINDOW_S)
    lat = sorted(max(0.01, rng.gauss(BASE_LATENCY_S, LATENCY_SD_S)) for _ in range(n))
    errors = sum(1 for _ in range(n) if rng.random() < BASE_ERROR_RATIO)
    return {
        "demo_latency_p99_seconds": lat[int(0.99 * n)],
        "demo_error_ratio": errors / n,
        "demo_memory_bytes": BASE_MEMORY + rng.gauss(0, 2e5),
    }


@dataclass
class Shop:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    latency_s: float = 0.0  # added latency (the fault)
    error_ratio: float = 0.0
    memory_growth: float = 0.0
    memory: float = BASE_MEMORY
    recent: deque[tuple[float, float, bool]] = field(default_factory=deque)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "demo_requests", "Checkout requests served, by HTTP code.", ["code"], registry=r
        )
        self.duration = Histogram(
            "demo_request_duration_seconds",
            "Checkout latency.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
            registry=r,
        )
        self.p99 = Gauge(
            "demo_latency_p99_seconds", "p99 checkout latency over the last 15 s.", registry=r
        )
        self.errors = Gauge(
            "demo_error_ratio", "Share of checkouts that failed over the last 15 s.", registry=r
        )
        self.mem = Gauge("demo_memory_bytes", "Working set of the shop.", registry=r)

    def serve_one(self, now: float) -> None:
        latency = max(
            0.01, self.rng.gauss(BASE_LATENCY_S, LATENCY_SD_S)
        ) + self.latency_s * self.rng.uniform(0.8, 1.2)
        failed = self.rng.random() < max(BASE_ERROR_RATIO, self.error_ratio)
        self.requests.labels("500" if failed else "200").inc()
        self.duration.observe(latency)
        self.recent.append((now, latency, failed))

    def tick(self, now: float, dt: float) -> None:
        for _ in range(max(1, round(REQUESTS_PER_S * dt))):
            self.serve_one(now)
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        lat = sorted(x[1] for x in self.recent)
        self.p99.set(lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0)
        self.errors.set(sum(1 for x in self.recent if x[2]) / max(1, len(self.recent)))
        self.memory += self.memory_growth * dt
        self.mem.set(self.memory + self.rng.gauss(0, 2e5))

    def restart(self) -> None:
        self.latency_s = self.error_ratio = self.memory_growth = 0.0
        self.memory = BASE_MEMORY
        self.recent.clear()


SHOP = web.AppKey("shop", Shop)


def build_app(shop: Shop | None = None) -> web.Application:
    shop = shop or Shop()
    app = web.Application()
    app[SHOP] = shop

    async def fault(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            shop.latency_s = float(doc.get("latency_s", shop.latency_s))
            shop.error_ratio = float(doc.get("error_ratio", shop.error_ratio))
            shop.memory_growth = float(doc.get("memory_growth_bytes_per_s", shop.memory_growth))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response(
                {"error": f"expected a JSON object of numbers: {exc}"}, status=400
            )
        return web.json_response(state(shop))

    async def restart(request: web.Request) -> web.Response:
        shop.restart()
        return web.json_response({"restarted": True, **state(shop)})

    async def show(request: web.Request) -> web.Response:
        return web.json_response(state(shop))

    async def traffic(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.25)
                now = time.monotonic()
                shop.tick(time.time(), now - last)
                last = now

        task = asyncio.create_task(run())
        yield
        task.cancel()

    app.router.add_post("/admin/fault", fault)
    app.router.add_post("/admin/restart", restart)
    app.router.add_get("/admin/state", show)
    app.router.add_get("/metrics", make_aiohttp_handler(shop.registry))
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(traffic)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def state(shop: Shop) -> dict[str, float]:
    return {
        "latency_s": shop.latency_s,
        "error_ratio": shop.error_ratio,
        "memory_growth_bytes_per_s": shop.memory_growth,
        "memory_bytes": shop.memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="demo-shop")
    parser.add_argument("--listen", default="127.0.0.1:8080")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(build_app(), host=host, port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
