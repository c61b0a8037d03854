"""Build request bodies and start the detector app under the aiohttp test client."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer

from detector.app import RUNTIME, Runtime, build_app
from detector.config import AlertRule, DetectorConfig
from detector.remote_write import decode, encode

V1 = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
V2 = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}


# ``level_shift`` scrapes every second; the default rule's 60 s ``for`` would need a minute
# of shift. These tests are about what an alert carries, so their rule fires on the third
# shifted second and resolves after five normal ones.
SECOND_RULE = AlertRule(for_s=3.0, resolve_s=5.0)


def config(**fields) -> DetectorConfig:
    """``DetectorConfig(**fields)`` with ``SECOND_RULE`` unless ``alerts`` is given."""
    return DetectorConfig(**{"alerts": (SECOND_RULE,), **fields})


def body(series, version=1) -> bytes:
    raw = encode.encode_v1(series) if version == 1 else encode.encode_v2(series)
    return encode.compress(raw)


def series(name, ts, value, **labels):
    return encode.Series(
        labels=tuple(sorted([("__name__", name), *labels.items()])), samples=[(ts, value)]
    )


async def start(aiohttp_client, cfg: DetectorConfig | None = None, **kwargs):
    app = build_app(cfg or config(), **kwargs)
    server = TestServer(app)
    # as vigil-detector serve runs it: aiohttp must not inflate bodies itself
    await server.start_server(auto_decompress=False)
    client = await aiohttp_client(server)
    rt: Runtime = app[RUNTIME]
    await rt.ready.wait()
    return client, rt


class FakeAlertmanager:
    """Records what the detector POSTs to /api/v2/alerts; tests wait on ``received``."""

    def __init__(self) -> None:
        self.posts: list[list[dict]] = []
        self.received = asyncio.Event()

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.posts.append(await request.json())
            self.received.set()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/api/v2/alerts", handle)
        return app

    async def wait_for(self, predicate, timeout_s: float = 10.0) -> list[dict]:
        """The latest alerts once some POSTed alert satisfies ``predicate``."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = [a for post in self.posts for a in post if predicate(a)]
                if found:
                    return found
                self.received.clear()
                await self.received.wait()


def level_shift(
    name: str,
    *,
    start_ms: int,
    n_normal: int,
    n_shift: int,
    step_ms: int = 1000,
    seed: int = 7,
    shift: float = 10.0,
    **labels: str,
) -> list[encode.Series]:
    """One series per request chunk: noise around 1.0, then a shift by ``shift`` sigmas."""
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            1.0 + 0.1 * rng.standard_normal(n_normal),
            1.0 + 0.1 * shift + 0.1 * rng.standard_normal(n_shift),
        ]
    )
    samples = [(start_ms + i * step_ms, float(v)) for i, v in enumerate(values)]
    return [
        encode.Series(labels=tuple(sorted([("__name__", name), *labels.items()])), samples=samples)
    ]


async def writeback_sink(aiohttp_server) -> tuple[str, list]:
    """A remote-write receiver for the write-back: its URL, and the decoded requests it got."""
    received: list = []

    async def receive(request: web.Request) -> web.Response:
        raw = decode.decompress(await request.read(), max_decompressed_bytes=1 << 24)
        received.append(decode.decode_request(np.frombuffer(raw, np.uint8), 1))
        return web.Response(status=204)

    sink = web.Application()
    sink.router.add_post("/api/v1/write", receive)
    server = await aiohttp_server(sink)
    return str(server.make_url("/api/v1/write")), received
