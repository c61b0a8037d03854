"""Build request bodies and start the detector app under the aiohttp test client."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from detector.app import RUNTIME, Runtime, build_app
from detector.config import DetectorConfig
from detector.remote_write import encode

V1 = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
      "X-Prometheus-Remote-Write-Version": "0.1.0"}
V2 = {"Content-Encoding": "snappy",
      "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
      "X-Prometheus-Remote-Write-Version": "2.0.0"}


def body(series, version=1) -> bytes:
    raw = encode.encode_v1(series) if version == 1 else encode.encode_v2(series)
    return encode.compress(raw)


def series(name, ts, value, **labels):
    return encode.Series(labels=tuple(sorted([("__name__", name), *labels.items()])),
                         samples=[(ts, value)])


async def start(aiohttp_client, cfg: DetectorConfig | None = None, **kwargs):
    app = build_app(cfg or DetectorConfig(), **kwargs)
    server = TestServer(app)
    # as vigil-detector serve runs it: aiohttp must not inflate bodies itself
    await server.start_server(auto_decompress=False)
    client = await aiohttp_client(server)
    rt: Runtime = app[RUNTIME]
    await rt.ready.wait()
    return client, rt
